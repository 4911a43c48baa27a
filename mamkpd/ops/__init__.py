"""Kernels: the selective scan's entry point, its reference and its backends; linear layers on oneDNN."""

from .cross_selective_scan import cross_scan_positions, cross_selective_scan, cross_selective_scan_flop_jit
from .onednn_linear import OneDNNLinear, onednn_linear_unavailable
from .scan_contract import CrossScan, ScanBackend
from .scan_cuda import cuda_backend_available
from .scan_onnx import ONNX_SCAN_FORM, cross_selective_scan_stepwise, selective_scan_stepwise
from .scan_reference import selective_scan_ref
from .scan_torch import selective_scan_chunked
from .scan_triton import cross_scan_bytes_moved, scan_bytes_moved
from .selective_scan import (
    AUTO,
    SCAN_BACKEND_CHOICES,
    SCAN_BACKENDS,
    auto_order,
    backend_unavailable,
    check_scan_backend,
    get_backend,
    resolve_backend,
    selective_scan,
    selective_scan_flop_jit,
    selective_scan_flops,
)

__all__ = [
    "AUTO",
    "ONNX_SCAN_FORM",
    "SCAN_BACKEND_CHOICES",
    "SCAN_BACKENDS",
    "CrossScan",
    "OneDNNLinear",
    "ScanBackend",
    "auto_order",
    "backend_unavailable",
    "check_scan_backend",
    "get_backend",
    "onednn_linear_unavailable",
    "cross_scan_bytes_moved",
    "cross_scan_positions",
    "cross_selective_scan",
    "cross_selective_scan_flop_jit",
    "cross_selective_scan_stepwise",
    "cuda_backend_available",
    "resolve_backend",
    "scan_bytes_moved",
    "selective_scan",
    "selective_scan_chunked",
    "selective_scan_flop_jit",
    "selective_scan_flops",
    "selective_scan_ref",
    "selective_scan_stepwise",
]
