"""The ``triton`` scan backend and the fused cross scan against the reference: outputs and every gradient.

Without a GPU the kernels run in Triton's interpreter on CPU tensors (small shapes, the interpreter's small
tiles, so that every length below crosses a chunk and a channel block is partly masked); with one, the
``gpu`` variants run the compiled kernels on the same cases.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_ops_selective_scan import NAMES, make_inputs, run
from triton_interpreter import (  # sets TRITON_INTERPRET where there is no GPU, before the kernels are defined
    TRITON_MISSING,
    requires_cuda,
    requires_interpreter,
    triton_36_scalar_index,
)

from mamkpd.models.layers.cross_scan import cross_merge, cross_scan
from mamkpd.ops import (
    auto_order,
    cross_scan_bytes_moved,
    cross_selective_scan,
    scan_bytes_moved,
    selective_scan,
    selective_scan_ref,
)
from mamkpd.ops.cross_selective_scan import cross_selective_scan_unfused
from mamkpd.ops.scan_triton import (
    INTERPRETER_CONFIG,
    triton_cross_scan_backward,
    triton_cross_scan_forward,
    triton_scan_backward,
    triton_scan_forward,
)

DEVICES = [pytest.param("cpu", marks=requires_interpreter), pytest.param("cuda", marks=requires_cuda)]

# Tolerance relative to the largest magnitude of each compared tensor. float64: the same arithmetic as the
# reference up to association (exact formulas). float32: rounding of ~10^2 accumulated fp32 steps. fp16 and
# bf16: both sides compute in fp32 from the same half inputs and round the result once, so they differ by
# at most an ulp of the output dtype (2^-11, 2^-8 relative): two ulps.
TOL = {torch.float64: 1e-9, torch.float32: 1e-4, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


def assert_scaled_close(got, want, dtype, name):
    assert got.dtype == want.dtype, f"{name}: dtype {got.dtype} != {want.dtype}"
    scale = want.double().abs().max().item()
    torch.testing.assert_close(
        got.double(), want.double(), rtol=TOL[dtype], atol=TOL[dtype] * max(scale, 1e-30), msg=f"{name}"
    )


def on(device, inputs, dtype=None, param_dtype=None):
    """Inputs moved to ``device``; u, delta, B, C, z cast to ``dtype``, A, D, delta_bias to ``param_dtype``."""
    params = ("A", "D", "delta_bias")
    cast = lambda k, v: v.to(param_dtype if k in params and param_dtype else dtype or v.dtype)  # noqa: E731
    return {k: None if v is None else cast(k, v).to(device) for k, v in inputs.items()}


def check_against_reference(inputs, softplus, dtype):
    ref_out, ref_grads = run("reference", inputs, softplus)
    out, grads = run("triton", inputs, softplus)
    assert_scaled_close(out, ref_out, dtype, "output")
    assert set(grads) == set(ref_grads)
    for name, g in grads.items():
        assert g.shape == inputs[name].shape
        assert_scaled_close(g, ref_grads[name], dtype, f"gradient of {name}")


# ------------------------------------------------------------------------------------ per-group scan


@pytest.mark.parametrize("device", DEVICES)
# one step; exactly one of the backward's chunks (8 steps in the interpreter); three chunks, the last partial.
# One state, and a number of states that is not a power of two (a padded tile).
@pytest.mark.parametrize("length, d_state", [(1, 5), (8, 1), (23, 5)])
def test_triton_matches_reference(device, length, d_state):
    # 12 channels in 2 groups: 6 a group, a partly masked channel block of 8
    inputs = on(device, make_inputs(dim=12, d_state=d_state, length=length, groups=2))
    check_against_reference(inputs, softplus=True, dtype=torch.float64)


@requires_interpreter
def test_chunk_loops_run_under_triton_36s_interpreter_with_numpy_2():
    # two chunks, forward and backward, with the interpreter turning scalars into ints as Triton 3.6 does
    inputs = make_inputs(dim=12, d_state=3, length=23, groups=2)
    with triton_36_scalar_index():
        check_against_reference(inputs, softplus=True, dtype=torch.float64)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "groups, options, softplus",
    [
        (None, dict(D=False, z=False, delta_bias=False), False),  # 3-d B and C, no optional input
        (1, dict(D=True, z=False, delta_bias=False), True),
        (4, dict(D=False, z=True, delta_bias=True), False),
        (None, dict(D=True, z=True, delta_bias=True), True),
    ],
)
def test_optional_inputs_and_groups(device, groups, options, softplus):
    inputs = on(device, make_inputs(batch=1, length=13, groups=groups, **options))
    check_against_reference(inputs, softplus, dtype=torch.float64)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_single_and_half_precision(device, dtype):
    # SS2D's mix: activations in the compute dtype, A, D and delta_bias in float32
    inputs = on(device, make_inputs(batch=1, length=23, groups=2), dtype=dtype, param_dtype=torch.float32)
    check_against_reference(inputs, softplus=True, dtype=dtype)


@pytest.mark.parametrize("device", DEVICES)
def test_three_d_B_with_one_group_C(device):
    inputs = on(device, make_inputs(batch=1, length=20))
    ref_out, ref_grads = run("reference", inputs, softplus=True)
    out, grads = run("triton", {**inputs, "C": inputs["C"].unsqueeze(1)}, softplus=True)
    assert_scaled_close(out, ref_out, torch.float64, "output")
    assert grads["C"].shape == (1, 1, 8, 20)
    assert_scaled_close(grads["C"].squeeze(1), ref_grads["C"], torch.float64, "gradient of C")
    assert_scaled_close(grads["B"], ref_grads["B"], torch.float64, "gradient of B")


@pytest.mark.parametrize("device", DEVICES)
def test_other_tile_sizes(device):
    # two channel blocks a group (their dB and dC meet in the atomics), six chunks of four steps, the last partial
    from mamkpd.ops.scan_triton import KernelConfig, triton_scan_backward, triton_scan_forward

    config = KernelConfig(block_d=4, num_warps=1, chunk=4)
    inputs = on(device, make_inputs(batch=1, dim=12, length=23, groups=2))
    ref_out, ref_grads = run("reference", inputs, softplus=True)
    args = [inputs[k] for k in NAMES]
    gout = torch.linspace(-1, 1, ref_out.numel(), dtype=torch.float64, device=device).reshape(ref_out.shape)
    out = triton_scan_forward(*args, delta_softplus=True, config=config)
    assert_scaled_close(out, ref_out, torch.float64, "output")
    grads = triton_scan_backward(gout, *args, delta_softplus=True, config=config)
    for name, g in zip(NAMES, grads, strict=True):
        assert_scaled_close(g, ref_grads[name], torch.float64, f"gradient of {name}")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("index", range(3))
def test_every_gpu_config(device, index):
    # each launch shape the autotuner may pick on a GPU, by name (the GPU check runs the tests without tuning)
    from mamkpd.ops.scan_triton import GPU_CHUNK, GPU_CONFIGS, KernelConfig, triton_scan_backward, triton_scan_forward

    assert len(GPU_CONFIGS) == 3
    tuned = GPU_CONFIGS[index]
    config = KernelConfig(block_d=tuned.block_d, num_warps=tuned.num_warps, chunk=GPU_CHUNK)
    inputs = on(device, make_inputs(batch=1, dim=12, length=37, groups=2))  # two full chunks and a partial one
    ref_out, ref_grads = run("reference", inputs, softplus=True)
    args = [inputs[k] for k in NAMES]
    gout = torch.linspace(-1, 1, ref_out.numel(), dtype=torch.float64, device=device).reshape(ref_out.shape)
    assert_scaled_close(
        triton_scan_forward(*args, delta_softplus=True, config=config), ref_out, torch.float64, "output"
    )
    grads = triton_scan_backward(gout, *args, delta_softplus=True, config=config)
    for name, g in zip(NAMES, grads, strict=True):
        assert_scaled_close(g, ref_grads[name], torch.float64, f"gradient of {name}")


@pytest.mark.parametrize("device", DEVICES)
def test_strided_inputs_are_read_in_place(device):
    # u, delta and z with channels innermost (time strided), B and C views of one wider tensor: the layouts a
    # model hands over, read through their strides
    inputs = on(device, make_inputs(batch=2, dim=12, length=11, groups=2, z=True))
    channels_last = lambda t: t.transpose(1, 2).contiguous().transpose(1, 2)  # noqa: E731
    for name in ("u", "delta", "z"):
        inputs[name] = channels_last(inputs[name])
    wide = torch.cat([inputs["B"], inputs["C"], inputs["B"]], dim=2)  # (batch, groups, 3N, L)
    n = inputs["B"].shape[2]
    inputs["B"], inputs["C"] = wide[:, :, :n], wide[:, :, n : 2 * n]
    assert not inputs["u"].is_contiguous() and not inputs["B"].is_contiguous()
    check_against_reference(inputs, softplus=True, dtype=torch.float64)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("keep_saved", [False, True])  # the backward sweeps for the states, or reads the forward's
def test_custom_op_registration_with_triton(device, keep_saved):
    # two chunks of the interpreter's 8 steps: the kept states are more than the zero start
    inputs = on(device, make_inputs(batch=1, dim=4, d_state=2, length=13, groups=2, dtype=torch.float32))
    for value in inputs.values():
        value.requires_grad_(True)
    args = tuple(inputs[k] for k in NAMES) + (True, "triton", keep_saved)
    torch.library.opcheck(torch.ops.mamkpd.selective_scan.default, args)


@requires_interpreter
def test_compiled_training_keeps_the_states_through_aot_autograd():
    # AOTAutograd traces the ops' fake kernels with keep_saved set (the kept states' shapes) and the backward
    # from them; gradients as eager's (which the tests above hold against the reference)
    cases = (
        (selective_scan, make_inputs(batch=1, dim=4, d_state=2, length=19, groups=2, dtype=torch.float32)),
        (cross_selective_scan, cross_inputs(batch=1, dim=2, height=3, width=4, d_state=2, dtype=torch.float32)),
    )
    for op, inputs in cases:
        leaves = {k: v.clone().requires_grad_(True) for k, v in inputs.items() if v is not None}
        run = lambda **kw: op(**kw, backend="triton")  # noqa: B023, E731
        compiled = torch.compile(run, fullgraph=True, backend="aot_eager")
        got, want = compiled(**leaves), run(**leaves)
        weight = torch.linspace(-1, 1, got.numel()).reshape(got.shape)
        grads = [torch.autograd.grad((y * weight).sum(), list(leaves.values())) for y in (got, want)]
        for g, w in zip(*grads, strict=True):
            torch.testing.assert_close(g, w, rtol=0, atol=0)


@requires_interpreter
def test_the_forward_keeps_the_states_the_reference_passes_through():
    """The chunk-start states a training forward keeps are the recurrence's own: the reference's output with C
    one-hot at state n is state n at every step (an independent route to h), read before steps 0, 8 and 16."""
    inputs = make_inputs(batch=2, dim=12, d_state=3, length=23, groups=2, z=False, D=False)
    _, states = triton_scan_forward(**inputs, delta_softplus=True, keep_states=True)
    chunk = INTERPRETER_CONFIG.chunk
    assert states.shape == (3, 4, 2 * 12) and states.dtype == torch.float64  # N = 3 padded to 4 in the tile
    for n in range(3):
        one_hot = torch.zeros_like(inputs["C"])
        one_hot[:, :, n] = 1.0
        h = selective_scan_ref(**{**inputs, "C": one_hot}, delta_softplus=True)  # (batch, dim, L): state n
        for c in range(3):
            want = torch.zeros(2 * 12, dtype=torch.float64) if c == 0 else h[:, :, c * chunk - 1].flatten()
            torch.testing.assert_close(states[c, n], want, rtol=1e-12, atol=1e-12, msg=f"chunk {c}, state {n}")


@requires_interpreter
@pytest.mark.parametrize("cross", [False, True])
def test_the_backward_from_kept_states_is_the_backward_that_sweeps_for_them(cross):
    # the same arithmetic either way (the forward's loop and the sweep compute h alike): the same bits
    if cross:
        inputs = cross_inputs(batch=2, dim=3, height=4, width=5, d_state=3)
        forward, backward = triton_cross_scan_forward, triton_cross_scan_backward
        out, states = forward(**inputs, delta_softplus=True, keep_states=True)
    else:
        inputs = make_inputs(batch=2, dim=12, d_state=3, length=23, groups=2)
        forward, backward = triton_scan_forward, triton_scan_backward
        out, states = forward(**inputs, delta_softplus=True, keep_states=True)
    torch.testing.assert_close(out, forward(**inputs, delta_softplus=True), rtol=0, atol=0)
    gout = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)
    swept = backward(gout, **inputs, delta_softplus=True)
    kept = backward(gout, **inputs, delta_softplus=True, states=states)
    for a, b in zip(swept, kept, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(b, a, rtol=0, atol=0)
    with pytest.raises(ValueError, match="do not belong to this call"):
        backward(gout, **inputs, delta_softplus=True, states=states[:1])


@pytest.mark.parametrize("device", DEVICES)
def test_dynamo_traces_both_ops_in_one_graph(device):
    # fullgraph: choosing the backend (its availability check) must not break the graph
    inputs = on(device, make_inputs(batch=1, dim=4, d_state=2, length=9, groups=2, dtype=torch.float32))
    scan = torch.compile(lambda **kw: selective_scan(**kw, backend="triton"), fullgraph=True, backend="eager")
    torch.testing.assert_close(scan(**inputs), selective_scan(**inputs, backend="triton"))
    cross = on(device, cross_inputs(batch=1, dim=2, height=3, width=4, d_state=2, dtype=torch.float32))
    fused = torch.compile(lambda **kw: cross_selective_scan(**kw, backend="triton"), fullgraph=True, backend="eager")
    torch.testing.assert_close(fused(**cross), cross_selective_scan(**cross, backend="triton"))


@pytest.mark.slow
@pytest.mark.skipif(TRITON_MISSING is not None, reason=TRITON_MISSING or "")
def test_kernels_compile_for_a_gpu():
    # the interpreter does not check what only the compiler refuses: compile for sm_80, sm_89 and sm_90 (A100,
    # RTX 4090, H100/H200), in a process of its own
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    script = Path(__file__).with_name("triton_gpu_compile.py")
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    for arch in (80, 89, 90):
        for kernel in ("forward-cross-bf16", "backward-cross-bf16", "forward-group-fp32-z", "backward-group-fp32-z"):
            assert f"sm_{arch} {kernel}:" in done.stdout, done.stdout


def test_auto_prefers_mamba_ssm_then_triton_on_cuda():
    assert auto_order("cuda") == ("cuda", "triton", "torch")
    assert "triton" not in auto_order("cpu")  # the interpreter is for tests, never picked by auto


@pytest.mark.skipif(TRITON_MISSING is not None, reason=TRITON_MISSING or "")
def test_unavailable_says_why(monkeypatch):
    from mamkpd.ops import backend_unavailable, scan_triton

    monkeypatch.setattr(scan_triton, "interpreting", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert "needs a CUDA device, or TRITON_INTERPRET=1" in backend_unavailable("triton", "cpu")
    inputs = make_inputs(batch=1, dim=2, length=3, dtype=torch.float32)
    with pytest.raises(RuntimeError, match="CPU tensors only with TRITON_INTERPRET=1"):
        scan_triton.triton_scan_forward(**inputs)


# ---------------------------------------------------------------------------------- fused cross scan


def cross_inputs(batch=2, dim=3, height=5, width=7, d_state=4, dtype=torch.float64, D=True, delta_bias=True):
    g = torch.Generator().manual_seed(2)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)  # noqa: E731
    return dict(
        x=r(batch, dim, height, width),
        delta=0.5 * r(batch, 4, dim, height, width),
        A=-(torch.rand(4 * dim, d_state, generator=g, dtype=dtype) + 0.1),
        B=r(batch, 4, d_state, height, width),
        C=r(batch, 4, d_state, height, width),
        D=r(4 * dim) if D else None,
        delta_bias=0.1 * r(4 * dim) if delta_bias else None,
    )


def scan_order(t):
    """(batch, 4, c, H, W) at spatial positions -> (batch, 4, c, H*W) each in its own direction's order, as
    SS2D's projections of cross_scan(x) produce them."""
    return torch.stack([cross_scan(t[:, k])[:, k] for k in range(4)], dim=1)


