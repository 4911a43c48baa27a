"""Top-down training (heatmaps; SimCC vectors for RTMPose): single process, or many under torchrun with
DistributedDataParallel. The loss is the codec's (``training_loss``): JointsMSELoss or KLDiscretLoss."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ..models import scan_backend_of
from ..models.checkpoint_file import UntrustedCheckpointError
from .checkpoint import (
    capture_rng_state,
    load_training_state,
    remove_stale_temp_files,
    restore_rng_state,
    save_checkpoint,
    unwrap_model,
)
from .config import ResumeDifferences, TrainConfig, resume_differences
from .distributed import DistContext, barrier, broadcast_buffers, init_distributed
from .inference import evaluate, primary_metric
from .loss import training_loss_of
from .memory import check_batch_fits

if TYPE_CHECKING:  # the data package (OpenCV) is imported where a run reads data, not with this module
    from ..data.infos import DatasetInfo

__all__ = [
    "train",
    "setup_training",
    "train_one_epoch",
    "validate_and_checkpoint",
    "TrainingRun",
    "TrainResult",
    "NonFiniteLossError",
    "WarmupMultiStep",
    "build_datasets",
    "TrainSetup",
    "resolve_training",
    "seed_everything",
]

log = logging.getLogger("mamkpd.engine")


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or Inf; the message names the step, the batch and the last good checkpoint."""


@dataclass
class TrainResult:
    """What a finished (or max_steps-stopped) run leaves behind."""

    out_dir: Path
    epochs_completed: int
    global_step: int
    checkpoint: Path | None  # the newest weights: last.pth, or partial.pth after a mid-epoch max_steps stop
    best_checkpoint: Path | None
    best_metric: float | None
    history: list[dict[str, Any]] = field(default_factory=list)  # one record per completed epoch
    scan_backend: str | None = None  # the selective-scan backend the model ran (never "auto"); None: no scan

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary: paths as strings, the last epoch's record."""
        return {
            "out_dir": str(self.out_dir),
            "epochs_completed": self.epochs_completed,
            "global_step": self.global_step,
            "checkpoint": str(self.checkpoint) if self.checkpoint else None,
            "best_checkpoint": str(self.best_checkpoint) if self.best_checkpoint else None,
            "best_metric": self.best_metric,
            "scan_backend": self.scan_backend,
            "last_epoch": self.history[-1] if self.history else None,
        }


class WarmupMultiStep:
    """LR factor per optimiser step: MMPose-style linear warm-up, then ×factor at each epoch milestone.

    Warm-up (mmcv ``warmup='linear'``): factor = 1 − (1 − step/warmup_iters)(1 − warmup_ratio) for
    step < warmup_iters. Milestones count completed epochs, as mmcv's ``step`` policy and
    ``MultiStepLR`` stepped per epoch do: epochs 0..169 at lr, 170..199 at 0.1·lr, 200.. at 0.01·lr.
    A plain object (not a closure) so LambdaLR's state_dict stores it.
    """

    def __init__(
        self, iters_per_epoch: int, milestones: tuple[int, ...], factor: float, warmup_iters: int, warmup_ratio: float
    ) -> None:
        self.iters_per_epoch = iters_per_epoch
        self.milestones = tuple(milestones)
        self.factor = factor
        self.warmup_iters = warmup_iters
        self.warmup_ratio = warmup_ratio

    def __call__(self, step: int) -> float:
        epoch = step // self.iters_per_epoch
        value = self.factor ** sum(epoch >= m for m in self.milestones)
        if step < self.warmup_iters:
            value *= 1.0 - (1.0 - step / self.warmup_iters) * (1.0 - self.warmup_ratio)
        return value


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed python, numpy and torch; with ``deterministic`` also force deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        # warn_only: a kernel without a deterministic version warns (logged) instead of stopping training
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    else:
        torch.backends.cudnn.benchmark = True


