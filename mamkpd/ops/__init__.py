"""Scan kernels: the selective scan's entry point, its reference and its backends."""

from .cross_selective_scan import cross_scan_positions, cross_selective_scan, cross_selective_scan_flop_jit
from .scan_contract import ScanBackend
from .scan_cuda import cuda_backend_available
from .scan_parallel import selective_scan_parallel
from .scan_reference import selective_scan_ref
from .scan_torch import selective_scan_chunked
from .scan_triton import cross_scan_bytes_moved, scan_bytes_moved
from .selective_scan import (
    AUTO_ORDER,
    BACKENDS,
    SCAN_BACKENDS,
    backend_unavailable,
    resolve_backend,
    selective_scan,
    selective_scan_flop_jit,
    selective_scan_flops,
)

__all__ = [
    "AUTO_ORDER",
    "BACKENDS",
    "SCAN_BACKENDS",
    "ScanBackend",
    "backend_unavailable",
    "cross_scan_bytes_moved",
    "cross_scan_positions",
    "cross_selective_scan",
    "cross_selective_scan_flop_jit",
    "cuda_backend_available",
    "resolve_backend",
    "scan_bytes_moved",
    "selective_scan",
    "selective_scan_chunked",
    "selective_scan_flop_jit",
    "selective_scan_flops",
    "selective_scan_parallel",
    "selective_scan_ref",
]