def models_cross_path(x, delta, A, B, C, D=None, delta_bias=None, delta_softplus=False):
    """SS2D's unfused path: cross_scan -> selective_scan (reference) -> cross_merge."""
    bsz, dim, height, width = x.shape
    ys = selective_scan(
        cross_scan(x).flatten(1, 2),
        scan_order(delta).flatten(1, 2),
        A,
        scan_order(B),
        scan_order(C),
        D,
        delta_bias=delta_bias,
        delta_softplus=delta_softplus,
        backend="reference",
    )
    return cross_merge(ys.view(bsz, 4, dim, height * width), height, width)


def run_cross(fn, inputs, softplus, **kwargs):
    leaves = {k: v.clone().requires_grad_(True) for k, v in inputs.items() if v is not None}
    out = fn(**{**inputs, **leaves}, delta_softplus=softplus, **kwargs)
    weight = torch.linspace(-1, 1, out.numel(), dtype=out.dtype, device=out.device).reshape(out.shape)
    grads = torch.autograd.grad((out * weight).sum(), list(leaves.values()))
    return out, dict(zip(leaves, grads, strict=True))


def check_cross(inputs, softplus, dtype, **kwargs):
    ref_inputs = {k: None if v is None else v.double().cpu() for k, v in inputs.items()}
    ref_out, ref_grads = run_cross(models_cross_path, ref_inputs, softplus)
    out, grads = run_cross(cross_selective_scan, inputs, softplus, **kwargs)
    assert out.dtype == inputs["x"].dtype and out.shape == inputs["x"].shape
    assert_scaled_close(out.double().cpu(), ref_out, dtype, "output")
    assert set(grads) == set(ref_grads)
    for name, g in grads.items():
        assert g.dtype == inputs[name].dtype
        assert_scaled_close(g.double().cpu(), ref_grads[name], dtype, f"gradient of {name}")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "shape, options, softplus",
    [
        ((1, 5, 7), dict(), True),  # odd, non-square: columns and rows differ; 35 steps, five chunks
        ((2, 4, 4), dict(D=False, delta_bias=False), False),  # two images: the batch offsets
        ((1, 1, 3), dict(), True),  # one row: the column-major directions are the row-major ones
    ],
)
def test_fused_cross_scan_matches_the_unfused_path(device, shape, options, softplus):
    batch, height, width = shape
    inputs = on(device, cross_inputs(batch=batch, height=height, width=width, **options))
    check_cross(inputs, softplus, torch.float64, backend="triton")


