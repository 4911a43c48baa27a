"""RTMO's whole-image inference path, as MMPose evaluates it on COCO: letterbox each image to 640x640
(aspect kept, centred, padded with 114, raw BGR without normalisation), run the model, decode (score
threshold 0.1, box NMS 0.65), map people back to the image. The results are COCO keypoint results
scored by their box score (``score_mode='bbox'``) with no OKS-NMS; score them with
``mamkpd.evaluation.coco_keypoint_ap``. The top-down path is :mod:`mamkpd.engine.inference`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch

if TYPE_CHECKING:
    from baselines.rtmo import RTMO

PAD_VALUE = 114


@dataclass(frozen=True)
class Letterbox:
    """Where the model input sits in the image: the input covers a ``scale`` (w, h) region centred at
    ``center``, in image pixels (MMPose's ``input_center`` / ``input_scale``)."""

    center: np.ndarray
    scale: np.ndarray
    input_size: tuple[int, int]  # (H, W)

    def to_image(self, points: np.ndarray) -> np.ndarray:
        """(..., 2) input pixels -> image pixels."""
        wh = np.array(self.input_size[::-1], dtype=np.float32)
        return points * (self.scale / wh) + self.center - 0.5 * self.scale

    def to_input(self, points: np.ndarray) -> np.ndarray:
        wh = np.array(self.input_size[::-1], dtype=np.float32)
        return (points - self.center + 0.5 * self.scale) * (wh / self.scale)


def letterbox(
    image_bgr: np.ndarray, input_size: tuple[int, int] = (640, 640), pad_value: int = PAD_VALUE
) -> tuple[torch.Tensor, Letterbox]:
    """(H, W, 3) uint8 BGR -> (3, h, w) float32 raw BGR input and its placement (BottomupResize 'fit')."""
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) BGR image, got shape {image_bgr.shape}")
    img_h, img_w = image_bgr.shape[:2]
    in_h, in_w = input_size
    fit = min(in_w / img_w, in_h / img_h)  # resized image fits inside the input, aspect kept
    center = np.array([img_w / 2, img_h / 2], dtype=np.float32)
    scale = np.array([in_w / fit, in_h / fit], dtype=np.float32)
    s = in_w / scale[0]
    warp = np.array([[s, 0, in_w / 2 - s * center[0]], [0, s, in_h / 2 - s * center[1]]], dtype=np.float32)
    out = cv2.warpAffine(
        image_bgr, warp, (in_w, in_h), flags=cv2.INTER_LINEAR, borderValue=(pad_value, pad_value, pad_value)
    )
    tensor = torch.from_numpy(np.ascontiguousarray(out.transpose(2, 0, 1))).float()
    return tensor, Letterbox(center, scale, (in_h, in_w))


@torch.no_grad()
def predict_image(model: RTMO, image_bgr: np.ndarray, score_thr: float = 0.1, nms_thr: float = 0.65) -> dict:
    """People in one image, in image pixels: ``bboxes`` (M, 4) xyxy, ``scores``, ``keypoints`` (M, K, 2),
    ``keypoint_scores`` (M, K), as numpy arrays."""
    device = next(model.parameters()).device
    x, box = letterbox(image_bgr, model.input_size)
    people = model.eval().predict(x[None].to(device), score_thr, nms_thr)[0]
    people = {k: v.float().cpu().numpy() for k, v in people.items()}
    people["keypoints"] = box.to_image(people["keypoints"])
    corners = box.to_image(people["bboxes"].reshape(-1, 2, 2)).reshape(-1, 4)
    people["bboxes"] = corners
    return people


def rtmo_coco_results(
    model: RTMO,
    ann_file: str | os.PathLike,
    image_dir: str | os.PathLike,
    score_thr: float = 0.1,
    nms_thr: float = 0.65,
    limit: int | None = None,
) -> list[dict]:
    """COCO keypoint results for every image of ``ann_file`` (box score as the instance score)."""
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
        people = predict_image(model, image, score_thr, nms_thr)
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