def _resolved_settings(cfg: TrainConfig, info: DatasetInfo | None) -> tuple[tuple[int, int] | None, str | None]:
    """The input size and codec name ``cfg`` stands for: its own, else the data set's size (``info``; None
    without one) and the codec the model's authors used (UDP for ViTPose, MSRA otherwise; None for a model
    given as an object rather than by registered name)."""
    from ..models import model_info

    input_size = tuple(cfg.input_size) if cfg.input_size else tuple(info.input_size) if info else None
    codec_name = cfg.codec
    if codec_name is None:
        try:
            codec_name = model_info(cfg.model).codec
        except KeyError:  # a model given as an object (tests, the Python API) rather than by registered name
            pass
    return input_size, codec_name


@dataclass(frozen=True)
class TrainSetup:
    """What a run's settings resolve to, worked out once (:func:`resolve_training`) and passed to the data
    sets, the model, validation and the resume check, so that each reads the same values."""

    info: DatasetInfo  # the data set's: keypoints, flip pairs, metric
    input_size: tuple[int, int]  # (H, W): TrainConfig.input_size, else the data set's
    codec_name: str | None  # TrainConfig.codec, else the model's own; None: an unregistered model, no codec given
    codec: Any  # built once from the two above (None when codec_name is); the data sets and validation share it

    @property
    def num_keypoints(self) -> int:
        return self.info.num_keypoints

    def needed_codec(self) -> Any:
        """The codec, for what cannot go without one (reading data, validating)."""
        if self.codec is None:
            raise ValueError(
                "codec: the model is not a registered one, so it has no codec of its own; set TrainConfig.codec "
                "(msra, msra_dark or udp)"
            )
        return self.codec

    def resolved(self, cfg: TrainConfig) -> TrainConfig:
        """``cfg`` with its input size and codec resolved (a default and its explicit value compare equal)."""
        return dataclasses.replace(cfg, input_size=self.input_size, codec=self.codec_name)


def resolve_training(cfg: TrainConfig, train_set: Dataset | None = None) -> TrainSetup:
    """The run's :class:`TrainSetup`: of ``cfg.dataset``, or of ``train_set`` when the caller gives one (its
    ``info``); a given set that reports another input size than the run's is an error."""
    from ..codecs import build_codec
    from ..data import get_info

    info = train_set.info if train_set is not None else get_info(cfg.dataset)
    input_size, codec_name = _resolved_settings(cfg, info)
    given = getattr(train_set, "input_size", None)
    if given is not None and tuple(given) != input_size:
        raise ValueError(
            f"input_size: the given training set crops {tuple(given)}, the run's input size is {input_size} "
            "(TrainConfig.input_size, else the data set's): set input_size to the training set's"
        )
    codec = build_codec(codec_name, input_size) if codec_name else None
    return TrainSetup(info=info, input_size=input_size, codec_name=codec_name, codec=codec)


def _check_validation_data(cfg: TrainConfig) -> None:
    """Validation reads the standard files under the data root unless given its own: say what to pass when
    neither is there (training on annotation files alone)."""
    from ..data import DATASETS
    from ..data.roots import root_or_env

    info = DATASETS[cfg.dataset]
    if cfg.val_interval and cfg.val_ann_file is None and root_or_env(info, cfg.data_root) is None:
        raise ValueError(
            f"validation needs {info.name} data and there is no data root (no --data-root, "
            f"${info.default_root_env} not set): pass --val-ann-file FILE --val-image-dir DIR (the training files "
            "serve for a quick check), or --val-interval 0 to train without validation"
        )


