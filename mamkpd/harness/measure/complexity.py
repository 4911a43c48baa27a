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

from ...models import count_params, create_model, model_info, scan_backend_of
from ...ops import cross_selective_scan_flop_jit, get_backend, selective_scan_flop_jit
from .count_cache import cached_count

__all__ = [
    "Complexity",
    "FREE_OPS",
    "measure_complexity",
    "measure_model",
    "fvcore_analysis",
    "SCAN_FLOP_HANDLES",
    "HRNET_REPO_CONVENTION",
    "measure_model_hrnet_repo",
    "measure_complexity_hrnet_repo",
]

# Element-wise, comparison and data-movement ops whose cost is negligible next to the matrix work and
# which fvcore does not count; anything else uncounted is a bug in the counting.
FREE_OPS = frozenset(
    {
        "aten::add",
        "aten::add_",
        "aten::sub",
        "aten::rsub",
        "aten::mul",
        "aten::mul_",
        "aten::div",
        "aten::div_",
        "aten::neg",
        "aten::exp",
        "aten::flip",
        "aten::silu",
        "aten::silu_",
        "aten::relu",
        "aten::relu_",
        "aten::gelu",
        "aten::sigmoid",
        "aten::softmax",
        "aten::clamp",
        "aten::clamp_min",
        "aten::pow",
        "aten::sqrt",
        "aten::rsqrt",
        "aten::max_pool2d",
        "aten::hardswish",
        "aten::hardsigmoid",
        "aten::mean",
        "aten::sum",
        "aten::dropout",
        "aten::fill_",
        "aten::zeros_like",
        "aten::ones_like",
        "aten::sort",
        "aten::topk",
        "aten::argmax",
        "aten::max",
        "aten::abs",
        "aten::log",
        "aten::floor_divide",
        "aten::lt",
        "aten::all",
        "aten::scatter_",
        "aten::index",
        "aten::gather",
        "aten::repeat",
        "aten::pad",
        "aten::constant_pad_nd",
        "aten::bernoulli_",
        "aten::expand_as",
        "aten::linspace",
        "aten::arange",
        "aten::meshgrid",
        "aten::cos",
        "aten::sin",  # sine position encodings (RTMO), computed once per grid cell
    }
)


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
    gflops_divisor: float = 1e9  # the HRNet repository's counter divides by 2**30

    @property
    def gflops(self) -> float:
        return self.flops / self.gflops_divisor

    @property
    def gflops_without_scan(self) -> float:
        """What fvcore reports when nothing counts the scan (a plain fvcore run on a mamba-ssm model)."""
        return (self.flops - self.by_operator.get("selective_scan", 0.0)) / self.gflops_divisor

    @property
    def uncounted_non_free(self) -> dict[str, int]:
        return {op: n for op, n in self.unsupported_ops.items() if op not in FREE_OPS}

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["gflops"] = self.gflops
        d["gflops_without_scan"] = self.gflops_without_scan
        d["input_size"] = list(self.input_size)
        return d


# the scan ops' fvcore handles: SS2D's fused cross scan (numba, triton) counts as the four scans it replaces
SCAN_FLOP_HANDLES = {
    "mamkpd::selective_scan": selective_scan_flop_jit,
    "mamkpd::cross_selective_scan": cross_selective_scan_flop_jit,
}


def fvcore_analysis(model: nn.Module, x: torch.Tensor, **extra_handles):
    """fvcore's ``FlopCountAnalysis`` of ``model`` on ``x`` with the scan ops' handles (and ``extra_handles``)
    set, and fvcore's own warnings off (it logs every skipped op and module): callers report those themselves."""
    from fvcore.nn import FlopCountAnalysis

    logging.getLogger("fvcore.nn.jit_analysis").setLevel(logging.ERROR)
    analysis = FlopCountAnalysis(model, x).set_op_handle(**SCAN_FLOP_HANDLES, **extra_handles)
    return analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)


