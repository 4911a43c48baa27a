"""The FPS protocol: how every speed figure of the suite is timed.

Forward pass only (no flip test, no decoding), one fixed input, eval mode, ``torch.inference_mode``.
Warm-up runs in rounds until throughput is steady (the median of the last rounds moves less than
``steady_tolerance`` from the median of the rounds before) or a cap is hit; then ``timed_rounds``
rounds are timed, each ending with a device synchronisation. The figure is the median samples/s
over rounds with its inter-quartile range. GPU clocks and throttle reasons are read before and after.

:func:`time_callable` is the protocol's core and times any callable (a model's forward in
:mod:`mamkpd.harness.measure.fps`, an onnxruntime session in :mod:`mamkpd.export.runtimes`).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from .allocator import allocator_in_use, page_faults
from .machine import GpuClockState, gpu_clock_state

__all__ = ["TimingProtocol", "PROTOCOLS", "FpsResult", "time_callable"]


@dataclass(frozen=True)
class TimingProtocol:
    """How long to warm up and how many rounds to time; one round lasts about ``round_seconds``."""

    name: str = "standard"
    round_seconds: float = 0.5
    timed_rounds: int = 10
    steady_window: int = 3
    steady_tolerance: float = 0.02
    min_warmup_rounds: int = 6
    max_warmup_rounds: int = 40
    max_warmup_seconds: float = 60.0


PROTOCOLS: dict[str, TimingProtocol] = {
    p.name: p
    for p in (
        TimingProtocol(),
        # for CPU smoke measurements inside `mamkpd report --run`: fewer, shorter rounds
        TimingProtocol(
            name="quick",
            round_seconds=0.25,
            timed_rounds=5,
            steady_window=2,
            min_warmup_rounds=4,
            max_warmup_rounds=8,
            max_warmup_seconds=10.0,
        ),
        # kernels of microseconds to milliseconds (the GPU check's scan cells): short rounds, a steady check
        TimingProtocol(
            name="kernel",
            round_seconds=0.02,
            timed_rounds=5,
            steady_window=2,
            min_warmup_rounds=4,
            max_warmup_rounds=10,
            max_warmup_seconds=1.0,
        ),
        # the GPU check's dry run: the path runs, one call a round and no warm-up; numbers mean nothing
        TimingProtocol(
            name="dry",
            round_seconds=0.0,
            timed_rounds=2,
            steady_window=1,
            min_warmup_rounds=0,
            max_warmup_rounds=0,
            max_warmup_seconds=0.0,
        ),
        # checks that the timing pipeline runs (tests, slow CPUs): numbers are indicative only
        TimingProtocol(
            name="smoke",
            round_seconds=0.05,
            timed_rounds=3,
            steady_window=1,
            min_warmup_rounds=2,
            max_warmup_rounds=3,
            max_warmup_seconds=2.0,
        ),
    )
}


@dataclass
class FpsResult:
    """Samples per second of each timed round, and how the timing went."""

    samples_per_s: list[float]
    sample_count: int  # samples per call
    iterations_per_round: int
    warmup_iterations: int
    warmup_steady: bool
    device: str
    protocol: str
    clocks_before: GpuClockState | None = None
    clocks_after: GpuClockState | None = None
    # the process's page faults a timed call (fresh pages zeroed by the system: with glibc's defaults a call can
    # pay for memory the call before gave back; see mamkpd.harness.measure.allocator)
    page_faults_per_call: float | None = None
    # the C allocator setting the timing ran under (mamkpd.harness.measure.allocator.ALLOCATORS; "" before it was
    # recorded)
    allocator: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.samples_per_s)

    @property
    def iqr(self) -> float:
        q = statistics.quantiles(self.samples_per_s, n=4, method="inclusive")
        return q[2] - q[0]

    @property
    def timed_iterations(self) -> int:
        return self.iterations_per_round * len(self.samples_per_s)

    @property
    def throttled(self) -> bool:
        return any(c is not None and c.throttled for c in (self.clocks_before, self.clocks_after))


def _synchronizer(device: str) -> Callable[[], None]:
    if device.startswith("cuda"):
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def _round_rate(fn: Callable[[], Any], iterations: int, sample_count: int, sync: Callable[[], None]) -> float:
    sync()
    start = time.perf_counter()
    for _ in range(iterations):
        fn()
    sync()
    return sample_count * iterations / (time.perf_counter() - start)


def time_callable(
    fn: Callable[[], Any], sample_count: int, device: str = "cpu", protocol: TimingProtocol | str = "standard"
) -> FpsResult:
    """Time ``fn`` (one call processes ``sample_count`` samples) under the FPS protocol.

    ``device`` decides the synchronisation ("cuda[:i]" synchronises that device after each round)
    and whose clocks are read. ``fn`` must already hold its input: only the call is timed.
    """
    if sample_count < 1:
        raise ValueError(f"sample_count must be at least 1, got {sample_count}")
    proto = PROTOCOLS[protocol] if isinstance(protocol, str) else protocol
    sync = _synchronizer(device)
    gpu_index = int(device.split(":")[1]) if device.startswith("cuda:") else 0
    clocks_before = gpu_clock_state(gpu_index) if device.startswith("cuda") else None

    # first call: compilation, allocator and cuDNN autotuning happen here; it also sizes the rounds
    sync()
    start = time.perf_counter()
    fn()
    sync()
    first = max(time.perf_counter() - start, 1e-6)
    iterations = max(1, math.ceil(proto.round_seconds / first))
    warmup_iterations, rates = 1, []
    steady, warm_start = False, time.perf_counter()
    while len(rates) < proto.max_warmup_rounds and time.perf_counter() - warm_start < proto.max_warmup_seconds:
        rate = _round_rate(fn, iterations, sample_count, sync)
        warmup_iterations += iterations
        if not rates:  # rounds were sized on a cold first call: resize once on a warm one
            iterations = max(1, math.ceil(proto.round_seconds * rate / sample_count))
        rates.append(rate)
        w = proto.steady_window
        if len(rates) >= max(proto.min_warmup_rounds, 2 * w):
            recent, before = statistics.median(rates[-w:]), statistics.median(rates[-2 * w : -w])
            if abs(recent - before) <= proto.steady_tolerance * before:
                steady = True
                break

    faults_before = page_faults()
    timed = [_round_rate(fn, iterations, sample_count, sync) for _ in range(proto.timed_rounds)]
    faults = (page_faults() - faults_before) / (iterations * proto.timed_rounds)
    clocks_after = gpu_clock_state(gpu_index) if device.startswith("cuda") else None
    return FpsResult(
        samples_per_s=timed,
        sample_count=sample_count,
        iterations_per_round=iterations,
        warmup_iterations=warmup_iterations,
        warmup_steady=steady,
        device=device,
        protocol=proto.name,
        clocks_before=clocks_before,
        clocks_after=clocks_after,
        page_faults_per_call=faults,
        allocator=allocator_in_use(),
    )
