"""COCO-style keypoint AP for COCO person keypoints and AP-10K.

Which COCO API is used where, and why:
- COCO (``coco_keypoint_ap``): pycocotools' COCOeval (iouType "keypoints"), the official COCO API
  that HRNet and SimpleBaseline evaluated with; COCO's 17 sigmas, OKS scaled by the GT ``area``.
- AP-10K (``ap10k_ap``): xtcocotools' COCOeval with AP-10K's sigmas, exactly what MMPose 0.x's
  AnimalAP10KDataset runs (the code behind AP-10K's baselines and ViTPose's AP-10K numbers).
- ``use_area=False`` (OKS scaled by 0.53 x box area) exists only in xtcocotools.
Both libraries compute the same OKS and the same accumulation for keypoints with ``use_area=True``;
tests check that they agree on the real samples.

AP-10K's average over species: COCOeval with its default ``useCats=1`` matches predictions to ground
truth only within the same category (species), accumulates precision per species, and its
summary averages over the 10 OKS thresholds, 101 recall points and the species present in the
split's ground truth (species without ground truth stay -1 and are left out). It is not a
category-agnostic evaluation: each result's ``category_id`` must be its species id.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
from importlib import metadata
from typing import Literal

import numpy as np

from mamkpd.data.infos import AP10K_SIGMAS, COCO_SIGMAS
from mamkpd.data.readers import check_coco_records, read_json

Evaluator = Literal["pycocotools", "xtcocotools"]
STAT_NAMES = ("AP", "AP50", "AP75", "APM", "APL", "AR", "AR50", "AR75", "ARM", "ARL")


# what COCO / COCOeval read from each record of a keypoint annotation file
GT_FIELDS = {
    "images": ("id",),
    "annotations": ("id", "image_id", "category_id", "keypoints", "num_keypoints", "area", "bbox"),
}


def _load_gt_json(ann_file: str) -> dict:
    data = read_json(ann_file, "annotation file")
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("annotations"), list)
        or not isinstance(data.get("images"), list)
    ):
        raise ValueError(f"{ann_file}: not a COCO keypoint annotation file (needs 'images' and 'annotations')")
    for section, fields in GT_FIELDS.items():
        check_coco_records(data, ann_file, section, fields)
    return data


def validate_results(results, gt: dict, num_keypoints: int, source: str = "results") -> None:
    """Raise ValueError naming the first bad entry: empty list, missing fields, wrong keypoint
    length, non-finite numbers, or an image/category that the ground truth does not have."""
    if not isinstance(results, list):
        raise ValueError(f"{source}: expected a JSON list of keypoint results, got {type(results).__name__}")
    if not results:
        raise ValueError(f"{source}: no results to evaluate (empty list)")
    image_ids = {img["id"] for img in gt["images"]}
    cat_ids = {c["id"] for c in gt.get("categories", [])} or {1}
    for i, r in enumerate(results):
        where = f"{source}[{i}]"
        if not isinstance(r, dict):
            raise ValueError(f"{where}: expected an object, got {type(r).__name__}")
        for key in ("image_id", "category_id", "keypoints", "score"):
            if key not in r:
                raise ValueError(f"{where}: missing '{key}'")
        kp = r["keypoints"]
        if not isinstance(kp, list) or len(kp) != 3 * num_keypoints:
            n = len(kp) if isinstance(kp, list) else type(kp).__name__
            raise ValueError(
                f"{where}: 'keypoints' has {n} values, expected {3 * num_keypoints} ([x, y, score] x {num_keypoints})"
            )
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in kp):
            raise ValueError(f"{where}: 'keypoints' must be finite numbers")
        if not isinstance(r["score"], (int, float)) or not math.isfinite(r["score"]):
            raise ValueError(f"{where}: 'score' must be a finite number, got {r['score']!r}")
        if r["image_id"] not in image_ids:
            raise ValueError(f"{where}: image_id {r['image_id']!r} is not an image of the annotation file")
        if r["category_id"] not in cat_ids:
            raise ValueError(
                f"{where}: category_id {r['category_id']!r} is not a category of the "
                f"annotation file ({len(cat_ids)} categories)"
            )


def _coco_api(evaluator: Evaluator):
    if evaluator == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    elif evaluator == "xtcocotools":
        try:
            from xtcocotools.coco import COCO
            from xtcocotools.cocoeval import COCOeval
        except ImportError as exc:
            raise RuntimeError(f"xtcocotools is not importable ({exc}); ./install.sh builds it from source") from None
    else:
        raise ValueError(f"evaluator must be 'pycocotools' or 'xtcocotools', got {evaluator!r}")
    return COCO, COCOeval


def keypoint_ap(
    ann_file: str,
    results: list[dict],
    sigmas: np.ndarray,
    *,
    use_area: bool = True,
    evaluator: Evaluator = "pycocotools",
) -> dict[str, float]:
    """COCOeval(iouType="keypoints") of ``results`` against ``ann_file`` with the given sigmas.

    Returns AP, AP50, AP75, APM, APL, AR, AR50, AR75, ARM, ARL as fractions.
    """
    sigmas = np.asarray(sigmas, dtype=np.float64)
    gt_json = _load_gt_json(ann_file)
    validate_results(results, gt_json, len(sigmas))
    if not use_area and evaluator != "xtcocotools":
        raise ValueError("use_area=False (OKS scaled by box area) is only available with evaluator='xtcocotools'")
    COCO, COCOeval = _coco_api(evaluator)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = copy.deepcopy(gt_json)
        gt.createIndex()
        dt = gt.loadRes(copy.deepcopy(results))
        if evaluator == "xtcocotools":
            ev = COCOeval(gt, dt, "keypoints", sigmas, use_area=use_area)
        else:
            ev = COCOeval(gt, dt, "keypoints")
            ev.params.kpt_oks_sigmas = sigmas
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {name: float(v) for name, v in zip(STAT_NAMES, ev.stats, strict=True)}


def evaluator_version(evaluator: Evaluator) -> str:
    """``"<library> <version>"`` for the protocol record."""
    try:
        return f"{evaluator} {metadata.version(evaluator)}"
    except metadata.PackageNotFoundError:
        return f"{evaluator} (version unknown)"


def coco_keypoint_ap(
    ann_file: str,
    results: list[dict],
    sigmas: np.ndarray | None = None,
    use_area: bool = True,
    evaluator: Evaluator | None = None,
) -> dict[str, float]:
    """COCO keypoint AP of ``results`` (COCO results format) with COCO's sigmas by default.

    The evaluator is pycocotools unless ``use_area=False`` (xtcocotools only) or asked otherwise.
    """
    evaluator = evaluator or ("pycocotools" if use_area else "xtcocotools")
    return keypoint_ap(
        ann_file, results, COCO_SIGMAS if sigmas is None else sigmas, use_area=use_area, evaluator=evaluator
    )


def ap10k_ap(ann_file: str, results: list[dict], evaluator: Evaluator = "xtcocotools") -> dict[str, float]:
    """AP-10K keypoint AP: per-species COCOeval with AP-10K's sigmas, averaged over species
    (see the module docstring); xtcocotools as MMPose 0.x."""
    return keypoint_ap(ann_file, results, AP10K_SIGMAS, use_area=True, evaluator=evaluator)
