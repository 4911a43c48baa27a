"""Selective-scan kernels on a CUDA device: triton vs torch vs reference vs mamba-ssm, and the fused cross
scan vs the unfused path, at MamKPD-B's stage-1 and stage-3 shapes.

Benchmarks, not tests: ``python -m pytest benchmarks/test_bench_scan_cuda.py --benchmark-enable`` on a
machine with a CUDA device (skipped without one). Every call ends with ``torch.cuda.synchronize()``, so a
round is the kernels' wall time. extra_info records the shape, the backend that ran, and ``bytes_moved``:
what the call must move at least (``scan_bytes_moved``, ``cross_scan_bytes_moved``); divided by the
median time it is the bandwidth reached, to set beside the device's peak (the memory-bandwidth bound).
Compare times as ratios within one run.
"""

from __future__ import annotations

import pytest
import torch

from mamkpd.models.layers.cross_scan import cross_merge, cross_scan
from mamkpd.ops import (
    backend_unavailable,
    cross_scan_bytes_moved,
    cross_selective_scan,
    scan_bytes_moved,
    selective_scan,
)

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: these benchmarks time CUDA kernels"),
]

# MamKPD-B at 256x192: stage 1 is 64x48 positions, d_inner 192; stage 3 is 16x12, d_inner 768. Four
# directions, each a B/C group; d_state 8.
SHAPES = {
    "stage1": dict(dim=192, height=64, width=48, d_state=8),
    "stage3": dict(dim=768, height=16, width=12, d_state=8),
}
BATCHES = (1, 8)
BACKENDS = ("triton", "torch", "reference", "cuda")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
ROUNDS = {"reference": 2}  # a Python loop over time: seconds a call at stage 1


def make_inputs(shape, batch, dtype, spatial=False):
    """Per-direction scan inputs (u: (batch, 4*dim, L), B/C: (batch, 4, N, L)) or, with ``spatial``, the
    cross scan's (x: (batch, dim, H, W), delta, B, C at spatial positions). A, D, delta_bias in float32."""
    dim, height, width, n = (SHAPES[shape][k] for k in ("dim", "height", "width", "d_state"))
    g = torch.Generator(device="cuda").manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g, device="cuda").to(dtype)  # noqa: E731
    length = height * width
    params = dict(
        A=-torch.rand(4 * dim, n, generator=g, device="cuda") - 0.1,
        D=torch.randn(4 * dim, generator=g, device="cuda"),
        delta_bias=0.1 * torch.randn(4 * dim, generator=g, device="cuda"),
    )
    if spatial:
        return dict(
            x=r(batch, dim, height, width),
            delta=0.5 * r(batch, 4, dim, height, width),
            B=r(batch, 4, n, height, width),
            C=r(batch, 4, n, height, width),
            **params,
        )
    return dict(
        u=r(batch, 4 * dim, length),
        delta=0.5 * r(batch, 4 * dim, length),
        B=r(batch, 4, n, length),
        C=r(batch, 4, n, length),
        **params,
    )


def skip_unless_runs(backend):
    reason = backend_unavailable(backend, "cuda")
    if reason:
        pytest.skip(reason)


def timed(benchmark, fn, backend):
    def call():
        fn()
        torch.cuda.synchronize()

    benchmark.pedantic(call, rounds=ROUNDS.get(backend, 20), warmup_rounds=1)


def info(benchmark, shape, batch, dtype, **extra):
    benchmark.extra_info.update(
        SHAPES[shape], shape=shape, batch=batch, dtype=dtype, device=torch.cuda.get_device_name(), **extra
    )


@pytest.mark.benchmark(group="scan-cuda-forward")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("shape", SHAPES)
def test_scan_forward(benchmark, shape, batch, backend, dtype):
    skip_unless_runs(backend)
    inputs = make_inputs(shape, batch, DTYPES[dtype])
    s = SHAPES[shape]
    moved = scan_bytes_moved(
        batch, 4 * s["dim"], s["height"] * s["width"], s["d_state"], 4, itemsize=DTYPES[dtype].itemsize
    )
    info(benchmark, shape, batch, dtype, backend=backend, bytes_moved=moved)
    with torch.inference_mode():
        timed(benchmark, lambda: selective_scan(**inputs, delta_softplus=True, backend=backend), backend)


