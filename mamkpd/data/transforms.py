"""Top-down geometry: box -> center/scale, the affine crop, flips and HRNet's random augmentations.

Conventions: ``center`` is (x, y) in image pixels, ``scale`` is the (w, h) of the cropped region in
image pixels (HRNet's ``scale * 200``), ``input_size`` is (H, W) and ``output_size`` (W, H) as cv2
wants it. Two pixel conventions exist for the crop: HRNet's (the box maps onto a W x H canvas,
center -> (W/2, H/2)) and UDP's (the box maps onto the (W-1) x (H-1) grid of pixel centres,
center -> ((W-1)/2, (H-1)/2); Huang et al., CVPR 2020, used by ViTPose).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def fix_aspect_ratio(w: float, h: float, aspect_ratio: float) -> tuple[float, float]:
    """Grow the shorter side so that w / h == aspect_ratio (HRNet's ``_xywh2cs``)."""
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    elif w < aspect_ratio * h:
        w = h * aspect_ratio
    return w, h


def box_to_center_scale(box_xywh, aspect_ratio: float, padding: float = 1.25) -> tuple[np.ndarray, np.ndarray]:
    """Box (x, y, w, h) -> center (2,) and scale (2,) in pixels, aspect-fixed and padded."""
    x, y, w, h = (float(v) for v in box_xywh[:4])
    center = np.array([x + w * 0.5, y + h * 0.5], dtype=np.float32)
    w, h = fix_aspect_ratio(w, h, aspect_ratio)
    return center, np.array([w * padding, h * padding], dtype=np.float32)


def get_affine_transform(
    center, scale, rotation: float, output_size, inverse: bool = False, udp: bool = False
) -> np.ndarray:
    """2x3 matrix mapping image pixels to the (W, H) = ``output_size`` crop (or back if ``inverse``).

    HRNet's crop (``udp=False``): the box of width ``scale[0]`` around ``center``, rotated by
    ``rotation`` degrees in HRNet's direction (its three-point construction is the similarity
    k * R(-rotation)), fills the crop width; the height follows from the same factor k = W / scale[0].
    UDP's crop (``udp=True``, MMPose's ``get_warp_matrix`` / ``get_udp_warp_matrix``): the box maps onto
    the grid of pixel centres with one factor per axis, (W - 1) / scale[0] and (H - 1) / scale[1], and
    MMPose rotates it the other way, R(+rotation), which the UDP pipelines' rotated targets are built with.
    """
    out_w, out_h = float(output_size[0]), float(output_size[1])
    if float(scale[0]) <= 0 or (udp and float(scale[1]) <= 0):
        raise ValueError(f"scale must be positive, got {tuple(scale)}")
    theta = math.radians(float(rotation))
    cs, sn = math.cos(theta), math.sin(theta)
    if udp:
        kx, ky = (out_w - 1.0) / float(scale[0]), (out_h - 1.0) / float(scale[1])
        lin = np.array([[kx * cs, -kx * sn], [ky * sn, ky * cs]])
        dst_center = np.array([(out_w - 1.0) * 0.5, (out_h - 1.0) * 0.5])
    else:
        k = out_w / float(scale[0])
        lin = k * np.array([[cs, sn], [-sn, cs]])
        dst_center = np.array([out_w * 0.5, out_h * 0.5])
    c = np.asarray(center, dtype=np.float64)[:2]
    fwd = np.concatenate([lin, (dst_center - lin @ c)[:, None]], axis=1)
    if not inverse:
        return fwd.astype(np.float32)
    return cv2.invertAffineTransform(fwd).astype(np.float32)


def affine_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine matrix to points of shape (..., 2)."""
    pts = np.asarray(points, dtype=np.float64)
    m = np.asarray(matrix, dtype=np.float64)
    return (pts @ m[:, :2].T + m[:, 2]).astype(np.float32)


def crop_to_image(points: np.ndarray, center, scale, input_size, udp: bool = False) -> np.ndarray:
    """Map points (..., 2) from input-crop pixels back to image pixels (rotation 0, as at test time)."""
    h, w = input_size
    inv = get_affine_transform(center, scale, 0.0, (w, h), inverse=True, udp=udp)
    return affine_points(points, inv)


def flip_matrix(image_width: int) -> np.ndarray:
    """2x3 matrix of the horizontal flip x -> W - 1 - x of an image ``image_width`` pixels wide."""
    return np.array([[-1.0, 0.0, image_width - 1.0], [0.0, 1.0, 0.0]], dtype=np.float64)


def flip_keypoints(keypoints: np.ndarray, image_width: int, flip_pairs) -> np.ndarray:
    """Mirror keypoints (K, >=2) in an image ``image_width`` wide and swap left/right joints.

    Extra columns (visibility) travel with their joint.
    """
    out = np.array(keypoints, dtype=np.float32, copy=True)
    out[:, 0] = image_width - 1 - out[:, 0]
    for i, j in flip_pairs:
        out[[i, j]] = out[[j, i]]
    return out


def half_body_center_scale(
    keypoints: np.ndarray, visible: np.ndarray, upper_body_ids, aspect_ratio: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray] | None:
    """HRNet's half-body crop: the upper or the lower body's visible joints, box padded by 1.5.

    HRNet picks the upper body when ``randn() < 0.5`` (probability ~0.69, kept as published) and
    it has more than 2 visible joints, otherwise the lower body if it has more than 2. None when
    fewer than 2 joints remain.
    """
    upper_set = set(upper_body_ids)
    vis = np.asarray(visible) > 0
    upper = [k for k in range(len(keypoints)) if vis[k] and k in upper_set]
    lower = [k for k in range(len(keypoints)) if vis[k] and k not in upper_set]
    if rng.standard_normal() < 0.5 and len(upper) > 2:
        chosen = upper
    else:
        chosen = lower if len(lower) > 2 else upper
    if len(chosen) < 2:
        return None
    pts = np.asarray(keypoints, dtype=np.float32)[chosen, :2]
    center = pts.mean(axis=0)
    w, h = (pts.max(axis=0) - pts.min(axis=0)).tolist()
    w, h = fix_aspect_ratio(w, h, aspect_ratio)
    return center.astype(np.float32), np.array([w * 1.5, h * 1.5], dtype=np.float32)


def random_scale_rotation(
    rng: np.random.Generator, scale_factor: float, rotation_factor: float, rotation_prob: float
) -> tuple[float, float]:
    """HRNet's scale multiplier clip(N(1, sf), 1-sf, 1+sf) and rotation clip(N(0, rf), +-2rf) deg."""
    s = float(np.clip(rng.standard_normal() * scale_factor + 1.0, 1.0 - scale_factor, 1.0 + scale_factor))
    r = float(np.clip(rng.standard_normal() * rotation_factor, -2 * rotation_factor, 2 * rotation_factor))
    return s, (r if rng.random() <= rotation_prob else 0.0)


def warp_and_normalize(image_rgb: np.ndarray, matrix: np.ndarray, input_size) -> np.ndarray:
    """cv2 bilinear crop to (H, W) and ImageNet normalisation -> float32 (3, H, W)."""
    h, w = input_size
    crop = cv2.warpAffine(image_rgb, matrix, (int(w), int(h)), flags=cv2.INTER_LINEAR)
    crop = (crop.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    return np.ascontiguousarray(crop.transpose(2, 0, 1))
