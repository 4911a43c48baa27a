"""The ``triton`` backend: the selective scan's forward and backward as Triton kernels.

Triton ships with every CUDA build of PyTorch, so this backend needs no source build (unlike mamba-ssm's
kernel). Under ``TRITON_INTERPRET=1`` (set before the first call) the same kernels run on CPU tensors in
Triton's interpreter: that is how the tests check them without a GPU. triton is imported lazily, on first
use, so the suite imports and runs where it is absent.

Plain entry points, for timing the kernels without autograd: :func:`triton_scan_forward`,
:func:`triton_scan_backward` and the four-direction cross forms :func:`triton_cross_scan_forward`,
:func:`triton_cross_scan_backward` (used by :mod:`.cross_selective_scan`). :func:`scan_bytes_moved` and
:func:`cross_scan_bytes_moved` give the bytes a call must move at least: the traffic term of the scan's
roofline (the GPU check's, with the exponentials' term beside it).

The kernels (:mod:`.scan_triton_kernels`) run the time loop one step after another with a block of channels
across the threads, one channel and its N states a thread; the grid is batch x directions (groups) x channel
blocks, not split along the sequence: at MamKPD-B's stage 1 and batch 64 that is 49,152 threads, 11 warps
an SM of an H200, while a split would add a second pass and its traffic. At batch 1 the grid is 64 times
smaller and the scan latency-bound: the kernels are built for training and batched throughput.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import torch
from torch import Tensor

from .scan_contract import CrossScan, ScanBackend, check_inputs, grouped

__all__ = [
    "BACKEND",
    "GPU_CONFIGS",
    "INTERPRETER_CONFIG",
    "KernelConfig",
    "chunk_states_like",
    "cross_scan_bytes_moved",
    "interpreting",
    "scan_bytes_moved",
    "triton_cross_scan_backward",
    "triton_cross_scan_forward",
    "triton_scan_backward",
    "triton_scan_forward",
]

TRITON_INSTALL_HINT = "pip install triton (CUDA builds of torch ship it)"


@dataclass(frozen=True)
class KernelConfig:
    """Launch shape of the kernels: ``block_d`` channels a program (one a thread when ``block_d`` is 32 x
    ``num_warps``); ``chunk``: steps between the chunk-start states (a training forward keeps them, the backward
    recomputes each chunk from them; the forward and backward of one call must share it)."""

    block_d: int
    num_warps: int = 4
    chunk: int = 16  # GPU_CHUNK

    def __post_init__(self):
        for name in ("block_d", "chunk"):
            value = getattr(self, name)
            if value < 1 or value & (value - 1):
                raise ValueError(f"KernelConfig.{name} must be a power of two, got {value}")


# What the autotuner tries on a GPU, once per (channels a group, length, N, dtypes, flags): one channel a
# thread in programs of 1 or 2 warps (the smaller, the more programs: at batch 1 a stage-1 scan has only 4 x 192
# channels), and two channels a thread (compiled for sm_90: the forward's loop takes 1.0 issue cycles a
# channel-step instead of 1.3, the backward's 4.3 instead of 6.1, with half the threads). Three configs: each is a
# compile on first use (the GPU check's scan step compiles 12 kernel variants, 36 compiles). The backward's chunk
# is not tuned: its scratch buffers are sized by it (16 steps: 512 bytes a channel of N = 8 fp32 states).
GPU_CONFIGS = (
    KernelConfig(block_d=32, num_warps=1),
    KernelConfig(block_d=64, num_warps=2),
    KernelConfig(block_d=128, num_warps=2),
)
GPU_CHUNK = 16
# "0": the first GPU config only, no tuning. The GPU check's correctness tests run so: each autotuned launch key
# would otherwise compile all three configs on a cold cache (their cap is sized by compiles; a test runs each
# config by name instead).
AUTOTUNE_ENV = "MAMKPD_TRITON_AUTOTUNE"
# The interpreter runs programs one after another and each tile op is one numpy call, whatever the tile's
# size: one config (no tuning runs), few programs, short chunks so that tests at small shapes cross chunks.
INTERPRETER_CONFIG = KernelConfig(block_d=16, num_warps=1, chunk=8)
LOG2E = 1.4426950408889634  # exp(x) = exp2(x log2(e)): A is scaled once, on the host


def interpreting() -> bool:
    """Whether the kernels run (or, once defined, will run) in Triton's interpreter."""
    loaded = _kernels.cache_info().currsize
    if loaded:
        return _kernels()[1]
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "yes", "on")


