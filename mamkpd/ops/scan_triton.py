"""The ``triton`` backend: the selective scan's forward and backward as Triton kernels.

Triton ships with every CUDA build of PyTorch, so this backend needs no source build (unlike mamba-ssm's
kernel). Under ``TRITON_INTERPRET=1`` (set before the first call) the same kernels run on CPU tensors in
Triton's interpreter: that is how the tests check them without a GPU. triton is imported lazily, on first
use, so the suite imports and runs where it is absent.

Plain entry points, for timing the kernels without autograd: :func:`triton_scan_forward`,
:func:`triton_scan_backward` and the four-direction cross forms :func:`triton_cross_scan_forward`,
:func:`triton_cross_scan_backward` (used by :mod:`.cross_selective_scan`). :func:`scan_bytes_moved` and
:func:`cross_scan_bytes_moved` give the bytes a call must move at least, for the memory-bandwidth bound.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import torch
from torch import Tensor

from .scan_contract import CrossScan, ScanBackend, check_inputs, compute_dtype, grouped

__all__ = [
    "BACKEND",
    "GPU_BACKWARD_CONFIG",
    "GPU_CONFIG",
    "INTERPRETER_CONFIG",
    "KernelConfig",
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
    """Tile sizes of the kernels: ``block_d`` channels x ``block_t`` time steps per program and chunk."""

    block_d: int
    block_t: int
    num_warps: int = 4

    def __post_init__(self):
        for name in ("block_d", "block_t"):
            value = getattr(self, name)
            if value < 1 or value & (value - 1):
                raise ValueError(f"KernelConfig.{name} must be a power of two, got {value}")


# Defaults on a GPU, chosen without one from ptxas's register counts (sm_90) and the programs a stage-1
# scan at batch 1 gives (4 x 192 channels / block_d): the forward at 2 x 256 tiles needs 72 registers a
# thread; the backward keeps more tiles alive, 87 registers at 2 x 128 (255 and spills at 4 x 256). The GPU
# check times others through the ``config`` argument of the entry points.
GPU_CONFIG = KernelConfig(block_d=2, block_t=256, num_warps=4)
GPU_BACKWARD_CONFIG = KernelConfig(block_d=2, block_t=128, num_warps=4)
# The interpreter runs the programs one after another, each tile op one numpy call (~0.1 ms, whatever the
# tile's size): few programs and short chunks keep it fast, and let tests at small shapes cross chunks.
INTERPRETER_CONFIG = KernelConfig(block_d=8, block_t=16, num_warps=1)


def interpreting() -> bool:
    """Whether the kernels run (or, once defined, will run) in Triton's interpreter."""
    loaded = _kernels.cache_info().currsize
    if loaded:
        return _kernels()[1]
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "yes", "on")


@functools.lru_cache(maxsize=1)
def _kernels():
    """(kernel module, whether it was defined for the interpreter). Defined once, on first use."""
    interpret = os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "yes", "on")
    from . import scan_triton_kernels

    return scan_triton_kernels, interpret


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


def _config(config: KernelConfig | None, device: torch.device, backward: bool) -> KernelConfig:
    if device.type != "cuda" and not interpreting():
        raise RuntimeError(
            f"the 'triton' scan backend got tensors on {device}: it runs on CUDA tensors, and on CPU tensors only "
            "with TRITON_INTERPRET=1 set before its first use"
        )
    if config is not None:
        return config
    if interpreting():
        return INTERPRETER_CONFIG
    return GPU_BACKWARD_CONFIG if backward else GPU_CONFIG


def _block_t(config: KernelConfig, length: int) -> int:
    # no longer than the sequence needs; 16 at least, the smallest tile Triton's layouts handle without fuss
    return max(16, min(config.block_t, 1 << max(length - 1, 0).bit_length()))


def _acc_dtype(dtype: torch.dtype):
    import triton.language as tl

    return tl.float64 if dtype == torch.float64 else tl.float32


