"""The CPU scan backends (``torch``, ``numba``) against the reference: outputs and every gradient, per dtype."""

import subprocess
import sys

import pytest
import torch
from worker_groups import NUMBA_SCAN

from mamkpd.ops import (
    backend_unavailable,
    resolve_backend,
    selective_scan,
    selective_scan_chunked,
    selective_scan_flops,
    selective_scan_ref,
    selective_scan_stepwise,
)

TOL = {torch.float64: dict(rtol=1e-9, atol=1e-9), torch.float32: dict(rtol=2e-4, atol=2e-4)}
NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")
CPU_BACKENDS = ("torch", "numba")
pytestmark = NUMBA_SCAN


def make_inputs(
    batch=2, dim=8, length=70, d_state=8, groups=None, dtype=torch.float64, D=True, z=True, delta_bias=True
):
    g = torch.Generator().manual_seed(1)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)  # noqa: E731
    bc_shape = (batch, d_state, length) if groups is None else (batch, groups, d_state, length)
    return dict(
        u=r(batch, dim, length),
        delta=0.5 * r(batch, dim, length),
        A=-(torch.rand(dim, d_state, generator=g, dtype=dtype) * 2 + 0.1),
        B=r(*bc_shape),
        C=r(*bc_shape),
        D=r(dim) if D else None,
        z=r(batch, dim, length) if z else None,
        delta_bias=0.1 * r(dim) if delta_bias else None,
    )


def run(backend, inputs, softplus):
    leaves = {k: v.clone().requires_grad_(True) for k, v in inputs.items() if v is not None}
    args = {k: leaves.get(k) for k in NAMES}
    out = selective_scan(**args, delta_softplus=softplus, backend=backend)
    # a non-uniform upstream gradient, so that every time step is weighted differently
    weight = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)
    grads = torch.autograd.grad((out * weight).sum(), list(leaves.values()))
    return out, dict(zip(leaves, grads, strict=True))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("d_state", [1, 8, 16])
@pytest.mark.parametrize("length", [1, 63, 130])  # one step, under one chunk (64), over two chunks
def test_backend_matches_reference(backend, dtype, d_state, length):
    assert_matches_reference(backend, make_inputs(d_state=d_state, length=length, dtype=dtype, groups=2))


def assert_matches_reference(backend, inputs):
    """``backend``'s output and every gradient within the dtype's tolerance of the reference scan's."""
    dtype = inputs["u"].dtype
    ref_out, ref_grads = run("reference", inputs, softplus=True)
    out, grads = run(backend, inputs, softplus=True)
    torch.testing.assert_close(out, ref_out, **TOL[dtype])
    assert set(grads) == set(NAMES)
    for name in NAMES:
        torch.testing.assert_close(grads[name], ref_grads[name], **TOL[dtype], msg=f"gradient of {name}")


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_decays_and_softplus_that_underflow_match_reference(backend, dtype):
    # dt A down to about -600 (exp(dt A) below float32's smallest normal, 2**-126, and its subnormals) and
    # deltas down to -120 (softplus's exp(-|x|) underflows too): the kernels' exp must underflow as torch's does
    inputs = make_inputs(length=70, dtype=dtype, groups=2)
    g = torch.Generator().manual_seed(2)
    inputs["A"] = inputs["A"] * torch.logspace(0, 2.5, inputs["A"].shape[1], dtype=dtype)
    inputs["delta"] = torch.empty_like(inputs["delta"]).uniform_(-120.0, 2.0, generator=g)
    assert_matches_reference(backend, inputs)


@pytest.mark.parametrize(
    "options",
    [
        dict(D=False, z=False, delta_bias=False),
        dict(D=True, z=False, delta_bias=False),
        dict(D=False, z=True, delta_bias=True),
    ],
)
@pytest.mark.parametrize("groups", [None, 1, 4])
@pytest.mark.parametrize("softplus", [False, True])
@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_optional_inputs_and_groups(backend, options, groups, softplus):
    inputs = make_inputs(length=65, groups=groups, **options)
    ref_out, ref_grads = run("reference", inputs, softplus)
    out, grads = run(backend, inputs, softplus)
    torch.testing.assert_close(out, ref_out, **TOL[torch.float64])
    assert set(grads) == set(ref_grads)
    for name, g in grads.items():
        assert g.shape == inputs[name].shape
        torch.testing.assert_close(g, ref_grads[name], **TOL[torch.float64], msg=f"gradient of {name}")


