"""The selective scan's kernels timed against their roofline: memory bandwidth or exponentials.

A scan moves little arithmetic per byte, so its speed limit is memory traffic: a call that must move
``bytes_moved`` bytes (every input read once, every output written once: :func:`mamkpd.ops.scan_bytes_moved`,
:func:`mamkpd.ops.cross_scan_bytes_moved`) cannot take less than ``bytes_moved / peak bandwidth``. The
peak is measured in the same run, as a device-to-device copy (:func:`copy_bandwidth`), and the vendor's
datasheet figure is shown beside it where the device is known (:data:`DATASHEET_BANDWIDTH`). Nor can it
take less than its exponentials (one a state a channel a step) at the special function units' rate
(:func:`sfu_exp_rate`): :func:`scan_roofline` is the larger of the two.

The shapes are MamKPD-B's at 256x192 (:data:`SCAN_SHAPES`); :func:`scan_inputs` makes the inputs of
either form, and :func:`unfused_cross_scan` is SS2D's unfused path (cross scan, scan, merge). Used by
the GPU check (:mod:`mamkpd.harness.gpu_check`) and by ``benchmarks/test_bench_scan_cuda.py``.

On a CPU the scan is bound by arithmetic instead: :func:`scan_compute` counts a call's flops and ``exp``
calls (the model below), :func:`cpu_peak` measures what one thread's vector unit can do, and
:func:`compute_fraction` is the share of that peak a measured call reaches (``benchmarks/test_bench_scan.py``).

The compute model, per element-state (one channel, one step, one of the N states) and per element (one
channel, one step), FMA counted as two flops:

- forward, per element-state: dt A (1), dt u B (1), h = exp(dt A) h + dt u B (an FMA, 2), y += C h (an FMA,
  2): 6 flops and 1 exp; per element: delta + bias, dt u, D u, the sum's start (4 flops) and softplus (an exp
  and a log, 2 exps);
- backward, per element-state: the states recomputed once (5 flops, 1 exp; the kernel recomputes them twice,
  which the bound does not pay for), then dL/dh (an FMA, 2), dL/dC and dL/dB (a product and an FMA each, 6),
  dL/d(dt A) (2 products, 2) and its sums into dA and ddelta (2 FMAs, 4), dL/dB's sum into ddelta (an FMA,
  2), the carry to the step before (1): 22 flops and 1 exp; per element: 12 flops and the softplus again (2
  exps);
- an exp (or log) in a vectorised form costs ``EXP_FLOPS`` flop-equivalents: range reduction (1 instruction,
  AVX-512's vreduceps), a degree-6 polynomial (6 FMAs) and the scaling by 2^k (1, vscalefps), 8 vector
  instructions, each the slot of an FMA (2 flops): the fewest the numba kernels' exponential takes
  (:mod:`mamkpd.ops.scan_numba_kernels`). Until 2026-12-08 the model counted 10 (3 for the range
  reduction), and the forward kernel's own count per element-state (12 instructions, its two products
  included) had fallen under the bound's 13 slots: a bound must not.

The bound is the call's flop-equivalents over the peak: every vector slot an FMA's worth of work, no loads,
stores or shuffles counted. It is a lower bound on the time, not the kernel's own instruction count.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ...models.layers.cross_scan import cross_merge, cross_scan
from ...ops import cross_scan_bytes_moved, cross_selective_scan, scan_bytes_moved, selective_scan
from .timing import time_callable

__all__ = [
    "EXP_FLOPS",
    "CpuPeak",
    "DATASHEET_BANDWIDTH",
    "DATASHEET_BOOST_CLOCK",
    "SFU_EXP2_PER_SM_PER_CLOCK",
    "ScanCompute",
    "compute_fraction",
    "cpu_peak",
    "scan_compute",
    "DTYPES",
    "SCAN_SHAPES",
    "ScanShape",
    "copy_bandwidth",
    "datasheet_bandwidth",
    "scan_cell_bytes",
    "scan_cell_call",
    "scan_cell_exponentials",
    "scan_roofline",
    "sfu_exp_rate",
    "scan_inputs",
    "seconds_per_call",
    "unfused_cross_scan",
]

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class ScanShape:
    """One SS2D scan: ``dim`` channels a direction (d_inner), ``height`` x ``width`` positions, four
    directions, each its own B/C group of ``d_state`` states."""

    name: str
    dim: int
    height: int
    width: int
    d_state: int = 8

    @property
    def length(self) -> int:
        return self.height * self.width

    def sliced(self, steps: int) -> ScanShape:
        """The first ``steps`` positions only (one row of them): for the reference, too slow to time whole."""
        steps = min(steps, self.length)
        return ScanShape(f"{self.name}[:{steps}]", self.dim, 1, steps, self.d_state)


# MamKPD-B at 256x192: stage 1 is 64x48 positions with d_inner 192, stage 3 is 16x12 with d_inner 768
SCAN_SHAPES = {
    "stage1": ScanShape("stage1", dim=192, height=64, width=48),
    "stage3": ScanShape("stage3", dim=768, height=16, width=12),
}

# Peak memory bandwidth in bytes/s from the vendors' datasheets, by a piece of the name torch reports; the
# first match wins (H100 NVL and PCIe before the SXM part, A100-SXM4-80GB before the other A100s).
DATASHEET_BANDWIDTH: tuple[tuple[str, float], ...] = (
    ("H200", 4.8e12),
    ("H100 NVL", 3.9e12),
    ("H100 PCIe", 2.0e12),
    ("H100", 3.35e12),
    ("A100-SXM4-80GB", 2.039e12),
    ("A100 80GB PCIe", 1.935e12),
    ("A100", 1.555e12),
    ("RTX 4090", 1.008e12),
    ("L40S", 0.864e12),
    ("V100", 0.9e12),
    ("B200", 8.0e12),
)


def datasheet_bandwidth(device_name: str) -> float | None:
    """The datasheet's peak bandwidth (bytes/s) of the device called ``device_name``; None if unknown."""
    return next((bw for key, bw in DATASHEET_BANDWIDTH if key in device_name), None)


