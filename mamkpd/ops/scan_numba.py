"""The ``numba`` backend: the scan's loops over time compiled by numba, forward and backward, parallel over
batch x channels. What ``auto`` picks on a CPU when numba is installed.

numba is imported only when the backend is first used (this module imports without it). The kernels
(:mod:`.scan_numba_kernels`) are compiled on first use for the dtype at hand and cached on disk by numba:
next to the source in ``__pycache__``, or, where that is not writable (a read-only site-packages), in the
user's cache directory (``~/.cache/numba``); ``NUMBA_CACHE_DIR`` moves it.

The kernels release the GIL and each runs a contiguous range of (batch, channel) tasks; ranges run on
``torch.get_num_threads()`` threads, so one thread setting governs torch and the scan: on torch's own OpenMP
team where torch runs on OpenMP (:mod:`.openmp_team`), else on a pool of threads. Not a pool beside OpenMP:
after each of torch's parallel ops its OpenMP workers spin for milliseconds on the cores such a pool needs, so
the scans inside MamKPD-B ran no faster on 2 threads than on 1. (numba's own ``parallel=True`` doubles the
first-call compile time and brings a threading layer that is either not fork-safe (a second GNU OpenMP, beside
torch's: a forked DataLoader worker hangs) or not thread-safe (workqueue).)

The kernels read and write the tensors the model holds, in place, with their strides (numpy views of them;
:mod:`.scan_numba_kernels`): u, delta, z and the outputs as (batch, groups, L, channels) views of (batch, dim,
L) tensors, B and C as (batch, groups, N, L), and for the cross scan x, delta and y at spatial positions in
SS2D's channels-last memory, B and C where SS2D's projection left them. Only the parameters (A, D,
delta_bias) are copied, padded to whole blocks of channels. A task is one (batch, block of channels), its
channels in SIMD lanes (:mod:`.scan_numba_vectors`). Each kernel is compiled once per dtype for arrays of any
layout (so a new layout never compiles again). The backward recomputes the states chunk by chunk from the
states kept at chunk starts: nothing of size L x N per channel is kept between the forward and the backward.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch import Tensor

from .cross_contract import cross_scan_positions
from .openmp_team import openmp_team, run_on_team
from .scan_contract import CrossScan, ScanBackend, compute_dtype, gradients_like, grouped

__all__ = [
    "BACKEND",
    "NUMBA_INSTALL_HINT",
    "compiled_kernel",
    "numba_cross_scan_backward",
    "numba_cross_scan_forward",
    "vector_fma_peak",
    "warm_cache",
]

NUMBA_INSTALL_HINT = "the 'numba' scan backend needs numba; install it with `pip install numba`"
TASKS_PER_THREAD = 4  # task ranges per thread, for load balance


def _unavailable() -> str | None:
    if importlib.util.find_spec("numba") is None:
        return f"{NUMBA_INSTALL_HINT} (numba is not installed)"
    return None


@functools.lru_cache(maxsize=1)
def _kernels():
    reason = _unavailable()
    if reason:
        raise RuntimeError(reason)
    from . import scan_numba_kernels

    return scan_numba_kernels


_POOL: dict = {}
_POOL_LOCK = threading.Lock()


def _pool(threads: int) -> ThreadPoolExecutor:
    """A pool of ``threads`` workers for this process (a forked child builds its own)."""
    key = (os.getpid(), threads)
    with _POOL_LOCK:
        if key not in _POOL:
            for old in _POOL.values():
                old.shutdown(wait=False)
            _POOL.clear()
            _POOL[key] = ThreadPoolExecutor(threads, thread_name_prefix="mamkpd-scan")
        return _POOL[key]


def _run(kernel, tasks: int, pieces: int, *args, **kwargs) -> None:
    """kernel(*args, first, last, **kwargs) over range(tasks), in ``pieces`` ranges on torch's thread count."""
    threads = min(torch.get_num_threads(), pieces)
    bounds = np.linspace(0, tasks, max(1, min(tasks, pieces)) + 1).astype(np.int64).tolist()
    ranges = list(zip(bounds[:-1], bounds[1:], strict=True))
    if threads <= 1 or len(ranges) == 1:
        kernel(*args, 0, tasks, **kwargs)
        return
    if openmp_team() is not None:
        run_on_team(threads, [functools.partial(kernel, *args, first, last, **kwargs) for first, last in ranges])
        return
    futures = [_pool(threads).submit(kernel, *args, first, last, **kwargs) for first, last in ranges]
    for future in futures:
        future.result()


