"""MPII PCKh@0.5 exactly as HRNet's ``mpii.py evaluate`` (identical in MMPose 0.x) computes it.

A joint is correct when its distance to the ground truth, divided by the head size
SC_BIAS (0.6) x the diagonal of the annotated head box, is <= 0.5. Joints marked missing in
``jnt_missing`` are left out. Per-joint PCKh = 100 x correct / visible. Columns: Head (head top),
Shoulder, Elbow, Wrist, Hip, Knee, Ankle (left/right averaged), Mean over the 14 joints other than
pelvis (6) and thorax (7) weighted by their visible counts, and Mean@0.1. Predictions are 0-based
pixels; mpii_gt_val.mat is MATLAB 1-based, so 1 is added to predictions before comparing (HRNet).

HRNet's own "Mean@0.1" column is not at 0.1: it reads row 11 of PCKh over the thresholds
np.arange(0, 0.51, 0.01), i.e. threshold 0.11 (an index off by one). Both are reported: ``Mean@0.1``
at 0.1, and HRNet's column under a name that says what it is, ``HRNET_MEAN01_NAME``.

MMPose 1.x evaluates MPII through a different code path (MpiiPCKAccuracy on head sizes stored in
its converted annotations), not this .mat-based computation; the numbers the paper's baselines
report come from this older protocol.
"""

from __future__ import annotations

import os

import numpy as np

from mamkpd.data.readers import load_mpii_gt

SC_BIAS = 0.6
PCKH_THRESHOLD = 0.5
# mpii_gt_val.mat's dataset_joints, the same order as the HRNet/MMPose MPII json
MPII_MAT_JOINTS = (
    "rank",
    "rkne",
    "rhip",
    "lhip",
    "lkne",
    "lank",
    "pelv",
    "thor",
    "neck",
    "head",
    "rwri",
    "relb",
    "rsho",
    "lsho",
    "lelb",
    "lwri",
)
# HRNet's construction of its "Mean@0.1" threshold: rng = np.arange(0, 0.5 + 0.01, 0.01); pckAll[11]
HRNET_MEAN01_THRESHOLD = float(np.arange(0, 0.5 + 0.01, 0.01)[11])
HRNET_MEAN01_NAME = f"HRNet Mean@0.1 (PCKh@{HRNET_MEAN01_THRESHOLD:g})"
PCKH_COLUMNS = ("Head", "Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle", "Mean")
_PAIRS = {
    "Shoulder": ("lsho", "rsho"),
    "Elbow": ("lelb", "relb"),
    "Wrist": ("lwri", "rwri"),
    "Hip": ("lhip", "rhip"),
    "Knee": ("lkne", "rkne"),
    "Ankle": ("lank", "rank"),
}


def _pck_per_joint(scaled_err: np.ndarray, visible: np.ndarray, threshold: float) -> np.ndarray:
    count = visible.sum(axis=0)
    correct = ((scaled_err <= threshold) & visible).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return 100.0 * correct / count


def mpii_pckh(pred: np.ndarray, gt, threshold: float = PCKH_THRESHOLD) -> dict[str, float]:
    """PCKh of ``pred`` (N, 16, 2), 0-based pixels in annotation order, in percent.

    ``gt`` is the path of mpii_gt_val.mat, or a tuple (gt_xy (N, 16, 2) 0-based, visible (N, 16),
    head_sizes (N,) already multiplied by SC_BIAS, as ``Record.head_size``).
    """
    pred = np.asarray(pred, dtype=np.float64)
    if isinstance(gt, (str, os.PathLike)):
        g = load_mpii_gt(os.fspath(gt))
        names = g.joint_names
        gt_xy, visible, head = g.positions, ~g.missing, g.head_sizes(SC_BIAS)
        pred = pred + 1.0  # 0-based predictions vs MATLAB 1-based ground truth
    else:
        gt_xy, visible, head = (np.asarray(v) for v in gt)
        names = list(MPII_MAT_JOINTS)
    visible = np.asarray(visible).astype(bool)
    if pred.ndim != 3 or pred.shape[1:] != (16, 2):
        raise ValueError(f"MPII predictions must be (N, 16, 2), got {pred.shape}")
    if pred.shape[0] != gt_xy.shape[0]:
        raise ValueError(
            f"{pred.shape[0]} predicted people but the ground truth has {gt_xy.shape[0]} "
            "(predictions must follow the annotation order, one per person)"
        )
    idx = {n: names.index(n) for n in MPII_MAT_JOINTS if n in names}
    missing = [n for n in MPII_MAT_JOINTS if n not in idx]
    if missing:
        raise ValueError(f"MPII ground truth lacks joints {missing} in dataset_joints")
    err = np.linalg.norm(pred - gt_xy, axis=2)
    with np.errstate(divide="ignore", invalid="ignore"):
        scaled = err / np.asarray(head, dtype=np.float64)[:, None]
    pck = _pck_per_joint(scaled, visible, threshold)
    pck01 = _pck_per_joint(scaled, visible, 0.1)
    pck_hrnet01 = _pck_per_joint(scaled, visible, HRNET_MEAN01_THRESHOLD)
    counts = visible.sum(axis=0).astype(np.float64)
    used = np.ones(16, bool)
    used[6:8] = False  # pelvis and thorax are not part of the Mean (HRNet masks indices 6:8)
    ratio = np.where(used, counts, 0.0) / counts[used].sum()
    out = {"Head": float(pck[idx["head"]])}
    for col, (left, right) in _PAIRS.items():
        out[col] = float(0.5 * (pck[idx[left]] + pck[idx[right]]))
    out["Mean"] = float(np.nansum(np.where(used, pck * ratio, 0.0)))
    out["Mean@0.1"] = float(np.nansum(np.where(used, pck01 * ratio, 0.0)))
    out[HRNET_MEAN01_NAME] = float(np.nansum(np.where(used, pck_hrnet01 * ratio, 0.0)))
    return out
