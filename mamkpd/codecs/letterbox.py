"""Whole images in and out of a one-stage model: the letterbox that fits an image into the model's input, and
the placement that maps the model's input pixels back to the image.

A whole-image model declares how its authors prepare an image as data, a :class:`WholeImageInput` (its
``whole_image_input`` attribute); :func:`letterbox` follows it. Two resampling schemes exist in the official
code this suite reproduces: MMPose's ``BottomupResize`` (RTMO: one bilinear affine warp, the image centred with
sub-pixel offsets), YOLOv5's ``load_image`` + ``letterbox`` (KAPAO: the long side resized to the input size,
then whole-pixel padding split between the two sides, optionally only up to the next multiple of a stride:
``val.py --rect``) and DETR's ``RandomResize([short], max_size=long)`` (GroupPose: the short side resized to the
input's first size unless the long side would pass its second, no padding: the input takes the image's aspect).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["RESAMPLING", "Placement", "WholeImageInput", "letterbox"]

RESAMPLING = ("affine", "resize_pad", "resize_short")


@dataclass(frozen=True)
class WholeImageInput:
    """How a whole image becomes the model's input, as the model's authors evaluate it."""

    # "affine": MMPose BottomupResize (one bilinear warp, centred); "resize_pad": YOLOv5 (long side resized,
    # INTER_AREA when shrinking, then centred whole-pixel padding); "resize_short": DETR (short side to the input
    # size's first value, long side at most its second, bilinear, no padding)
    resampling: str = "affine"
    channels: str = "bgr"  # "bgr" | "rgb": the order the weights expect
    divide_by: float = 1.0  # pixel values are divided by this (255: [0, 1], YOLOv5's ``imgs /= 255``)
    # then, per channel (in ``channels`` order), ``(x - mean) / std`` (torchvision's Normalize); None: not
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    pad_value: float = 114.0  # of the padding, in 0-255 pixel units (before ``divide_by``)
    # "resize_pad" only: pad only up to the next multiple of this stride along the short side (``val.py
    # --rect``, the protocol of the published non-augmented figures); None: pad to the full input size
    rect_stride: int | None = None
    # the model's ``predict(x, augment=True)`` is its authors' test-time augmentation (the suite's flip test);
    # it runs on the full (square) input, as the augmented figures were measured
    augments: bool = False

    def __post_init__(self) -> None:
        if self.resampling not in RESAMPLING:
            raise ValueError(f"resampling must be one of {', '.join(RESAMPLING)}, got {self.resampling!r}")
        if self.channels not in ("bgr", "rgb"):
            raise ValueError(f"channels must be 'bgr' or 'rgb', got {self.channels!r}")
        if (self.mean is None) != (self.std is None):
            raise ValueError(f"mean and std go together, got mean={self.mean!r}, std={self.std!r}")


@dataclass(frozen=True)
class Placement:
    """Where the image sits in the model input: input = image x ``gain`` + ``pad`` (x, y), in pixels."""

    gain: float
    pad: tuple[float, float]
    image_hw: tuple[int, int]
    input_hw: tuple[int, int]

    def _pad(self, points):
        if isinstance(points, torch.Tensor):
            return points.new_tensor(self.pad)
        return np.asarray(self.pad, dtype=points.dtype)

    def to_image(self, points):
        """(..., 2) input pixels -> image pixels (numpy array or tensor)."""
        return (points - self._pad(points)) / self.gain

    def to_input(self, points):
        return points * self.gain + self._pad(points)


def _affine(image: np.ndarray, in_h: int, in_w: int, pad_value: float) -> tuple[np.ndarray, Placement]:
    import cv2  # here, not at import: the models that declare a letterbox build on machines without OpenCV

    img_h, img_w = image.shape[:2]
    gain = min(in_w / img_w, in_h / img_h)  # resized image fits inside the input, aspect kept
    pad = (in_w / 2 - gain * img_w / 2, in_h / 2 - gain * img_h / 2)
    warp = np.array([[gain, 0, pad[0]], [0, gain, pad[1]]], dtype=np.float32)
    out = cv2.warpAffine(image, warp, (in_w, in_h), flags=cv2.INTER_LINEAR, borderValue=(pad_value,) * 3)
    return out, Placement(gain, pad, (img_h, img_w), (in_h, in_w))


def _resize_pad(
    image: np.ndarray, in_h: int, in_w: int, pad_value: float, rect_stride: int | None
) -> tuple[np.ndarray, Placement]:
    import cv2

    h0, w0 = image.shape[:2]
    long = max(in_h, in_w)
    r = long / max(h0, w0)  # datasets.py load_image: the long side to the input size
    if r != 1:
        interp = cv2.INTER_AREA if r < 1 else cv2.INTER_LINEAR
        image = cv2.resize(image, (int(w0 * r), int(h0 * r)), interpolation=interp)
    if rect_stride:  # LoadImagesAndLabels(rect=True), a batch of one: the image's aspect, up to whole strides
        aspect = h0 / w0
        shape = (aspect, 1.0) if aspect < 1 else (1.0, 1 / aspect) if aspect > 1 else (1.0, 1.0)
        in_h, in_w = (int(math.ceil(s * long / rect_stride) * rect_stride) for s in shape)
    # augmentations.py letterbox(auto=False, scaleup=False): shrink only, centred whole-pixel padding
    h, w = image.shape[:2]
    s = min(in_h / h, in_w / w, 1.0)
    new_w, new_h = int(round(w * s)), int(round(h * s))
    if (w, h) != (new_w, new_h):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    dw, dh = (in_w - new_w) / 2, (in_h - new_h) / 2
    top, bottom, left, right = (int(round(v)) for v in (dh - 0.1, dh + 0.1, dw - 0.1, dw + 0.1))
    image = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(pad_value,) * 3)
    # general.py scale_coords: the gain and padding from the original and input shapes
    gain = min(in_h / h0, in_w / w0)
    pad = ((in_w - w0 * gain) / 2, (in_h - h0 * gain) / 2)
    return image, Placement(gain, pad, (h0, w0), (in_h, in_w))


def resize_short_size(h0: int, w0: int, short: int, long: int) -> tuple[int, int]:
    """DETR's ``resize(..., size=short, max_size=long)`` output (h, w): the short side to ``short``, or less where
    the long side would exceed ``long`` (rounded), the other side truncated to the aspect."""
    size = short
    if max(h0, w0) / min(h0, w0) * size > long:
        size = int(round(long * min(h0, w0) / max(h0, w0)))
    if min(h0, w0) == size:
        return h0, w0
    return (int(size * h0 / w0), size) if w0 < h0 else (size, int(size * w0 / h0))


def _resize_short(image: np.ndarray, short: int, long: int) -> tuple[np.ndarray, Placement]:
    import cv2

    h0, w0 = image.shape[:2]
    h, w = resize_short_size(h0, w0, short, long)
    if (h, w) != (h0, w0):  # PIL's bilinear in the original (antialiased when shrinking): INTER_AREA then
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if h < h0 else cv2.INTER_LINEAR)
    return image, Placement(h / h0, (0.0, 0.0), (h0, w0), (h, w))


def letterbox(
    image_bgr: np.ndarray, input_size: tuple[int, int], spec: WholeImageInput = WholeImageInput(), rect: bool = True
) -> tuple[torch.Tensor, Placement]:
    """(H, W, 3) uint8 BGR image -> the (3, h, w) float32 model input ``spec`` describes for an ``input_size``
    (H, W) model, and its placement. ``rect=False`` pads to the full input even where ``spec`` has a
    ``rect_stride`` (the test-time augmentation's square input). With ``resize_short`` the input is the resized
    image itself, (H, W) being the short side and the long side's limit."""
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) BGR image, got shape {image_bgr.shape}")
    in_h, in_w = input_size
    if spec.resampling == "affine":
        out, placement = _affine(image_bgr, in_h, in_w, spec.pad_value)
    elif spec.resampling == "resize_short":
        out, placement = _resize_short(image_bgr, in_h, in_w)
    else:
        out, placement = _resize_pad(image_bgr, in_h, in_w, spec.pad_value, spec.rect_stride if rect else None)
    if spec.channels == "rgb":
        out = out[..., ::-1]
    tensor = torch.from_numpy(np.ascontiguousarray(out.transpose(2, 0, 1))).float()
    if spec.divide_by != 1.0:
        tensor /= spec.divide_by
    if spec.mean is not None:
        tensor = (tensor - torch.tensor(spec.mean)[:, None, None]) / torch.tensor(spec.std)[:, None, None]
    return tensor, placement
