"""HRNet's post-processing of top-down COCO results: rescoring and OKS-based NMS."""

from __future__ import annotations

import numpy as np

from mamkpd.data.infos import COCO_SIGMAS


def oks_matrix(keypoints: np.ndarray, areas: np.ndarray, sigmas: np.ndarray | None = None) -> np.ndarray:
    """Pairwise object keypoint similarity (N, N) between poses (N, K, >=2) of box areas (N,).

    HRNet's ``oks_iou``: every joint counts (no visibility mask), the scale is the mean of the two
    areas, ``exp(-d^2 / (2 * mean_area * (2 sigma)^2))`` averaged over joints.
    """
    kp = np.asarray(keypoints, dtype=np.float64)[..., :2]
    sig = np.asarray(COCO_SIGMAS if sigmas is None else sigmas, dtype=np.float64)
    if kp.ndim != 3 or kp.shape[1] != len(sig):
        raise ValueError(f"keypoints must be (N, {len(sig)}, 2+) for {len(sig)} sigmas, got {kp.shape}")
    variances = (2 * sig) ** 2
    a = np.asarray(areas, dtype=np.float64)
    d2 = ((kp[:, None] - kp[None, :]) ** 2).sum(-1)  # (N, N, K)
    mean_area = (a[:, None] + a[None, :]) / 2 + np.spacing(1)
    e = d2 / variances / mean_area[..., None] / 2
    return np.exp(-e).mean(-1)


def oks_nms_indices(
    keypoints: np.ndarray, scores: np.ndarray, areas: np.ndarray, thr: float = 0.9, sigmas: np.ndarray | None = None
) -> list[int]:
    """Greedy NMS: keep the best-scored pose, drop others whose OKS with it exceeds ``thr``, repeat.

    Returns kept indices in the order kept (descending score; ties keep the later index first, as
    HRNet's reversed argsort).
    """
    n = len(scores)
    if n == 0:
        return []
    oks = oks_matrix(keypoints, areas, sigmas)
    order = np.argsort(np.asarray(scores, dtype=np.float64), kind="stable")[::-1]
    keep = []
    while order.size:
        i = order[0]
        keep.append(int(i))
        order = order[1:][oks[i, order[1:]] <= thr]
    return keep


def _group_by_image(results: list[dict]) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = {}
    for i, r in enumerate(results):
        groups.setdefault(r["image_id"], []).append(i)
    return groups


def oks_nms(results: list[dict], thr: float = 0.9, sigmas: np.ndarray | None = None) -> list[dict]:
    """OKS-NMS per image over COCO keypoint results, each needing ``area`` (the padded box area,
    as HRNet/MMPose use) besides ``image_id``, ``keypoints`` and ``score``. Returns the kept results,
    image by image in first-seen order, each image's best first."""
    missing = [i for i, r in enumerate(results) if "area" not in r]
    if missing:
        raise ValueError(f"oks_nms: results[{missing[0]}] has no 'area' (the box area OKS is scaled by)")
    kept = []
    for idx in _group_by_image(results).values():
        kp = np.array([np.reshape(results[i]["keypoints"], (-1, 3)) for i in idx])
        scores = np.array([results[i]["score"] for i in idx])
        areas = np.array([results[i]["area"] for i in idx])
        kept.extend(results[idx[j]] for j in oks_nms_indices(kp, scores, areas, thr, sigmas))
    return kept


def rescore(results: list[dict], thr: float = 0.2) -> list[dict]:
    """HRNet's rescoring: score = box score x mean of the keypoint scores above ``thr`` (0 if none).

    Returns new dicts; the input is left untouched.
    """
    out = []
    for r in results:
        s = np.reshape(r["keypoints"], (-1, 3))[:, 2]
        confident = s[s > thr]
        kpt_score = float(confident.mean()) if confident.size else 0.0
        out.append({**r, "score": float(r["score"]) * kpt_score})
    return out
