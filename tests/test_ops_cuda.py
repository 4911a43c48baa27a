"""mamba-ssm's CUDA kernel against the reference (GPU machines with mamba-ssm built: install.sh --with-mamba-ssm)."""

import pytest
import torch

from mamkpd.ops import cuda_backend_available, selective_scan, selective_scan_ref

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
    pytest.mark.skipif(
        torch.cuda.is_available() and not cuda_backend_available(),
        reason="mamba-ssm's CUDA extension is not built (./install.sh --cuda --with-mamba-ssm)",
    ),
]

TOL = {torch.float32: dict(rtol=3e-4, atol=3e-3), torch.bfloat16: dict(rtol=3e-2, atol=5e-2)}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("d_state", [1, 8, 16])
@pytest.mark.parametrize("with_z", [False, True])
def test_cuda_matches_reference(dtype, d_state, with_z):
    g = torch.Generator(device="cuda").manual_seed(0)
    b, d, L, k = 2, 64, 300, 4
    r = lambda *s, dt=dtype: torch.randn(*s, generator=g, device="cuda", dtype=dt)  # noqa: E731
    inputs = dict(
        u=r(b, d, L),
        delta=0.5 * r(b, d, L),
        A=-(torch.rand(d, d_state, device="cuda") + 0.1),
        B=r(b, k, d_state, L),
        C=r(b, k, d_state, L),
        D=r(d, dt=torch.float32),
        z=r(b, d, L) if with_z else None,
        delta_bias=0.1 * r(d, dt=torch.float32),
    )
    leaves = {k_: v.clone().requires_grad_(True) for k_, v in inputs.items() if v is not None}
    out = selective_scan(**{**inputs, **leaves}, delta_softplus=True, backend="cuda")
    grads = torch.autograd.grad(out.float().sum(), list(leaves.values()))
    ref_leaves = {k_: v.detach().double().requires_grad_(True) for k_, v in leaves.items()}
    ref = selective_scan_ref(**{**inputs, **ref_leaves}, delta_softplus=True)
    ref_grads = torch.autograd.grad(ref.sum(), list(ref_leaves.values()))
    torch.testing.assert_close(out.double(), ref, **TOL[dtype], check_dtype=False)
    for name, got, want in zip(leaves, grads, ref_grads, strict=True):
        scale = want.abs().max().clamp(min=1.0)
        torch.testing.assert_close(
            got.double() / scale, want / scale, **TOL[dtype], check_dtype=False, msg=f"gradient of {name}"
        )


def test_auto_picks_cuda_on_gpu():
    from mamkpd.ops import resolve_backend

    assert resolve_backend("auto", "cuda").name == "cuda"
