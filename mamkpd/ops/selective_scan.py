"""Selective scan (Mamba's S6 recurrence) with three backends behind one entry point.

    h_t = exp(delta_t * A) * h_{t-1} + delta_t * u_t * B_t
    y_t = <C_t, h_t> + D * u_t,        out_t = y_t * silu(z_t)

Shapes follow mamba-ssm: u, delta, z: (batch, dim, L); A: (dim, N); B, C: (batch, N, L) or
(batch, groups, N, L), each group serving dim // groups consecutive channels; D, delta_bias: (dim,).

Backends:
- ``reference``: the plain sequential recurrence (mamba-ssm's ``selective_scan_ref``), autograd
  through every step. The oracle; slow.
- ``torch``: a chunked, time-major scan written with in-place ops on reused buffers (the costly part of
  a CPU scan is allocating and page-faulting (L, dim, N) temporaries, not the arithmetic), with a
  hand-written backward that recomputes the states chunk by chunk instead of storing them.
- ``cuda``: mamba-ssm's compiled kernel, imported lazily.

``torch`` and ``cuda`` run inside the custom op ``mamkpd::selective_scan`` (fake kernel and autograd
registered), so ``torch.compile`` and ``torch.export`` see one opaque node and fvcore counts it with
``selective_scan_flop_jit``. :func:`selective_scan_parallel` is the same computation as a log-depth
(Hillis-Steele) scan built only from slicing, padding and element-wise ops: the form an exporter can
lower to ONNX.
"""

from __future__ import annotations

import functools
import logging
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "BACKENDS",
    "selective_scan",
    "selective_scan_ref",
    "selective_scan_chunked",
    "selective_scan_parallel",
    "selective_scan_flops",
    "selective_scan_flop_jit",
    "resolve_backend",
    "cuda_backend_available",
]

BACKENDS = ("auto", "reference", "torch", "cuda")
PARALLEL_CHUNK = 16  # chunk of the log-depth form: log2(16) full-size passes, the rest on chunk ends
CHUNK = 64  # time steps per chunk of the ``torch`` backend: buffers of CHUNK*batch*dim*N stay cache-friendly

log = logging.getLogger(__name__)

CUDA_INSTALL_HINT = (
    "the 'cuda' scan backend needs mamba-ssm's compiled CUDA extension and a CUDA device; install it on a "
    "GPU machine with `MAMBA_FORCE_BUILD=TRUE pip install --no-build-isolation '.[cuda]'`"
)


# --------------------------------------------------------------------------------------------- checks
def _check_inputs(u, delta, A, B, C, D, z, delta_bias) -> int:
    """Validate shapes; return the number of B/C groups."""
    if u.dim() != 3:
        raise ValueError(f"selective_scan: u must be (batch, dim, L), got shape {tuple(u.shape)}")
    bsz, dim, length = u.shape
    if delta.shape != u.shape:
        raise ValueError(f"selective_scan: delta shape {tuple(delta.shape)} != u shape {tuple(u.shape)}")
    if A.dim() != 2 or A.shape[0] != dim:
        raise ValueError(f"selective_scan: A must be (dim={dim}, N), got shape {tuple(A.shape)}")
    n = A.shape[1]
    for name, t in (("B", B), ("C", C)):
        if t.dim() == 3:
            ok = t.shape == (bsz, n, length)
        elif t.dim() == 4:
            ok = t.shape[0] == bsz and t.shape[2:] == (n, length) and dim % t.shape[1] == 0
        else:
            ok = False
        if not ok:
            raise ValueError(
                f"selective_scan: {name} must be (batch={bsz}, N={n}, L={length}) or (batch, groups, N, L) with "
                f"groups dividing dim={dim}, got shape {tuple(t.shape)}"
            )
    if B.dim() == 4 and C.dim() == 4 and B.shape[1] != C.shape[1]:
        raise ValueError(f"selective_scan: B has {B.shape[1]} groups but C has {C.shape[1]}")
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None and t.shape != (dim,):
            raise ValueError(f"selective_scan: {name} must be (dim={dim},), got shape {tuple(t.shape)}")
    if z is not None and z.shape != u.shape:
        raise ValueError(f"selective_scan: z shape {tuple(z.shape)} != u shape {tuple(u.shape)}")
    return 1 if B.dim() == 3 else B.shape[1]


def _compute_dtype(u: Tensor) -> torch.dtype:
    return torch.float64 if u.dtype == torch.float64 else torch.float32


def _grouped(t: Tensor) -> Tensor:
    """(batch, N, L) -> (batch, 1, N, L); 4-d tensors unchanged."""
    return t.unsqueeze(1) if t.dim() == 3 else t