def build_datasets(cfg: TrainConfig, setup: TrainSetup | None = None) -> tuple[Dataset, Dataset | None]:
    """Training set (augmented unless ``cfg.augment`` is False) and, if validation is on, the val set, at
    ``setup``'s input size with its codec (the run's; :func:`resolve_training` of ``cfg`` when not given)."""
    from ..data import build_dataset

    setup = setup or resolve_training(cfg)
    input_size, codec = setup.input_size, setup.needed_codec()
    _check_validation_data(cfg)
    # augmentations draw from a generator seeded by (seed, epoch, index): independent of workers and ranks
    train_set = build_dataset(
        cfg.dataset,
        "train",
        cfg.data_root,
        train=cfg.augment,
        input_size=input_size,
        codec=codec,
        on_bad=cfg.on_bad,
        ann_file=cfg.train_ann_file,
        image_dir=cfg.train_image_dir,
        seed=cfg.seed,
    )
    val_set = None
    if cfg.val_interval:
        val_set = build_dataset(
            cfg.dataset,
            "val",
            cfg.data_root,
            train=False,
            input_size=input_size,
            codec=codec,
            box_file=cfg.val_box_file,
            on_bad=cfg.on_bad,
            ann_file=cfg.val_ann_file,
            image_dir=cfg.val_image_dir,
        )
    return train_set, val_set


def _setup_logging(out_dir: Path, ctx: DistContext) -> logging.Handler | None:
    if not ctx.is_main:
        return None
    handler = logging.FileHandler(out_dir / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    logging.captureWarnings(True)
    logging.getLogger("py.warnings").addHandler(handler)  # captured warnings into train.log, not lost
    return handler


def _checkpoint_state(run: TrainingRun, epochs_done: int, rng_states: list) -> dict[str, Any]:
    cfg, model, optimizer, scheduler, scaler = run.cfg, run.ddp_model, run.optimizer, run.scheduler, run.scaler
    return {
        "model": unwrap_model(model).state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler else None,
        "epoch": epochs_done,
        "global_step": run.global_step,
        "best_metric": run.best,
        "rng": rng_states,
        "config": cfg.to_dict(),
        "config_changes": run.config_changes,
        "complete_epoch": True,
    }


def _check_resume_settings(cfg: TrainConfig, setup: TrainSetup, saved: TrainConfig, path: Path) -> ResumeDifferences:
    """Refuse a resume whose settings differ from the checkpoint's, unless the run says to apply the new ones.
    Both are compared resolved (:func:`_resolved_settings`), so that a default and its explicit value agree."""
    from ..data import DATASETS

    saved_info = setup.info if saved.dataset == cfg.dataset else DATASETS.get(saved.dataset)
    saved_input_size, saved_codec = _resolved_settings(saved, saved_info)
    saved = dataclasses.replace(saved, input_size=saved_input_size, codec=saved_codec)
    diffs = resume_differences(saved, setup.resolved(cfg))
    if diffs.fixed:
        raise ValueError(
            f"cannot resume {path}: {diffs.describe(diffs.fixed)}; a checkpoint continues only the model and data it "
            "was trained on: start a new run (another --out-dir, or no --resume)"
        )
    if diffs.changed and not cfg.resume_with_new_settings:
        raise ValueError(
            f"cannot resume {path} with other settings than its own: {diffs.describe(diffs.changed)}; pass "
            "--resume-with-new-settings to continue with the new ones (applied and recorded in the checkpoint), "
            "or leave these options as they were"
        )
    if diffs.free:
        log.info("resume: %s (these may change on resume)", diffs.describe(diffs.free))
    if diffs.changed:
        log.warning(
            "resume: applying new settings, as --resume-with-new-settings asks: %s; recorded in the checkpoint's "
            "config and config_changes",
            diffs.describe(diffs.changed),
        )
    return diffs


def _apply_schedule(cfg: TrainConfig, optimizer, scheduler, epochs_done: int, iters_per_epoch: int) -> None:
    """After loading a checkpoint's optimizer and scheduler: put this run's learning rate, weight decay and
    schedule in place of the saved ones (the batch size too: the schedule then counts this run's steps)."""
    saved_schedule = scheduler.lr_lambdas[0]
    schedule = WarmupMultiStep(iters_per_epoch, cfg.lr_steps, cfg.lr_factor, cfg.warmup_iters, cfg.warmup_ratio)
    scheduler.lr_lambdas = [schedule] * len(optimizer.param_groups)
    if saved_schedule.iters_per_epoch != iters_per_epoch:
        scheduler.last_epoch = epochs_done * iters_per_epoch
    scheduler.base_lrs = [cfg.lr] * len(optimizer.param_groups)
    for group in optimizer.param_groups:
        group["initial_lr"] = cfg.lr
        group["weight_decay"] = cfg.weight_decay
        group["lr"] = cfg.lr * schedule(scheduler.last_epoch)
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]