def ss2d_layouts(inputs, n_rank=2):
    """The cross scan's inputs in the memory SS2D holds them: x and delta channels-last, B and C slices of
    x_proj's (batch, H, W, 4, rank + 2N) output, permuted to (batch, 4, N, H, W)."""
    x, delta, B, C = inputs["x"], inputs["delta"], inputs["B"], inputs["C"]
    rank = torch.zeros(*B.shape[:2], n_rank, *B.shape[3:], dtype=B.dtype, device=B.device)
    x_dbl = torch.cat([rank, B, C], dim=2).permute(0, 3, 4, 1, 2).contiguous().permute(0, 3, 4, 1, 2)
    n = B.shape[2]
    return dict(
        inputs,
        x=x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2),
        delta=delta.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3),
        B=x_dbl[:, :, n_rank : n_rank + n],
        C=x_dbl[:, :, n_rank + n :],
    )


@pytest.mark.parametrize("device", DEVICES)
def test_fused_cross_scan_reads_ss2ds_layouts(device):
    # 20 channels: a full block of 16 and a partly masked one; 3 x 4 positions, two chunks
    inputs = ss2d_layouts(on(device, cross_inputs(batch=1, dim=20, height=3, width=4, d_state=3)))
    assert inputs["x"].is_contiguous(memory_format=torch.channels_last) and not inputs["B"].is_contiguous()
    check_cross(inputs, True, torch.float64, backend="triton")
    y = cross_selective_scan(**inputs, delta_softplus=True, backend="triton")
    assert y.is_contiguous(memory_format=torch.channels_last)  # as SS2D's next op reads it


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_cross_scan_in_single_and_half_precision(device, dtype):
    inputs = on(device, cross_inputs(batch=1, height=3, width=5), dtype=dtype, param_dtype=torch.float32)
    # the reference runs in float64 on the same (rounded) inputs: what differs is the fp32 arithmetic and
    # the rounding of the results to the inputs' dtype
    check_cross(inputs, True, dtype, backend="triton")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("projected", [False, True])
