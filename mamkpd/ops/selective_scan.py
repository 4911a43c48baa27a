"""Selective scan (Mamba's S6 recurrence): one entry point over registered backends.

    h_t = exp(delta_t * A) * h_{t-1} + delta_t * u_t * B_t
    y_t = <C_t, h_t> + D * u_t,        out_t = y_t * silu(z_t)

Arguments and shapes are mamba-ssm's (see :mod:`.scan_contract`). Backends:

- ``reference``: the sequential recurrence with autograd through every step (:mod:`.scan_reference`);
  the oracle.
- ``torch``: a chunked scan in plain PyTorch with a hand-written backward (:mod:`.scan_torch`); runs
  anywhere.
- ``numba``: the loops over time compiled by numba, parallel over batch x channels (:mod:`.scan_numba`);
  what ``auto`` picks on a CPU where numba is installed.
- ``cuda``: mamba-ssm's compiled kernel (:mod:`.scan_cuda`).
- ``triton``: Triton kernels, forward and backward (:mod:`.scan_triton`); any CUDA device where triton
  imports, and CPU tensors under ``TRITON_INTERPRET=1`` (Triton's interpreter, for tests).

Every backend but ``reference`` runs inside the custom op ``mamkpd::selective_scan`` (fake kernel and
autograd registered), so ``torch.compile`` and ``torch.export`` see one opaque node and fvcore counts it
with :func:`selective_scan_flop_jit`. Each backend is a :class:`~.scan_contract.ScanBackend` that says
what it can do; ``auto`` takes the available backend of best ``auto_priority`` on the tensors' device.
:func:`resolve_backend` turns a name into that object once (a model does it when it is built or moved, never
per forward), and its name is what gets recorded.
:func:`~.scan_onnx.selective_scan_stepwise` is the same computation as torch's ``scan`` over time, the form ONNX
export lowers the op to.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import scan_cuda, scan_numba, scan_reference, scan_torch, scan_triton
from .scan_contract import ScanBackend, check_inputs

__all__ = [
    "AUTO",
    "SCAN_BACKEND_CHOICES",
    "SCAN_BACKENDS",
    "auto_order",
    "backend_unavailable",
    "check_scan_backend",
    "get_backend",
    "needs_grad",
    "resolve_backend",
    "selective_scan",
    "selective_scan_flop_jit",
    "selective_scan_flops",
]

# Every backend, by name: the one list of them (adding one: CONTRIBUTING.md)
SCAN_BACKENDS: dict[str, ScanBackend] = {
    b.name: b
    for b in (scan_reference.BACKEND, scan_torch.BACKEND, scan_numba.BACKEND, scan_cuda.BACKEND, scan_triton.BACKEND)
}
AUTO = "auto"  # not a backend: "the best one available on the tensors' device"
SCAN_BACKEND_CHOICES = (AUTO, *SCAN_BACKENDS)  # what a user may ask for (the CLI's choices)


# ------------------------------------------------------------------------------------------ custom op


@torch.library.custom_op("mamkpd::selective_scan", mutates_args=())
def _selective_scan_op(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None,
    z: Tensor | None,
    delta_bias: Tensor | None,
    delta_softplus: bool,
    backend: str,
    keep_saved: bool,
) -> tuple[Tensor, list[Tensor]]:
    """(out, what the backend's forward keeps for its backward: empty for most, and without ``keep_saved``)."""
    chosen = SCAN_BACKENDS[backend]
    if chosen.saved_like is None:
        out, saved = chosen.forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus), []
    else:
        out, saved = chosen.forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus, keep_saved)
    # contiguous whatever the input strides, so that the fake kernel below describes it exactly
    return out.contiguous(), [t.contiguous() for t in saved] if keep_saved else []


@_selective_scan_op.register_fake
def _(u, delta, A, B, C, D, z, delta_bias, delta_softplus, backend, keep_saved):
    # contiguous (empty_like would copy u's strides; inductor checks them)
    saved_like = SCAN_BACKENDS[backend].saved_like
    return u.new_empty(u.shape), [] if saved_like is None or not keep_saved else saved_like(u, A, z)


def _absent(like: Tensor) -> Tensor:
    # custom ops cannot return None; an empty tensor stands for "no such input"
    return like.new_empty(0)


@torch.library.custom_op("mamkpd::selective_scan_backward", mutates_args=())
def _selective_scan_backward_op(
    gout: Tensor,
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None,
    z: Tensor | None,
    delta_bias: Tensor | None,
    saved: list[Tensor],
    delta_softplus: bool,
    backend: str,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    chosen = SCAN_BACKENDS[backend]
    kept = {} if chosen.saved_like is None else {"saved": saved}
    grads = chosen.backward(gout, u, delta, A, B, C, D, z, delta_bias, delta_softplus, **kept)
    return tuple(_absent(u) if g is None else g.contiguous() for g in grads)


@_selective_scan_backward_op.register_fake
def _(gout, u, delta, A, B, C, D, z, delta_bias, saved, delta_softplus, backend):
    return tuple(_absent(u) if t is None else t.new_empty(t.shape) for t in (u, delta, A, B, C, D, z, delta_bias))


def _setup_context(ctx, inputs, output):
    u, delta, A, B, C, D, z, delta_bias, delta_softplus, backend, _keep_saved = inputs
    _, saved = output
    ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, *saved)
    ctx.delta_softplus, ctx.backend = delta_softplus, backend


