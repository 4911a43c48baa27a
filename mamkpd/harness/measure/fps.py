"""Speed of a registered model under the FPS protocol (:mod:`mamkpd.harness.measure.timing`) and a named preset
(:mod:`mamkpd.harness.measure.presets`), in this process.

Each model is best timed in its own process (:mod:`mamkpd.harness.jobs.fps_isolated`) and its speed given as a
ratio to a reference model (HRNet-W32) timed in the same run, the only comparison that survives the
paper's mix of GPUs (ViTPose timed on an A100, MamKPD on an RTX 4090); :mod:`mamkpd.harness.store.fps_records`
writes the store rows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from dataclasses import dataclass
from typing import Any

import torch

from ...engine.memory import check_batch_fits, out_of_memory
from .allocator import use_allocator
from .machine import GpuClockState
from .presets import AUTOCAST_DTYPES, ONEDNN_LINEAR_RUNTIME, PRESETS, Preset, check_preset_device, preset_flags
from .timing import FpsResult, TimingProtocol, time_callable

__all__ = ["FpsMeasurement", "measure_model_fps", "speed_ratios", "REFERENCE_MODEL"]

REFERENCE_MODEL = "hrnet_w32"


@dataclass
class FpsMeasurement:
    """A model's speed under one preset: the timing plus everything needed to reproduce it."""

    model: str
    batch: int
    preset: Preset
    device: str
    input_size: tuple[int, int]
    scan_backend: str  # "" for models without a selective scan
    sample: str  # what one sample is (a person crop, or a whole image for RTMO)
    result: FpsResult
    runtime: str = "eager"

    def store_fields(self) -> dict[str, Any]:
        """Protocol columns for :meth:`mamkpd.harness.store.results.ResultsStore.record`."""
        r = self.result
        clocks = lambda c: json.dumps(dataclasses.asdict(c)) if c is not None else ""  # noqa: E731
        steady = "" if r.warmup_steady else "warm-up cap reached before throughput was steady; "
        return dict(
            device=self.device,
            runtime=self.runtime,
            batch_size=self.batch,
            precision=self.preset.precision,
            channels_last=self.preset.channels_last,
            compile_mode=self.preset.compile_mode,
            cudnn_benchmark=self.preset.cudnn_benchmark,
            tf32=self.preset.tf32,
            scan_backend=self.scan_backend,
            allocator=r.allocator,
            input_size=self.input_size,
            flip_test=False,
            warmup_iterations=r.warmup_iterations,
            timed_iterations=r.timed_iterations,
            timed_rounds=len(r.samples_per_s),
            median=r.median,
            iqr=r.iqr,
            unit="samples/s",
            sample=self.sample,
            throttled=r.throttled,
            gpu_clocks_before=clocks(r.clocks_before),
            gpu_clocks_after=clocks(r.clocks_after),
            notes=f"{steady}preset {self.preset.name}; protocol {r.protocol}; forward only, no flip, no decoding"
            + ("" if r.page_faults_per_call is None else f"; {r.page_faults_per_call:.0f} page faults a call"),
        )

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.update(
            median_samples_per_s=self.result.median,
            iqr_samples_per_s=self.result.iqr,
            throttled=self.result.throttled,
            timed_iterations=self.result.timed_iterations,
        )
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FpsMeasurement:
        res = dict(d["result"])
        for key in ("clocks_before", "clocks_after"):
            if res.get(key) is not None:
                res[key] = GpuClockState(**{**res[key], "throttle_reasons": tuple(res[key]["throttle_reasons"])})
        return cls(
            model=d["model"],
            batch=d["batch"],
            preset=Preset(**d["preset"]),
            device=d["device"],
            input_size=tuple(d["input_size"]),
            scan_backend=d["scan_backend"],
            sample=d["sample"],
            result=FpsResult(**res),
            runtime=d.get("runtime", "eager"),
        )


