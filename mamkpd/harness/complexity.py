"""Parameters and GFLOPs under a stated convention.

``fvcore`` (the default): fvcore's ``FlopCountAnalysis`` on the model's forward at batch 1, no
decoding. One multiply-add counts as one flop (the MAC convention). The selective scan is one
``mamkpd::selective_scan`` node counted with Mamba's formula; any other op fvcore cannot count is
reported, and only the cheap element-wise ops of ``FREE_OPS`` may go uncounted.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field

import torch
from torch import nn

from ..models import create_model, model_info
from ..ops import resolve_backend, selective_scan_flop_jit

__all__ = ["Complexity", "FREE_OPS", "count_params", "measure_complexity", "measure_model"]

# Element-wise, comparison and data-movement ops whose cost is negligible next to the matrix work and
# which fvcore does not count; anything else uncounted is a bug in the counting.
FREE_OPS = frozenset({
    "aten::add", "aten::add_", "aten::sub", "aten::rsub", "aten::mul", "aten::mul_", "aten::div", "aten::div_",
    "aten::neg", "aten::exp", "aten::flip", "aten::silu", "aten::silu_", "aten::relu", "aten::relu_",
    "aten::gelu", "aten::sigmoid", "aten::softmax", "aten::clamp", "aten::clamp_min", "aten::pow",
    "aten::sqrt", "aten::rsqrt", "aten::max_pool2d", "aten::hardswish", "aten::hardsigmoid", "aten::mean",
    "aten::sum", "aten::dropout", "aten::fill_", "aten::zeros_like", "aten::ones_like", "aten::sort",
    "aten::topk", "aten::argmax", "aten::max", "aten::abs", "aten::log", "aten::floor_divide",
    "aten::scatter_", "aten::index", "aten::gather", "aten::repeat", "aten::pad", "aten::constant_pad_nd",
    "aten::bernoulli_", "aten::expand_as", "aten::linspace", "aten::arange", "aten::meshgrid",
})


@dataclass
class Complexity:
    model: str
    params: int
    flops: int  # multiply-adds
    input_size: tuple[int, int]
    batch: int = 1
    flops_convention: str = "MAC"
    counter: str = "fvcore"
    scan_backend: str | None = None
    unsupported_ops: dict[str, int] = field(default_factory=dict)
    by_operator: dict[str, float] = field(default_factory=dict)

    @property
    def gflops(self) -> float:
        return self.flops / 1e9

    @property
    def uncounted_non_free(self) -> dict[str, int]:
        return {op: n for op, n in self.unsupported_ops.items() if op not in FREE_OPS}

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["gflops"] = self.gflops
        d["input_size"] = list(self.input_size)
        return d


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def measure_model(model: nn.Module, input_size: tuple[int, int], name: str = "", batch: int = 1,
                  in_channels: int = 3) -> Complexity:
    """Count params and fvcore MACs of ``model`` on a (batch, in_channels, H, W) input."""
    from fvcore.nn import FlopCountAnalysis

    model = model.eval()
    x = torch.zeros(batch, in_channels, *input_size)
    backend = getattr(model, "scan_backend", None)
    if backend is not None:
        model.scan_backend = resolve_backend(backend, x.device)
        if model.scan_backend == "reference":
            raise ValueError("count complexity with the 'torch' or 'cuda' scan backend: the reference scan "
                             "is a Python loop that fvcore would count step by step")
    # fvcore logs every skipped op and module at WARNING: we report them ourselves
    logging.getLogger("fvcore.nn.jit_analysis").setLevel(logging.ERROR)
    with torch.no_grad():
        analysis = FlopCountAnalysis(model, x).set_op_handle("mamkpd::selective_scan", selective_scan_flop_jit)
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        total = int(analysis.total())
        unsupported = dict(analysis.unsupported_ops())
        by_op = {k: float(v) for k, v in analysis.by_operator().items()}
    return Complexity(model=name or type(model).__name__, params=count_params(model), flops=total,
                      input_size=tuple(input_size), batch=batch, scan_backend=getattr(model, "scan_backend", None),
                      unsupported_ops=unsupported, by_operator=by_op)


def measure_complexity(name: str, input_size: tuple[int, int] | None = None, batch: int = 1,
                       **overrides) -> Complexity:
    """Build the registered model ``name`` (with factory overrides) and count it."""
    info = model_info(name)
    size = tuple(input_size) if input_size else info.input_size
    if input_size and "input_size" not in overrides and info.family == "mamkpd":
        overrides["input_size"] = size
    model = create_model(name, **overrides)
    return measure_model(model, size, name=name, batch=batch)
