"""Training and evaluation engine: top-down heatmap training (single process or torchrun/DDP) and inference."""

from .checkpoint import atomic_write, load_training_state, save_checkpoint, write_json
from .checkpoint_eval import EvalConfig, evaluate_checkpoint
from .config import TrainConfig
from .distributed import DistContext, gather_by_index, init_distributed
from .inference import build_coco_results, evaluate, flip_back, predict_outputs, run_inference
from .loss import JointsMSELoss
from .trainer import NonFiniteLossError, TrainResult, WarmupMultiStep, train

__all__ = [
    "TrainConfig",
    "train",
    "TrainResult",
    "NonFiniteLossError",
    "WarmupMultiStep",
    "JointsMSELoss",
    "evaluate",
    "EvalConfig",
    "evaluate_checkpoint",
    "run_inference",
    "predict_outputs",
    "flip_back",
    "build_coco_results",
    "DistContext",
    "init_distributed",
    "gather_by_index",
    "atomic_write",
    "write_json",
    "save_checkpoint",
    "load_training_state",
]
