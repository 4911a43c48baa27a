"""Models: reusable layers, MamKPD and the registry the baselines register into."""

# importing the variants registers them: the registry never imports them, so the two files form no circle
from . import mamkpd  # noqa: F401
from .checkpoint import load_weights
from .layers import scan_backend_of
from .registry import ModelInfo, check_input_size, count_params, create_model, list_models, model_info, register_model

__all__ = [
    "ModelInfo",
    "check_input_size",
    "count_params",
    "create_model",
    "list_models",
    "load_weights",
    "model_info",
    "register_model",
    "scan_backend_of",
]
