"""Scan kernels: the selective scan with its reference, CPU and CUDA backends."""

from .selective_scan import (
    BACKENDS,
    cuda_backend_available,
    resolve_backend,
    selective_scan,
    selective_scan_chunked,
    selective_scan_flop_jit,
    selective_scan_flops,
    selective_scan_parallel,
    selective_scan_ref,
)

__all__ = [
    "BACKENDS",
    "cuda_backend_available",
    "resolve_backend",
    "selective_scan",
    "selective_scan_chunked",
    "selective_scan_flop_jit",
    "selective_scan_flops",
    "selective_scan_parallel",
    "selective_scan_ref",
]