def _scan(
    u, delta, A, B4, C4, D, z, delta_bias, delta_softplus, *, cross, height, width, config, gout=None
) -> Tensor | tuple:
    """Run the forward (``gout`` None) or the backward of the per-group or cross form.

    u: (batch, groups*dim_g, L), or in the cross form the shared (batch, dim_g, L); delta and z:
    (batch, groups*dim_g, L); B4, C4: (batch, groups, N, L). Returns out, or the tuple of gradients.
    """
    kernels, _ = _kernels()
    config = _config(config, u.device, backward=gout is not None)
    batch, groups, n_state, length = B4.shape
    dim_g = delta.shape[1] // groups
    acc = compute_dtype(u)
    # B, C and A are read through their strides; everything else is indexed as contiguous
    u, delta = u.contiguous(), delta.contiguous()
    z, D, delta_bias = (None if t is None else t.contiguous() for t in (z, D, delta_bias))
    block_t = _block_t(config, length)
    dummy = A  # stands for absent tensors; the kernels never read them (their HAS_* flag is off)
    opt = lambda t: dummy if t is None else t  # noqa: E731
    flags = dict(
        N=n_state,
        NP=1 << max(n_state - 1, 0).bit_length(),
        BLOCK_D=config.block_d,
        BLOCK_T=block_t,
        HAS_D=D is not None,
        HAS_Z=z is not None,
        HAS_BIAS=delta_bias is not None,
        SOFTPLUS=bool(delta_softplus),
        CROSS=cross,
        ACC=_acc_dtype(acc),
    )
    inputs = (u, delta, A, B4, C4, opt(D), opt(z), opt(delta_bias))
    strides = (*B4.stride(), *C4.stride(), *A.stride())  # B and C may be views (SS2D splits them off)
    n_chunks = -(-length // block_t)

    def launch(kernel, *outputs, **mode):
        # programs: (channel blocks of a group, groups, batch)
        grid = (-(-dim_g // config.block_d), groups, batch)
        kernel[grid](*inputs, *outputs, *strides, dim_g, length, height, width, n_chunks,
                     num_warps=config.num_warps, **flags, **mode)  # fmt: skip

    if gout is None:
        # the cross form sums its four directions into one output with atomics: accumulate in fp32
        out = u.new_zeros(u.shape, dtype=acc) if cross else torch.empty_like(u)
        launch(kernels.scan_fwd_kernel, out, dummy, WRITE_OUT=True, STORE_STATES=False)
        return out.to(u.dtype)

    # backward: one forward pass stores the state at the start of every chunk, then the reverse pass
    states = u.new_empty(batch, groups * dim_g, n_chunks, n_state, dtype=acc)
    launch(kernels.scan_fwd_kernel, dummy, states, WRITE_OUT=False, STORE_STATES=True)
    gout = gout.contiguous()
    du = u.new_zeros(u.shape, dtype=acc) if cross else torch.empty_like(u)
    ddelta = torch.empty_like(delta)
    dz = None if z is None else torch.empty_like(z)
    dA = u.new_empty(batch, groups * dim_g, n_state, dtype=acc)
    dD = u.new_empty(batch, groups * dim_g, dtype=acc) if D is not None else None
    dbias = u.new_empty(batch, groups * dim_g, dtype=acc) if delta_bias is not None else None
    dB = u.new_zeros(batch, groups, n_state, length, dtype=acc)  # summed over channels with atomics
    dC = torch.zeros_like(dB)
    launch(kernels.scan_bwd_kernel, gout, states, du, ddelta, opt(dz), dA, opt(dD), opt(dbias), dB, dC)
    total = lambda part, like: None if part is None else part.sum(0).to(like.dtype)  # noqa: E731
    return (
        du.to(u.dtype),
        ddelta,
        total(dA, A),
        dB,
        dC,
        total(dD, D),
        dz,
        total(dbias, delta_bias),
    )


# ------------------------------------------------------------------------------------ per-group scan


def triton_scan_forward(
    u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, *, config: KernelConfig | None = None
) -> Tensor:
    """The ``triton`` backend's forward with mamba-ssm's arguments (see :mod:`.scan_contract`), no autograd."""
    check_inputs(u, delta, A, B, C, D, z, delta_bias)
    length = u.shape[2]
    return _scan(
        u, delta, A, grouped(B), grouped(C), D, z, delta_bias, delta_softplus,
        cross=False, height=1, width=length, config=config,
    )  # fmt: skip


def triton_scan_backward(
    gout, u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, *, config=None
) -> tuple:
    """Gradients (du, ddelta, dA, dB, dC, dD, dz, ddelta_bias) of sum(gout * out), None for absent inputs."""
    check_inputs(u, delta, A, B, C, D, z, delta_bias)
    du, ddelta, dA, dB, dC, dD, dz, dbias = _scan(
        u, delta, A, grouped(B), grouped(C), D, z, delta_bias, delta_softplus,
        cross=False, height=1, width=u.shape[2], config=config, gout=gout,
    )  # fmt: skip
    dB = (dB.squeeze(1) if B.dim() == 3 else dB).to(B.dtype)
    dC = (dC.squeeze(1) if C.dim() == 3 else dC).to(C.dtype)
    return du, ddelta, dA, dB, dC, dD, dz, dbias


def _forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
    return triton_scan_forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus)


def _backward(gout, u, delta, A, B, C, D, z, delta_bias, delta_softplus):
    return triton_scan_backward(gout, u, delta, A, B, C, D, z, delta_bias, delta_softplus)


# ---------------------------------------------------------------------------------- cross (fused) scan


def triton_cross_scan_forward(
    x, delta, A, B, C, D=None, delta_bias=None, delta_softplus=False, *, config: KernelConfig | None = None
) -> Tensor:
    """The four-direction cross scan in one kernel; arguments as :func:`.cross_selective_scan` (checked there)."""
    batch, dim, height, width = x.shape
    return _scan(
        x.flatten(2), delta.flatten(1, 2).flatten(2), A, B.flatten(3), C.flatten(3), D, None, delta_bias,
        delta_softplus, cross=True, height=height, width=width, config=config,
    ).view(x.shape)  # fmt: skip


def triton_cross_scan_backward(
    gout, x, delta, A, B, C, D=None, delta_bias=None, delta_softplus=False, *, config: KernelConfig | None = None
) -> tuple:
    """Gradients (dx, ddelta, dA, dB, dC, dD, ddelta_bias) of sum(gout * cross scan), None for absent inputs."""
    batch, dim, height, width = x.shape
    dx, ddelta, dA, dB, dC, dD, _, dbias = _scan(
        x.flatten(2), delta.flatten(1, 2).flatten(2), A, B.flatten(3), C.flatten(3), D, None, delta_bias,
        delta_softplus, cross=True, height=height, width=width, config=config, gout=gout.flatten(2),
    )  # fmt: skip
    return (
        dx.view(x.shape),
        ddelta.view(delta.shape),
        dA,
        dB.view(B.shape).to(B.dtype),
        dC.view(C.shape).to(C.dtype),
        dD,
        dbias,
    )


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
    description="Triton kernels (chunked associative scan over time; CPU tensors under TRITON_INTERPRET=1)",
    auto_priority=(("cuda", 1),),  # never on the CPU: the interpreter is for tests
    cross=CrossScan(triton_cross_scan_forward, triton_cross_scan_backward, channels_last=False),
    compiled=True,
)
