"""Models: reusable layers, MamKPD and the registry the baselines register into."""

from .registry import ModelInfo, create_model, list_models, model_info, register_model

__all__ = ["ModelInfo", "create_model", "list_models", "model_info", "register_model"]
