"""Training configuration: one dataclass, every field settable from the command line (``mamkpd.cli.train``
declares the options from its fields)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "TrainConfig",
    "ResumeDifferences",
    "RESUME_FIXED_SETTINGS",
    "RESUME_FREE_SETTINGS",
    "refuse_scan_backend_override",
    "resume_differences",
]


def refuse_scan_backend_override(model_kwargs: dict[str, Any] | None, config: str) -> None:
    """One way to set a model's scan backend, the config's own field: the run records it as the backend that
    ran (a model override beside it would reach create_model twice)."""
    if model_kwargs and "scan_backend" in model_kwargs:
        raise ValueError(f"model_kwargs may not set scan_backend: use {config}.scan_backend (--scan-backend)")


def _option(default: Any = dataclasses.MISSING, *, help: str, factory: Any = dataclasses.MISSING, **argparse_kw):
    """A TrainConfig field with the sentence ``mamkpd train --help`` shows for it (and argparse extras:
    ``choices``, ``metavar``; ``default_text`` for a default that the help cannot show as a value)."""
    return field(default=default, default_factory=factory, metadata={"help": help, **argparse_kw})


@dataclass
class TrainConfig:
    """A top-down heatmap training run.

    Defaults are the paper's recipe (Adam, lr 1e-3, ×0.1 at epochs 170 and 200, 210 epochs), which is
    also HRNet's and ViTPose's. The linear warm-up (500 iterations from 0.001 × lr) is MMPose's
    default ``lr_config`` that ViTPose-style code bases (MamKPD's included) inherit; HRNet's original
    code has none: set ``warmup_iters=0`` for that.
    """

    model: str = _option("mamkpd_s", help="registered model to train (see `mamkpd complexity --list`)")
    model_kwargs: dict[str, Any] = _option(
        factory=dict, help="overrides for create_model as a JSON object, e.g. '{\"depths\": [1, 1, 1]}'"
    )
    scan_backend: str = _option(
        "auto", help="selective-scan backend of a model with a scan (the run records the one that ran)"
    )
    dataset: str = _option("coco", help="data set to train on", choices=("coco", "mpii", "ap10k"))
    data_root: str | None = _option(
        None, help="data set folder in its standard layout (default: $MAMKPD_<DATASET>_ROOT)", metavar="DIR"
    )
    input_size: tuple[int, int] | None = _option(
        None, help="crop height and width in pixels", default_text="the data set's, 256 192 for COCO"
    )
    codec: str | None = _option(
        None,
        help="codec of the targets: msra, msra_dark, udp, darkpose or simcc (default: the model's own, udp for "
        "ViTPose, darkpose for TokenPose and PPT, simcc for RTMPose)",
    )
    augment: bool = _option(True, help="HRNet's augmentations (flip, half-body, scale, rotation); false for none")
    # annotation/image overrides inside data_root (the standard paths when None)
    train_ann_file: str | None = _option(
        None, help="training annotation file (default: the standard one under --data-root)", metavar="FILE"
    )
    train_image_dir: str | None = _option(
        None, help="training image folder (default: the standard one, or beside --train-ann-file)", metavar="DIR"
    )
    val_ann_file: str | None = _option(
        None, help="validation annotation file (default: the standard one under --data-root)", metavar="FILE"
    )
    val_image_dir: str | None = _option(
        None, help="validation image folder (default: the standard one, or beside --val-ann-file)", metavar="DIR"
    )
    val_box_file: str | None = _option(
        None, help="COCO detector results JSON for validation boxes (default: ground-truth boxes)", metavar="FILE"
    )
    on_bad: str = _option(
        "skip",
        help="broken annotation records and unreadable images: skip and count them, or stop at the first",
        choices=("skip", "error"),
    )
    # optimisation
    epochs: int = _option(210, help="epochs to train; raise it to extend a run and resume it")
    batch_size: int = _option(64, help="samples per optimiser step in each process")
    lr: float = _option(1e-3, help="Adam learning rate after the warm-up")
    weight_decay: float = _option(0.0, help="Adam weight decay")
    lr_steps: tuple[int, ...] = _option((170, 200), help="epochs at which the lr is multiplied by --lr-factor")
    lr_factor: float = _option(0.1, help="learning-rate factor applied at each of --lr-steps")
    warmup_iters: int = _option(500, help="optimiser steps of linear warm-up (0: none, as HRNet's own code)")
    warmup_ratio: float = _option(0.001, help="the warm-up's starting learning rate, as a fraction of --lr")
    grad_clip: float | None = _option(None, help="clip the global gradient norm to this value (none: no clipping)")
    sync_bn: bool = _option(False, help="SyncBatchNorm across processes under torchrun")
    amp: bool = _option(False, help="float16 mixed precision (CUDA only; ignored on the CPU with a warning)")
    max_steps: int | None = _option(
        None, help="stop after this many optimiser steps in all (short runs; none: no limit)"
    )
    # evaluation during training
    val_interval: int = _option(10, help="epochs between validations (also after the last epoch); 0: never")
    flip_test: bool = _option(True, help="validate with the flip test")
    eval_batch_size: int = _option(64, help="samples per batch in validation")
    # runtime
    device: str = _option("auto", help="auto, cpu, cuda or cuda:N (under torchrun: cuda:LOCAL_RANK)")
    workers: int = _option(4, help="DataLoader worker processes per process (0: load in the main process)")
    seed: int = _option(0, help="seed of weights, sampling order and augmentation")
    deterministic: bool = _option(False, help="deterministic kernels (slower; bit-identical reruns on one machine)")
    out_dir: str = _option("runs/train", help="folder for checkpoints, train.log and validation results", metavar="DIR")
    resume: str | None = _option(
        None,
        help="continue from a checkpoint: a path, or 'auto' for OUT_DIR/last.pth when it exists (else a fresh start)",
        metavar="PATH|auto",
    )
    resume_with_new_settings: bool = _option(
        False,
        help="on resume, apply settings that differ from the checkpoint's (lr, schedule, batch size, ...) and "
        "record them; without it such a resume is refused",
    )
    checkpoint_interval: int = _option(10, help="also keep epoch_N.pth every N epochs; 0: last.pth and best.pth only")
    log_interval: int = _option(50, help="optimiser steps between lines of train.log")

    def __post_init__(self) -> None:
        from ..ops import (
            SCAN_BACKEND_CHOICES,
        )  # here, not at the top: the command line reads these fields without torch

        if self.input_size is not None:
            self.input_size = tuple(int(v) for v in self.input_size)
            if len(self.input_size) != 2 or min(self.input_size) < 1:
                raise ValueError(f"input_size must be (H, W), both positive, got {self.input_size}")
        self.lr_steps = tuple(int(v) for v in self.lr_steps)
        checks = {
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 1,
            "lr": self.lr > 0,
            "eval_batch_size": self.eval_batch_size >= 1,
            "workers": self.workers >= 0,
            "warmup_iters": self.warmup_iters >= 0,
            "val_interval": self.val_interval >= 0,
            "checkpoint_interval": self.checkpoint_interval >= 0,
            "log_interval": self.log_interval >= 1,
            "max_steps": self.max_steps is None or self.max_steps >= 1,
            "on_bad": self.on_bad in ("skip", "error"),
            "scan_backend": self.scan_backend in SCAN_BACKEND_CHOICES,
        }
        refuse_scan_backend_override(self.model_kwargs, "TrainConfig")
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(
                "invalid TrainConfig value(s): " + ", ".join(f"{name}={getattr(self, name)!r}" for name in bad)
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (stored in checkpoints and the run log)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Rebuild from :meth:`to_dict` output; unknown keys are an error naming them."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s): {', '.join(unknown)}")
        return cls(**data)


# Settings a resumed run may change: they decide how long it goes on, where it runs, what it logs and how
# it validates, not the training up to the resumed point. Each new value is used and recorded.
RESUME_FREE_SETTINGS = (
    "scan_backend",  # the same function on another kernel
    "epochs",
    "max_steps",
    "device",
    "workers",
    "log_interval",
    "checkpoint_interval",
    "out_dir",
    "resume",
    "resume_with_new_settings",
    "val_interval",
    "eval_batch_size",
    "flip_test",
    "data_root",  # where the data lives, not which data: the annotation files and the data set are compared
    "train_image_dir",
    "val_ann_file",
    "val_image_dir",
    "val_box_file",
)
# Settings the checkpoint's weights are bound to: another value is another run, even when asked for.
RESUME_FIXED_SETTINGS = ("model", "model_kwargs", "dataset", "input_size")


@dataclass(frozen=True)
class ResumeDifferences:
    """How a resumed run's settings differ from its checkpoint's: ``{name: (checkpoint's, now)}`` by kind."""

    fixed: dict[str, tuple[Any, Any]]  # cannot change: a new run is needed
    changed: dict[str, tuple[Any, Any]]  # change the training: applied only when the user asks for it
    free: dict[str, tuple[Any, Any]]  # change only how the run goes on

    @staticmethod
    def describe(diffs: dict[str, tuple[Any, Any]]) -> str:
        return ", ".join(f"{name} {old!r} -> {new!r}" for name, (old, new) in diffs.items())


def resume_differences(saved: TrainConfig, new: TrainConfig) -> ResumeDifferences:
    """Compare the settings of a checkpoint (``saved``) with those of the run resuming it (``new``)."""
    old_values, new_values = saved.to_dict(), new.to_dict()
    diffs = {name: (old_values[name], new_values[name]) for name in new_values if old_values[name] != new_values[name]}
    return ResumeDifferences(
        fixed={k: v for k, v in diffs.items() if k in RESUME_FIXED_SETTINGS},
        changed={k: v for k, v in diffs.items() if k not in RESUME_FIXED_SETTINGS + RESUME_FREE_SETTINGS},
        free={k: v for k, v in diffs.items() if k in RESUME_FREE_SETTINGS},
    )