def measure_model_fps(
    name: str,
    batch: int = 1,
    preset: str | Preset = "fp32",
    device: str = "cpu",
    protocol: TimingProtocol | str = "standard",
    input_size: tuple[int, int] | None = None,
    scan_backend: str = "auto",
    model_overrides: dict[str, Any] | None = None,
    compile_backend: str = "inductor",
    allocator: str | None = None,
) -> FpsMeasurement:
    """Time the registered model ``name`` under ``preset`` on ``device`` (in this process).

       Models with a selective scan run on ``scan_backend`` (``auto``: the best one on ``device``), and record
       the one that ran; a backend that is not ``deployable`` (the reference, a Python loop) is refused.
    ``compile_backend`` is the dynamo backend
       of compiling presets. ``allocator`` (one of :data:`mamkpd.harness.measure.allocator.ALLOCATORS`) sets the
       C allocator first; None times under the process's setting. Either way the result records it.
    """
    from ...models import create_model, model_info, scan_backend_of
    from ...ops import AUTO, get_backend

    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    if allocator is not None:
        use_allocator(allocator)
    chosen = PRESETS.get(preset) if isinstance(preset, str) else preset
    if chosen is None:
        raise ValueError(f"unknown preset {preset!r}; presets: {', '.join(PRESETS)}")
    check_preset_device(chosen, device)
    info = model_info(name)
    size = tuple(input_size) if input_size else info.input_size
    overrides = dict(model_overrides or {})
    if scan_backend != AUTO and not get_backend(scan_backend).deployable:
        raise ValueError(
            f"FPS is not measured on the {scan_backend!r} scan backend: it is the step-by-step correctness "
            "oracle, not an implementation anyone deploys"
        )
    if input_size:  # every registered factory takes input_size (position embeddings, RTMO's grid)
        overrides.setdefault("input_size", size)
    model = create_model(name, scan_backend=scan_backend, **overrides).eval().to(device)
    backend_used = scan_backend_of(model) or ""
    memory_format = torch.channels_last if chosen.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    one = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(0)).to(device, memory_format=memory_format)
    per_sample = check_batch_fits(model, one, batch, device)  # before allocating the batch: one line, not a kill
    x = torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(0)).to(device, memory_format=memory_format)
    if not chosen.compile_mode:
        forward = model
    elif compile_backend == "inductor":
        forward = torch.compile(model, mode=chosen.compile_mode)
    else:  # another dynamo backend (the GPU check's dry run traces with "eager"): modes are inductor's
        forward = torch.compile(model, backend=compile_backend)
    device_type = "cuda" if device.startswith("cuda") else "cpu"
    autocast = (
        torch.autocast(device_type, dtype=AUTOCAST_DTYPES[chosen.precision])
        if chosen.precision in AUTOCAST_DTYPES
        else contextlib.nullcontext()
    )

    def call() -> Any:
        return forward(x)

    try:
        with preset_flags(chosen), torch.inference_mode(), autocast:
            result = time_callable(call, batch, device, protocol)
    except (RuntimeError, torch.cuda.OutOfMemoryError) as exc:
        refusal = out_of_memory(exc, batch, per_sample, device)
        if refusal is None:
            raise
        raise refusal from None
    return FpsMeasurement(
        model=name,
        batch=batch,
        preset=chosen,
        device=device,
        input_size=size,
        scan_backend=backend_used,
        sample=info.sample,
        result=result,
        # a compiled cell that generated no code says so (the store's compile_mode alone would not); so does one
        # whose Linear layers ran on oneDNN (no column of the store says it), and the report's tables then prefer
        # plain eager cells
        runtime=("eager" if not chosen.compile_mode or compile_backend == "inductor" else f"dynamo-{compile_backend}")
        + (f" {ONEDNN_LINEAR_RUNTIME}" if chosen.onednn_linear else ""),
    )


def speed_ratios(measurements: list[FpsMeasurement], reference: str = REFERENCE_MODEL) -> dict[str, float]:
    """Each model's median samples/s divided by the reference model's from the same list."""
    ref = next((m for m in measurements if m.model == reference), None)
    if ref is None:
        raise ValueError(f"reference model {reference} was not timed in this run")
    return {m.model: m.result.median / ref.result.median for m in measurements}
