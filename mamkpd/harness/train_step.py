"""What one training step costs: images/s and peak memory of the trainer's step on synthetic inputs.

The step is the trainer's (:mod:`mamkpd.engine.trainer`): forward under autocast when AMP is on, HRNet's
JointsMSELoss in float32, backward and Adam step through the AMP grad scaler (float16; bfloat16 needs
none), cuDNN benchmark on as the trainer sets it. Inputs are random images and heatmaps of the model's
output shape, so the figure is the model's own cost, with no data loading. It is timed under the FPS
protocol (:mod:`mamkpd.harness.timing`), one call = one optimiser step over ``batch`` images.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from .timing import FpsResult, time_callable

__all__ = ["TrainStepMeasurement", "measure_train_step", "peak_memory"]


@dataclass
class TrainStepMeasurement:
    model: str
    batch: int
    device: str
    input_size: tuple[int, int]
    amp: str  # "" for float32, else the autocast dtype ("fp16", "bf16")
    scan_backend: str  # the backend that ran ("" for models without a scan)
    result: FpsResult  # images/s of whole optimiser steps
    peak_memory_bytes: int | None
    peak_memory_kind: str  # what the peak is (the CUDA allocator's, or the process's resident set)

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.update(median_samples_per_s=self.result.median, iqr_samples_per_s=self.result.iqr)
        return d


def peak_memory(device: str) -> tuple[int | None, str]:
    """(bytes, what they are): the CUDA caching allocator's peak of allocated tensors since its last reset,
    or on the CPU the process's peak resident set (everything it ever held, model building included)."""
    if device.startswith("cuda"):
        return int(torch.cuda.max_memory_allocated(device)), "peak CUDA memory allocated to tensors"
    try:
        import resource
    except ImportError:  # not a Unix: nothing to read
        return None, "no peak-memory reading on this platform"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "peak resident set of the process (CPU)"


def measure_train_step(
    name: str,
    batch: int,
    device: str = "cpu",
    amp: str = "",
    protocol: str = "quick",
    input_size: tuple[int, int] | None = None,
    scan_backend: str = "auto",
) -> TrainStepMeasurement:
    """Time the trainer's optimiser step for the registered model ``name`` on synthetic inputs."""
    from ..engine.loss import JointsMSELoss
    from ..engine.trainer import _optimizer_step
    from ..models import create_model, model_info
    from ..ops import resolve_backend
    from .presets import AUTOCAST_DTYPES

    if amp and amp not in AUTOCAST_DTYPES:
        raise ValueError(f"amp must be '' or one of {', '.join(AUTOCAST_DTYPES)}, got {amp!r}")
    info = model_info(name)
    size = tuple(input_size) if input_size else info.input_size
    overrides: dict[str, Any] = {"input_size": size} if input_size else {}
    if info.has_scan:
        overrides["scan_backend"] = resolve_backend(scan_backend, device)
    model = create_model(name, **overrides).to(device).train()
    backend = overrides.get("scan_backend", "")
    g = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, *size, generator=g).to(device)
    with torch.no_grad():  # in eval mode: BatchNorm cannot train on one sample at a 1x1 stage
        out_shape = model.eval()(images[:1]).shape[1:]
    model.train()
    target = torch.rand(batch, *out_shape, generator=g).to(device)
    weight = torch.ones(batch, out_shape[0], 1, device=device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)  # the paper's optimiser and learning rate
    device_type = "cuda" if device.startswith("cuda") else "cpu"
    dtype = AUTOCAST_DTYPES.get(amp, torch.float32)
    autocast = torch.autocast(device_type, dtype=dtype, enabled=bool(amp))
    scaler = torch.amp.GradScaler(device_type) if dtype == torch.float16 else None  # bfloat16 needs no scaling
    criterion = JointsMSELoss()

    def step() -> None:
        with autocast:
            heatmaps = model(images)
        _optimizer_step(criterion(heatmaps, target, weight), model, optimizer, scaler, None)

    benchmark = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True  # as the trainer sets it (unless deterministic)
    if device_type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        result = time_callable(step, batch, device, protocol)
    finally:
        torch.backends.cudnn.benchmark = benchmark
    peak, kind = peak_memory(device)
    return TrainStepMeasurement(name, batch, device, size, amp, backend, result, peak, kind)