# The exponentials exp(delta A), one a state a channel a step, are a second limit: they run on the special
# function units, 16 results of ex2 a clock an SM on compute capability 8.0, 8.6, 8.9 and 9.0 (NVIDIA, CUDA C++
# Programming Guide, "Arithmetic Instructions", throughput table: "base-2 exponential (exp2f)"). At MamKPD-B's
# stage 1 (batch 64) that is 1.2e9 of them a forward pass: 0.29 ms on an H200, above its 0.1 ms of traffic.
SFU_EXP2_PER_SM_PER_CLOCK = 16
# Boost clocks (Hz) from the vendors' datasheets, matched as DATASHEET_BANDWIDTH is (the first match wins)
DATASHEET_BOOST_CLOCK: tuple[tuple[str, float], ...] = (
    ("H200", 1.98e9),
    ("H100 NVL", 1.785e9),
    ("H100 PCIe", 1.755e9),
    ("H100", 1.98e9),
    ("A100", 1.41e9),
    ("RTX 4090", 2.52e9),
    ("L40S", 2.52e9),
    ("V100", 1.53e9),
)


def sfu_exp_rate(device_name: str, sm_count: int) -> float | None:
    """Exponentials a second the device's special function units can return (``sm_count`` SMs at the
    datasheet's boost clock); None for a device whose clock is not listed (the CPU of a dry run)."""
    clock = next((hz for key, hz in DATASHEET_BOOST_CLOCK if key in device_name), None)
    return None if clock is None else SFU_EXP2_PER_SM_PER_CLOCK * sm_count * clock


def scan_cell_exponentials(shape: ScanShape, batch: int, backward: bool) -> int:
    """Exponentials a call needs at least: exp(delta A) for every state of every channel of the four
    directions at every step, once for the forward and once more for the backward (which needs the decays
    again and cannot keep 8 states a step from the forward)."""
    per_pass = batch * 4 * shape.dim * shape.length * shape.d_state
    return per_pass * (2 if backward else 1)


def scan_roofline(bytes_moved: int, exponentials: int, bandwidth: float, exp_rate: float | None) -> float:
    """The least seconds a scan call can take: the larger of its memory traffic at ``bandwidth`` (bytes/s)
    and its exponentials at ``exp_rate`` (a second; None: not known, the traffic alone)."""
    return max(bytes_moved / bandwidth, exponentials / exp_rate if exp_rate else 0.0)