@functools.lru_cache(maxsize=1)
def _kernels():
    """((forward, backward) autotuned kernels, whether they were defined for the interpreter). Defined once,
    on first use."""
    interpret = os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "yes", "on")
    import triton

    from . import scan_triton_kernels as kernels

    tuned = GPU_CONFIGS if os.environ.get(AUTOTUNE_ENV, "1") != "0" else GPU_CONFIGS[:1]
    configs = [
        triton.Config({"BLOCK_D": c.block_d}, num_warps=c.num_warps)
        for c in ((INTERPRETER_CONFIG,) if interpret else tuned)
    ]
    key = ["dim_g", "length", "N"]
    forward = triton.autotune(configs=configs, key=key)(kernels.scan_fwd_kernel)
    # the backward adds dB and dC with atomics: zero them before each tuning run
    backward = triton.autotune(configs=configs, key=key, reset_to_zero=["dB_ptr", "dC_ptr"])(kernels.scan_bwd_kernel)
    return (forward, backward), interpret


def _unavailable() -> str | None:
    if torch.compiler.is_compiling():
        # Dynamo cannot trace the import below; an eager call (or building the model) already asked, and the
        # op itself says why if the kernels cannot run
        return None
    try:
        import triton  # noqa: F401
    except Exception as exc:  # ImportError, or a triton that does not match the installed torch
        return f"the 'triton' scan backend needs triton ({TRITON_INSTALL_HINT}); import failed: {exc}"
    if interpreting() or torch.cuda.is_available():
        return None
    return (
        "the 'triton' scan backend needs a CUDA device, or TRITON_INTERPRET=1 (set before its first use) to run "
        "its kernels on CPU tensors in Triton's interpreter"
    )


def _check_device(device: torch.device) -> None:
    if device.type != "cuda" and not interpreting():
        raise RuntimeError(
            f"the 'triton' scan backend got tensors on {device}: it runs on CUDA tensors, and on CPU tensors only "
            "with TRITON_INTERPRET=1 set before its first use"
        )