def _resume(
    cfg: TrainConfig,
    setup: TrainSetup,
    ctx: DistContext,
    path: Path,
    model: nn.Module,
    optimizer,
    scheduler,
    scaler,
    iters_per_epoch: int,
) -> tuple[int, int, float | None, list[dict[str, Any]]]:
    """Load a full checkpoint into the run's objects; returns (epochs done, global step, best metric, the
    record of settings changed on resume)."""
    try:
        state = load_training_state(path)
    except UntrustedCheckpointError as exc:
        # train takes no --trust-checkpoint: its own checkpoints always load with weights_only=True
        raise UntrustedCheckpointError(
            f"{path} is refused: its pickle imports {', '.join(exc.globals)}, which a `mamkpd train` checkpoint "
            "never holds and which could run code; resume only from a checkpoint `mamkpd train` wrote",
            exc.globals,
        ) from None
    if not state.get("complete_epoch", False) or "optimizer" not in state:
        raise ValueError(f"{path} holds weights only (a mid-epoch stop); resume from last.pth")
    diffs = _check_resume_settings(cfg, setup, TrainConfig.from_dict(state["config"]), path)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    changes = list(state.get("config_changes", []))
    if diffs.changed:
        _apply_schedule(cfg, optimizer, scheduler, state["epoch"], iters_per_epoch)
        changes.append({"epoch": state["epoch"], "changes": {k: list(v) for k, v in diffs.changed.items()}})
    rng = state["rng"]
    if len(rng) == ctx.world_size:
        restore_rng_state(rng[ctx.rank])
    else:
        log.warning(
            "resume: checkpoint from %d process(es), now %d: RNG states not restored, the run "
            "will not match an uninterrupted one exactly",
            len(rng),
            ctx.world_size,
        )
    log.info("resumed from %s at epoch %d, step %d", path, state["epoch"], state["global_step"])
    return state["epoch"], state["global_step"], state["best_metric"], changes


def _optimizer_step(loss: torch.Tensor, model: nn.Module, optimizer, scaler, grad_clip: float | None) -> None:
    """Backward and step, through the AMP grad scaler when there is one; optional global-norm clipping."""
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)  # clip the true gradients
    else:
        loss.backward()
    if grad_clip:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()


def train(
    cfg: TrainConfig,
    *,
    model: nn.Module | None = None,
    train_set: Dataset | None = None,
    val_set: Dataset | None = None,
) -> TrainResult:
    """Train ``cfg.model`` (or the given ``model``) on ``cfg.dataset`` (or the given datasets).

    Checkpoints each epoch to ``out_dir/last.pth`` (full state: model, optimizer, scheduler, epoch, step,
    RNG states of every rank, config), ``epoch_N.pth`` every ``checkpoint_interval`` epochs, and
    ``best.pth`` when validation improves. ``cfg.resume`` continues from a full checkpoint exactly: the
    sampler order depends only on (seed, epoch) and the RNG states are restored. A ``max_steps`` stop in
    the middle of an epoch writes the weights to ``partial.pth`` and leaves ``last.pth`` at the last
    completed epoch, as a kill would.
    """
    ctx = init_distributed(cfg.device)
    out_dir = Path(cfg.out_dir)
    if ctx.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    barrier(ctx)
    handler = _setup_logging(out_dir, ctx)
    try:
        return _train(cfg, ctx, out_dir, model, train_set, val_set)
    finally:
        if handler is not None:
            log.removeHandler(handler)
            logging.getLogger("py.warnings").removeHandler(handler)
            handler.close()


