"""The numba backend's fused cross scan (one kernel call reads x once in all four orders and writes the merged
y) against the unfused path on the reference scan: output and every gradient, and inside SS2D."""

import pytest
import torch
from worker_groups import NUMBA_SCAN

from mamkpd.ops import cross_selective_scan
from mamkpd.ops.cross_selective_scan import cross_selective_scan_unfused

pytestmark = NUMBA_SCAN
TOL = {torch.float64: dict(rtol=1e-9, atol=1e-9), torch.float32: dict(rtol=2e-4, atol=2e-4)}


def cross_inputs(batch, dim, height, width, d_state, dtype, D=True, delta_bias=True, channels_last=False):
    g = torch.Generator().manual_seed(3)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)  # noqa: E731
    x = r(batch, dim, height, width)
    delta = 0.5 * r(batch, 4, dim, height, width)
    if channels_last:  # the memory SS2D gives them: channels innermost
        x = x.contiguous(memory_format=torch.channels_last)
        delta = delta.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
    return dict(
        x=x,
        delta=delta,
        A=-(torch.rand(4 * dim, d_state, generator=g, dtype=dtype) + 0.1),
        B=r(batch, 4, d_state, height, width),
        C=r(batch, 4, d_state, height, width),
        D=r(4 * dim) if D else None,
        delta_bias=0.1 * r(4 * dim) if delta_bias else None,
    )


def run(fn, inputs, softplus, **kwargs):
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in inputs.items() if v is not None}
    args = {k: leaves.get(k) for k in inputs}
    out = fn(**args, delta_softplus=softplus, **kwargs)
    weight = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)
    grads = torch.autograd.grad((out * weight).sum(), list(leaves.values()))
    return out, dict(zip(leaves, grads, strict=True))


@pytest.mark.parametrize(
    "shape, options",
    [
        ((2, 3, 5, 7, 4), dict()),  # 3 channels: one block, mostly padding; H != W
        ((1, 40, 6, 4, 8), dict(channels_last=True)),  # 40 channels: two blocks, the second padded
        ((2, 32, 3, 5, 2), dict(D=False, delta_bias=False, channels_last=True)),  # exactly one block
    ],
)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("softplus", [True, False])
def test_fused_numba_cross_scan_matches_the_unfused_reference(shape, options, dtype, softplus):
    inputs = cross_inputs(*shape, dtype=dtype, **options)
    want, want_grads = run(cross_selective_scan_unfused, inputs, softplus, backend="reference")
    got, got_grads = run(cross_selective_scan, inputs, softplus, backend="numba")
    assert got.dtype == dtype and got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got, want, **TOL[dtype])
    assert set(got_grads) == set(want_grads)
    for name, g in got_grads.items():
        assert g.shape == inputs[name].shape
        torch.testing.assert_close(g, want_grads[name], **TOL[dtype], msg=f"gradient of {name}")


@pytest.mark.parametrize("projected", [False, True])
def test_numba_cross_op_registration(projected):
    inputs = cross_inputs(1, 2, 2, 3, 2, torch.float32)
    weight = None
    if projected:  # delta as the projection's low-rank input (rank 3)
        inputs["delta"] = inputs["delta"][:, :, :1].expand(1, 4, 3, 2, 3).contiguous()
        weight = torch.randn(4, 2, 3).requires_grad_(True)
    for value in inputs.values():
        value.requires_grad_(True)
    args = (*inputs.values(), weight, True, "numba", True)
    torch.library.opcheck(torch.ops.mamkpd.cross_selective_scan.default, args)


def lowrank_inputs(batch, dim, height, width, d_state, rank, dtype, ss2d_layout):
    """The cross scan's inputs with delta as a low-rank input and its projection weight; ``ss2d_layout``: x, the
    low-rank delta, B and C as views of SS2D's channels-last tensors (delta, B, C one projection's output)."""
    inputs = cross_inputs(batch, dim, height, width, d_state, dtype)
    g = torch.Generator().manual_seed(5)
    weight = torch.randn(4, dim, rank, generator=g, dtype=dtype) / rank**0.5
    low = 0.5 * torch.randn(batch, 4, rank, height, width, generator=g, dtype=dtype)
    if ss2d_layout:  # (B, H, W, 4, rank + 2N) memory, as x_proj leaves it
        projected = torch.cat([low, inputs["B"], inputs["C"]], dim=2).permute(0, 3, 4, 1, 2).contiguous()
        low, inputs["B"], inputs["C"] = projected.permute(0, 3, 4, 1, 2).split([rank, d_state, d_state], dim=2)
        inputs["x"] = inputs["x"].contiguous(memory_format=torch.channels_last)
    return dict(inputs, delta=low, delta_proj_weight=weight)