@pytest.mark.parametrize("fn", [selective_scan_stepwise, selective_scan_chunked])
@pytest.mark.parametrize("length", [1, 64, 100])
def test_other_formulations_match_reference(fn, length):
    inputs = make_inputs(length=length, groups=4)
    torch.testing.assert_close(
        fn(**inputs, delta_softplus=True), selective_scan_ref(**inputs, delta_softplus=True), **TOL[torch.float64]
    )


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_half_precision_inputs_compute_in_float32(backend):
    inputs = {
        k: (v.to(torch.bfloat16) if k in ("u", "delta", "z") else v.float()) if v is not None else None
        for k, v in make_inputs(length=40).items()
    }
    out = selective_scan(**inputs, delta_softplus=True, backend=backend)
    ref = selective_scan_ref(
        **{k: (v.float() if v is not None else None) for k, v in inputs.items()}, delta_softplus=True
    )
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_custom_op_registration_is_consistent(backend):
    inputs = make_inputs(length=20, dtype=torch.float32, groups=2)
    args = tuple(inputs[k] for k in NAMES) + (True, backend, True)
    for name in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias"):
        inputs[name].requires_grad_(True)
    torch.library.opcheck(torch.ops.mamkpd.selective_scan.default, args)


def test_backend_selection():
    assert resolve_backend("auto", "cpu").name == "numba"  # numba is a dependency: the compiled scan is the default
    assert resolve_backend("reference", "cpu").name == "reference"
    with pytest.raises(ValueError, match="unknown scan backend 'fast'"):
        resolve_backend("fast", "cpu")
    with pytest.raises(RuntimeError, match="only on CUDA"):
        selective_scan(**make_inputs(length=4), backend="cuda")


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(u=torch.zeros(2, 8)), "u must be"),
        (dict(delta=torch.zeros(2, 8, 5)), "delta shape"),
        (dict(A=torch.zeros(7, 8)), "A must be"),
        (dict(B=torch.zeros(2, 3, 8, 70)), "B must be"),
        (dict(C=torch.zeros(2, 8, 69)), "C must be"),
        (dict(D=torch.zeros(9)), "D must be"),
        (dict(z=torch.zeros(2, 8, 71)), "z shape"),
    ],
)
def test_bad_shapes_name_the_argument(change, message):
    inputs = {**make_inputs(dtype=torch.float32), **change}
    for backend in ("reference", *CPU_BACKENDS):
        with pytest.raises(ValueError, match=message):
            selective_scan(**inputs, backend=backend)


def test_three_d_B_pairs_only_with_a_one_group_C():
    # mamba-ssm reads a 3-d B or C as one group: a 3-d B with a 2-group C is refused before any backend runs
    inputs = make_inputs(length=30, dtype=torch.float32)
    two_groups = inputs["C"].reshape(2, 1, 8, 30).expand(2, 2, 8, 30).contiguous()
    for backend in ("reference", *CPU_BACKENDS):
        with pytest.raises(ValueError, match="B has 1 group.*but C has 2"):
            selective_scan(**{**inputs, "C": two_groups}, backend=backend)
    # ... while a one-group 4-d C is the same scan as the 3-d one, gradients in each argument's own shape
    inputs = make_inputs(length=30)
    ref_out, ref_grads = run("reference", inputs, softplus=True)
    for backend in CPU_BACKENDS:
        out, grads = run(backend, {**inputs, "C": inputs["C"].unsqueeze(1)}, softplus=True)
        torch.testing.assert_close(out, ref_out, **TOL[torch.float64])
        assert grads["C"].shape == (2, 1, 8, 30)
        torch.testing.assert_close(grads["C"].squeeze(1), ref_grads["C"], **TOL[torch.float64])
        torch.testing.assert_close(grads["B"], ref_grads["B"], **TOL[torch.float64])


def test_flop_formula():
    # Mamba's count: 9 B L D N, plus B D L for each of the D skip and the z gate
    assert selective_scan_flops(2, 768, 3072, 8, with_D=False) == 9 * 2 * 3072 * 768 * 8
    assert (
        selective_scan_flops(2, 768, 3072, 8, with_D=True, with_z=True) == 9 * 2 * 3072 * 768 * 8 + 2 * 2 * 768 * 3072
    )


