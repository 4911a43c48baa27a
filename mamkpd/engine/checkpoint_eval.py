"""Evaluate a checkpoint: work out its model, codec and input size, build the data set, run the flip-test
inference and score it (``mamkpd evaluate``, ``mamkpd reproduce`` and ``mamkpd report --run`` call this).

A checkpoint written by the trainer records its model, overrides, input size and codec; a model-zoo
checkpoint records none, so the model must be named. What the caller gives wins, then what the
checkpoint recorded, then the model's and the data set's own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .checkpoint import read_checkpoint_contents
from .config import refuse_scan_backend_override
from .distributed import init_distributed
from .inference import evaluate

__all__ = ["CheckpointSetup", "EvalConfig", "checkpoint_setup", "default_results_path", "evaluate_checkpoint"]


@dataclass
class EvalConfig:
    """One evaluation of a checkpoint; None fields are worked out from the checkpoint (see module docs)."""

    checkpoint: str
    dataset: str  # coco | mpii | ap10k
    model: str | None = None  # registered name; None: the training checkpoint's
    model_kwargs: dict[str, Any] | None = None  # create_model overrides; None: the checkpoint's
    data_root: str | None = None  # None: the dataset's environment variable
    split: str = "val"
    ann_file: str | None = None
    image_dir: str | None = None
    box_file: str | None = None  # COCO detector boxes; ground-truth boxes when None
    gt_mat: str | None = None  # MPII ground truth; None: found under the data root when there
    codec: str | None = None  # None: the checkpoint's, else the model's own
    input_size: tuple[int, int] | None = None  # None: the checkpoint's, else the dataset's
    flip_test: bool = True
    batch_size: int = 64
    workers: int = 2
    device: str = "auto"
    scan_backend: str = "auto"  # of a model with a selective scan; the protocol records the one that ran
    amp: bool = False
    results: str | None = None  # None: default_results_path(...), named after model, run, checkpoint, data
    trust_checkpoint: bool = False  # load a checkpoint weights_only=True refuses as a full pickle (a trusted file)

    def __post_init__(self) -> None:
        refuse_scan_backend_override(self.model_kwargs, "EvalConfig")


@dataclass(frozen=True)
class CheckpointSetup:
    """What an evaluation of a checkpoint runs with."""

    model: str
    model_kwargs: dict[str, Any]
    input_size: tuple[int, int]
    codec: str
    training_state: dict[str, Any] | None = field(default=None, repr=False)  # None for a model-zoo file
    contents: Any = field(default=None, repr=False)  # what the file holds (the training state, or a zoo's dict)


def default_results_path(checkpoint: str, model: str, dataset: str, split: str) -> Path:
    """runs/eval/<model>_<run>_<checkpoint stem>_<dataset>_<split>_keypoints.json, where the run is the
    checkpoint's folder: two runs' last.pth do not write the same file."""
    path = Path(checkpoint)
    run = path.resolve().parent.name or "root"
    name = "_".join((model, run, path.stem, dataset, split, "keypoints"))
    return Path("runs/eval") / (re.sub(r"[^A-Za-z0-9_.-]", "_", name) + ".json")


def checkpoint_setup(cfg: EvalConfig) -> CheckpointSetup:
    """Model, overrides, input size and codec of ``cfg``: given, else recorded in the checkpoint, else defaults."""
    from ..data import get_info
    from ..models import model_info

    contents, state = read_checkpoint_contents(cfg.checkpoint, trust=cfg.trust_checkpoint)
    saved = state["config"] if state else {}
    model_name = cfg.model or saved.get("model")
    if not model_name:
        raise ValueError(f"{cfg.checkpoint} is not a `mamkpd train` checkpoint: pass --model NAME")
    model_kwargs = (
        cfg.model_kwargs
        if cfg.model_kwargs is not None
        else (saved.get("model_kwargs", {}) if model_name == saved.get("model") else {})
    )
    info = get_info(cfg.dataset)
    model_abilities = model_info(model_name)
    # a whole-image model's input is a whole image at its own size, not a person crop at the data set's
    own_size = model_abilities.input_size if model_abilities.whole_image else info.input_size
    input_size = tuple(cfg.input_size or saved.get("input_size") or own_size)
    codec_name = cfg.codec or saved.get("codec") or model_abilities.codec
    return CheckpointSetup(model_name, model_kwargs, input_size, codec_name, state, contents)


def evaluate_checkpoint(cfg: EvalConfig) -> dict[str, Any]:
    """Evaluate ``cfg.checkpoint`` on ``cfg.dataset``; the report of :func:`mamkpd.engine.evaluate`, its
    protocol completed with the checkpoint, model, overrides and split (the same on every rank)."""
    from ..codecs import build_codec
    from ..data import build_dataset, get_info
    from ..data.roots import find_mpii_gt
    from ..models import create_model, model_info

    setup = checkpoint_setup(cfg)
    info = get_info(cfg.dataset)
    if model_info(setup.model).whole_image:
        return _evaluate_whole_image(cfg, setup)
    codec = build_codec(setup.codec, setup.input_size)
    model = create_model(
        setup.model,
        num_keypoints=info.num_keypoints,
        input_size=setup.input_size,
        scan_backend=cfg.scan_backend,
        **setup.model_kwargs,
    )
    _load_checkpoint_weights(model, cfg, setup)
    dataset = build_dataset(
        cfg.dataset,
        cfg.split,
        cfg.data_root,
        train=False,
        input_size=setup.input_size,
        codec=codec,
        box_file=cfg.box_file,
        ann_file=cfg.ann_file,
        image_dir=cfg.image_dir,
        channel_order=getattr(model, "input_channels", "rgb"),  # what the loaded layout expects
    )
    ctx = init_distributed(cfg.device)
    model.to(ctx.device)
    results = (
        Path(cfg.results) if cfg.results else default_results_path(cfg.checkpoint, setup.model, cfg.dataset, cfg.split)
    )
    gt_mat = cfg.gt_mat
    if gt_mat is None and (cfg.dataset, cfg.split) == ("mpii", "val"):
        gt_mat = find_mpii_gt(cfg.data_root)
    report = evaluate(
        model,
        dataset,
        codec,
        flip_test=cfg.flip_test,
        batch_size=cfg.batch_size,
        workers=cfg.workers,
        ctx=ctx,
        amp=cfg.amp,
        results_file=results,
        box_source=cfg.box_file or "ground truth",
        gt_mat=gt_mat,
    )
    report["protocol"].update(
        checkpoint=str(cfg.checkpoint), model=setup.model, model_kwargs=setup.model_kwargs, split=cfg.split
    )
    return report


def _load_checkpoint_weights(model, cfg: EvalConfig, setup: CheckpointSetup) -> None:
    """The checkpoint's weights into ``model``, strictly: a checkpoint of another model fails with counts and a
    few names of what does not fit."""
    from ..models.checkpoint import load_weights_from_state, unwrap_state_dict

    weights = (
        setup.training_state["model"] if setup.training_state else unwrap_state_dict(setup.contents, cfg.checkpoint)
    )
    load_weights_from_state(model, weights, source=str(cfg.checkpoint), model_name=setup.model)


def _evaluate_whole_image(cfg: EvalConfig, setup: CheckpointSetup) -> dict[str, Any]:
    """A one-stage model (``whole_image``) on COCO's whole images, in one process (:mod:`.whole_image`)."""
    from ..data import data_files, get_info
    from ..models import create_model
    from .whole_image import evaluate_whole_image

    info = get_info(cfg.dataset)
    if cfg.dataset != "coco":
        raise ValueError(
            f"{setup.model} is a one-stage whole-image model: only --dataset coco is evaluated, got {cfg.dataset!r}"
        )
    if cfg.box_file:
        raise ValueError(
            f"--box-file: {setup.model} finds the people itself (a one-stage model); it takes no person boxes"
        )
    model = create_model(
        setup.model, num_keypoints=info.num_keypoints, input_size=setup.input_size, **setup.model_kwargs
    )
    _load_checkpoint_weights(model, cfg, setup)
    ctx = init_distributed(cfg.device)
    model.to(ctx.device)
    _, ann_file, image_dir = data_files(cfg.dataset, cfg.split, cfg.data_root, cfg.ann_file, cfg.image_dir)
    results = (
        Path(cfg.results) if cfg.results else default_results_path(cfg.checkpoint, setup.model, cfg.dataset, cfg.split)
    )
    report = evaluate_whole_image(
        model, ann_file, image_dir, flip_test=cfg.flip_test, sigmas=info.sigmas, results_file=results
    )
    report["protocol"].update(
        checkpoint=str(cfg.checkpoint), model=setup.model, model_kwargs=setup.model_kwargs, split=cfg.split
    )
    return report
