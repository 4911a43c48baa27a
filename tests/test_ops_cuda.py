"""The ``cuda`` backend (mamba-ssm's compiled kernel) against the reference.

Without CUDA: a pure-PyTorch stand-in for the extension ``selective_scan_cuda`` (:mod:`mamba_kernel_standin`,
the C++ signatures, checks and return lists of the pinned releases) runs on CPU, under the suite's ``cuda``
backend and under mamba-ssm's own Python interface, taken from each pinned release's sdist (install.sh
downloads them). With a GPU and mamba-ssm built (install.sh --cuda --with-mamba-ssm): the real kernel.
"""

import importlib
import os
import re
import sys
import tarfile
import types
from pathlib import Path

import mamba_kernel_standin as standin
import pytest
import torch

from mamkpd.ops import cuda_backend_available, scan_cuda, selective_scan, selective_scan_ref

REPO = Path(__file__).resolve().parents[1]
RELEASES = (REPO / "scripts" / "mamba_ssm_releases.txt").read_text().split()
SDISTS = Path(os.environ.get("MAMKPD_MAMBA_SSM_SDISTS", Path.home() / ".cache" / "mamkpd" / "mamba-ssm"))
LONG = 2100  # above one of the kernel's 2048-step chunks: the backward must start its second chunk from x

requires_built_kernel = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
    pytest.mark.skipif(
        torch.cuda.is_available() and not cuda_backend_available(),
        reason="mamba-ssm's CUDA extension is not built (./install.sh --cuda --with-mamba-ssm)",
    ),
]

TOL = {
    torch.float32: dict(rtol=3e-4, atol=3e-3),
    torch.bfloat16: dict(rtol=3e-2, atol=5e-2),
    torch.float16: dict(rtol=1e-2, atol=1e-2),
}


def make_inputs(dtype, length, groups, optional, device="cpu", seed=0, batch=2, dim=4, d_state=3):
    """Scan inputs as a model holds them: A, D, delta_bias in float32, the rest in ``dtype``; B and C 3-d when
    ``groups`` is 0. ``optional``: which of z, D, delta_bias to pass."""
    g = torch.Generator(device=device).manual_seed(seed)
    r = lambda *s, dt=dtype: torch.randn(*s, generator=g, device=device, dtype=torch.float32).to(dt)  # noqa: E731
    bc_shape = (batch, d_state, length) if groups == 0 else (batch, groups, d_state, length)
    inputs = dict(
        u=r(batch, dim, length),
        delta=0.5 * r(batch, dim, length),
        A=-(torch.rand(dim, d_state, generator=g, device=device) + 0.1),
        B=r(*bc_shape),
        C=r(*bc_shape),
        D=r(dim, dt=torch.float32),
        z=r(batch, dim, length),
        delta_bias=0.1 * r(dim, dt=torch.float32),
    )
    return {k: (v if k not in ("z", "D", "delta_bias") or k in optional else None) for k, v in inputs.items()}


def check_against_reference(scan, inputs, dtype, delta_softplus=True):
    """``scan(**inputs, delta_softplus=...)``'s output and every gradient against the float64 reference."""
    leaves = {k: v.clone().requires_grad_(True) for k, v in inputs.items() if v is not None}
    out = scan(**{**inputs, **leaves}, delta_softplus=delta_softplus)
    assert out.dtype == dtype
    grads = torch.autograd.grad(out.float().sum(), list(leaves.values()))
    ref_leaves = {k: v.detach().double().requires_grad_(True) for k, v in leaves.items()}
    ref = selective_scan_ref(**{**inputs, **ref_leaves}, delta_softplus=delta_softplus)
    ref_grads = torch.autograd.grad(ref.sum(), list(ref_leaves.values()))
    torch.testing.assert_close(out.double(), ref, **TOL[dtype], check_dtype=False)
    for name, got, want in zip(leaves, grads, ref_grads, strict=True):
        assert got.dtype == leaves[name].dtype, f"gradient of {name}"
        scale = want.abs().max().clamp(min=1.0)
        torch.testing.assert_close(
            got.double() / scale, want / scale, **TOL[dtype], check_dtype=False, msg=f"gradient of {name}"
        )


class KernelCalls:
    """The stand-in as the module ``selective_scan_cuda``, counting its calls."""

    def __init__(self):
        self.calls = []

    def fwd(self, *args):
        self.calls.append("fwd")
        return standin.fwd(*args)

    def bwd(self, *args):
        self.calls.append("bwd")
        return standin.bwd(*args)