def test_numba_backend_is_optional():
    # without numba the package imports, ``auto`` falls back to ``torch`` and asking for ``numba`` says how to get it
    code = (
        "import sys; sys.modules['numba'] = None\n"
        "import importlib.util; find = importlib.util.find_spec\n"
        "importlib.util.find_spec = lambda name, *a: None if name == 'numba' else find(name, *a)\n"
        "from mamkpd.ops import resolve_backend\n"
        "print(resolve_backend('auto', 'cpu').name)\n"
        "resolve_backend('numba', 'cpu')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "torch"
    assert "pip install numba" in result.stderr.strip().splitlines()[-1]
    assert backend_unavailable("numba", "cpu") is None
    assert "only on CPU" in backend_unavailable("numba", "cuda")


def assert_same_bits_on_thread_counts(backend: str, counts: tuple[int, ...]) -> None:
    """The output and every gradient of one scan the same bits on each of torch's thread ``counts``."""
    inputs = make_inputs(batch=3, dim=64, length=50, dtype=torch.float32, groups=4)
    previous = torch.get_num_threads()
    outs = []
    try:
        for threads in counts:
            torch.set_num_threads(threads)
            outs.append(run(backend, inputs, softplus=True))
    finally:
        torch.set_num_threads(previous)
    (out1, grads1), *others = outs
    for out, grads in others:
        assert torch.equal(out1, out)
        for name in grads1:
            assert torch.equal(grads1[name], grads[name]), name


def test_numba_backend_uses_several_threads_and_gives_the_same_result():
    # task ranges run on torch's thread count; the split must not change a single bit
    assert_same_bits_on_thread_counts("numba", (1, 3))


def in_model_layouts(inputs):
    """Leaves and the scan's arguments made from them in the layouts a model holds: u, delta, z with channels
    adjacent in memory (views of (batch, L, dim) tensors), B and C views into one wider (batch, L, groups, 2N)
    tensor, as the split of a projection's output leaves them (what lies beside them is never read)."""
    leaves = {k: v.clone().requires_grad_(True) for k, v in inputs.items() if k not in ("u", "delta", "z", "B", "C")}
    for name in ("u", "delta", "z"):
        leaves[name] = inputs[name].transpose(1, 2).contiguous().requires_grad_(True)  # (batch, L, dim)
    n = inputs["B"].shape[2]
    wide = torch.cat([inputs["B"], inputs["C"]], dim=2).permute(0, 3, 1, 2).contiguous()  # (batch, L, groups, 2N)
    leaves["BC"] = wide.requires_grad_(True)
    args = {k: leaves[k] for k in ("A", "D", "delta_bias")}
    args.update({k: leaves[k].transpose(1, 2) for k in ("u", "delta", "z")})
    states = leaves["BC"].permute(0, 2, 3, 1)  # (batch, groups, 2N, L) view
    args.update(B=states[:, :, :n], C=states[:, :, n:])
    return leaves, args


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("layout", ["contiguous", "model"])
def test_numba_reads_any_strides_and_partial_blocks(layout, dtype):
    """72 channels a group (two whole SIMD blocks of 32 and a tail of 8) over 70 steps (two whole chunks and a
    tail): contiguous (batch, dim, L) inputs, or the model's layouts (channels innermost, strided B and C
    views), give the reference's output and gradients."""
    inputs = make_inputs(batch=2, dim=144, length=70, d_state=4, groups=2, dtype=dtype)
    if layout == "contiguous":
        torch.testing.assert_close(run("numba", inputs, True), run("reference", inputs, True), **TOL[dtype])
        return
    results = []
    for backend in ("reference", "numba"):
        leaves, args = in_model_layouts(inputs)
        assert args["u"].stride(1) == 1 and args["B"].stride(2) == 1
        out = selective_scan(**args, delta_softplus=True, backend=backend)
        weight = torch.linspace(-1, 1, out.numel(), dtype=dtype).reshape(out.shape)
        results.append((out, torch.autograd.grad((out * weight).sum(), list(leaves.values()))))
    torch.testing.assert_close(results[1], results[0], **TOL[dtype])
