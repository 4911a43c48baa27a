"""Training configuration: one dataclass, every field settable from the command line."""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, get_type_hints

__all__ = ["TrainConfig", "add_config_arguments", "config_from_args", "parse_json_dict"]


@dataclass
class TrainConfig:
    """A top-down heatmap training run.

    Defaults are the paper's recipe (Adam, lr 1e-3, ×0.1 at epochs 170 and 200, 210 epochs), which is
    also HRNet's and ViTPose's. The linear warm-up (500 iterations from 0.001 × lr) is MMPose's
    default ``lr_config`` that ViTPose-style code bases (MamKPD's included) inherit; HRNet's original
    code has none: set ``warmup_iters=0`` for that.
    """

    model: str = "mamkpd_s"
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # overrides for create_model
    dataset: str = "coco"
    data_root: str | None = None  # None: the dataset's environment variable
    input_size: tuple[int, int] | None = None  # (H, W); None: the dataset's default
    codec: str | None = None  # msra | msra_dark | udp (mamkpd.codecs.build_codec); None: the model's own
    augment: bool = True  # False trains on unaugmented crops (overfitting checks)
    # annotation/image overrides inside data_root (the standard paths when None)
    train_ann_file: str | None = None
    train_image_dir: str | None = None
    val_ann_file: str | None = None
    val_image_dir: str | None = None
    val_box_file: str | None = None  # COCO detector boxes for validation; ground-truth boxes when None
    on_bad: str = "skip"  # skip | error, for malformed records
    # optimisation
    epochs: int = 210
    batch_size: int = 64  # per process
    lr: float = 1e-3
    weight_decay: float = 0.0
    lr_steps: tuple[int, ...] = (170, 200)
    lr_factor: float = 0.1
    warmup_iters: int = 500
    warmup_ratio: float = 0.001
    grad_clip: float | None = None  # max global gradient norm; None: no clipping
    sync_bn: bool = False  # SyncBatchNorm under DDP
    amp: bool = False  # mixed precision, CUDA only
    max_steps: int | None = None  # stop after this many optimiser steps (short runs); None: no limit
    # evaluation during training
    val_interval: int = 10  # epochs between validations; 0: never
    flip_test: bool = True
    eval_batch_size: int = 64
    # runtime
    device: str = "auto"  # auto | cpu | cuda | cuda:N (under torchrun: cuda:LOCAL_RANK)
    workers: int = 4
    seed: int = 0
    deterministic: bool = False
    out_dir: str = "runs/train"
    resume: str | None = None  # checkpoint path, or "auto": out_dir/last.pth if it exists, else a fresh start
    checkpoint_interval: int = 10  # also keep epoch_N.pth every N epochs; 0: last.pth (and best.pth) only
    log_interval: int = 50  # steps between log-file lines

    def __post_init__(self) -> None:
        if self.input_size is not None:
            self.input_size = tuple(int(v) for v in self.input_size)
            if len(self.input_size) != 2:
                raise ValueError(f"input_size must be (H, W), got {self.input_size}")
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
        }
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


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (true/false), got {text!r}")


def parse_json_dict(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def _optional(parse):
    return lambda text: None if text.lower() == "none" else parse(text)


def add_config_arguments(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """Add one ``--field-name`` option per TrainConfig field (defaults left as None = "not given")."""
    hints = get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        if f.name in skip:
            continue
        hint = str(hints[f.name])
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        help_text = f"(default: {default})"
        if "dict" in hint:
            parser.add_argument(flag, type=parse_json_dict, metavar="JSON", help=help_text)
        elif "tuple" in hint:
            item = float if "float" in hint else int
            parser.add_argument(flag, type=item, nargs="+", metavar="N", help=help_text)
        elif "bool" in hint:
            # "--amp" alone means true; "--amp false" turns a default-on flag off
            parser.add_argument(flag, type=_parse_bool, nargs="?", const=True, metavar="BOOL", help=help_text)
        else:
            base = int if "int" in hint else float if "float" in hint else str
            parse = _optional(base) if "None" in hint and base is not str else base
            parser.add_argument(flag, type=parse, help=help_text)


def config_from_args(args: argparse.Namespace, base: TrainConfig | None = None) -> TrainConfig:
    """TrainConfig from parsed arguments: options given on the command line replace ``base``'s values."""
    values = (base or TrainConfig()).to_dict()
    for f in dataclasses.fields(TrainConfig):
        given = getattr(args, f.name, None)
        if given is not None:
            values[f.name] = given
    return TrainConfig.from_dict(values)