@pytest.fixture
def kernel(monkeypatch):
    calls = KernelCalls()
    module = types.ModuleType("selective_scan_cuda")
    module.fwd, module.bwd = calls.fwd, calls.bwd
    monkeypatch.setitem(sys.modules, "selective_scan_cuda", module)
    scan_cuda._load_cuda_kernel.cache_clear()
    yield calls
    scan_cuda._load_cuda_kernel.cache_clear()


def suite_cuda_scan(**kwargs):
    # the resolved backend object: on CPU tensors, as a model that resolved 'cuda' would run it
    return selective_scan(**kwargs, backend=scan_cuda.BACKEND)


# The oracle's backward costs about L^2 x batch x dim x N (autograd through per-step indexing): at L=2100 one
# batch, 4 channels (2 a group) and 2 states; the batch of 2 at one chunk's length
LONG_SHAPE = dict(batch=1, dim=4, d_state=2)
# every optional input present and absent, B/C grouped and ungrouped, fp32 and both halves:
# (dtype, length, groups, optional inputs, shape)
CASES = {
    "fp32-ungrouped-bare": (torch.float32, LONG, 0, (), LONG_SHAPE),
    "fp32-grouped-z": (torch.float32, LONG, 2, ("z",), LONG_SHAPE),
    "fp32-ungrouped-D-bias": (torch.float32, LONG, 0, ("D", "delta_bias"), LONG_SHAPE),
    "fp32-grouped-all": (torch.float32, LONG, 2, ("z", "D", "delta_bias"), LONG_SHAPE),
    "bf16-grouped-all": (torch.bfloat16, LONG, 2, ("z", "D", "delta_bias"), LONG_SHAPE),
    "fp16-ungrouped-all": (torch.float16, LONG, 0, ("z", "D", "delta_bias"), LONG_SHAPE),
    "fp32-batch2-grouped-all": (torch.float32, 300, 2, ("z", "D", "delta_bias"), {}),
}


@pytest.mark.parametrize("case", CASES)
def test_cuda_backend_through_standin(kernel, case):
    dtype, length, groups, optional, shape = CASES[case]
    check_against_reference(suite_cuda_scan, make_inputs(dtype, length, groups, optional, **shape), dtype)
    assert kernel.calls == ["fwd", "bwd"]  # the backward uses what the forward kept: no second forward


def test_cuda_op_registration_describes_what_the_kernel_keeps(kernel):
    """The op's fake kernel (what torch.compile and torch.export see) gives the chunk states' true shape,
    for two chunks, and autograd through the op is consistent."""
    inputs = make_inputs(torch.float32, 2049, 1, ("z", "D", "delta_bias"), batch=1, dim=2, d_state=2)
    torch.library.opcheck(
        torch.ops.mamkpd.selective_scan.default, (*inputs.values(), True, "cuda", True), test_utils=("test_faketensor",)
    )
    _, saved = torch.ops.mamkpd.selective_scan(*inputs.values(), True, "cuda", True)
    assert [tuple(t.shape) for t in saved] == [(1, 2, 2, 4), (1, 2, 2049)]  # x: 2 chunks x (decay, state) x N=2