@pytest.mark.parametrize("ss2d_layout", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_numba_projects_delta_as_it_reads(dtype, ss2d_layout):
    """A low-rank delta and its projection weight (SS2D's dt_projs): the kernel that projects as it reads gives
    the output and every gradient (the weight's included) of the reference on the delta projected first. 40
    channels (a whole block and a padded one), rank 6, 8 x 9 positions (whole chunks and a tail)."""
    inputs = lowrank_inputs(2, 40, 8, 9, 4, 6, dtype, ss2d_layout)
    weight = inputs.pop("delta_proj_weight")

    def projected_first(x, delta, A, B, C, D, delta_bias, proj, delta_softplus):
        full = torch.einsum("kdr,bkrhw->bkdhw", proj, delta)  # written out here: independent of project_delta
        return cross_selective_scan_unfused(x, full, A, B, C, D, delta_bias, delta_softplus, backend="reference")

    def fused(x, delta, A, B, C, D, delta_bias, proj, delta_softplus):
        return cross_selective_scan(x, delta, A, B, C, D, delta_bias, delta_softplus, "numba", delta_proj_weight=proj)

    inputs["proj"] = weight
    want, want_grads = run(projected_first, inputs, True)
    got, got_grads = run(fused, inputs, True)
    torch.testing.assert_close(got, want, **TOL[dtype])
    for name, g in got_grads.items():
        torch.testing.assert_close(g, want_grads[name], **TOL[dtype], msg=f"gradient of {name}")


@pytest.mark.parametrize("fused", [True, False])
def test_ss2d_on_numba_matches_ss2d_on_torch(fused):
    """SS2D as MamKPD builds it: on numba its cross scan runs fused (delta computed channels-last) or as the
    unfused op; either way the output and every parameter's gradient equal those on the torch backend."""
    from mamkpd.models.layers import SS2D

    torch.manual_seed(0)
    block = SS2D(6, d_state=3, dt_rank=2, scan_backend="torch").double()
    x = torch.randn(2, 5, 7, 6, dtype=torch.float64)
    weight = torch.randn(2, 5, 7, 6, dtype=torch.float64)

    def output_and_grads(backend):
        block.scan_backend, block.fused_cross_scan = backend, fused
        block.zero_grad()
        out = block(x)
        (out * weight).sum().backward()
        return out.detach(), {n: p.grad.clone() for n, p in block.named_parameters()}

    want, want_grads = output_and_grads("torch")
    got, got_grads = output_and_grads("numba")
    torch.testing.assert_close(got, want, **TOL[torch.float64])
    for name, g in got_grads.items():
        torch.testing.assert_close(g, want_grads[name], **TOL[torch.float64], msg=f"gradient of {name}")


def ss2d_leaves(inputs):
    """Leaves and the cross scan's arguments made from them as SS2D hands them over: x a channels-last view of
    (B, H, W, dim), delta channels-last, and B, C views into the projection's (B, H, W, 4, 2N) output."""
    leaves = {k: inputs[k].clone().requires_grad_(True) for k in ("A", "D", "delta_bias")}
    leaves["x"] = inputs["x"].permute(0, 2, 3, 1).contiguous().requires_grad_(True)
    leaves["delta"] = inputs["delta"].permute(0, 1, 3, 4, 2).contiguous().requires_grad_(True)
    projected = torch.cat([inputs["B"], inputs["C"]], dim=2).permute(0, 3, 4, 1, 2).contiguous()
    leaves["BC"] = projected.requires_grad_(True)
    n = inputs["B"].shape[2]
    states = leaves["BC"].permute(0, 3, 4, 1, 2)  # (B, 4, 2N, H, W) view
    args = dict(
        x=leaves["x"].permute(0, 3, 1, 2),
        delta=leaves["delta"].permute(0, 1, 4, 2, 3),
        A=leaves["A"],
        B=states[:, :, :n],
        C=states[:, :, n:],
        D=leaves["D"],
        delta_bias=leaves["delta_bias"],
    )
    return leaves, args


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("layout", ["ss2d", "contiguous"])
def test_fused_numba_cross_scan_in_the_models_layouts(layout, dtype):
    """40 channels (a whole SIMD block of 32 and a tail of 8), 8 x 9 positions (two whole chunks of 32 steps and
    a tail), contiguous or in SS2D's layouts (strided B and C views): the unfused reference's output and
    gradients, and dx, ddelta in x's and delta's own layouts (what the kernel wrote, no copy back)."""
    inputs = cross_inputs(2, 40, 8, 9, 4, dtype)
    if layout == "contiguous":
        got, got_grads = run(cross_selective_scan, inputs, True, backend="numba")
        want, want_grads = run(cross_selective_scan_unfused, inputs, True, backend="reference")
        torch.testing.assert_close((got, got_grads), (want, want_grads), **TOL[dtype])
        return
    results = []
    for fn, backend in ((cross_selective_scan_unfused, "reference"), (cross_selective_scan, "numba")):
        leaves, args = ss2d_leaves(inputs)
        assert args["x"].stride(1) == 1 and args["B"].stride(2) == 1
        out = fn(**args, delta_softplus=True, backend=backend)
        weight = torch.linspace(-1, 1, out.numel(), dtype=dtype).reshape(out.shape)
        results.append((out, torch.autograd.grad((out * weight).sum(), list(leaves.values()))))
        if backend == "numba":  # the kernel's gradients of x and delta in their own layouts: no copy on the way back
            gx, gdelta = torch.ops.mamkpd.cross_selective_scan_backward(
                torch.ones_like(out), *(args[k] for k in ("x", "delta", "A", "B", "C", "D", "delta_bias")), None, [],
                True, "numba")[:2]  # fmt: skip
            assert gx.stride() == args["x"].stride() and gdelta.stride() == args["delta"].stride()
    torch.testing.assert_close(results[1], results[0], **TOL[dtype])