# one signature per dtype, every array of any layout ('A'), so that views of any strides share it
def _signature(name: str, dtype: torch.dtype):
    from numba import types

    f = types.float64 if dtype == torch.float64 else types.float32
    a = lambda ndim: types.Array(f, ndim, "A")  # noqa: E731  the caller's tensors: any strides
    c = lambda ndim: types.Array(f, ndim, "C")  # noqa: E731  arrays this module makes: contiguous
    order, flag, index = types.Array(types.int64, 2, "C"), types.boolean, types.int64
    if name == "scan_forward":  # x, delta, z, A2, B, C, D, bias, proj, order, softplus, first, last, out
        return (a(4), a(4), a(4), c(3), a(4), a(4), c(2), c(2), c(3), order, flag, index, index, a(4))
    # gout, x, delta, z, A2, A, B, C, D, bias, order, softplus, first, last, gx, gdelta, gz, gA, gB, gC, gD, gbias
    inputs = (a(4),) * 4 + (c(3), c(3), a(4), a(4), c(2), c(2), order, flag, index, index)
    return inputs + (a(4),) * 3 + (c(4), c(5), c(5), c(3), c(3))


_COMPILE_LOCK = threading.Lock()


def compiled_kernel(name: str, dtype: torch.dtype):
    """The kernel ``name`` (scan_forward, scan_backward) compiled (or loaded from numba's cache) for
    ``dtype``'s arrays of any layout; calls with other layouts convert to that one rather than compile."""
    kernel = getattr(_kernels(), name)
    signature = _signature(name, dtype)
    with _COMPILE_LOCK:
        if signature not in kernel.overloads:
            kernel.disable_compile(False)
            kernel.compile(signature)
            kernel.disable_compile(True)
    return kernel


def warm_cache(dtypes: tuple[torch.dtype, ...] = (torch.float32,)) -> None:
    """Compile both kernels for each of ``dtypes`` into numba's on-disk cache (what ``install.sh`` runs, so
    that a fresh install's first scan loads them instead of compiling), then run a small scan forward and
    backward on them as a check. float32 serves float32, float16 and bfloat16 inputs (computed in float32)."""
    from .selective_scan import selective_scan

    for dtype in dtypes:
        for name in ("scan_forward", "scan_backward"):
            compiled_kernel(name, dtype)
        u = torch.randn(1, 40, 35, dtype=dtype, requires_grad=True)
        B = torch.randn(1, 2, 3, 35, dtype=dtype)
        out = selective_scan(u, u.detach().clone(), -torch.ones(40, 3, dtype=dtype), B, B.clone(), backend="numba")
        out.sum().backward()
        if not bool(torch.isfinite(u.grad).all()):
            raise RuntimeError(f"the numba scan's warm-up gave a non-finite gradient in {dtype}")


def vector_fma_peak(seconds: float = 0.05, rounds: int = 5) -> float:
    """float32 flops a second that one thread's vector unit reaches on independent FMAs (an FMA two flops), in
    the kernels' vectors (``LANES`` float32 each: one AVX-512 register, or two AVX2 ones): the best of
    ``rounds`` runs of about ``seconds`` each, timed in this thread's CPU time (a loaded machine's waits
    are not counted)."""
    kernels = _kernels()
    lanes = _vectors().LANES
    values = np.zeros(lanes, dtype=np.float32)
    values[:3] = (0.999, 1e-3, 1.0)  # x -> 1: finite, never denormal

    def timed(iterations: int) -> float:
        start = time.thread_time()
        kernels.fma_chains(values, iterations)
        return time.thread_time() - start

    iterations = 1000
    timed(iterations)  # compiled (or loaded from the cache) outside the timing
    while (elapsed := timed(iterations)) < seconds:
        iterations *= 2
    best = min([elapsed] + [timed(iterations) for _ in range(rounds - 1)]) / iterations
    return kernels.FMA_CHAINS * lanes * 2 / best