def measure_model(
    model: nn.Module, input_size: tuple[int, int], name: str = "", batch: int = 1, in_channels: int = 3
) -> Complexity:
    """Count params and fvcore MACs of ``model`` on a (batch, in_channels, H, W) input."""
    model = model.eval()
    x = torch.zeros(batch, in_channels, *input_size)
    backend = scan_backend_of(model)
    if backend is not None and not get_backend(backend).in_custom_op:
        raise ValueError(
            f"count complexity on another scan backend than {backend!r}: its scan is a Python loop that fvcore "
            "would count step by step"
        )
    with torch.no_grad():
        analysis = fvcore_analysis(model, x)
        total = int(analysis.total())
        unsupported = dict(analysis.unsupported_ops())
        by_op = {k: float(v) for k, v in analysis.by_operator().items()}
    # SS2D's fused cross scan (numba, triton) is the same scan as four unfused ones: one "selective_scan" entry
    if "cross_selective_scan" in by_op:
        by_op["selective_scan"] = by_op.get("selective_scan", 0.0) + by_op.pop("cross_selective_scan")
    return Complexity(
        model=name or type(model).__name__,
        params=count_params(model),
        flops=total,
        input_size=tuple(input_size),
        batch=batch,
        scan_backend=scan_backend_of(model),
        unsupported_ops=unsupported,
        by_operator=by_op,
    )


def measure_complexity(name: str, input_size: tuple[int, int] | None = None, batch: int = 1, **overrides) -> Complexity:
    """Build the registered model ``name`` (with factory overrides) at ``input_size`` (its own when None)
    and count it, or take the count from the on-disk cache (:mod:`.count_cache`) when this checkout's code
    counted it before."""
    size = tuple(input_size) if input_size else model_info(name).input_size
    return cached_count(
        Complexity,
        name,
        size,
        batch,
        overrides,
        lambda: measure_model(create_model(name, input_size=size, **overrides), size, name=name, batch=batch),
    )


HRNET_REPO_CONVENTION = (
    "HRNet repository get_model_summary: multiply-adds of modules whose class name contains "
    "'Conv' (weight numel x output H x W, so a transposed conv is counted on its output "
    "size) and of nn.Linear (output numel x input.size(1)); nothing else; divided by 2**30"
)


def measure_model_hrnet_repo(
    model: nn.Module, input_size: tuple[int, int], name: str = "", batch: int = 1, in_channels: int = 3
) -> Complexity:
    """Count ``model`` the way the HRNet repository's ``lib/utils/utils.py::get_model_summary`` does.

    The paper's HRNet and SimpleBaseline GFLOPs come from this counter. It hooks every module except
    containers and the model itself, counts only conv and linear layers, charges a conv its weight
    size times its output's spatial size (a stride-2 transposed conv is charged 4x its multiply-adds)
    and a linear layer its output size times ``input.size(1)`` (the token count, not the width, for
    (N, L, C) inputs), ignores the batch, and divides by 2**30.
    """
    counts: dict[str, int] = {}

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        kind = type(module).__name__
        if "Conv" in kind and hasattr(module, "weight"):
            flops = module.weight.numel() * int(torch.tensor(output.shape[2:]).prod())
        elif isinstance(module, nn.Linear):
            flops = output.numel() * inputs[0].size(1)
        else:
            return
        counts[kind] = counts.get(kind, 0) + int(flops)

    model = model.eval()
    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if m is not model and not isinstance(m, (nn.ModuleList, nn.Sequential))
    ]
    try:
        with torch.no_grad():
            model(torch.zeros(batch, in_channels, *input_size))
    finally:
        for handle in handles:
            handle.remove()
    return Complexity(
        model=name or type(model).__name__,
        params=count_params(model),
        flops=sum(counts.values()),
        input_size=tuple(input_size),
        batch=batch,
        flops_convention=HRNET_REPO_CONVENTION,
        counter="hrnet_repo",
        scan_backend=scan_backend_of(model),
        by_operator={k: float(v) for k, v in counts.items()},
        gflops_divisor=2.0**30,
    )


def measure_complexity_hrnet_repo(name: str, input_size: tuple[int, int] | None = None, **overrides) -> Complexity:
    """:func:`measure_model_hrnet_repo` on the registered model ``name``."""
    size = tuple(input_size) if input_size else model_info(name).input_size
    return measure_model_hrnet_repo(create_model(name, input_size=size, **overrides), size, name=name)
