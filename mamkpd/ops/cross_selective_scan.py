"""SS2D's four-direction cross scan, selective scan and merge as one op (VMamba's fused form).

    y = cross_merge(selective_scan(cross_scan(x), delta, A, B, C, D, delta_bias))

with the directions of VMamba's cross scan: row-major, column-major, and both reversed. Because the
projections that produce delta, B and C act on each position alone, they can be computed on x in its own
(row-major) order; this op takes them that way, so that x is read once and y written once:

- ``x``: (batch, dim, H, W), the input all four directions scan;
- ``delta``: (batch, 4, dim, H, W), direction k's time step at each spatial position;
- ``A``: (4*dim, N); ``B``, ``C``: (batch, 4, N, H, W); ``D``, ``delta_bias``: (4*dim,), direction-major,
  as in SS2D's parameters;
- ``delta_proj_weight`` (optional): (4, dim, rank), each direction's delta projection (VMamba's
  ``dt_projs_weight``); with it, ``delta`` is the projection's low-rank input (batch, 4, rank, H, W), and the
  scan's delta is :func:`.cross_contract.project_delta` of the two;
- returns y: (batch, dim, H, W), the four directions' outputs summed, in x's dtype.

Why the op takes the projection: the projected delta, (batch, 4, dim, H, W), is the largest tensor of an
SS2D forward (75 MB for MamKPD-B's stage 1 at batch 8). A backend whose kernel projects as it reads
(``CrossScan.projects_delta``: numba) never writes it. Writing it costs a GEMM with a tiny inner dimension
and, at batch 8, the page faults of a tensor that size (glibc maps allocations over 32 MB fresh each time):
MamKPD-B's eager CPU forward went from 91 to 78 ms per image at batch 1 and from 116 to 93 at batch 8 (one
process, the two alternating, 1 thread, CPU time, the idle 2-core machine). Elsewhere the op projects first
and runs the kernel on the result. Gradients always go through the projected delta (the backward recomputes
it), so only the forward is fused.

On the ``triton`` backend the whole of it is one kernel (:func:`.scan_triton.triton_cross_scan_forward`),
on ``numba`` one kernel call that reads x in channels-last memory (:func:`.scan_numba.numba_cross_scan_forward`,
y returned channels-last too), both inside the custom op ``mamkpd::cross_selective_scan`` (autograd and fake
kernel registered, so ``torch.compile`` and ``torch.export`` see one node). Every other backend gathers the
four scan orders, runs :func:`.selective_scan` on them and scatters the outputs back: the same numbers, the
unfused traffic.
"""

from __future__ import annotations

from collections import Counter

import torch
from torch import Tensor

from .cross_contract import DIRECTIONS, check_cross_inputs, cross_scan_positions, project_delta
from .scan_contract import ScanBackend
from .selective_scan import SCAN_BACKENDS, needs_grad, resolve_backend, selective_scan, selective_scan_flops

__all__ = [
    "DIRECTIONS",
    "check_cross_inputs",
    "cross_scan_positions",
    "cross_selective_scan",
    "cross_selective_scan_flop_jit",
    "cross_selective_scan_unfused",
]


def cross_selective_scan_unfused(
    x, delta, A, B, C, D=None, delta_bias=None, delta_softplus=False, backend="auto", delta_proj_weight=None
):
    """The cross scan as gather -> :func:`.selective_scan` -> scatter-add, on any backend (autograd through it)."""
    if delta_proj_weight is not None:
        delta = project_delta(delta, delta_proj_weight, channels_last=False)
    bsz, dim, height, width = x.shape
    n, length = A.shape[1], height * width
    order = cross_scan_positions(height, width, x.device)  # (4, L)

    def in_scan_order(t: Tensor, channels: int) -> Tensor:  # (batch, 4, channels, L) by each direction's order
        return t.flatten(3).gather(3, order[None, :, None, :].expand(bsz, DIRECTIONS, channels, length))

    xs = x.flatten(2)[:, :, order].transpose(1, 2)  # (batch, 4, dim, L)
    ys = selective_scan(
        xs.reshape(bsz, DIRECTIONS * dim, length),
        in_scan_order(delta, dim).reshape(bsz, DIRECTIONS * dim, length),
        A,
        in_scan_order(B, n),
        in_scan_order(C, n),
        D,
        None,
        delta_bias,
        delta_softplus,
        backend=backend,
    )
    # y[b, d, order[k, t]] += ys[b, k, d, t]
    ys = ys.view(bsz, DIRECTIONS, dim, length).transpose(1, 2).reshape(bsz, dim, DIRECTIONS * length)
    index = order.flatten()[None, None, :].expand(bsz, dim, DIRECTIONS * length)
    y = ys.new_zeros(bsz, dim, length).scatter_add(2, index, ys)
    return y.view(bsz, dim, height, width)


