"""Whole-model graphs of registered models: ``torch.compile`` and ``torch.export`` with the scan as one node.

The selective scan is the custom op ``mamkpd::selective_scan``, SS2D's fused cross scan the custom op
``mamkpd::cross_selective_scan`` (fake kernels and autograd registered), so Dynamo traces MamKPD with no
graph break and ``torch.export`` keeps each SS2D's scan as a single node. For ONNX, :func:`lower_scan`
replaces those nodes by :func:`mamkpd.ops.selective_scan_stepwise` and
:func:`mamkpd.ops.cross_selective_scan_stepwise`: the same computations as one loop over time (torch's
``scan``), which the ONNX exporter writes as one ONNX ``Scan`` node per SS2D (why that form:
:mod:`mamkpd.ops.scan_onnx`); the ``custom-op`` form keeps the nodes and writes each as one custom ONNX
node instead (:mod:`mamkpd.export.custom_op`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..models import model_info, scan_backend_of
from ..models.layers import SS2D
from ..ops import AUTO, cross_selective_scan_stepwise, get_backend, selective_scan_stepwise

__all__ = [
    "SCAN_OP",
    "CROSS_SCAN_OP",
    "prepare_for_export",
    "input_size_of",
    "example_input",
    "export_program",
    "count_scan_nodes",
    "count_ss2d",
    "lower_scan",
    "CompileStats",
    "compile_model",
]

SCAN_OP = torch.ops.mamkpd.selective_scan.default
CROSS_SCAN_OP = torch.ops.mamkpd.cross_selective_scan.default
MAX_DYNAMIC_BATCH = 1024


def prepare_for_export(model: nn.Module) -> nn.Module:
    """``model`` in eval mode with its scans (if any) on a backend that traces as one op node: the one it
    runs, or, where that one is not a custom op (``reference``), what ``auto`` picks on the model's device
    (``numba`` on a CPU with numba installed). Build it with :func:`mamkpd.create_model` (``checkpoint_path=``
    loads its weights, ``scan_backend=`` chooses the backend)."""
    if hasattr(model, "scan_backend"):
        # "reference" would unroll a Python loop over time into the graph. The backend name is a constant
        # argument of each scan node: the graph is the same for every backend, and a compiled or exported
        # program runs the scan on the one named there (the ONNX lowering replaces the node whatever it names).
        # Each SS2D keeps its path: the fused cross scan where the backend has one, else the plain scan
        running = scan_backend_of(model)
        if running is None or not get_backend(running).in_custom_op:
            model.scan_backend = AUTO
    return model.eval()


def input_size_of(name: str, overrides: dict | None = None) -> tuple[int, int]:
    """(H, W) a model built with ``overrides`` takes: their ``input_size``, else the registered one."""
    size = (overrides or {}).get("input_size") or model_info(name).input_size
    return int(size[0]), int(size[1])


def example_input(input_size: tuple[int, int], batch: int = 1, seed: int = 0) -> Tensor:
    """A fixed random batch of images (N, 3, H, W), fp32 on the CPU."""
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    height, width = input_size
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


def export_program(model: nn.Module, example: Tensor, dynamic_batch: bool = False) -> torch.export.ExportedProgram:
    """``torch.export`` of ``model`` on ``example``; with ``dynamic_batch`` the batch size is symbolic."""
    dynamic_shapes = None
    if dynamic_batch:
        if example.shape[0] < 2:
            raise ValueError("a dynamic-batch export needs an example batch of at least 2 (batch 1 specialises)")
        dynamic_shapes = ({0: torch.export.Dim("batch", min=1, max=MAX_DYNAMIC_BATCH)},)
    with torch.inference_mode(False), torch.no_grad():
        return torch.export.export(model, (example,), dynamic_shapes=dynamic_shapes)


def count_scan_nodes(program: torch.export.ExportedProgram | torch.fx.GraphModule) -> int:
    """Number of scan nodes (``mamkpd::selective_scan`` and ``mamkpd::cross_selective_scan``) in an exported
    program or graph module."""
    graph = program.graph
    return sum(1 for node in graph.nodes if node.op == "call_function" and node.target in (SCAN_OP, CROSS_SCAN_OP))


def count_ss2d(model: nn.Module) -> int:
    """Number of SS2D modules (each runs exactly one selective scan over its four directions)."""
    return sum(1 for module in model.modules() if isinstance(module, SS2D))


# each returns the op's (output, tensors kept for the backward); an exported program runs no backward
def _stepwise_scan(
    u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, backend="torch", keep_saved=False
):
    return selective_scan_stepwise(u, delta, A, B, C, D, z, delta_bias, delta_softplus), []


def _stepwise_cross_scan(
    x, delta, A, B, C, D=None, delta_bias=None, delta_proj_weight=None, delta_softplus=False, backend="torch",
    keep_saved=False,
):  # fmt: skip
    return cross_selective_scan_stepwise(x, delta, A, B, C, D, delta_bias, delta_softplus, delta_proj_weight), []


def lower_scan(program: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    """Replace every scan node by its loop over time (one ONNX ``Scan`` each once exported); programs
    without one are returned as is.

    ``run_decompositions`` with a two-entry table touches nothing else: the ONNX exporter applies its
    own decompositions afterwards and keeps the ops it translates directly (layer norm, convolutions).
    """
    if count_scan_nodes(program) == 0:
        return program
    lowered = program.run_decompositions({SCAN_OP: _stepwise_scan, CROSS_SCAN_OP: _stepwise_cross_scan})
    left = count_scan_nodes(lowered)
    if left:
        raise RuntimeError(f"{left} selective-scan node(s) survived the lowering to ONNX's scan form")
    return lowered


@dataclass
class CompileStats:
    """What Dynamo did while compiling: graphs captured, graph breaks and their reasons, seconds."""

    graphs: int
    graph_breaks: int
    break_reasons: list[str]
    compile_seconds: float  # first call: tracing, lowering and code generation


def compile_model(
    model: nn.Module, example: Tensor, mode: str | None = None, backend: str = "inductor", fullgraph: bool = True
) -> tuple[Callable[[Tensor], Tensor], CompileStats]:
    """``torch.compile`` ``model`` and run it once on ``example`` (the compilation happens there).

    Returns the compiled callable and Dynamo's statistics for that first call. With ``fullgraph`` a
    graph break raises instead of being counted.
    """
    from torch._dynamo.utils import counters

    breaks_before = dict(counters["graph_break"])
    graphs_before = counters["stats"]["unique_graphs"]
    compiled = torch.compile(model, mode=mode, backend=backend, fullgraph=fullgraph)
    start = time.perf_counter()
    with torch.inference_mode():
        compiled(example)
    seconds = time.perf_counter() - start
    reasons = [
        reason for reason, count in counters["graph_break"].items() for _ in range(count - breaks_before.get(reason, 0))
    ]
    stats = CompileStats(
        graphs=counters["stats"]["unique_graphs"] - graphs_before,
        graph_breaks=len(reasons),
        break_reasons=reasons,
        compile_seconds=seconds,
    )
    return compiled, stats
