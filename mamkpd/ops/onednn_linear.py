"""Every float32 ``Linear`` of an inference forward on a CPU run by oneDNN instead of MKL: an execution
setting for timings (the ``fp32-onednn`` preset), applied to every model alike.

Why: PyTorch runs a float32 ``F.linear`` as an MKL SGEMM, and on AMD CPUs MKL runs its AVX2 code: about 100
GFLOP/s per core on this suite's 2-core EPYC, for every projection shape of MamKPD-B (96-768 channels, 192-24576
rows). oneDNN, which already runs PyTorch's convolutions (so HRNet's), runs AVX-512 there: the same products
at 200-250 GFLOP/s through ``torch.ops.mkldnn._linear_pointwise`` (the op ``torch.compile``'s CPU backend
lowers linear layers to), with the same results to float32 rounding. So models built from linear layers
(MamKPD's projections, the transformers' attention and MLPs) pay twice per FLOP what convolutional ones pay,
on a machine whose MKL does not dispatch AVX-512. Timing with this setting shows each architecture at the
GEMM speed its hardware has; timing without it shows what a plain PyTorch user gets.

Only calls that need no gradient take the oneDNN path (no autograd is registered for that op); inside a
``torch.jit`` trace (fvcore's counts) or a ``torch.compile``/``torch.export`` trace the plain ``F.linear`` runs,
so counts and exported graphs do not change.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from .selective_scan import needs_grad

__all__ = ["OneDNNLinear", "onednn_linear_unavailable"]


def onednn_linear_unavailable() -> str | None:
    """Why this PyTorch build cannot run linear layers on oneDNN (None where it can)."""
    if not torch.backends.mkldnn.is_available():
        return "this PyTorch build has no oneDNN (torch.backends.mkldnn.is_available() is False)"
    if not hasattr(torch.ops.mkldnn, "_linear_pointwise"):
        return "this PyTorch build has no torch.ops.mkldnn._linear_pointwise"
    return None


def _takes(x, weight, bias) -> bool:
    """Whether this ``F.linear`` call can run on oneDNN: CPU float32 tensors, no gradient needed, not traced."""
    if not (isinstance(x, torch.Tensor) and isinstance(weight, torch.Tensor) and weight.dim() == 2):
        return False
    tensors = (x, weight) if bias is None else (x, weight, bias)
    if any(t.device.type != "cpu" or t.dtype != torch.float32 for t in tensors):
        return False
    if needs_grad(*tensors):
        return False
    return not (torch.jit.is_tracing() or torch.compiler.is_compiling())


class OneDNNLinear(TorchFunctionMode):
    """Within it, ``F.linear`` (so ``nn.Linear``) on CPU float32 tensors that need no gradient runs as oneDNN's
    inner product; every other call, and every other function, runs as it would."""

    def __enter__(self):
        reason = onednn_linear_unavailable()
        if reason:
            raise RuntimeError(f"linear layers on oneDNN: {reason}")
        return super().__enter__()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.linear:
            x, weight, *rest = args
            bias = rest[0] if rest else kwargs.get("bias")
            if _takes(x, weight, bias):
                return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
        return func(*args, **kwargs)