@dataclass
class TrainingRun:
    """What :func:`setup_training` builds for a run: the objects one epoch needs, and where the run stands."""

    cfg: TrainConfig
    ctx: DistContext
    out_dir: Path
    model: nn.Module  # the module itself (its state_dict and parameters)
    ddp_model: nn.Module  # what the forward pass goes through: DistributedDataParallel, or the model
    train_set: Dataset
    val_set: Dataset | None
    sampler: DistributedSampler
    loader: DataLoader
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler | None
    criterion: nn.Module
    setup: TrainSetup  # input size, codec and data set info, resolved once
    metric_name: str
    use_amp: bool
    start_epoch: int = 0
    global_step: int = 0
    best: float | None = None
    last_good: Path | None = None  # the newest complete checkpoint, named when the loss turns non-finite
    # settings changed on resume (--resume-with-new-settings): [{"epoch": N, "changes": {name: [old, new]}}]
    config_changes: list[dict[str, Any]] = field(default_factory=list)

    @property
    def last_path(self) -> Path:
        return self.out_dir / "last.pth"

    @property
    def best_path(self) -> Path:
        return self.out_dir / "best.pth"


def setup_training(
    cfg: TrainConfig, ctx: DistContext, out_dir: Path, model: nn.Module | None, train_set, val_set
) -> TrainingRun:
    """Seed, model (DDP-wrapped under torchrun), data, optimizer, LR schedule, AMP scaler; resume when asked."""
    from ..data import collate, worker_init
    from ..data.threads import loader_workers
    from ..models import create_model

    if ctx.is_main:
        for path, size in remove_stale_temp_files(out_dir):
            log.warning("removed %s (%.1f MB), left by a checkpoint write that was killed", path, size / 1e6)
    setup = resolve_training(cfg, train_set)
    seed_everything(cfg.seed + ctx.rank, cfg.deterministic)
    if model is None:
        # before any data is read: a model that rejects the input size or the overrides says so first
        model = create_model(
            cfg.model,
            num_keypoints=setup.num_keypoints,
            input_size=setup.input_size,
            scan_backend=cfg.scan_backend,
            **cfg.model_kwargs,
        )
    if train_set is None:
        train_set, val_set = build_datasets(cfg, setup)
    if len(train_set) == 0:
        raise ValueError(f"training set of {cfg.dataset!r} is empty")
    if val_set is not None:  # validation decodes with the run's codec: say it is missing now, not after an epoch
        setup.needed_codec()
    model = model.to(ctx.device)
    # a batch that does not fit is refused now, with a size that fits, not killed mid-epoch without a word
    example = torch.zeros(1, 3, *setup.input_size, device=ctx.device)
    check_batch_fits(model, example, cfg.batch_size, str(ctx.device), flag="--batch-size", training=True)
    if ctx.distributed and cfg.sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ddp_model = (
        nn.parallel.DistributedDataParallel(model, device_ids=[ctx.device] if ctx.device.type == "cuda" else None)
        if ctx.distributed
        else model
    )

    # the sampler shuffles with (seed, epoch) only, so a resumed run sees the same order
    sampler = DistributedSampler(train_set, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=cfg.seed)
    loader = DataLoader(
        train_set,
        batch_size=cfg.batch_size,
        sampler=sampler,
        num_workers=loader_workers(cfg.workers),
        worker_init_fn=worker_init,
        collate_fn=collate,
        pin_memory=ctx.device.type == "cuda",
        drop_last=False,
    )
    iters_per_epoch = len(loader)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, WarmupMultiStep(iters_per_epoch, cfg.lr_steps, cfg.lr_factor, cfg.warmup_iters, cfg.warmup_ratio)
    )
    use_amp = cfg.amp and ctx.device.type == "cuda"
    if cfg.amp and not use_amp:
        log.warning("amp requested on %s: AMP is CUDA-only, training in float32", ctx.device)
    scaler = torch.amp.GradScaler("cuda") if use_amp else None
    run = TrainingRun(
        cfg=cfg,
        ctx=ctx,
        out_dir=out_dir,
        model=model,
        ddp_model=ddp_model,
        train_set=train_set,
        val_set=val_set,
        sampler=sampler,
        loader=loader,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        criterion=training_loss_of(setup.codec),
        setup=setup,
        metric_name=primary_metric(setup.info.name),
        use_amp=use_amp,
    )
    # "auto": continue from out_dir/last.pth when it exists, else start afresh (rerunning a command resumes it)
    resume_path = (run.last_path if run.last_path.is_file() else None) if cfg.resume == "auto" else cfg.resume
    if resume_path:
        run.last_good = Path(resume_path)
        run.start_epoch, run.global_step, run.best, run.config_changes = _resume(
            cfg, setup, ctx, run.last_good, model, optimizer, scheduler, scaler, iters_per_epoch
        )

    log.info("config %s", cfg.to_dict())
    log.info(
        "train: %d instances, %d steps/epoch x %d process(es), input %s, device %s, scan backend %s",
        len(train_set),
        iters_per_epoch,
        ctx.world_size,
        setup.input_size,
        ctx.device,
        scan_backend_of(model) or "none",
    )
    return run


