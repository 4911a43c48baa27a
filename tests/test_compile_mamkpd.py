"""torch.compile and torch.export of MamKPD: one graph, no breaks, one scan node per SS2D."""

from __future__ import annotations

import pytest
import torch

from mamkpd import create_model
from mamkpd.export import (
    CROSS_SCAN_OP,
    SCAN_OP,
    compile_model,
    count_scan_nodes,
    count_ss2d,
    example_input,
    export_program,
    prepare_for_export,
)

SIZE = (128, 96)  # the registered architecture at a smaller input: same graph, faster forward passes


@pytest.fixture(scope="module")
def mamkpd_b():
    return prepare_for_export(create_model("mamkpd_b", input_size=SIZE))


@pytest.mark.slow
def test_compile_fullgraph_matches_eager(mamkpd_b):
    # batch 1; inductor compiles once, for the whole module
    x = example_input(SIZE)
    with torch.inference_mode():
        expected = mamkpd_b(x)
    torch._dynamo.reset()
    compiled, stats = compile_model(mamkpd_b, x)
    assert stats.graphs == 1 and stats.graph_breaks == 0, stats.break_reasons
    with torch.inference_mode():
        got = compiled(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)
    # fullgraph=True would have raised on a break; Dynamo's own counters agree
    assert not torch._dynamo.utils.counters["graph_break"]


def test_export_has_one_scan_node_per_ss2d(mamkpd_b):
    x = example_input(SIZE)
    program = export_program(mamkpd_b, x)
    assert count_ss2d(mamkpd_b) == sum(mamkpd_b.config.depths) == 12
    assert count_scan_nodes(program) == 12
    # SS2D's fused cross scan where the backend has one (numba), else the plain scan: one node either way
    scan_nodes = [n for n in program.graph.nodes if n.target in (SCAN_OP, CROSS_SCAN_OP)]
    assert len(scan_nodes) == 12
    # the backend travels as a constant argument: what auto picks on a CPU, the compiled numba scan; an exported
    # (inference) program keeps nothing for a backward
    arguments = [dict(zip((a.name for a in n.target._schema.arguments), n.args, strict=True)) for n in scan_nodes]
    assert all(a["backend"] == "numba" and a["keep_saved"] is False for a in arguments)
    with torch.no_grad():  # and the exported program runs it
        torch.testing.assert_close(program.module()(x), mamkpd_b(x), rtol=1e-5, atol=1e-6)


def test_scan_op_fake_kernel_matches_on_strided_inputs():
    """The op's fake kernel must describe the real output exactly (inductor asserts strides):
    non-contiguous inputs once gave a transposed fake output and a crash under torch.compile."""
    batch, dim, length, n = 2, 8, 20, 4
    u = torch.randn(batch, length, dim).transpose(1, 2)  # (batch, dim, L), channels innermost
    z = torch.randn(batch, length, dim).transpose(1, 2)
    args = [
        u,
        torch.rand(batch, dim, length),
        -torch.rand(dim, n),
        torch.randn(batch, n, length),
        torch.randn(batch, n, length),
        torch.randn(dim),
        z,
        torch.randn(dim),
    ]
    for t in args:
        t.requires_grad_(True)
    torch.library.opcheck(torch.ops.mamkpd.selective_scan.default, (*args, True, "torch", True))