# ------------------------------------------------------------------------------------------ custom op


@torch.library.custom_op("mamkpd::cross_selective_scan", mutates_args=())
def _cross_op(
    x: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None,
    delta_bias: Tensor | None,
    delta_proj_weight: Tensor | None,
    delta_softplus: bool,
    backend: str,
    keep_saved: bool,
) -> tuple[Tensor, list[Tensor]]:
    """(y, what the kernel's forward keeps for its backward: empty for most, and without ``keep_saved``)."""
    cross = SCAN_BACKENDS[backend].cross
    keep = {} if cross.saved_like is None else {"keep_saved": keep_saved}
    if delta_proj_weight is None:
        y = cross.forward(x, delta, A, B, C, D, delta_bias, delta_softplus, **keep)
    elif cross.projects_delta:
        y = cross.forward(x, delta, A, B, C, D, delta_bias, delta_softplus, delta_proj_weight=delta_proj_weight, **keep)
    else:
        y = cross.forward(x, project_delta(delta, delta_proj_weight, cross.channels_last), A, B, C, D, delta_bias,
                          delta_softplus, **keep)  # fmt: skip
    y, saved = y if keep else (y, [])
    # in the layout the fake kernel below declares, whatever the kernel returned
    return y.contiguous(memory_format=cross.output_format), [t.contiguous() for t in saved] if keep_saved else []


@_cross_op.register_fake
def _(x, delta, A, B, C, D, delta_bias, delta_proj_weight, delta_softplus, backend, keep_saved):
    # a channels-last kernel returns y in the layout SS2D's next op reads; the fake says so (inductor checks strides)
    cross = SCAN_BACKENDS[backend].cross
    y = torch.empty(x.shape, dtype=x.dtype, device=x.device, memory_format=cross.output_format)
    return y, [] if cross.saved_like is None or not keep_saved else cross.saved_like(x, A)


