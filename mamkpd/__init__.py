"""mamkpd: reproducibility suite for MamKPD and its baselines."""

from .models import count_params, create_model, list_models, load_weights, model_info, register_model

__version__ = "0.1.0"

__all__ = ["count_params", "create_model", "list_models", "load_weights", "model_info", "register_model", "__version__"]
