"""Whole-image inference of one-stage models (RTMO, KAPAO, GroupPose) on COCO, as their authors evaluate them:
each image letterboxed as the model declares (its ``whole_image_input``, a
:class:`mamkpd.codecs.letterbox.WholeImageInput`), the model's own ``predict`` (its decoding with the official
thresholds, people mapped back to the image through the letterbox's placement), COCO keypoint results scored by
the model's instance score with no rescoring and no OKS-NMS, scored with ``mamkpd.evaluation.coco_keypoint_ap``.
The top-down path is :mod:`.inference`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn as nn

from ..codecs.letterbox import letterbox
from .checkpoint import write_json
from .inference import results_for_file

__all__ = ["evaluate_whole_image", "predict_image", "whole_image_coco_results"]


@torch.no_grad()
def predict_image(model: nn.Module, image_bgr: np.ndarray, augment: bool = False) -> dict[str, np.ndarray]:
    """People in one image, in image pixels: ``bboxes`` (M, 4) xyxy, ``scores``, ``keypoints`` (M, K, 2),
    ``keypoint_scores`` (M, K), as numpy arrays. ``augment``: the model's test-time augmentation (a model
    whose ``whole_image_input.augments`` is false has none)."""
    spec = model.whole_image_input
    if augment and not spec.augments:
        raise ValueError(f"{type(model).__name__} has no test-time augmentation (flip test): evaluate it without")
    device = next(model.parameters()).device
    x, placement = letterbox(image_bgr, model.input_size, spec, rect=not augment)
    extra = {"augment": True} if augment else {}
    people = model.eval().predict(x[None].to(device), placements=[placement], **extra)[0]
    return {k: v.float().cpu().numpy() for k, v in people.items()}


def whole_image_coco_results(
    model: nn.Module,
    ann_file: str | os.PathLike,
    image_dir: str | os.PathLike,
    augment: bool = False,
    limit: int | None = None,
) -> list[dict]:
    """COCO keypoint results for every image of ``ann_file`` (the model's instance score as the score)."""
    ann_file, image_dir = Path(ann_file), Path(image_dir)
    if not ann_file.is_file():
        raise FileNotFoundError(f"annotation file not found: {ann_file}")
    images = json.loads(ann_file.read_text())["images"][:limit]
    results = []
    for info in images:
        path = image_dir / info["file_name"]
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise FileNotFoundError(f"image {path} (image_id {info['id']}) is missing or unreadable")
        people = predict_image(model, image, augment)
        for kpts, kscores, score in zip(people["keypoints"], people["keypoint_scores"], people["scores"], strict=True):
            flat = np.concatenate([kpts, kscores[:, None]], axis=1).reshape(-1)
            results.append(
                {
                    "image_id": int(info["id"]),
                    "category_id": 1,
                    "keypoints": [float(v) for v in flat],
                    "score": float(score),
                }
            )
    return results


def evaluate_whole_image(
    model: nn.Module,
    ann_file: str | os.PathLike,
    image_dir: str | os.PathLike,
    *,
    flip_test: bool,
    sigmas: np.ndarray | None = None,
    results_file: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """COCO keypoint AP of ``model`` on ``ann_file``'s images; the report has :func:`mamkpd.engine.evaluate`'s
    shape. ``flip_test`` runs the model's test-time augmentation where it declares one."""
    from .. import evaluation

    spec = model.whole_image_input
    augment = flip_test and spec.augments
    results = whole_image_coco_results(model, ann_file, image_dir, augment)
    # a model that finds no one (an untrained one) scores 0, as it would with one wrong person per image
    metrics = (
        evaluation.coco_keypoint_ap(str(ann_file), results, sigmas=sigmas, evaluator="pycocotools")
        if results
        else dict.fromkeys(evaluation.STAT_NAMES, 0.0)
    )
    if results_file is not None:
        write_json(results_file, results_for_file(results))
    protocol = {
        "dataset": "coco",
        "ann_file": str(ann_file),
        "box_source": "none (one-stage: the model finds the people)",
        "flip_test": augment,
        "test_time_augmentation": "the model's own" if augment else "none",
        "codec": "the model's own decoding",
        "letterbox": spec.resampling,
        "input_channels": f"{spec.channels.upper()}, divided by {spec.divide_by:g}"
        + (f", normalised by mean {list(spec.mean)} and std {list(spec.std)}" if spec.mean is not None else ""),
        "input_size": list(model.input_size),
        "rect_stride": None if augment else spec.rect_stride,
        "rescoring": "none",
        "nms": "the model's own",
        "device": str(next(model.parameters()).device),
        "metric": "COCO keypoint AP (coco_keypoint_ap)",
        "evaluator": evaluation.evaluator_version("pycocotools"),
    }
    return {
        "metrics": {k: float(v) for k, v in metrics.items()},
        "protocol": protocol,
        "num_instances": len(results),
        "results_file": str(results_file) if results_file else None,
    }
