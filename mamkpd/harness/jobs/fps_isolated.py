"""Time each model in a fresh Python process (no allocator, cache or compile state shared)."""

from __future__ import annotations

from collections.abc import Callable

from ..measure.fps import FpsMeasurement
from .launch import TimingJob, launch

__all__ = ["measure_models_isolated"]


def measure_models_isolated(
    names: list[str],
    batch: int = 1,
    preset: str = "fp32",
    device: str = "cpu",
    protocol: str = "standard",
    scan_backend: str = "auto",
    input_size: tuple[int, int] | None = None,
    on_done: Callable[[FpsMeasurement], None] | None = None,
    timeout_s: float = 1800.0,
    allocator: str | None = None,
) -> list[FpsMeasurement]:
    """:func:`mamkpd.harness.measure.fps.measure_model_fps` of each model, each in its own process.

    A model whose process fails raises RuntimeError with its stderr tail.
    """
    out = []
    for name in names:
        job = TimingJob(name, batch, preset, device, protocol, scan_backend, input_size, allocator)
        measurement = FpsMeasurement.from_dict(launch(job, timeout_s=timeout_s))
        if on_done:
            on_done(measurement)
        out.append(measurement)
    return out