def test_cross_op_registration(device, projected):
    inputs = on(device, cross_inputs(batch=1, dim=2, height=2, width=3, d_state=2, dtype=torch.float32))
    weight = None
    if projected:  # a low-rank delta (rank 3) and its projection, which the op applies before the kernel
        inputs["delta"] = inputs["delta"][:, :, :1].expand(1, 4, 3, 2, 3).contiguous()
        weight = torch.randn(4, 2, 3, device=inputs["x"].device).requires_grad_(True)
    for value in inputs.values():
        value.requires_grad_(True)
    args = (*inputs.values(), weight, True, "triton", True)
    torch.library.opcheck(torch.ops.mamkpd.cross_selective_scan.default, args)


@pytest.mark.parametrize("backend", ["reference", "torch"])
def test_cross_scan_on_other_backends_is_the_unfused_path(backend):
    # no triton needed: gather, scan, scatter-add
    inputs = cross_inputs(height=3, width=5)
    ref_out, ref_grads = run_cross(models_cross_path, inputs, True)
    for fn in (cross_selective_scan, cross_selective_scan_unfused):
        out, grads = run_cross(fn, inputs, True, backend=backend)
        assert_scaled_close(out, ref_out, torch.float64, "output")
        for name, g in grads.items():
            assert_scaled_close(g, ref_grads[name], torch.float64, f"gradient of {name}")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fused", [True, False])