def _autograd_backward(ctx, gout, _gsaved):
    u, delta, A, B, C, D, z, delta_bias, *saved = ctx.saved_tensors
    grads = torch.ops.mamkpd.selective_scan_backward(
        gout, u, delta, A, B, C, D, z, delta_bias, saved, ctx.delta_softplus, ctx.backend
    )
    present = (u, delta, A, B, C, D, z, delta_bias)
    return tuple(None if p is None else g for g, p in zip(grads, present, strict=True)) + (None, None, None)


def needs_grad(*inputs: Tensor | None) -> bool:
    """Whether autograd will take a gradient through an op on ``inputs`` (None for an absent one): a scan's
    forward then keeps what its backward needs (the chunk states), which an inference forward need not write,
    and a linear layer needs the op that has a backward."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs)


_selective_scan_op.register_autograd(_autograd_backward, setup_context=_setup_context)


# ---------------------------------------------------------------------------------------- entry point
def get_backend(name: str) -> ScanBackend:
    """The registered backend ``name``; a ValueError listing the choices for any other name."""
    try:
        return SCAN_BACKENDS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown scan backend {name!r}; choose one of {', '.join(SCAN_BACKEND_CHOICES)}") from None


def check_scan_backend(name: str) -> str:
    """``name`` when a user may ask for it (``auto`` or a registered backend); else :func:`get_backend`'s error.
    The one check of a requested name, wherever it is set (a model's config, an SS2D block)."""
    if name != AUTO:
        get_backend(name)
    return name


def auto_order(device_type: str) -> tuple[str, ...]:
    """The backends ``auto`` tries on ``device_type``, best first."""
    ranked = [(b.priority_on(device_type), b.name) for b in SCAN_BACKENDS.values()]
    return tuple(name for rank, name in sorted((r, n) for r, n in ranked if r is not None))


def backend_unavailable(name: str, device: torch.device | str) -> str | None:
    """None when backend ``name`` can run on tensors on ``device`` here, else the reason (and how to get it)."""
    backend = get_backend(name)
    device_type = torch.device(device).type
    if device_type not in backend.device_types:
        return (
            f"scan backend {name!r} asked for tensors on {device}; it runs only on "
            f"{' or '.join(t.upper() for t in backend.device_types)} devices"
        )
    return backend.unavailable()


def resolve_backend(name: str, device: torch.device | str) -> ScanBackend:
    """The backend that will run for ``name`` on ``device``: ``auto`` becomes the best available one there;
    a named one that cannot run there is refused with the reason (a RuntimeError)."""
    if name == AUTO:
        device_type = torch.device(device).type
        candidates = auto_order(device_type) or auto_order("cpu")
        chosen = next((n for n in candidates if backend_unavailable(n, device) is None), None)
        if chosen is None:
            raise RuntimeError(f"no scan backend can run on {device}: tried {', '.join(candidates)}")
        return SCAN_BACKENDS[chosen]
    reason = backend_unavailable(name, device)
    if reason:
        raise RuntimeError(reason)
    return SCAN_BACKENDS[name]


def selective_scan(
    u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, backend: str | ScanBackend = AUTO
):
    """Selective scan with mamba-ssm's arguments. ``backend``: a resolved :class:`ScanBackend` (what a model
    passes), or a name of :data:`SCAN_BACKEND_CHOICES`, resolved for u's device on each call."""
    chosen = backend if isinstance(backend, ScanBackend) else resolve_backend(backend, u.device)
    if not chosen.in_custom_op:
        return chosen.forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    check_inputs(u, delta, A, B, C, D, z, delta_bias)
    keep = needs_grad(u, delta, A, B, C, D, z, delta_bias)
    out, _ = torch.ops.mamkpd.selective_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, chosen.name, keep)
    return out


def selective_scan_flops(
    batch: int, dim: int, length: int, d_state: int, with_D: bool = True, with_z: bool = False
) -> int:
    """Mamba authors' count: 9 B L D N for the recurrence, plus B D L for the D skip and for the z gate."""
    flops = 9 * batch * length * dim * d_state
    if with_D:
        flops += batch * dim * length
    if with_z:
        flops += batch * dim * length
    return flops


def selective_scan_flop_jit(inputs, outputs) -> int:
    """fvcore handle for ``mamkpd::selective_scan``: inputs are the op's arguments in order."""
    from fvcore.nn.jit_handles import get_shape

    bsz, dim, length = get_shape(inputs[0])
    d_state = get_shape(inputs[2])[1]
    return selective_scan_flops(
        bsz, dim, length, d_state, with_D=get_shape(inputs[5]) is not None, with_z=get_shape(inputs[6]) is not None
    )