def train_one_epoch(run: TrainingRun, epoch: int) -> tuple[dict[str, Any], bool]:
    """One pass over the training set (or up to ``max_steps``); the epoch's record, and whether
    ``max_steps`` stopped it before its end."""
    cfg, ctx = run.cfg, run.ctx
    iters_per_epoch = len(run.loader)
    autocast = torch.autocast("cuda", dtype=torch.float16) if run.use_amp else nullcontext()
    stopped_early = False
    run.sampler.set_epoch(epoch)
    if hasattr(run.train_set, "set_epoch"):
        run.train_set.set_epoch(epoch)
    run.ddp_model.train()
    from tqdm import tqdm  # here, not at the top: the GPU check imports this module on machines without tqdm

    bar = tqdm(run.loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not ctx.is_main, dynamic_ncols=True)
    loss_sum, seen, start = 0.0, 0, time.perf_counter()
    for batch_index, batch in enumerate(bar):
        images = batch["image"].to(ctx.device, non_blocking=True)
        target = batch["target"].to(ctx.device, non_blocking=True)
        weight = batch["target_weight"].to(ctx.device, non_blocking=True)
        with autocast:
            outputs = run.ddp_model(images)  # heatmaps, or a SimCC model's (x, y) vectors
        loss = run.criterion(outputs, target, weight)
        # the mean over ranks for the log; a NaN on any rank stops every rank at the same step
        reported = loss.detach().clone()
        if ctx.distributed:
            torch.distributed.all_reduce(reported)
            reported /= ctx.world_size
        loss_value = reported.item()
        if not math.isfinite(loss_value):
            raise NonFiniteLossError(
                f"loss is {loss_value} at step {run.global_step + 1} (epoch {epoch + 1}, batch {batch_index}); "
                f"last good checkpoint: {run.last_good or 'none (no epoch completed yet)'}"
            )
        _optimizer_step(loss, run.model, run.optimizer, run.scaler, cfg.grad_clip)
        run.scheduler.step()
        run.global_step += 1
        n = images.shape[0] * ctx.world_size
        loss_sum += loss_value * n
        seen += n
        rate = seen / max(time.perf_counter() - start, 1e-9)
        lr = run.optimizer.param_groups[0]["lr"]
        bar.set_postfix(loss=f"{loss_value:.3e}", lr=f"{lr:.2e}", samples_s=f"{rate:.1f}")
        if run.global_step % cfg.log_interval == 0:
            log.info(
                "epoch %d step %d batch %d/%d loss %.6e lr %.3e samples/s %.1f",
                epoch + 1,
                run.global_step,
                batch_index + 1,
                iters_per_epoch,
                loss_value,
                lr,
                rate,
            )
        if cfg.max_steps is not None and run.global_step >= cfg.max_steps and batch_index + 1 < iters_per_epoch:
            stopped_early = True
            break
    bar.close()
    broadcast_buffers(ctx, run.model)
    record: dict[str, Any] = {
        "epoch": epoch + 1,
        "global_step": run.global_step,
        "loss": loss_sum / max(seen, 1),
        "lr": run.optimizer.param_groups[0]["lr"],
        "samples_per_s": seen / max(time.perf_counter() - start, 1e-9),
    }
    return record, stopped_early