@functools.lru_cache(maxsize=1)
def _vectors():
    from . import scan_numba_vectors

    return scan_numba_vectors


def _detached(t: Tensor, dtype: torch.dtype) -> Tensor:
    """``t`` without autograd in ``dtype``: itself (no copy) when it has that dtype, else cast keeping its strides."""
    return t.detach() if t.dtype == dtype else t.detach().to(dtype)


def _rows(t: Tensor | None, groups: int, dtype: torch.dtype) -> np.ndarray:
    """(batch, groups * C, L) of any strides -> the (batch, groups, L, C) numpy view the kernels index (a copy only
    for a cast); None -> the kernels' empty (0, 0, 0, 0) array."""
    if t is None:
        return np.empty((0, 0, 0, 0), dtype=_NUMPY[dtype])
    bsz, dim, length = t.shape
    return _detached(t, dtype).view(bsz, groups, dim // groups, length).transpose(-1, -2).numpy()


def _spatial_rows(t: Tensor, dtype: torch.dtype) -> np.ndarray:
    """(batch, C, H, W) or (batch, K, C, H, W) of any strides -> a (batch, K, H * W, C) numpy view (K = 1 for
    4-d): rows at spatial positions, as the cross scan's kernels index them. A copy only for a cast, or where
    H and W do not merge into one axis (not SS2D's layouts)."""
    t = _detached(t, dtype)
    grouped_t = t.unsqueeze(1) if t.dim() == 4 else t
    return grouped_t.flatten(3).transpose(-1, -2).numpy()


def _writable_like(t: Tensor, dtype: torch.dtype, spatial: bool) -> Tensor:
    """An empty tensor of ``t``'s shape and layout (its strides where they are dense; contiguous otherwise)
    whose rows (:func:`_rows`, :func:`_spatial_rows` with ``spatial``) are a view, not a copy, so that the
    kernels' writes land in it."""
    out = torch.empty_like(t, dtype=dtype)
    if spatial and out.stride(-2) != out.shape[-1] * out.stride(-1) and out.shape[-2] > 1:
        out = torch.empty(t.shape, dtype=dtype)  # H and W would not merge into one axis without a copy
    return out


_NUMPY = {torch.float32: np.float32, torch.float64: np.float64}


def _per_channel(t: Tensor | None, groups: int, padded: int, dtype: torch.dtype) -> Tensor:
    """(groups * C, ...) -> (groups, ..., padded): A as (groups, N, padded), D and delta_bias as (groups,
    padded); absent -> zeros (no skip term, no bias). The only arrays padded to whole blocks (parameters)."""
    out = torch.zeros(groups, *(() if t is None else t.shape[1:]), padded, dtype=dtype)
    if t is not None:
        per_group = t.shape[0] // groups
        out[..., :per_group] = t.detach().reshape(groups, per_group, *t.shape[1:]).movedim(1, -1)
    return out


def _parameters(A, D, delta_bias, groups: int, channels: int, dtype: torch.dtype) -> dict:
    """A log2(e), A, D and delta_bias per sequence, padded to whole blocks (a padded channel has A = 0 and
    u = 0: its state stays zero)."""
    kernels = _kernels()
    padded = -(-channels // kernels.BLOCK) * kernels.BLOCK
    a = _per_channel(A, groups, padded, dtype)
    return dict(
        A2=(a * kernels.LOG2E).numpy(),
        A=a.numpy(),
        D=_per_channel(D, groups, padded, dtype).numpy(),
        bias=_per_channel(delta_bias, groups, padded, dtype).numpy(),
    )


def _forward(x, delta, z, params, B, C, order, softplus, out, dtype, proj=None) -> None:
    """The forward kernel over all (batch, block) tasks: ``out`` written in place; with ``proj`` (K, rank,
    padded), delta is the low-rank input of the delta projection."""
    kernels = _kernels()
    kernel = compiled_kernel("scan_forward", dtype)
    tasks = out.shape[0] * -(-out.shape[3] // kernels.BLOCK)
    proj = np.empty((0, 0, 0), dtype=_NUMPY[dtype]) if proj is None else proj
    _run(kernel, tasks, TASKS_PER_THREAD * torch.get_num_threads(), x, delta, z, params["A2"], B, C, params["D"],
         params["bias"], proj, order, bool(softplus), out=out)  # fmt: skip


def _backward(gout, x, delta, z, params, B, C, order, softplus, grads, dtype) -> dict:
    """The backward kernel over all (batch, block) tasks, gx, gdelta and gz written in place into
    ``grads``' arrays; returns the per-task partial sums (gA, gB, gC, gD, gbias) summed over batch or blocks:
    gA (K, N, padded), gB and gC (batch, K, N, P), gD and gbias (K, padded)."""
    kernels = _kernels()
    kernel = compiled_kernel("scan_backward", dtype)
    bsz, n_seq, positions, channels = delta.shape
    blocks = -(-channels // kernels.BLOCK)
    padded, n_state = blocks * kernels.BLOCK, params["A"].shape[1]
    partial = dict(
        gA=torch.empty(bsz, n_seq, n_state, padded, dtype=dtype),
        gB=torch.empty(bsz, blocks, n_seq, n_state, positions, dtype=dtype),
        gC=torch.empty(bsz, blocks, n_seq, n_state, positions, dtype=dtype),
        gD=torch.empty(bsz, n_seq, padded, dtype=dtype),
        gbias=torch.empty(bsz, n_seq, padded, dtype=dtype),
    )
    _run(kernel, bsz * blocks, TASKS_PER_THREAD * torch.get_num_threads(), gout, x, delta, z, params["A2"],
         params["A"], B, C, params["D"], params["bias"], order, bool(softplus), **grads,
         **{k: v.numpy() for k, v in partial.items()})  # fmt: skip
    return dict(
        gA=partial["gA"].sum(0), gB=partial["gB"].sum(1), gC=partial["gC"].sum(1),
        gD=partial["gD"].sum(0), gbias=partial["gbias"].sum(0),
    )  # fmt: skip


def _per_channel_grads(sums: dict, dim: int) -> tuple[Tensor, Tensor, Tensor]:
    """gA (dim, N), gD and gbias (dim,) from the kernels' (K, N, padded) and (K, padded) sums."""
    n_seq, n_state = sums["gA"].shape[:2]
    per = dim // n_seq
    gA = sums["gA"][..., :per].transpose(-1, -2).reshape(dim, n_state)
    gD, gbias = (sums[k][:, :per].reshape(dim) for k in ("gD", "gbias"))
    return gA, gD, gbias


def _scan_setup(u, B, C, A, D, delta_bias):
    ct = compute_dtype(u)
    groups = grouped(B).shape[1]
    params = _parameters(A, D, delta_bias, groups, u.shape[1] // groups, ct)
    bc = [_detached(grouped(t), ct).numpy() for t in (B, C)]
    order = np.tile(np.arange(u.shape[2], dtype=np.int64), (groups, 1))  # each group in time order
    return ct, groups, params, bc, order


def _numba_forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
    ct, groups, params, (b, c), order = _scan_setup(u, B, C, A, D, delta_bias)
    out = torch.empty(u.shape, dtype=ct)  # contiguous, as the op returns it
    rows = lambda t: _rows(t, groups, ct)  # noqa: E731
    _forward(rows(u), rows(delta), rows(z), params, b, c, order, delta_softplus, rows(out), ct)
    return out.to(u.dtype)


def _numba_backward(gout, u, delta, A, B, C, D, z, delta_bias, delta_softplus):
    ct, groups, params, (b, c), order = _scan_setup(u, B, C, A, D, delta_bias)
    rows = lambda t: _rows(t, groups, ct)  # noqa: E731
    # gradients of u, delta and z in their inputs' layouts (dense strides kept), written by the kernel
    gu, gdelta = (_writable_like(t, ct, spatial=False) for t in (u, delta))
    gz = _writable_like(z, ct, spatial=False) if z is not None else None
    grads = dict(gx=rows(gu), gdelta=rows(gdelta), gz=rows(gz))
    sums = _backward(rows(gout), rows(u), rows(delta), rows(z), params, b, c, order, delta_softplus, grads, ct)
    gA, gD, gbias = _per_channel_grads(sums, u.shape[1])
    return gradients_like(
        (gu, gdelta, gA, sums["gB"], sums["gC"], gD, gz, gbias),
        (u, delta, A, B, C, D, z, delta_bias),
    )


def _cross_setup(x, delta, A, B, C, D, delta_bias):
    ct = compute_dtype(x)
    directions = delta.shape[1]
    params = _parameters(A, D, delta_bias, directions, x.shape[1], ct)
    order = cross_scan_positions(x.shape[2], x.shape[3], x.device).numpy()
    bc = [_detached(t, ct).flatten(3).numpy() for t in (B, C)]  # (batch, 4, N, H * W) at spatial positions
    return ct, params, bc, order


def numba_cross_scan_forward(x, delta, A, B, C, D, delta_bias, delta_softplus, delta_proj_weight=None) -> Tensor:
    """The four-direction cross scan and merge in one kernel call (arguments as :func:`.cross_selective_scan`),
    read where the tensors lie (a low-rank delta projected by ``delta_proj_weight`` as it is read); y comes back
    in channels-last memory, as SS2D keeps x."""
    ct, params, (b, c), order = _cross_setup(x, delta, A, B, C, D, delta_bias)
    y = torch.empty(x.shape, dtype=ct, memory_format=torch.channels_last)
    rows = lambda t: _spatial_rows(t, ct)  # noqa: E731
    proj = None
    if delta_proj_weight is not None:  # (4, dim, rank) -> (4, rank, padded): rows of channels, zero-padded
        directions, padded = params["D"].shape
        proj = _per_channel(delta_proj_weight.flatten(0, 1), directions, padded, ct).numpy()
    _forward(rows(x), rows(delta), _rows(None, 1, ct), params, b, c, order, delta_softplus, rows(y), ct, proj)
    return y.to(x.dtype)


def numba_cross_scan_backward(gout, x, delta, A, B, C, D, delta_bias, delta_softplus) -> tuple:
    """Gradients (dx, ddelta, dA, dB, dC, dD, ddelta_bias) of sum(gout * cross scan), None for absent inputs;
    dx and ddelta in x's and delta's layouts (their strides where dense), written by the kernel."""
    ct, params, (b, c), order = _cross_setup(x, delta, A, B, C, D, delta_bias)
    rows = lambda t: _spatial_rows(t, ct)  # noqa: E731
    gx, gdelta = (_writable_like(t, ct, spatial=True) for t in (x, delta))
    grads = dict(gx=rows(gx), gdelta=rows(gdelta), gz=_rows(None, 1, ct))
    sums = _backward(rows(gout), rows(x), rows(delta), _rows(None, 1, ct), params, b, c, order, delta_softplus,
                     grads, ct)  # fmt: skip
    gA, gD, gbias = _per_channel_grads(sums, A.shape[0])
    gB, gC = (sums[k].reshape(B.shape) for k in ("gB", "gC"))
    present = (x, delta, A, B, C, D, delta_bias)
    found = (gx, gdelta, gA, gB, gC, gD, gbias)
    return tuple(None if p is None else g.to(p.dtype) for g, p in zip(found, present, strict=True))


BACKEND = ScanBackend(
    name="numba",
    forward=_numba_forward,
    backward=_numba_backward,
    device_types=("cpu",),
    unavailable=_unavailable,
    description="the scan's loops over time compiled by numba, run on torch's threads over batch x channels",
    auto_priority=(("cpu", 0),),  # the compiled scan is the CPU default (numba is a dependency)
    # its kernels read rows of channels: x and delta channels innermost, y returned so
    cross=CrossScan(numba_cross_scan_forward, numba_cross_scan_backward, channels_last=True, projects_delta=True),
    compiled=True,
)
