"""Reusable blocks shared by MamKPD and the baselines."""

from .context_modeling import ContextModeling, LinearPatchEmbed, PatchMerging
from .cross_scan import cross_merge, cross_scan
from .heads import DeconvHead
from .ss2d import SS2D, SS2DBlock, scan_backend_of

__all__ = [
    "ContextModeling",
    "LinearPatchEmbed",
    "PatchMerging",
    "cross_merge",
    "cross_scan",
    "DeconvHead",
    "SS2D",
    "SS2DBlock",
    "scan_backend_of",
]