def test_ss2d_on_triton_matches_ss2d_on_torch(device, fused):
    """SS2D as MamKPD builds it: on triton its cross scan runs fused (one kernel) or as the unfused op; either
    way the block's output and every parameter's gradient equal those of the torch backend."""
    from mamkpd.models.layers import SS2D

    torch.manual_seed(0)
    block = SS2D(6, d_state=3, dt_rank=2, scan_backend="torch").double().to(device)
    # 15 steps: two of the interpreter's chunks; 12 channels: a partly masked block of 16
    x = torch.randn(1, 3, 5, 6, dtype=torch.float64, device=device)
    weight = torch.randn(1, 3, 5, 6, dtype=torch.float64, device=device)

    def output_and_grads(backend):
        block.scan_backend, block.fused_cross_scan = backend, fused
        block.zero_grad()
        out = block(x)
        (out * weight).sum().backward()
        return out.detach(), {n: p.grad.clone() for n, p in block.named_parameters()}

    want, want_grads = output_and_grads("torch")
    got, got_grads = output_and_grads("triton")
    assert_scaled_close(got, want, torch.float64, "output")
    for name, g in got_grads.items():
        assert_scaled_close(g, want_grads[name], torch.float64, f"gradient of {name}")


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(x=torch.zeros(2, 3, 35)), "x must be"),
        (dict(A=torch.zeros(3, 4)), "A must be"),
        (dict(delta=torch.zeros(2, 3, 5, 7)), "delta must be"),
        (dict(B=torch.zeros(2, 4, 4, 7, 5)), "B must be"),
        (dict(D=torch.zeros(3)), "D must be"),
    ],
)
def test_cross_scan_bad_shapes_name_the_argument(change, message):
    with pytest.raises(ValueError, match=message):
        cross_selective_scan(**{**cross_inputs(dtype=torch.float32), **change}, backend="torch")