def _acc_torch_dtype(dtype: torch.dtype) -> torch.dtype:
    """What the kernels accumulate in for inputs of ``dtype``: float64 for float64, else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _acc_dtype(dtype: torch.dtype):
    import triton.language as tl

    return tl.float64 if dtype == torch.float64 else tl.float32


def _strides4(t: Tensor | None, shared: bool = False) -> tuple:
    """Strides (batch, k, channel, step) of a (batch, k, channel, L) view, or of a (batch, channel, L) tensor
    that every k shares (k stride 0); zeros for an absent tensor."""
    if t is None:
        return (0, 0, 0, 0)
    if shared:
        return (t.stride(0), 0, t.stride(1), t.stride(2))
    return tuple(t.stride())


def _scan(u4, delta4, A, B4, C4, D, z4, delta_bias, delta_softplus, *, cross, height, width, config, gout4=None,
          keep_states=False, states=None):  # fmt: skip
    """Run the forward (``gout4`` None) or the one-launch backward.

    Views, read through their strides: delta4, z4 (batch, k, dim_g, L); B4, C4 (batch, k, N, L); u4 and
    gout4 (batch, k, dim_g, L), or in the cross form (batch, dim_g, L), shared by the four directions. The
    outputs, out and du, are (batch, k, dim_g, L) views; in the cross form one row a direction, in channels-last
    memory, which the caller sums over k. Returns out, or (out, states) with ``keep_states`` (the chunk-start
    states, see :func:`chunk_states_like`), or, in the backward, (du, ddelta, dA, dB, dC, dD, dz, ddelta_bias)
    with dB, dC (batch, k, N, L) in the accumulation dtype; given the forward's ``states``, the backward
    starts from them instead of computing them again.
    """
    (forward, backward), interpret = _kernels()
    _check_device(u4.device)
    batch, groups, n_state, length = B4.shape
    dim_g = delta4.shape[2]
    acc = _acc_torch_dtype(u4.dtype)
    A_acc = A.to(acc).contiguous()
    A2 = A_acc * LOG2E
    dummy = A_acc  # stands for absent tensors; the kernels never read them (their HAS_* flag is off)
    opt = lambda t: dummy if t is None else t  # noqa: E731
    flags = dict(
        N=n_state,
        NP=_padded(n_state),
        HAS_D=D is not None,
        HAS_Z=z4 is not None,
        HAS_BIAS=delta_bias is not None,
        SOFTPLUS=bool(delta_softplus),
        CROSS=cross,
        ACC=_acc_dtype(acc),
    )
    if config is not None:  # one given launch shape, not the autotuner's
        forward, backward = forward.fn, backward.fn
        flags.update(BLOCK_D=config.block_d, num_warps=config.num_warps)
    chunk = _chunk(config)
    block_d = config.block_d if config is not None else INTERPRETER_CONFIG.block_d if interpret else None
    if block_d is None:  # the autotuner's choice
        grid = lambda meta: (_cdiv(dim_g, meta["BLOCK_D"]), groups, batch)  # noqa: E731
    else:  # a fixed grid: Triton 3.0's interpreter hands the grid function its constexprs as arrays
        grid = (_cdiv(dim_g, block_d), groups, batch)

    def rows_out(dtype):
        # (batch, k, dim_g, L) with channels innermost: a step's row of channels is one contiguous store
        return u4.new_empty(batch, groups, length, dim_g, dtype=dtype).transpose(2, 3)

    strides = (*_strides4(u4, cross), *_strides4(delta4), *B4.stride(), *C4.stride(), *_strides4(z4))
    sizes = (dim_g, length, height, width)
    rows = batch * groups * dim_g
    shape = _states_shape(rows, length, n_state, config)  # (n_chunks, NP, rows)
    if gout4 is None:
        out = rows_out(u4.dtype)
        kept = u4.new_empty(shape, dtype=acc) if keep_states else dummy
        forward[grid](u4, delta4, A2, B4, C4, opt(D), opt(z4), opt(delta_bias), out, kept, *strides, *out.stride(),
                      *sizes, KEEP_STATES=keep_states, CHUNK=chunk, **flags)  # fmt: skip
        return (out, kept) if keep_states else out

    if states is not None and tuple(states.shape) != shape:
        raise ValueError(
            f"triton scan backward: states of shape {tuple(states.shape)} do not belong to this call (expected "
            f"{shape}: the forward's, with the same chunk of {chunk} steps)"
        )
    given = states is not None
    states = states if given else u4.new_empty(shape, dtype=acc)
    hbuf = u4.new_empty(chunk, shape[1], rows, dtype=acc)
    du = rows_out(u4.dtype)
    ddelta = torch.empty_like(delta4)
    dz = None if z4 is None else torch.empty_like(z4)
    dA = u4.new_empty(batch, groups * dim_g, n_state, dtype=acc)
    dD = u4.new_empty(batch, groups * dim_g, dtype=acc) if D is not None else None
    dbias = u4.new_empty(batch, groups * dim_g, dtype=acc) if delta_bias is not None else None
    dB = u4.new_zeros(batch, groups, n_state, length, dtype=acc)  # summed over channel blocks with atomics
    dC = torch.zeros_like(dB)
    out_strides = (*_strides4(gout4, cross), *du.stride(), *ddelta.stride(), *_strides4(dz))
    backward[grid](u4, delta4, A_acc, A2, B4, C4, opt(D), opt(z4), opt(delta_bias), gout4, du, ddelta, opt(dz), dA,
                   opt(dD), opt(dbias), dB, dC, states, hbuf, *strides, *out_strides, *sizes, shape[0], CHUNK=chunk,
                   STATES_GIVEN=given, **flags)  # fmt: skip
    total = lambda part, like: None if part is None else part.sum(0).to(like.dtype)  # noqa: E731
    return du, ddelta, total(dA, A), dB, dC, total(dD, D), dz, total(dbias, delta_bias)


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _chunk(config: KernelConfig | None) -> int:
    """Steps between the chunk-start states, for ``config`` (None: the launch shape of this process's kernels)."""
    if config is not None:
        return config.chunk
    return INTERPRETER_CONFIG.chunk if interpreting() else GPU_CHUNK


def _padded(d_state: int) -> int:
    """N rounded up to a power of two: the kernels' state tiles (NP)."""
    return 1 << max(d_state - 1, 0).bit_length()


def _states_shape(rows: int, length: int, d_state: int, config: KernelConfig | None) -> tuple[int, int, int]:
    """(n_chunks, NP, rows) of the chunk-start states, rows = batch x the channels scanned."""
    return _cdiv(length, _chunk(config)), _padded(d_state), rows


def chunk_states_like(u: Tensor, rows: int, length: int, d_state: int) -> Tensor:
    """An empty tensor shaped as the chunk-start states a forward keeps: (n_chunks, NP, rows) in the accumulation
    dtype of ``u`` (on its device), rows = batch x the channels scanned (of every group or direction), NP = N
    rounded up to a power of two. The op's fake kernels describe the kept states with it."""
    return u.new_empty(_states_shape(rows, length, d_state, None), dtype=_acc_torch_dtype(u.dtype))


# ------------------------------------------------------------------------------------ per-group scan


def _per_group(u, delta, B, C, z):
    """(batch, groups * dim_g, L) tensors as (batch, groups, dim_g, L) views; B, C as (batch, groups, N, L)."""
    B4, C4 = grouped(B), grouped(C)
    groups = B4.shape[1]
    split = lambda t: None if t is None else t.unflatten(1, (groups, t.shape[1] // groups))  # noqa: E731
    return split(u), split(delta), B4, C4, split(z)


def triton_scan_forward(
    u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, *, config: KernelConfig | None = None,
    keep_states: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:  # fmt: skip
    """The ``triton`` backend's forward with mamba-ssm's arguments (see :mod:`.scan_contract`), no autograd.
    ``config``: one launch shape instead of the autotuner's choice. ``keep_states``: return (out, states), the
    chunk-start states for :func:`triton_scan_backward`."""
    check_inputs(u, delta, A, B, C, D, z, delta_bias)
    u4, delta4, B4, C4, z4 = _per_group(u, delta, B, C, z)
    result = _scan(u4, delta4, A, B4, C4, D, z4, delta_bias, delta_softplus,
                   cross=False, height=1, width=u.shape[2], config=config, keep_states=keep_states)  # fmt: skip
    return (result[0].flatten(1, 2), result[1]) if keep_states else result.flatten(1, 2)


def triton_scan_backward(
    gout, u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, *, config=None, states=None
) -> tuple:
    """Gradients (du, ddelta, dA, dB, dC, dD, dz, ddelta_bias) of sum(gout * out), None for absent inputs.
    ``states``: the forward's chunk-start states (``keep_states``), else computed here first."""
    check_inputs(u, delta, A, B, C, D, z, delta_bias)
    u4, delta4, B4, C4, z4 = _per_group(u, delta, B, C, z)
    du, ddelta, dA, dB, dC, dD, dz, dbias = _scan(
        u4, delta4, A, B4, C4, D, z4, delta_bias, delta_softplus,
        cross=False, height=1, width=u.shape[2], config=config, gout4=gout.unflatten(1, u4.shape[1:3]),
        states=states,
    )  # fmt: skip
    dB = (dB.squeeze(1) if B.dim() == 3 else dB).to(B.dtype)
    dC = (dC.squeeze(1) if C.dim() == 3 else dC).to(C.dtype)
    flat = lambda t: None if t is None else t.flatten(1, 2)  # noqa: E731
    return flat(du), flat(ddelta), dA, dB, dC, dD, flat(dz), dbias


def _forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus, keep_saved):
    if not keep_saved:
        return triton_scan_forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus), []
    out, states = triton_scan_forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus, keep_states=True)
    return out, [states]


def _backward(gout, u, delta, A, B, C, D, z, delta_bias, delta_softplus, saved):
    states = saved[0] if saved else None
    return triton_scan_backward(gout, u, delta, A, B, C, D, z, delta_bias, delta_softplus, states=states)


def _saved_like(u, A, z) -> list[Tensor]:
    return [chunk_states_like(u, u.shape[0] * u.shape[1], u.shape[2], A.shape[1])]


# ---------------------------------------------------------------------------------- cross (fused) scan


def _merged(rows: Tensor, height: int, width: int) -> Tensor:
    """The four directions' (batch, 4, dim, L) rows summed into (batch, dim, H, W), channels-last like x in
    SS2D (one reduction over k, accumulated in fp32 for half inputs, written in the rows' dtype)."""
    batch, _, dim, _ = rows.shape
    return rows.sum(1).transpose(1, 2).reshape(batch, height, width, dim).permute(0, 3, 1, 2)


def triton_cross_scan_forward(
    x, delta, A, B, C, D=None, delta_bias=None, delta_softplus=False, *, config: KernelConfig | None = None,
    keep_states: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:  # fmt: skip
    """The four-direction cross scan; arguments as :func:`.cross_selective_scan` (checked there), read in
    their own layouts. Returns y channels-last; with ``keep_states``, (y, the chunk-start states of the four
    directions) for :func:`triton_cross_scan_backward`."""
    batch, dim, height, width = x.shape
    result = _scan(
        x.flatten(2), delta.flatten(3), A, B.flatten(3), C.flatten(3), D, None, delta_bias, delta_softplus,
        cross=True, height=height, width=width, config=config, keep_states=keep_states,
    )  # fmt: skip
    if keep_states:
        return _merged(result[0], height, width), result[1]
    return _merged(result, height, width)


def triton_cross_scan_backward(
    gout, x, delta, A, B, C, D=None, delta_bias=None, delta_softplus=False, *, config: KernelConfig | None = None,
    states: Tensor | None = None,
) -> tuple:  # fmt: skip
    """Gradients (dx, ddelta, dA, dB, dC, dD, ddelta_bias) of sum(gout * cross scan), None for absent inputs.
    ``states``: the forward's (``keep_states``), else computed here first."""
    batch, dim, height, width = x.shape
    dx_rows, ddelta, dA, dB, dC, dD, _, dbias = _scan(
        x.flatten(2), delta.flatten(3), A, B.flatten(3), C.flatten(3), D, None, delta_bias, delta_softplus,
        cross=True, height=height, width=width, config=config, gout4=gout.flatten(2), states=states,
    )  # fmt: skip
    return (
        _merged(dx_rows, height, width),
        ddelta.view(delta.shape),
        dA,
        dB.view(B.shape).to(B.dtype),
        dC.view(C.shape).to(C.dtype),
        dD,
        dbias,
    )


def _cross_forward(x, delta, A, B, C, D, delta_bias, delta_softplus, keep_saved):
    if not keep_saved:
        return triton_cross_scan_forward(x, delta, A, B, C, D, delta_bias, delta_softplus), []
    y, states = triton_cross_scan_forward(x, delta, A, B, C, D, delta_bias, delta_softplus, keep_states=True)
    return y, [states]


def _cross_backward(gout, x, delta, A, B, C, D, delta_bias, delta_softplus, saved):
    states = saved[0] if saved else None
    return triton_cross_scan_backward(gout, x, delta, A, B, C, D, delta_bias, delta_softplus, states=states)


def _cross_saved_like(x, A) -> list[Tensor]:
    batch, dim, height, width = x.shape
    return [chunk_states_like(x, batch * A.shape[0], height * width, A.shape[1])]  # A: (4 * dim, N)


# ------------------------------------------------------------------------------------ memory traffic


def scan_bytes_moved(
    batch: int,
    dim: int,
    length: int,
    d_state: int,
    groups: int = 1,
    itemsize: int = 4,
    with_D: bool = True,
    with_z: bool = False,
    with_delta_bias: bool = True,
    backward: bool = False,
    param_itemsize: int = 4,
) -> int:
    """Bytes one call must move at least: every input read once and every output written once.

    Forward: u, delta (and z) read and out written, B and C read, all ``itemsize`` bytes an element:
    ``itemsize * (batch*dim*L * (3 + z) + 2*batch*groups*N*L)``, plus A, D and delta_bias
    (``param_itemsize``). Backward: u, delta, gout (and z) read, du, ddelta (and dz) written, B, C read and
    dB, dC written: ``itemsize * (batch*dim*L * (5 + 2 z) + 4*batch*groups*N*L)``, plus the parameters and
    their gradients. Divided by the peak memory bandwidth, this is the time no kernel can beat.
    """
    per_channel = batch * dim * length
    per_group = batch * groups * d_state * length
    params = dim * d_state + dim * (int(with_D) + int(with_delta_bias))
    if backward:
        return itemsize * (per_channel * (5 + 2 * int(with_z)) + 4 * per_group) + 2 * param_itemsize * params
    return itemsize * (per_channel * (3 + int(with_z)) + 2 * per_group) + param_itemsize * params


def cross_scan_bytes_moved(
    batch: int,
    dim: int,
    height: int,
    width: int,
    d_state: int,
    itemsize: int = 4,
    with_D: bool = True,
    with_delta_bias: bool = True,
    backward: bool = False,
    param_itemsize: int = 4,
) -> int:
    """Bytes the fused cross scan must move at least: x read once and y written once (dim channels), delta
    for each of the 4 directions (4*dim channels), B and C per direction. Backward: x, gout and delta read,
    dx and ddelta written, B and C read and dB, dC written: ``itemsize * (3*batch*dim*L + 2*4*batch*dim*L
    + 4*4*batch*N*L)`` plus the parameters and their gradients. Compare :func:`scan_bytes_moved` with
    ``dim=4*dim, groups=4``, which the unfused path needs on top of the cross scan and merge copies."""
    length = height * width
    shared = batch * dim * length
    directions = 4 * batch * dim * length
    per_group = 4 * batch * d_state * length
    params = 4 * dim * (d_state + int(with_D) + int(with_delta_bias))
    if backward:
        return itemsize * (3 * shared + 2 * directions + 4 * per_group) + 2 * param_itemsize * params
    return itemsize * (2 * shared + directions + 2 * per_group) + param_itemsize * params


BACKEND = ScanBackend(
    name="triton",
    forward=_forward,
    backward=_backward,
    # CPU tensors only under TRITON_INTERPRET=1: unavailable() and the entry points say so otherwise
    device_types=("cuda", "cpu"),
    unavailable=_unavailable,
    description="Triton kernels (channels across threads, sequential time loop; CPU tensors with TRITON_INTERPRET=1)",
    auto_priority=(("cuda", 1),),  # never on the CPU: the interpreter is for tests
    cross=CrossScan(_cross_forward, _cross_backward, channels_last=True, saved_like=_cross_saved_like),
    saved_like=_saved_like,
    compiled=True,
)
