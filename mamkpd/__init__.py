"""mamkpd: reproducibility suite for MamKPD and its baselines."""

from .models.registry import create_model, list_models, model_info, register_model

__version__ = "0.1.0"

__all__ = ["create_model", "list_models", "model_info", "register_model", "load_checkpoint", "__version__"]


def load_checkpoint(model, path, strict: bool = True):
    """Load a checkpoint in any layout the model zoos ship (see :mod:`mamkpd.models.checkpoint`)."""
    from .models.checkpoint import load_checkpoint as _load

    return _load(model, path, strict=strict)