# ------------------------------------------------------------------------------------ memory traffic


def test_bytes_moved_counts_every_input_and_output_once():
    inputs = make_inputs(batch=2, dim=8, length=30, d_state=4, groups=2, dtype=torch.float16, z=True)
    inputs = {k: v.float() if k in ("A", "D", "delta_bias") else v for k, v in inputs.items()}
    out = selective_scan_ref(**inputs)
    nbytes = lambda ts: sum(t.numel() * t.element_size() for t in ts)  # noqa: E731
    assert scan_bytes_moved(2, 8, 30, 4, groups=2, itemsize=2, with_z=True) == nbytes([*inputs.values(), out])
    # backward: the inputs and gout read, a gradient of every input written
    assert scan_bytes_moved(2, 8, 30, 4, groups=2, itemsize=2, with_z=True, backward=True) == 2 * nbytes(
        inputs.values()
    ) + nbytes([out])
    cross = cross_inputs(batch=2, dim=3, height=5, width=7, d_state=4, dtype=torch.float32)
    y = cross["x"]  # same shape and dtype as the output
    assert cross_scan_bytes_moved(2, 3, 5, 7, 4) == nbytes([*cross.values(), y])
    assert cross_scan_bytes_moved(2, 3, 5, 7, 4, backward=True) == 2 * nbytes(cross.values()) + nbytes([y])