@pytest.mark.benchmark(group="scan-cuda-forward-backward")
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("shape", SHAPES)
def test_scan_forward_backward(benchmark, shape, batch, backend):
    skip_unless_runs(backend)
    leaves = {k: v.requires_grad_(True) for k, v in make_inputs(shape, batch, torch.float32).items()}
    s = SHAPES[shape]
    args = (batch, 4 * s["dim"], s["height"] * s["width"], s["d_state"], 4)
    moved = scan_bytes_moved(*args) + scan_bytes_moved(*args, backward=True)
    info(benchmark, shape, batch, "fp32", backend=backend, bytes_moved=moved)
    timed(benchmark, lambda: selective_scan(**leaves, delta_softplus=True, backend=backend).sum().backward(), backend)


def unfused_cross(x, delta, A, B, C, D, delta_bias, backend):
    """SS2D's unfused path on the same inputs: cross_scan -> selective_scan -> cross_merge (delta, B, C
    already in each direction's order, as SS2D's projections of the cross-scanned x give them)."""
    bsz, dim, height, width = x.shape
    ys = selective_scan(
        cross_scan(x).flatten(1, 2), delta, A, B, C, D, delta_bias=delta_bias, delta_softplus=True, backend=backend
    )
    return cross_merge(ys.view(bsz, 4, dim, height * width), height, width)


@pytest.mark.benchmark(group="cross-scan-cuda")
@pytest.mark.parametrize("pass_", ["forward", "forward-backward"])
@pytest.mark.parametrize("path", ["fused", "unfused"])
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("shape", SHAPES)
def test_cross_scan(benchmark, shape, batch, path, pass_):
    """The fused cross scan (one triton kernel) against cross_scan -> triton scan -> cross_merge."""
    skip_unless_runs("triton")
    spatial = make_inputs(shape, batch, torch.float32, spatial=True)
    per_direction = make_inputs(shape, batch, torch.float32)
    s = SHAPES[shape]
    args = (batch, s["dim"], s["height"], s["width"], s["d_state"])
    moved = cross_scan_bytes_moved(*args)
    if pass_ == "forward-backward":
        moved += cross_scan_bytes_moved(*args, backward=True)
    info(benchmark, shape, batch, "fp32", path=path, backend="triton", bytes_moved=moved)
    if path == "fused":
        inputs = spatial
        fn = lambda **kw: cross_selective_scan(**kw, delta_softplus=True, backend="triton")  # noqa: E731
    else:
        inputs = dict(per_direction, x=spatial["x"])
        del inputs["u"]
        fn = lambda **kw: unfused_cross(**kw, backend="triton")  # noqa: E731
    if pass_ == "forward":
        with torch.inference_mode():
            timed(benchmark, lambda: fn(**inputs), "triton")
        return
    leaves = {k: v.requires_grad_(True) for k, v in inputs.items()}
    timed(benchmark, lambda: fn(**leaves).sum().backward(), "triton")


@pytest.mark.benchmark(group="scan-cuda-triton-tiles")
@pytest.mark.parametrize("pass_", ["forward", "backward"])
@pytest.mark.parametrize("tiles", ["32w1", "64w2", "128w4", "128w2", "256w2"])
@pytest.mark.parametrize("batch", BATCHES)
def test_triton_tile_sizes(benchmark, batch, tiles, pass_):
    """The triton kernels' launch shapes (channels a program, warps) at stage 1, forward and backward apart,
    each fixed (the autotuner picks among GPU_CONFIGS otherwise)."""
    from mamkpd.ops.scan_triton import KernelConfig, triton_scan_backward, triton_scan_forward

    skip_unless_runs("triton")
    block_d, warps = tiles.split("w")
    config = KernelConfig(block_d=int(block_d), num_warps=int(warps))
    inputs = make_inputs("stage1", batch, torch.float32)
    s = SHAPES["stage1"]
    moved = scan_bytes_moved(
        batch, 4 * s["dim"], s["height"] * s["width"], s["d_state"], 4, backward=pass_ == "backward"
    )
    info(benchmark, "stage1", batch, "fp32", backend="triton", tiles=tiles, pass_=pass_, bytes_moved=moved)
    if pass_ == "forward":
        timed(benchmark, lambda: triton_scan_forward(**inputs, delta_softplus=True, config=config), "triton")
        return
    gout = torch.randn_like(inputs["u"])
    timed(benchmark, lambda: triton_scan_backward(gout, **inputs, delta_softplus=True, config=config), "triton")
