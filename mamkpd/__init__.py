"""mamkpd: reproducibility suite for MamKPD and its baselines.

The model functions are imported on first use, so that ``mamkpd <command> --typo`` is answered without
importing torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .models import count_params, create_model, list_models, load_weights, model_info, register_model

__version__ = "0.1.0"

__all__ = ["count_params", "create_model", "list_models", "load_weights", "model_info", "register_model", "__version__"]


def __getattr__(name: str):
    """The model functions, and a subpackage (``mamkpd.codecs``) as ``import mamkpd`` used to load them."""
    import importlib

    if name in __all__:
        value = getattr(importlib.import_module(".models", __name__), name)
    else:
        try:
            value = importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value
    return value