def seconds_per_call(fn: Callable[[], Any], device: str, protocol: str) -> float:
    """Median seconds a call of ``fn`` takes under the timing ``protocol`` (calls back to back, the device
    synchronised at the end of each round)."""
    return 1.0 / time_callable(fn, 1, device, protocol).median


def copy_bandwidth(device: str, nbytes: int, protocol: str) -> tuple[float, float]:
    """(bytes/s, seconds a call) of a copy of ``nbytes`` bytes within ``device``'s memory: read and
    write, 2 x nbytes moved. The achievable peak that the bound divides by."""
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    seconds = seconds_per_call(lambda: dst.copy_(src), device, protocol)
    return 2 * src.numel() * 4 / seconds, seconds


def scan_inputs(shape: ScanShape, batch: int, dtype: torch.dtype, device: str, spatial: bool = False):
    """Inputs of one call, activations in ``dtype`` and A, D, delta_bias in float32 (SS2D's mix).

    Per direction (``spatial=False``): u, delta (batch, 4*dim, L), B, C (batch, 4, N, L), as
    :func:`mamkpd.ops.selective_scan` takes them. Spatial: x (batch, dim, H, W), delta (batch, 4, dim,
    H, W), B, C (batch, 4, N, H, W), as :func:`mamkpd.ops.cross_selective_scan` takes them.
    """
    g = torch.Generator(device=device).manual_seed(0)
    dim, n = shape.dim, shape.d_state
    r = lambda *s: torch.randn(*s, generator=g, device=device).to(dtype)  # noqa: E731
    params = dict(
        A=-torch.rand(4 * dim, n, generator=g, device=device) - 0.1,
        D=torch.randn(4 * dim, generator=g, device=device),
        delta_bias=0.1 * torch.randn(4 * dim, generator=g, device=device),
    )
    if spatial:
        hw = (shape.height, shape.width)
        activations = dict(x=r(batch, dim, *hw), delta=0.5 * r(batch, 4, dim, *hw))
        activations.update(B=r(batch, 4, n, *hw), C=r(batch, 4, n, *hw))
    else:
        length = shape.length
        activations = dict(u=r(batch, 4 * dim, length), delta=0.5 * r(batch, 4 * dim, length))
        activations.update(B=r(batch, 4, n, length), C=r(batch, 4, n, length))
    return {**activations, **params}


def unfused_cross_scan(x, delta, A, B, C, D, delta_bias, backend: str):
    """SS2D's unfused path (``fused_cross_scan=False``) on the per-direction delta, B and C its projections
    give: cross_scan(x) -> selective_scan -> cross_merge."""
    bsz, dim, height, width = x.shape
    ys = selective_scan(
        cross_scan(x).flatten(1, 2), delta, A, B, C, D, delta_bias=delta_bias, delta_softplus=True, backend=backend
    )
    return cross_merge(ys.view(bsz, 4, dim, height * width), height, width)


def scan_cell_bytes(op: str, shape: ScanShape, batch: int, dtype: str, backward: bool) -> int:
    """Bytes a call must move at least: the scan's, or for the cross scan (fused or not) the fused op's,
    the least the whole operation needs (so both paths are held to the same bound)."""
    itemsize = DTYPES[dtype].itemsize
    if op == "cross":
        args = (batch, shape.dim, shape.height, shape.width, shape.d_state)
        moved = cross_scan_bytes_moved(*args, itemsize=itemsize)
        return moved + (cross_scan_bytes_moved(*args, itemsize=itemsize, backward=True) if backward else 0)
    args = (batch, 4 * shape.dim, shape.length, shape.d_state, 4)
    moved = scan_bytes_moved(*args, itemsize=itemsize)
    return moved + (scan_bytes_moved(*args, itemsize=itemsize, backward=True) if backward else 0)