def validate_and_checkpoint(run: TrainingRun, record: dict[str, Any]) -> None:
    """After a complete epoch: validate when due (``record["val"]``, ``record["best"]``), then write
    last.pth, epoch_N.pth every ``checkpoint_interval`` epochs and best.pth on improvement."""
    from ..data.roots import find_mpii_gt

    cfg, ctx = run.cfg, run.ctx
    epochs_done = record["epoch"]
    if run.val_set is not None and (epochs_done % cfg.val_interval == 0 or epochs_done == cfg.epochs):
        report = evaluate(
            run.model,
            run.val_set,
            run.setup.codec,
            flip_test=cfg.flip_test,
            batch_size=cfg.eval_batch_size,
            workers=cfg.workers,
            ctx=ctx,
            amp=run.use_amp,
            results_file=run.out_dir / f"val_results_epoch_{epochs_done}.json",
            box_source=cfg.val_box_file or "ground truth",
            gt_mat=find_mpii_gt(cfg.data_root) if run.setup.info.name == "mpii" else None,
        )
        record["val"] = report["metrics"]
        value = report["metrics"][run.metric_name]
        if run.best is None or value > run.best:
            run.best = value
            record["best"] = True
    # every rank's RNG state, so that a resumed multi-process run continues each stream
    rng_states = [capture_rng_state()]
    if ctx.distributed:
        rng_states = [None] * ctx.world_size
        torch.distributed.all_gather_object(rng_states, capture_rng_state())
    if ctx.is_main:
        state = _checkpoint_state(run, epochs_done, rng_states)
        save_checkpoint(run.last_path, state)
        if cfg.checkpoint_interval and epochs_done % cfg.checkpoint_interval == 0:
            save_checkpoint(run.out_dir / f"epoch_{epochs_done}.pth", state)
        if record.get("best"):
            save_checkpoint(run.best_path, state)
    run.last_good = run.last_path


def _save_partial(run: TrainingRun, epoch: int) -> Path:
    """A ``max_steps`` stop inside an epoch: the weights to partial.pth, last.pth left as it was."""
    checkpoint = run.out_dir / "partial.pth"
    if run.ctx.is_main:
        save_checkpoint(
            checkpoint,
            {
                "model": unwrap_model(run.ddp_model).state_dict(),
                "config": run.cfg.to_dict(),
                "epoch": epoch,
                "global_step": run.global_step,
                "complete_epoch": False,
            },
        )
    log.info(
        "max_steps=%d reached mid-epoch %d: weights in %s, resume point %s",
        run.cfg.max_steps,
        epoch + 1,
        checkpoint,
        run.last_good,
    )
    barrier(run.ctx)
    return checkpoint


def _train(cfg: TrainConfig, ctx: DistContext, out_dir: Path, model, train_set, val_set) -> TrainResult:
    run = setup_training(cfg, ctx, out_dir, model, train_set, val_set)
    history: list[dict[str, Any]] = []
    stopped_early = False
    epoch = run.start_epoch
    for epoch in range(run.start_epoch, cfg.epochs):
        record, stopped_early = train_one_epoch(run, epoch)
        if stopped_early:
            break
        validate_and_checkpoint(run, record)
        history.append(record)
        log.info("epoch %d done: %s", record["epoch"], record)
        barrier(ctx)
        if cfg.max_steps is not None and run.global_step >= cfg.max_steps:
            break

    checkpoint = _save_partial(run, epoch) if stopped_early else run.last_good
    return TrainResult(
        out_dir=out_dir,
        epochs_completed=len(history) + run.start_epoch,
        global_step=run.global_step,
        checkpoint=checkpoint,
        best_checkpoint=run.best_path if run.best is not None else None,
        best_metric=run.best,
        history=history,
        scan_backend=scan_backend_of(run.model),
    )