# ------------------------------------------------------------------------------------------ reference
def selective_scan_ref(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """The sequential recurrence, step by step; gradients come from autograd. The oracle."""
    _check_inputs(u, delta, A, B, C, D, z, delta_bias)
    dtype_in = u.dtype
    ct = _compute_dtype(u)
    u, delta, A = u.to(ct), delta.to(ct), A.to(ct)
    if delta_bias is not None:
        delta = delta + delta_bias.to(ct)[None, :, None]
    if delta_softplus:
        delta = F.softplus(delta)
    bsz, dim, length = u.shape
    groups = 1 if B.dim() == 3 else B.shape[1]
    Bg = _grouped(B).to(ct).repeat_interleave(dim // groups, dim=1)  # (batch, dim, N, L)
    Cg = _grouped(C).to(ct).repeat_interleave(dim // groups, dim=1)
    h = u.new_zeros(bsz, dim, A.shape[1])
    ys = []
    for t in range(length):
        h = torch.exp(delta[:, :, t, None] * A) * h + (delta[:, :, t] * u[:, :, t])[..., None] * Bg[..., t]
        ys.append((h * Cg[..., t]).sum(-1))
    y = torch.stack(ys, dim=2)
    if D is not None:
        y = y + D.to(ct)[None, :, None] * u
    if z is not None:
        y = y * F.silu(z.to(ct))
    return y.to(dtype_in)


# ----------------------------------------------------------------------- shared prologue and epilogue
def _effective_delta(delta: Tensor, delta_bias: Optional[Tensor], delta_softplus: bool) -> Tensor:
    if delta_bias is not None:
        delta = delta + delta_bias[None, :, None]
    return F.softplus(delta) if delta_softplus else delta


def _finish(y: Tensor, u: Tensor, D: Optional[Tensor], z: Optional[Tensor]) -> Tensor:
    if D is not None:
        y = y + D[None, :, None] * u
    if z is not None:
        y = y * F.silu(z)
    return y


# --------------------------------------------------------------------------------- chunked CPU scan
# Layout inside a chunk: (T, batch, groups, N, dim_g). Channels innermost keeps every broadcasting
# multiply vectorised (N is only 1-16 wide, far too short for an inner loop).
def _chunk_views(u, delta, B, C, s, e, groups):
    """Time-major slices of one chunk: (T, batch, groups, 1, dim_g) and (T, batch, groups, N, 1)."""
    bsz, dim, _ = u.shape
    tm = lambda t: t[:, :, s:e].permute(2, 0, 1).reshape(e - s, bsz, groups, 1, dim // groups)  # noqa: E731
    tn = lambda t: t[..., s:e].permute(3, 0, 1, 2).unsqueeze(-1)  # noqa: E731
    return tm(u), tm(delta), tn(B), tn(C)


def _chunk_states(dA, H, ud, Bc, dl, A_g, h0):
    """Fill dA = exp(delta*A) and H = states of one chunk, starting from h0. All in place."""
    torch.mul(dl, A_g, out=dA)
    dA.exp_()
    torch.mul(ud, Bc, out=H)
    H[0].addcmul_(dA[0], h0)
    for t in range(1, dl.shape[0]):
        H[t].addcmul_(dA[t], H[t - 1])


def _scan_setup(u, A, B, C, chunk):
    bsz, dim, length = u.shape
    B, C = _grouped(B), _grouped(C)
    groups, n = B.shape[1], A.shape[1]
    A_g = A.reshape(groups, dim // groups, n).transpose(1, 2).contiguous()  # (groups, N, dim_g)
    T = min(chunk, length)
    dA = u.new_empty(T, bsz, groups, n, dim // groups)
    return B, C, A_g, T, dA


def _scan_forward(u, delta, A, B, C, chunk=CHUNK, keep_starts=False):
    """y_t = <C_t, h_t> for all t, plus (optionally) the state at the start of every chunk."""
    bsz, dim, length = u.shape
    B, C, A_g, T, dA = _scan_setup(u, A, B, C, chunk)
    H = torch.empty_like(dA)
    h = torch.zeros_like(dA[0])
    y = u.new_empty(bsz, dim, length)
    starts = []
    for s in range(0, length, T):
        e = min(s + T, length)
        uc, dl, Bc, Cc = _chunk_views(u, delta, B, C, s, e, B.shape[1])
        if keep_starts:
            starts.append(h)
        _chunk_states(dA[: e - s], H[: e - s], uc * dl, Bc, dl, A_g, h)
        yc = torch.matmul(Cc.transpose(-1, -2), H[: e - s])  # (T, batch, groups, 1, dim_g)
        y[:, :, s:e] = yc.reshape(e - s, bsz, dim).permute(1, 2, 0)
        h = H[e - s - 1].clone()
    return y, starts


def _scan_backward(u, delta, A, B, C, gy, starts, chunk=CHUNK):
    """Gradients of sum(gy * y) with respect to u, delta, A, B, C (B and C returned 4-d), given the state at
    the start of every chunk from ``_scan_forward(..., keep_starts=True)``."""
    bsz, dim, length = u.shape
    B, C, A_g, T, dA = _scan_setup(u, A, B, C, chunk)
    groups = B.shape[1]
    H, G = torch.empty_like(dA), torch.empty_like(dA)
    gu, gdelta = torch.empty_like(u), torch.empty_like(delta)
    gA = torch.zeros_like(A_g)
    gB, gC = torch.empty_like(B), torch.empty_like(C)
    carry = torch.zeros_like(dA[0])  # dL/dh at the last step of the previous chunk, through h_{t+1}
    for c in reversed(range(len(starts))):
        s = c * T
        e = min(s + T, length)
        L_c = e - s
        uc, dl, Bc, Cc = _chunk_views(u, delta, B, C, s, e, groups)
        gyc = gy[:, :, s:e].permute(2, 0, 1).reshape(L_c, bsz, groups, 1, dim // groups)
        ud = uc * dl
        a, Hc, Gc = dA[:L_c], H[:L_c], G[:L_c]
        _chunk_states(a, Hc, ud, Bc, dl, A_g, starts[c])
        # dL/dh_t = C_t gy_t + exp(delta_{t+1} A) dL/dh_{t+1}
        torch.mul(gyc, Cc, out=Gc)
        Gc[L_c - 1].add_(carry)
        for t in range(L_c - 2, -1, -1):
            Gc[t].addcmul_(a[t + 1], Gc[t + 1])
        carry = a[0] * Gc[0]
        gC[..., s:e] = torch.matmul(Hc, gyc.transpose(-1, -2)).squeeze(-1).permute(1, 2, 3, 0)
        # h_t = a_t h_{t-1} + b_t with b_t = delta u B: dL/db_t = G_t
        sB = torch.matmul(Bc.transpose(-1, -2), Gc)  # sum_n G B: (T, batch, groups, 1, dim_g)
        gB[..., s:e] = torch.matmul(Gc, ud.transpose(-1, -2)).squeeze(-1).permute(1, 2, 3, 0)
        # a_t = exp(delta_t A): dL/d(delta_t A) = G_t * h_{t-1} * a_t   (written over a)
        a.mul_(Gc)
        a[1:].mul_(Hc[:-1])
        a[0].mul_(starts[c])
        gA += torch.einsum("tbgnd,tbgd->gnd", a, dl.squeeze(-2))
        gdl = a.mul_(A_g).sum(-2, keepdim=True) + uc * sB
        gu[:, :, s:e] = (dl * sB).reshape(L_c, bsz, dim).permute(1, 2, 0)
        gdelta[:, :, s:e] = gdl.reshape(L_c, bsz, dim).permute(1, 2, 0)
    return gu, gdelta, gA.transpose(1, 2).reshape(dim, -1), gB, gC


def _chunked_forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
    ct = _compute_dtype(u)
    u_, A_, B_, C_ = u.to(ct), A.to(ct), B.to(ct), C.to(ct)
    d = _effective_delta(delta.to(ct), None if delta_bias is None else delta_bias.to(ct), delta_softplus)
    y, _ = _scan_forward(u_, d, A_, B_, C_)
    return _finish(y, u_, None if D is None else D.to(ct), None if z is None else z.to(ct)).to(u.dtype)


def _chunked_backward(gout, u, delta, A, B, C, D, z, delta_bias, delta_softplus):
    ct = _compute_dtype(u)
    u_, A_, B_, C_, g = u.to(ct), A.to(ct), B.to(ct), C.to(ct), gout.to(ct)
    raw = delta.to(ct) if delta_bias is None else delta.to(ct) + delta_bias.to(ct)[None, :, None]
    d = F.softplus(raw) if delta_softplus else raw
    # one forward pass gives both the chunk start states and, for the z gate, the output before gating
    y, starts = _scan_forward(u_, d, A_, B_, C_, keep_starts=True)
    gz = None
    if z is not None:
        z_ = z.to(ct)
        if D is not None:
            y = y + D.to(ct)[None, :, None] * u_
        sig = torch.sigmoid(z_)
        gz = g * y * sig * (1 + z_ * (1 - sig))
        g = g * z_ * sig
    gu, gd, gA, gB, gC = _scan_backward(u_, d, A_, B_, C_, g, starts)
    gD = None
    if D is not None:
        gD = (g * u_).sum((0, 2))
        gu += g * D.to(ct)[None, :, None]
    if delta_softplus:
        gd = gd * torch.sigmoid(raw)
    gbias = None if delta_bias is None else gd.sum((0, 2))
    if B.dim() == 3:
        gB = gB.squeeze(1)
    if C.dim() == 3:
        gC = gC.squeeze(1)
    cast = lambda grad, like: None if grad is None else grad.to(like.dtype)  # noqa: E731
    return (cast(gu, u), cast(gd, delta), cast(gA, A), cast(gB, B), cast(gC, C), cast(gD, D), cast(gz, z),
            cast(gbias, delta_bias))


def selective_scan_chunked(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """The ``torch`` backend's forward, callable without the custom op (no autograd)."""
    _check_inputs(u, delta, A, B, C, D, z, delta_bias)
    return _chunked_forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus)


# ------------------------------------------------------------------------------- log-depth formulation
def _shift(x: Tensor, step: int, fill: float) -> Tensor:
    """x shifted ``step`` places later along dim -2, the first ``step`` places filled with ``fill``."""
    return F.pad(x[..., :-step, :], (0, 0, step, 0), value=fill)


def _doubling_scan(a: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
    """Inclusive scan of h_t = a_t h_{t-1} + h_t along dim -2 in ceil(log2 T) doubling steps.
    Returns the cumulative decays and the states from a zero start."""
    step = 1
    while step < a.shape[-2]:
        h = h + a * _shift(h, step, 0.0)
        a = a * _shift(a, step, 1.0)
        step *= 2
    return a, h


def selective_scan_parallel(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                            chunk: int = PARALLEL_CHUNK):
    """The scan as pad/slice/mul/add/exp only, with no loop over time: the form ONNX export lowers to.

    Two levels of log-depth (Hillis-Steele) scans: within chunks of ``chunk`` steps, then across the
    chunk ends, then each chunk's states corrected by the state it starts from. That is
    ceil(log2 chunk) passes over the (batch, dim, L, N) state instead of ceil(log2 L).
    """
    _check_inputs(u, delta, A, B, C, D, z, delta_bias)
    ct = _compute_dtype(u)
    u_, A_ = u.to(ct), A.to(ct)
    d = _effective_delta(delta.to(ct), None if delta_bias is None else delta_bias.to(ct), delta_softplus)
    bsz, dim, length = u.shape
    groups = 1 if B.dim() == 3 else B.shape[1]
    n, dg = A.shape[1], dim // groups
    T = min(chunk, length)
    nc = -(-length // T)
    pad = nc * T - length  # padded steps have delta = 0: decay 1, input 0, so states pass through unchanged
    d_p, du_p = F.pad(d, (0, pad)), F.pad(d * u_, (0, pad))
    # (batch, groups, dim_g, chunks, T, N): B and C broadcast over the channels of their group
    bc = lambda t: F.pad(_grouped(t).to(ct), (0, pad)).reshape(bsz, groups, 1, n, nc, T).permute(0, 1, 2, 4, 5, 3)  # noqa: E731
    a = torch.exp(d_p.reshape(bsz, groups, dg, nc, T, 1) * A_.reshape(1, groups, dg, 1, 1, n))
    h = du_p.reshape(bsz, groups, dg, nc, T, 1) * bc(B)
    a, h = _doubling_scan(a, h)  # within each chunk
    _, ends = _doubling_scan(a[..., -1, :], h[..., -1, :])  # state at the end of each chunk
    h = h + a * _shift(ends, 1, 0.0).unsqueeze(-2)  # plus the decayed state each chunk starts from
    y = (h * bc(C)).sum(-1).reshape(bsz, dim, nc * T)[..., :length]
    return _finish(y, u_, None if D is None else D.to(ct), None if z is None else z.to(ct)).to(u.dtype)


# -------------------------------------------------------------------------------------- CUDA backend
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


def _cuda_args(u, delta, A, B, C, D, z, delta_bias):
    c = lambda t: None if t is None else t.contiguous()  # noqa: E731
    if B.dim() == 3:
        B, C = B.unsqueeze(1), C.unsqueeze(1)
    return c(u), c(delta), c(A), c(B), c(C), c(D), c(z), c(delta_bias)


def _cuda_forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
    kernel = _load_cuda_kernel()
    out, _, *rest = kernel.fwd(*_cuda_args(u, delta, A, B, C, D, z, delta_bias), delta_softplus)
    return rest[0] if z is not None else out


def _cuda_backward(gout, u, delta, A, B, C, D, z, delta_bias, delta_softplus):
    kernel = _load_cuda_kernel()
    args = _cuda_args(u, delta, A, B, C, D, z, delta_bias)
    out, x, *_ = kernel.fwd(*args, delta_softplus)  # recompute the chunk states instead of saving them
    du, ddelta, dA, dB, dC, dD, dbias, *rest = kernel.bwd(
        *args, gout.contiguous(), x, out, None, delta_softplus, False)
    if B.dim() == 3:
        dB, dC = dB.squeeze(1), dC.squeeze(1)
    dz = rest[0] if z is not None else None
    return (du, ddelta, dA, dB, dC, dD if D is not None else None, dz, dbias if delta_bias is not None else None)


# ------------------------------------------------------------------------------------------ custom op
_FORWARD: dict[str, Callable] = {"torch": _chunked_forward, "cuda": _cuda_forward}
_BACKWARD: dict[str, Callable] = {"torch": _chunked_backward, "cuda": _cuda_backward}


@torch.library.custom_op("mamkpd::selective_scan", mutates_args=())
def _selective_scan_op(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor],
                       z: Optional[Tensor], delta_bias: Optional[Tensor], delta_softplus: bool,
                       backend: str) -> Tensor:
    # contiguous whatever the input strides, so that the fake kernel below describes it exactly
    return _FORWARD[backend](u, delta, A, B, C, D, z, delta_bias, delta_softplus).contiguous()


@_selective_scan_op.register_fake
def _(u, delta, A, B, C, D, z, delta_bias, delta_softplus, backend):
    return u.new_empty(u.shape)  # contiguous (empty_like would copy u's strides; inductor checks them)


def _absent(like: Tensor) -> Tensor:
    # custom ops cannot return None; an empty tensor stands for "no such input"
    return like.new_empty(0)


@torch.library.custom_op("mamkpd::selective_scan_backward", mutates_args=())
def _selective_scan_backward_op(gout: Tensor, u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                                D: Optional[Tensor], z: Optional[Tensor], delta_bias: Optional[Tensor],
                                delta_softplus: bool, backend: str
                                ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    grads = _BACKWARD[backend](gout, u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    return tuple(_absent(u) if g is None else g.contiguous() for g in grads)


@_selective_scan_backward_op.register_fake
def _(gout, u, delta, A, B, C, D, z, delta_bias, delta_softplus, backend):
    return tuple(_absent(u) if t is None else t.new_empty(t.shape) for t in (u, delta, A, B, C, D, z, delta_bias))


def _setup_context(ctx, inputs, output):
    u, delta, A, B, C, D, z, delta_bias, delta_softplus, backend = inputs
    ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias)
    ctx.delta_softplus, ctx.backend = delta_softplus, backend


def _autograd_backward(ctx, gout):
    u, delta, A, B, C, D, z, delta_bias = ctx.saved_tensors
    grads = torch.ops.mamkpd.selective_scan_backward(
        gout, u, delta, A, B, C, D, z, delta_bias, ctx.delta_softplus, ctx.backend)
    present = (u, delta, A, B, C, D, z, delta_bias)
    return tuple(None if p is None else g for g, p in zip(grads, present)) + (None, None)


_selective_scan_op.register_autograd(_autograd_backward, setup_context=_setup_context)


# ---------------------------------------------------------------------------------------- entry point
def resolve_backend(backend: str, device: torch.device | str) -> str:
    """Turn ``auto`` into a concrete backend for ``device``; refuse a backend that cannot run there."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown scan backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    on_cuda = torch.device(device).type == "cuda"
    if backend == "auto":
        return "cuda" if on_cuda and cuda_backend_available() else "torch"
    if backend == "cuda":
        if not on_cuda:
            raise RuntimeError(f"scan backend 'cuda' asked for tensors on {device}; it runs only on CUDA devices")
        _load_cuda_kernel()
    return backend


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, backend="auto"):
    """Selective scan with mamba-ssm's arguments; ``backend`` is one of :data:`BACKENDS`."""
    name = resolve_backend(backend, u.device)
    if name == "reference":
        return selective_scan_ref(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    _check_inputs(u, delta, A, B, C, D, z, delta_bias)
    return torch.ops.mamkpd.selective_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, name)


# ------------------------------------------------------------------------------------------- counting
def selective_scan_flops(batch: int, dim: int, length: int, d_state: int, with_D: bool = True,
                         with_z: bool = False) -> int:
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
    return selective_scan_flops(bsz, dim, length, d_state, with_D=get_shape(inputs[5]) is not None,
                                with_z=get_shape(inputs[6]) is not None)

