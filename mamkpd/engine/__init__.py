"""Training and evaluation engine: top-down heatmap training (single process or torchrun/DDP) and inference.

Names are imported from their modules on first use, so that the command line reads :class:`TrainConfig`'s
fields, and answers a typo, without importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .checkpoint import atomic_write, load_training_state, save_checkpoint, write_json
    from .checkpoint_eval import EvalConfig, evaluate_checkpoint
    from .config import TrainConfig
    from .distributed import DistContext, gather_by_index, init_distributed
    from .inference import build_coco_results, evaluate, flip_back, predict_outputs, run_inference
    from .loss import JointsMSELoss, KLDiscretLoss
    from .trainer import NonFiniteLossError, TrainResult, WarmupMultiStep, train

_MODULE_OF = {
    "TrainConfig": "config",
    "train": "trainer",
    "TrainResult": "trainer",
    "NonFiniteLossError": "trainer",
    "WarmupMultiStep": "trainer",
    "JointsMSELoss": "loss",
    "KLDiscretLoss": "loss",
    "evaluate": "inference",
    "EvalConfig": "checkpoint_eval",
    "evaluate_checkpoint": "checkpoint_eval",
    "run_inference": "inference",
    "predict_outputs": "inference",
    "flip_back": "inference",
    "build_coco_results": "inference",
    "DistContext": "distributed",
    "init_distributed": "distributed",
    "gather_by_index": "distributed",
    "atomic_write": "checkpoint",
    "write_json": "checkpoint",
    "save_checkpoint": "checkpoint",
    "load_training_state": "checkpoint",
}
__all__ = [
    "TrainConfig",
    "train",
    "TrainResult",
    "NonFiniteLossError",
    "WarmupMultiStep",
    "JointsMSELoss",
    "KLDiscretLoss",
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


def __getattr__(name: str):
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_MODULE_OF[name]}", __name__), name)
    globals()[name] = value
    return value
