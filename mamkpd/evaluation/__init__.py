"""Metrics of the published protocols: COCO / AP-10K keypoint AP, MPII PCKh, rescoring and OKS-NMS."""

from mamkpd.evaluation.coco import (
    STAT_NAMES,
    ap10k_ap,
    coco_keypoint_ap,
    evaluator_version,
    keypoint_ap,
    validate_results,
)
from mamkpd.evaluation.mpii import PCKH_COLUMNS, mpii_pckh
from mamkpd.evaluation.nms import oks_matrix, oks_nms, oks_nms_indices, rescore

__all__ = [
    "PCKH_COLUMNS",
    "STAT_NAMES",
    "ap10k_ap",
    "coco_keypoint_ap",
    "evaluator_version",
    "keypoint_ap",
    "mpii_pckh",
    "oks_matrix",
    "oks_nms",
    "oks_nms_indices",
    "rescore",
    "validate_results",
]
