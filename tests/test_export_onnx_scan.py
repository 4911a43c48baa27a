"""The scans' ONNX form (:mod:`mamkpd.ops.scan_onnx`): the loop over time against the reference eagerly, and
the lowered custom ops through onnxruntime, one ONNX ``Scan`` node each, with a batch size the graph was
not traced at."""

from __future__ import annotations

import onnx
import pytest
import torch
from torch import nn

from mamkpd.export import CROSS_SCAN_OP, DEFAULT_TOLERANCE, SCAN_OP, count_scan_nodes, lower_scan, onnx_session
from mamkpd.ops import cross_selective_scan, cross_selective_scan_stepwise, selective_scan, selective_scan_ref
from mamkpd.ops.cross_selective_scan import cross_selective_scan_unfused

HEIGHT, WIDTH = 5, 7  # L = 35: odd, a multiple of no power of two


def _scan_inputs(batch: int, dim: int, length: int, d_state: int, groups: int, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)  # noqa: E731
    return dict(
        u=r(batch, dim, length),
        delta=r(batch, dim, length),
        A=-torch.rand(dim, d_state, generator=g, dtype=dtype) * 4,
        B=r(batch, groups, d_state, length),
        C=r(batch, groups, d_state, length),
        D=r(dim),
        z=r(batch, dim, length),
        delta_bias=r(dim),
    )


def _cross_inputs(batch: int, dim: int, d_state: int, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)  # noqa: E731
    return dict(
        x=r(batch, dim, HEIGHT, WIDTH),
        delta=r(batch, 4, dim, HEIGHT, WIDTH),
        A=-torch.rand(4 * dim, d_state, generator=g, dtype=dtype) * 4,
        B=r(batch, 4, d_state, HEIGHT, WIDTH),
        C=r(batch, 4, d_state, HEIGHT, WIDTH),
        D=r(4 * dim),
        delta_bias=r(4 * dim),
    )


@pytest.mark.parametrize("with_optional", [True, False])
def test_cross_form_matches_the_reference(with_optional):
    inputs = _cross_inputs(2, 6, 4, dtype=torch.float64)
    if not with_optional:
        inputs.update(D=None, delta_bias=None)
    expected = cross_selective_scan_unfused(**inputs, delta_softplus=True, backend="reference")
    got = cross_selective_scan_stepwise(**inputs, delta_softplus=True)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)


class _Scan(nn.Module):
    def forward(self, u, delta, A, B, C, D, z, delta_bias):
        return selective_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus=True, backend="torch")


class _CrossScan(nn.Module):
    def forward(self, x, delta, A, B, C, D, delta_bias):
        return cross_selective_scan(x, delta, A, B, C, D, delta_bias, delta_softplus=True, backend="numba")


def _onnx_run(module: nn.Module, trace: dict, run: dict, op, tmp_path) -> torch.Tensor:
    """Export ``module`` with a dynamic batch (traced on ``trace``), check the graphs, run it on ``run``."""
    batch = torch.export.Dim("batch", min=1, max=64)
    dynamic = {
        k: ({0: batch} if v.shape[0] == trace["B"].shape[0] and k not in ("A", "D", "delta_bias") else None)
        for k, v in trace.items()
    }
    program = torch.export.export(module, (), kwargs=trace, dynamic_shapes=dynamic)
    assert [n.target for n in program.graph.nodes if n.op == "call_function"].count(op) == 1  # the custom op kept
    lowered = lower_scan(program)
    assert count_scan_nodes(lowered) == 0
    path = tmp_path / "scan.onnx"
    torch.onnx.export(lowered, (), kwargs=trace, dynamo=True, optimize=False).save(str(path))
    graph = onnx.load(str(path)).graph
    assert [n.op_type for n in graph.node].count("Scan") == 1  # all directions and the batch in one loop
    assert "mamkpd" not in {n.domain for n in graph.node}
    session = onnx_session(path)
    feed = {i.name: t.numpy() for i, t in zip(session.get_inputs(), run.values(), strict=True)}  # names lowercased
    return torch.from_numpy(session.run(None, feed)[0])


def test_scan_in_onnxruntime_matches_the_reference(tmp_path):
    trace, run = (_scan_inputs(b, 16, 37, 8, groups=2, seed=b) for b in (2, 3))
    got = _onnx_run(_Scan(), trace, run, SCAN_OP, tmp_path)
    expected = selective_scan_ref(**run, delta_softplus=True)
    assert got.shape == expected.shape
    assert float((got - expected).abs().max()) <= DEFAULT_TOLERANCE


def test_cross_scan_in_onnxruntime_matches_eager(tmp_path):
    pytest.importorskip("numba")  # the backend with a fused cross scan on a CPU
    trace, run = (_cross_inputs(b, 16, 8, seed=b) for b in (2, 3))
    got = _onnx_run(_CrossScan(), trace, run, CROSS_SCAN_OP, tmp_path)
    with torch.no_grad():
        eager = _CrossScan()(**run)
    reference = cross_selective_scan_unfused(**run, delta_softplus=True, backend="reference")
    assert got.shape == eager.shape
    assert float((got - eager).abs().max()) <= DEFAULT_TOLERANCE
    assert float((got - reference).abs().max()) <= DEFAULT_TOLERANCE