@torch.library.custom_op("mamkpd::cross_selective_scan_backward", mutates_args=())
def _cross_backward_op(
    gout: Tensor,
    x: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None,
    delta_bias: Tensor | None,
    delta_proj_weight: Tensor | None,
    saved: list[Tensor],
    delta_softplus: bool,
    backend: str,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    cross = SCAN_BACKENDS[backend].cross
    kept = {} if cross.saved_like is None else {"saved": saved}
    if delta_proj_weight is None:
        grads = cross.backward(gout, x, delta, A, B, C, D, delta_bias, delta_softplus, **kept) + (None,)
    else:  # through the projected delta, recomputed: the forward kept only its low-rank input
        projected = project_delta(delta, delta_proj_weight, cross.channels_last)
        gx, gprojected, *rest = cross.backward(gout, x, projected, A, B, C, D, delta_bias, delta_softplus, **kept)
        glow, gweight = _projection_grads(gprojected, delta, delta_proj_weight)
        grads = (gx, glow, *rest, gweight)
    inputs = (x, delta, A, B, C, D, delta_bias, delta_proj_weight)
    # empty: "no such input"; each gradient in its input's layout (x and delta channels-last in SS2D: no copy)
    return tuple(x.new_empty(0) if g is None else _in_layout_of(g, t) for g, t in zip(grads, inputs, strict=True))


def _projection_grads(gprojected: Tensor, delta: Tensor, weight: Tensor) -> tuple[Tensor, Tensor]:
    """Gradients of the low-rank delta (batch, 4, rank, H, W) and of the projection weight (4, dim, rank), from
    that of the projected delta (batch, 4, dim, H, W)."""
    g = gprojected.flatten(3)  # (batch, 4, dim, L)
    low = delta.flatten(3).to(g.dtype)  # (batch, 4, rank, L)
    gdelta = torch.matmul(weight.to(g.dtype).transpose(-1, -2), g).view(delta.shape)
    gweight = torch.matmul(g, low.transpose(-1, -2)).sum(0)
    return gdelta.to(delta.dtype), gweight.to(weight.dtype)


def _in_layout_of(g: Tensor, like: Tensor) -> Tensor:
    """``g`` with the strides ``torch.empty_like(like)`` has (what the fake kernel declares); no copy if it has them."""
    out = torch.empty_like(like, dtype=g.dtype)
    return g if g.stride() == out.stride() else out.copy_(g)


@_cross_backward_op.register_fake
def _(gout, x, delta, A, B, C, D, delta_bias, delta_proj_weight, saved, delta_softplus, backend):
    inputs = (x, delta, A, B, C, D, delta_bias, delta_proj_weight)
    return tuple(x.new_empty(0) if t is None else torch.empty_like(t) for t in inputs)


def _setup_context(ctx, inputs, output):
    x, delta, A, B, C, D, delta_bias, delta_proj_weight, delta_softplus, backend, _keep_saved = inputs
    _, saved = output
    ctx.save_for_backward(x, delta, A, B, C, D, delta_bias, delta_proj_weight, *saved)
    ctx.delta_softplus, ctx.backend = delta_softplus, backend


def _autograd_backward(ctx, gout, _gsaved):
    inputs, saved = ctx.saved_tensors[:8], list(ctx.saved_tensors[8:])
    grads = torch.ops.mamkpd.cross_selective_scan_backward(gout, *inputs, saved, ctx.delta_softplus, ctx.backend)
    return tuple(None if p is None else g for g, p in zip(grads, inputs, strict=True)) + (None, None, None)


_cross_op.register_autograd(_autograd_backward, setup_context=_setup_context)


def cross_selective_scan(
    x,
    delta,
    A,
    B,
    C,
    D=None,
    delta_bias=None,
    delta_softplus=False,
    backend: str | ScanBackend = "auto",
    delta_proj_weight=None,
):
    """SS2D's cross scan, selective scan and merge in one call (shapes in the module docstring).

    ``backend`` as :func:`.selective_scan` (a name, resolved for x's device, or a resolved backend). A backend
    with a fused cross scan (``cross``: numba, triton) runs it in one kernel, reading x once and writing y
    once; elsewhere the scan runs on the gathered orders. With ``delta_proj_weight``, ``delta`` is the
    projection's low-rank input, projected inside the kernel where the backend can.
    """
    check_cross_inputs(x, delta, A, B, C, D, delta_bias, delta_proj_weight)
    chosen = backend if isinstance(backend, ScanBackend) else resolve_backend(backend, x.device)
    if chosen.cross is not None:
        keep = needs_grad(x, delta, A, B, C, D, delta_bias, delta_proj_weight)
        y, _ = torch.ops.mamkpd.cross_selective_scan(
            x, delta, A, B, C, D, delta_bias, delta_proj_weight, delta_softplus, chosen.name, keep
        )
        return y
    return cross_selective_scan_unfused(
        x, delta, A, B, C, D, delta_bias, delta_softplus, backend=chosen, delta_proj_weight=delta_proj_weight
    )


def cross_selective_scan_flop_jit(inputs, outputs) -> int | Counter:
    """fvcore handle for ``mamkpd::cross_selective_scan``: the scan of 4*dim channels, as the unfused op counts;
    with a delta projection, also that, under "matmul", as fvcore counts the matmul outside the op (one per
    multiply-add)."""
    from fvcore.nn.jit_handles import get_shape

    bsz, dim, height, width = get_shape(inputs[0])
    d_state = get_shape(inputs[2])[1]
    scan = selective_scan_flops(
        bsz, DIRECTIONS * dim, height * width, d_state, with_D=get_shape(inputs[5]) is not None, with_z=False
    )
    weight = get_shape(inputs[7])
    if weight is None:
        return scan
    return Counter({"cross_selective_scan": scan, "matmul": bsz * DIRECTIONS * dim * weight[2] * height * width})