REFUSED = {
    "fp64 u": (dict(dtype=torch.float64), "u is torch.float64"),
    "bf16 u, fp32 B": (dict(dtype=torch.bfloat16, B=torch.float32), "B is torch.float32 but u is torch.bfloat16"),
    "fp16 u, fp32 z": (dict(dtype=torch.float16, z=torch.float32), "z is torch.float32 but u is torch.float16"),
    "fp16 D": (dict(dtype=torch.float16, D=torch.float16), "D is torch.float16"),
    "bf16 delta_bias": (dict(dtype=torch.float32, delta_bias=torch.bfloat16), "delta_bias is torch.bfloat16"),
    "bf16 A": (dict(dtype=torch.bfloat16, A=torch.bfloat16), "A is torch.bfloat16"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_cuda_backend_refuses_what_the_kernel_refuses(kernel, case):
    dtypes, message = REFUSED[case]
    inputs = make_inputs(dtypes["dtype"], 20, 2, ("z", "D", "delta_bias"))
    inputs = {k: v.to(dtypes.get(k, v.dtype)) for k, v in inputs.items()}
    # the kernel itself refuses these, from inside, with a bare check (arguments in fwd's order)
    with pytest.raises(standin.KernelCheckFailed):
        standin.fwd(*inputs.values(), True)
    with pytest.raises(TypeError, match=re.escape(message)):
        suite_cuda_scan(**inputs, delta_softplus=True)
    assert kernel.calls == []  # refused before reaching the kernel


# ------------------------------------------------- mamba-ssm's own Python interface, through the stand-in


@pytest.fixture(params=RELEASES)
def mamba_interface(request, kernel, monkeypatch, tmp_path):
    """``mamba_ssm.ops.selective_scan_interface`` of one pinned release, its real file from the sdist, with
    the stand-in as its kernel. The package's ``__init__`` (which imports its models) is not run."""
    release = request.param
    sdist = SDISTS / f"mamba_ssm-{release}.tar.gz"
    if not sdist.is_file():
        pytest.skip(f"mamba-ssm {release}'s sdist is not in {SDISTS} (./install.sh downloads it; offline it cannot)")
    pytest.importorskip("einops", reason="mamba-ssm's interface imports einops (pip install einops)")
    pytest.importorskip("triton", reason="mamba-ssm's interface imports its Triton layer norm (pip install triton)")
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if re.match(r"[^/]+/mamba_ssm/.*\.py$", m.name)]
        tar.extractall(tmp_path, members=members, filter="data")
    root = tmp_path / f"mamba_ssm-{release}" / "mamba_ssm"
    for name in [n for n in sys.modules if n == "mamba_ssm" or n.startswith("mamba_ssm.")]:
        monkeypatch.delitem(sys.modules, name)
    packages = ("mamba_ssm", "mamba_ssm.ops", "mamba_ssm.ops.triton", "mamba_ssm.utils")
    for package in packages:
        module = types.ModuleType(package)
        module.__path__ = [str(root.joinpath(*package.split(".")[1:]))]
        monkeypatch.setitem(sys.modules, package, module)
    yield importlib.import_module("mamba_ssm.ops.selective_scan_interface")
    for name in [n for n in sys.modules if n.startswith("mamba_ssm.") and n not in packages]:
        del sys.modules[name]  # the release's modules (monkeypatch restores the packages)


@pytest.mark.parametrize(
    ("dtype", "length", "groups", "optional"),
    [(torch.float32, LONG, 0, ("z", "D", "delta_bias")), (torch.bfloat16, 300, 2, ()), (torch.float16, 300, 2, ("z",))],
    ids=["fp32-long-ungrouped-all", "bf16-grouped-bare", "fp16-grouped-z"],
)
def test_mamba_interface_through_standin(mamba_interface, kernel, dtype, length, groups, optional):
    """The release's ``selective_scan_fn`` drives the stand-in as it drives the real kernel: if the stand-in's
    signatures or return lists were not the kernel's, this would fail, and so the suite's test above would not
    be testing the suite's call of the kernel."""
    inputs = make_inputs(dtype, length, groups, optional, **(LONG_SHAPE if length == LONG else {}))
    check_against_reference(mamba_interface.selective_scan_fn, inputs, dtype)
    assert kernel.calls == ["fwd", "bwd"]


def test_pinned_releases_are_the_tested_ones():
    """pyproject's ``cuda`` extra admits every release tested here, and has an upper bound."""
    from packaging.requirements import Requirement

    text = (REPO / "pyproject.toml").read_text()
    (spec,) = re.findall(r'^cuda = \["([^"]+)"\]', text, flags=re.M)
    requirement = Requirement(spec)
    assert requirement.name == "mamba-ssm"
    assert all(requirement.specifier.contains(r) for r in RELEASES), (requirement, RELEASES)
    assert any(s.operator in ("<", "<=", "==") for s in requirement.specifier), f"{spec} has no upper bound"


# ------------------------------------------------------------------------------ the real kernel, on a GPU


def _with_marks(marks):
    def apply(test):
        for mark in reversed(marks):
            test = mark(test)
        return test

    return apply


@_with_marks(requires_built_kernel)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("groups", [0, 4])
@pytest.mark.parametrize("with_z", [False, True])
def test_cuda_matches_reference(dtype, groups, with_z):
    inputs = make_inputs(dtype, LONG, groups, ("z", "D", "delta_bias") if with_z else ("D", "delta_bias"), "cuda",
                         batch=2, dim=64, d_state=16)  # fmt: skip
    check_against_reference(suite_cuda_scan, inputs, dtype)


@_with_marks(requires_built_kernel)
def test_auto_picks_cuda_on_gpu():
    from mamkpd.ops import resolve_backend

    assert resolve_backend("auto", "cuda").name == "cuda"
