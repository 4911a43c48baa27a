"""The ``cuda`` backend: mamba-ssm's compiled kernel (``selective_scan_cuda``), imported lazily.

Released mamba-ssm cannot be imported without its CUDA extension, which needs a source build of 10-30
minutes (``./install.sh --cuda --with-mamba-ssm``); nothing here imports it until the backend is asked for.
Without it, ``auto`` on a CUDA device runs the ``triton`` backend.
"""

from __future__ import annotations

import functools

import torch

from .scan_contract import ScanBackend, grouped

__all__ = ["BACKEND", "CUDA_INSTALL_HINT", "cuda_backend_available"]

CUDA_INSTALL_HINT = (
    "the 'cuda' scan backend needs mamba-ssm's compiled CUDA extension and a CUDA device; build it on a GPU "
    "machine with `./install.sh --cuda --with-mamba-ssm` (a source build of 10-30 minutes), or use the 'triton' "
    "backend, which needs no build"
)


@functools.lru_cache(maxsize=1)
def _load_cuda_kernel():
    try:
        import selective_scan_cuda  # noqa: F401  (mamba-ssm's compiled extension)
    except Exception as exc:  # ImportError, or an extension built for another torch
        raise RuntimeError(f"{CUDA_INSTALL_HINT} (import failed: {exc})") from exc
    return selective_scan_cuda


def cuda_backend_available() -> bool:
    if not torch.cuda.is_available():
        return False
    try:
        _load_cuda_kernel()
    except RuntimeError:
        return False
    return True


# mamba-ssm's kernel is instantiated for u in one of BACKEND.dtypes, with delta, z, B and C in u's dtype, and
# A, D and delta_bias (its "weights") in float32 only; it refuses anything else with a bare TORCH_CHECK
WEIGHT_DTYPE = torch.float32


def check_kernel_dtypes(u, delta, A, B, C, D, z, delta_bias) -> None:
    """Refuse, in one line naming the argument, what mamba-ssm's kernel would refuse from inside."""
    accepted = ", ".join(str(d).removeprefix("torch.") for d in BACKEND.dtypes)
    if u.dtype not in BACKEND.dtypes:
        raise TypeError(f"scan backend 'cuda': u is {u.dtype}; mamba-ssm's kernel takes u in {accepted} only")
    for name, t in (("delta", delta), ("B", B), ("C", C), ("z", z)):
        if t is not None and t.dtype != u.dtype:
            raise TypeError(
                f"scan backend 'cuda': {name} is {t.dtype} but u is {u.dtype}; mamba-ssm's kernel takes u, delta, "
                "z, B and C in one dtype"
            )
    for name, t in (("A", A), ("D", D), ("delta_bias", delta_bias)):
        if t is not None and t.dtype != WEIGHT_DTYPE:
            raise TypeError(
                f"scan backend 'cuda': {name} is {t.dtype}; mamba-ssm's kernel takes A, D and delta_bias in "
                f"{WEIGHT_DTYPE} only"
            )


def _cuda_args(u, delta, A, B, C, D, z, delta_bias):
    check_kernel_dtypes(u, delta, A, B, C, D, z, delta_bias)
    c = lambda t: None if t is None else t.contiguous()  # noqa: E731
    B, C = grouped(B), grouped(C)
    return c(u), c(delta), c(A), c(B), c(C), c(D), c(z), c(delta_bias)


CHUNK_LENGTH = 2048  # the kernel's chunk: it keeps each chunk's end state for the backward


def _saved_like(u, A, z) -> list:
    """What the forward keeps, as empty tensors: the chunk states x (batch, dim, chunks, 2N) in A's dtype, and,
    with z, the output before the gate (the backward's gradient of z reads it)."""
    bsz, dim, length = u.shape
    x = u.new_empty(bsz, dim, -(-length // CHUNK_LENGTH), 2 * A.shape[1], dtype=A.dtype)
    return [x] if z is None else [x, u.new_empty(u.shape)]


def _cuda_forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus, keep_saved):
    # the kernel writes its chunk states whether kept or not; the op drops them when no gradient is taken
    kernel = _load_cuda_kernel()
    out, x, *rest = kernel.fwd(*_cuda_args(u, delta, A, B, C, D, z, delta_bias), delta_softplus)
    return (rest[0], [x, out]) if z is not None else (out, [x])


def _cuda_backward(gout, u, delta, A, B, C, D, z, delta_bias, delta_softplus, saved):
    kernel = _load_cuda_kernel()
    args = _cuda_args(u, delta, A, B, C, D, z, delta_bias)
    x, out = saved if z is not None else (saved[0], None)
    du, ddelta, dA, dB, dC, dD, dbias, *rest = kernel.bwd(*args, gout.contiguous(), x, out, None, delta_softplus, False)
    dB = dB.squeeze(1) if B.dim() == 3 else dB
    dC = dC.squeeze(1) if C.dim() == 3 else dC
    dz = rest[0] if z is not None else None
    return (du, ddelta, dA, dB, dC, dD if D is not None else None, dz, dbias if delta_bias is not None else None)


def _unavailable() -> str | None:
    try:
        _load_cuda_kernel()
    except RuntimeError as exc:
        return str(exc)
    return None


BACKEND = ScanBackend(
    name="cuda",
    forward=_cuda_forward,
    backward=_cuda_backward,
    device_types=("cuda",),
    unavailable=_unavailable,
    description="mamba-ssm's compiled CUDA kernel (selective_scan_cuda)",
    dtypes=(torch.float32, torch.float16, torch.bfloat16),  # its kernel is instantiated for these only
    auto_priority=(("cuda", 0),),  # the authors' kernel first where it is built
    saved_like=_saved_like,
    compiled=True,
)