def scan_cell_call(
    op: str, shape: ScanShape, batch: int, dtype: str, backend: str, backward: bool, device: str
) -> Callable[[], Any]:
    """One call of a cell, inputs made once: ``op`` "scan" (:func:`selective_scan` on ``backend``),
    "cross-fused" (:func:`cross_selective_scan`, one kernel on triton) or "cross-unfused"
    (:func:`unfused_cross_scan`); with ``backward``, forward and backward of the sum."""
    spatial = op != "scan"
    inputs = scan_inputs(shape, batch, DTYPES[dtype], device, spatial=spatial)
    if op == "cross-unfused":  # per-direction delta, B and C, as SS2D's unfused path projects them
        per_direction = scan_inputs(shape, batch, DTYPES[dtype], device)
        inputs = dict(per_direction, x=inputs["x"])
        del inputs["u"]
    if op == "scan":
        fn = lambda **kw: selective_scan(**kw, delta_softplus=True, backend=backend)  # noqa: E731
    elif op == "cross-fused":
        fn = lambda **kw: cross_selective_scan(**kw, delta_softplus=True, backend=backend)  # noqa: E731
    elif op == "cross-unfused":
        fn = lambda **kw: unfused_cross_scan(**kw, backend=backend)  # noqa: E731
    else:
        raise ValueError(f"unknown scan op {op!r}: scan, cross-fused or cross-unfused")
    if not backward:

        def forward():
            with torch.inference_mode():
                return fn(**inputs)

        return forward
    leaves = {k: v.requires_grad_(True) for k, v in inputs.items()}
    # gradients returned, not accumulated into .grad (which would add a read and a write of each per call)
    return lambda: torch.autograd.grad(fn(**leaves).float().sum(), list(leaves.values()))


# ------------------------------------------------------------------------------------------ the CPU's bound
EXP_FLOPS = 16  # flop-equivalents of a vectorised exp or log: 8 vector instructions, each an FMA's slot
FLOPS_PER_STATE = {"forward": 6, "backward": 22}
EXPS_PER_STATE = {"forward": 1, "backward": 1}
FLOPS_PER_ELEMENT = {"forward": 4, "backward": 12}
EXPS_PER_ELEMENT = {"forward": 2, "backward": 2}


@dataclass(frozen=True)
class ScanCompute:
    """The arithmetic of one scan call under the model in the module docstring."""

    flops: float
    exps: float

    @property
    def flop_equivalents(self) -> float:
        return self.flops + EXP_FLOPS * self.exps


def scan_compute(batch: int, channels: int, length: int, d_state: int, backward: bool) -> ScanCompute:
    """Flops and exps of a scan over ``channels`` channels (all directions) of ``length`` steps with ``d_state``
    states: the forward, or with ``backward`` the forward and the backward (a training step's two calls)."""
    passes = ("forward", "backward") if backward else ("forward",)
    elements = batch * channels * length
    flops = sum(elements * (d_state * FLOPS_PER_STATE[p] + FLOPS_PER_ELEMENT[p]) for p in passes)
    exps = sum(elements * (d_state * EXPS_PER_STATE[p] + EXPS_PER_ELEMENT[p]) for p in passes)
    return ScanCompute(flops, exps)


@dataclass(frozen=True)
class CpuPeak:
    """One thread's float32 vector peak: the CPU as LLVM names it, the widest vector it reports (AVX-512: 16
    float32 lanes, AVX2: 8, else SSE: 4), whether it has FMA, and the flops a second measured on independent
    FMAs (:func:`mamkpd.ops.scan_numba.vector_fma_peak`: lanes x FMA units x 2 x the clock it runs at)."""

    cpu: str
    lanes: int
    fma: bool
    flops_per_second: float

    def describe(self) -> str:
        return (
            f"{self.cpu}, {self.lanes} float32 lanes{' with FMA' if self.fma else ''}, "
            f"{self.flops_per_second / 1e9:.0f} GFLOP/s a thread"
        )


@functools.lru_cache(maxsize=1)
def cpu_peak() -> CpuPeak:
    """This machine's :class:`CpuPeak` (measured once a process; needs numba, as the CPU scan does)."""
    import llvmlite.binding as llvm

    from ...ops.scan_numba import vector_fma_peak

    features = llvm.get_host_cpu_features()
    lanes = 16 if features.get("avx512f") else 8 if features.get("avx2") else 4
    return CpuPeak(llvm.get_host_cpu_name(), lanes, bool(features.get("fma")), vector_fma_peak())


def compute_fraction(seconds: float, compute: ScanCompute, peak: CpuPeak) -> float:
    """The share of the compute bound a call of ``seconds`` reaches: bound time / measured time (1.0 = every
    vector slot busy with the model's arithmetic, on one thread)."""
    return compute.flop_equivalents / peak.flops_per_second / seconds
