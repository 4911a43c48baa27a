"""``mamkpd eval-results``: score a results file already written, exactly as it is.

No rescoring and no OKS-NMS happen here: those belong to inference (``mamkpd evaluate``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval-results",
        help="evaluate a COCO/AP-10K results file or MPII predictions as they are",
        description="COCO / AP-10K: keypoint AP of a COCO keypoint results file (list of {image_id, "
        "category_id, keypoints [x, y, s]*17, score}) against --ann-file. MPII: PCKh@0.5 "
        "(HRNet / MMPose 0.x) of a JSON list, in annotation order, of 16 [x, y] 0-based "
        "pixel coordinates per person against --gt-mat. The file is evaluated as it is.",
        epilog="examples: mamkpd eval-results --dataset coco --ann-file person_keypoints_val2017.json "
        "--results results.json --json | mamkpd eval-results --dataset mpii --gt-mat "
        "mpii_gt_val.mat --results pred.json",
    )
    p.add_argument("--dataset", required=True, choices=("coco", "ap10k", "mpii"))
    p.add_argument("--results", required=True, help="results JSON file")
    p.add_argument("--ann-file", help="COCO-format annotation file (coco, ap10k)")
    p.add_argument("--gt-mat", help="mpii_gt_val.mat (mpii)")
    p.add_argument(
        "--evaluator",
        choices=("pycocotools", "xtcocotools"),
        help="COCO API (default: pycocotools for coco, xtcocotools for ap10k)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object: metrics and protocol")
    p.set_defaults(func=run)


def _load_results(path: str):
    from ..data.readers import read_json

    data = read_json(path, "results file")
    if isinstance(data, list) and not data:
        raise ValueError(f"{path}: no results to evaluate (empty list)")
    return data


def _mpii_predictions(data, path: str) -> np.ndarray:
    import numpy as np

    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of people, each 16 [x, y] pairs")
    try:
        pred = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{path}: every person must be 16 [x, y] number pairs") from None
    if pred.ndim != 3 or pred.shape[1:] != (16, 2):
        raise ValueError(f"{path}: expected shape (N, 16, 2), got {pred.shape}")
    if not np.all(np.isfinite(pred)):
        raise ValueError(f"{path}: non-finite coordinates")
    return pred


def run(args: argparse.Namespace) -> int:
    from ..evaluation import ap10k_ap, coco_keypoint_ap, evaluator_version, mpii_pckh
    from ..evaluation.coco import STAT_NAMES
    from ..evaluation.mpii import PCKH_COLUMNS, PCKH_THRESHOLD, SC_BIAS

    data = _load_results(args.results)
    if args.dataset == "mpii":
        if not args.gt_mat:
            raise ValueError("--dataset mpii needs --gt-mat mpii_gt_val.mat")
        metrics = mpii_pckh(_mpii_predictions(data, args.results), args.gt_mat)
        protocol = {
            "metric": f"PCKh@{PCKH_THRESHOLD} (HRNet / MMPose 0.x, from mpii_gt_val.mat)",
            "head_size": f"{SC_BIAS} x head-box diagonal",
            "threshold": f"<= {PCKH_THRESHOLD}",
            "mean": "14 joints, pelvis and thorax excluded, weighted by visible count",
            "units": "percent",
            "gt": args.gt_mat,
        }
        names = PCKH_COLUMNS
    else:
        if not args.ann_file:
            raise ValueError(f"--dataset {args.dataset} needs --ann-file")
        if args.dataset == "coco":
            evaluator = args.evaluator or "pycocotools"
            metrics = coco_keypoint_ap(args.ann_file, data, evaluator=evaluator)
            sigmas = "COCO's 17 keypoint sigmas (pycocotools default)"
        else:
            evaluator = args.evaluator or "xtcocotools"
            metrics = ap10k_ap(args.ann_file, data, evaluator=evaluator)
            sigmas = "AP-10K sigmas (MMPose configs/_base_/datasets/ap10k.py)"
        protocol = {
            "metric": "COCO keypoint AP (COCOeval iouType=keypoints, per-category matching)",
            "evaluator": evaluator_version(evaluator),
            "sigmas": sigmas,
            "oks_scale": "ground-truth area",
            "rescoring": "none (file evaluated as is)",
            "nms": "none (file evaluated as is)",
            "units": "fraction; null = no ground truth in range",
            "ann_file": args.ann_file,
        }
        names = STAT_NAMES
    # COCOeval reports -1 for an area range without ground truth: that is "undefined", not a score
    values = {
        k: (None if v is None or (isinstance(v, float) and (math.isnan(v) or v == -1.0)) else v)
        for k, v in metrics.items()
    }
    protocol["results"] = args.results
    if args.json:
        print(json.dumps({**values, "protocol": protocol}, indent=2))
        return 0
    print(f"{args.dataset} — {protocol['metric']}")
    for k in names:
        v = values[k]
        print(f"  {k:<10} {'n/a' if v is None else (f'{v:.2f}' if args.dataset == 'mpii' else f'{v:.4f}')}")
    for k, v in protocol.items():
        if k != "metric":
            print(f"  [{k}] {v}", file=sys.stdout)
    return 0
