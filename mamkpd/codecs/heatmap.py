"""Gaussian heatmap codecs for top-down pose estimation.

``MSRAHeatmap`` is SimpleBaseline/HRNet's target (Xiao et al. 2018): a Gaussian of ``sigma`` heatmap
pixels at the keypoint rounded to the heatmap grid (``unbiased=True``: at the exact sub-pixel
location, as DARK trains), input -> heatmap stride ``W / w``. Decoding takes the argmax and moves it
a quarter pixel toward the higher neighbour (HRNet's ``get_final_preds``), or with
``refine="dark"`` applies DARK's Taylor step on the log of the blurred heatmap (Zhang et al.,
CVPR 2020, as MMPose 0.x ``post_process='unbiased'``).

``UDPHeatmap`` is UDP's (Huang et al., CVPR 2020) as ViTPose trains and tests it: keypoints live on
the (size - 1) grid of pixel centres, stride ``(W - 1) / (w - 1)``, the Gaussian is centred at the
exact sub-pixel location inside the window of the rounded one, and decoding is argmax followed by
the UDP form of DARK (MMPose 0.x ``post_dark_udp``, the ``use_udp=True`` test path). With UDP the
flip test must not shift the flipped heatmaps (ViTPose: ``shift_heatmap=False``).

Each codec carries the conventions that go with it, so that no caller tests codec names: ``name`` (its
:func:`build_codec` name, recorded in protocols), ``use_udp`` (crops map the box onto the pixel-centre
grid) and ``flip_shift`` (whether flip-test heatmaps are shifted one pixel, HRNet's ``SHIFT_HEATMAP``).

``DarkPoseHeatmap`` is the DARK authors' own code (DarkPose), which TokenPose and PPT inherited: a
(size - 1) pixel-centre grid for crops and heatmaps like UDP's but with the width's factor on both axes, the
Gaussian at the exact sub-pixel location over the whole map, DARK's Taylor step (as ``refine="dark"``), and
no flip shift (their ``validate`` has none).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

from mamkpd.codecs.flip import flip_order
from mamkpd.codecs.simcc import SimCCLabel

Refine = Literal["none", "dark"]


def _cv2():
    """OpenCV, imported where DARK blurs: the flip test and the heatmap codecs' other paths run without it (a
    bare GPU machine has none)."""
    import cv2

    return cv2


def _gaussian_targets(
    centers: np.ndarray,
    window_centers: np.ndarray | None,
    visible: np.ndarray,
    heatmap_size: tuple[int, int],
    sigma: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussians at ``centers`` (K, 2) in heatmap pixels, drawn inside the 6-sigma window of
    ``window_centers`` (HRNet's truncation; None: over the whole map). A joint whose window lies
    entirely outside the map, or that is not visible, gets weight 0 and an empty map."""
    h, w = heatmap_size
    num = len(centers)
    heatmaps = np.zeros((num, h, w), dtype=np.float32)
    weights = np.asarray(visible, dtype=np.float32).reshape(num).copy()
    weights[weights > 0] = 1.0
    radius = sigma * 3
    xs = np.arange(w, dtype=np.float32)
    ys = np.arange(h, dtype=np.float32)
    for k in range(num):
        if weights[k] <= 0 or not np.all(np.isfinite(centers[k])):
            weights[k] = 0.0
            continue
        ref = centers[k] if window_centers is None else window_centers[k]
        if window_centers is None:
            ul = (ref[0] - radius, ref[1] - radius)
            br = (ref[0] + radius + 1, ref[1] + radius + 1)
        else:  # HRNet's integer window [int(mu - 3s), int(mu + 3s + 1))
            ul = (int(ref[0] - radius), int(ref[1] - radius))
            br = (int(ref[0] + radius + 1), int(ref[1] + radius + 1))
        if ul[0] >= w or ul[1] >= h or br[0] < 0 or br[1] < 0:
            weights[k] = 0.0
            continue
        if window_centers is None:
            x0, x1, y0, y1 = 0, w, 0, h
        else:
            x0, x1 = max(0, ul[0]), min(br[0], w)
            y0, y1 = max(0, ul[1]), min(br[1], h)
        gx = np.exp(-((xs[x0:x1] - centers[k, 0]) ** 2) / (2 * sigma**2))
        gy = np.exp(-((ys[y0:y1] - centers[k, 1]) ** 2) / (2 * sigma**2))
        heatmaps[k, y0:y1, x0:x1] = gy[:, None] * gx[None, :]
    return heatmaps, weights


def _argmax(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer peak (N, K, 2) as float (x, y) and its value (N, K); peaks <= 0 give (0, 0) as HRNet."""
    n, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(n, k, h * w)
    idx = flat.argmax(axis=2)
    vals = np.take_along_axis(flat, idx[..., None], axis=2)[..., 0]
    coords = np.stack([idx % w, idx // w], axis=-1).astype(np.float32)
    coords[vals <= 0] = 0.0
    return coords, vals.astype(np.float32)


def _quarter_offset(coords: np.ndarray, heatmaps: np.ndarray) -> np.ndarray:
    """HRNet: move each interior peak 0.25 px toward its higher horizontal/vertical neighbour."""
    n, k, h, w = heatmaps.shape
    out = coords.copy()
    px = coords[..., 0].astype(int)
    py = coords[..., 1].astype(int)
    inside = (px > 1) & (px < w - 1) & (py > 1) & (py < h - 1)
    ni, ki = np.nonzero(inside)
    x, y = px[ni, ki], py[ni, ki]
    dx = heatmaps[ni, ki, y, x + 1] - heatmaps[ni, ki, y, x - 1]
    dy = heatmaps[ni, ki, y + 1, x] - heatmaps[ni, ki, y - 1, x]
    out[ni, ki, 0] += np.sign(dx) * 0.25
    out[ni, ki, 1] += np.sign(dy) * 0.25
    return out


def _newton_step(
    coords: np.ndarray, logmaps: np.ndarray, form: Literal["dark", "udp"], inside: np.ndarray
) -> np.ndarray:
    """One Newton step x -= H^-1 g on log-heatmaps at the integer peaks where ``inside``.

    ``form="dark"`` is DARK's ``_taylor`` (second derivatives over +-2 px scaled by 1/4, skipped
    where the Hessian is singular); ``form="udp"`` is ``post_dark_udp`` (unit spacing, its
    asymmetric mixed derivative, Hessian regularised by float32 eps).
    """
    out = coords.copy()
    ni, ki = np.nonzero(inside)
    x = coords[ni, ki, 0].astype(int)
    y = coords[ni, ki, 1].astype(int)

    def at(dy, dx):
        return logmaps[ni, ki, y + dy, x + dx].astype(np.float64)

    gx = 0.5 * (at(0, 1) - at(0, -1))
    gy = 0.5 * (at(1, 0) - at(-1, 0))
    if form == "dark":
        dxx = 0.25 * (at(0, 2) - 2 * at(0, 0) + at(0, -2))
        dyy = 0.25 * (at(2, 0) - 2 * at(0, 0) + at(-2, 0))
        dxy = 0.25 * (at(1, 1) - at(-1, 1) - at(1, -1) + at(-1, -1))
    else:
        dxx = at(0, 1) - 2 * at(0, 0) + at(0, -1)
        dyy = at(1, 0) - 2 * at(0, 0) + at(-1, 0)
        dxy = 0.5 * (at(1, 1) - at(0, 1) - at(1, 0) + 2 * at(0, 0) - at(0, -1) - at(-1, 0) + at(-1, -1))
        eps = float(np.finfo(np.float32).eps)
        dxx, dyy = dxx + eps, dyy + eps
    det = dxx * dyy - dxy**2
    ok = det != 0
    safe = np.where(ok, det, 1.0)
    # -H^{-1} g with H = [[dxx, dxy], [dxy, dyy]]
    ox = -(dyy * gx - dxy * gy) / safe
    oy = -(dxx * gy - dxy * gx) / safe
    out[ni[ok], ki[ok], 0] += ox[ok].astype(np.float32)
    out[ni[ok], ki[ok], 1] += oy[ok].astype(np.float32)
    return out


def _dark_refine(coords: np.ndarray, heatmaps: np.ndarray, kernel: int) -> np.ndarray:
    """DARK (MMPose 0.x 'unbiased'): blur keeping each map's maximum, log, Taylor step at
    peaks at least 2 px from the border."""
    n, k, h, w = heatmaps.shape
    border = (kernel - 1) // 2
    blurred = np.empty_like(heatmaps, dtype=np.float32)
    for i in range(n):
        for j in range(k):
            src = heatmaps[i, j].astype(np.float32)
            padded = np.zeros((h + 2 * border, w + 2 * border), dtype=np.float32)
            padded[border:-border, border:-border] = src
            out = _cv2().GaussianBlur(padded, (kernel, kernel), 0)[border:-border, border:-border]
            peak = out.max()
            blurred[i, j] = out * (src.max() / peak) if peak > 0 else out
    logmaps = np.log(np.maximum(blurred, 1e-10))
    px, py = coords[..., 0], coords[..., 1]
    inside = (px > 1) & (px < w - 2) & (py > 1) & (py < h - 2)
    return _newton_step(coords, logmaps, "dark", inside)


def _dark_udp_refine(coords: np.ndarray, heatmaps: np.ndarray, kernel: int) -> np.ndarray:
    """UDP's DARK (MMPose 0.x post_dark_udp): cv2 blur, clip to [1e-3, 50], log, edge padding,
    one Newton step with unit spacing for every peak."""
    n, k, h, w = heatmaps.shape
    blurred = np.empty((n, k, h, w), dtype=np.float32)
    for i in range(n):
        for j in range(k):
            blurred[i, j] = _cv2().GaussianBlur(heatmaps[i, j].astype(np.float32), (kernel, kernel), 0)
    logmaps = np.log(np.clip(blurred, 0.001, 50.0))
    padded = np.pad(logmaps, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")
    shifted = coords + 1.0  # into the padded frame
    refined = _newton_step(shifted, padded, "udp", np.ones(coords.shape[:2], dtype=bool))
    return refined - 1.0


def flip_back(heatmaps: torch.Tensor, flip_pairs: Sequence[tuple[int, int]], shift: bool) -> torch.Tensor:
    """Heatmaps of a horizontally flipped input, mapped back to the unflipped frame.

    Flips the width axis and swaps left/right channels. ``shift`` moves them one pixel right, as HRNet's
    ``SHIFT_HEATMAP`` does; whether a codec needs it is the codec's ``flip_shift``.
    """
    out = heatmaps.flip(-1)[:, flip_order(heatmaps.shape[1], flip_pairs)]
    if shift:
        out = torch.cat([out[..., :1], out[..., :-1]], dim=-1)
    return out


class MSRAHeatmap:
    """Gaussian heatmaps of SimpleBaseline/HRNet (and DARK with ``refine="dark"``).

    ``input_size`` and ``heatmap_size`` are (H, W); the heatmap defaults to a quarter of the input.
    ``unbiased`` (default: on exactly when ``refine == "dark"``, as DARK's configs pair them) draws
    the Gaussian at the sub-pixel keypoint over the whole map instead of at the rounded one.
    """

    use_udp = False
    flip_shift = True  # HRNet: the flip of a pixel grid is off by one pixel in the heatmap's index space
    training_loss = "mse"  # what the suite's trainer minimises against these targets (JointsMSELoss)

    def __init__(
        self,
        input_size=(256, 192),
        heatmap_size=None,
        sigma: float = 2.0,
        refine: Refine = "none",
        unbiased: bool | None = None,
        blur_kernel: int = 11,
    ):
        if refine not in ("none", "dark"):
            raise ValueError(f"refine must be 'none' or 'dark', got {refine!r}")
        if blur_kernel % 2 != 1:
            raise ValueError(f"blur_kernel must be odd, got {blur_kernel}")
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.heatmap_size = (
            tuple(int(v) for v in heatmap_size)
            if heatmap_size is not None
            else (self.input_size[0] // 4, self.input_size[1] // 4)
        )
        self.sigma = float(sigma)
        self.refine = refine
        self.unbiased = (refine == "dark") if unbiased is None else bool(unbiased)
        self.blur_kernel = int(blur_kernel)

    def output_shapes(self, num_keypoints: int) -> tuple[tuple[int, ...], ...]:
        """Per sample, the shapes of the model outputs it decodes: one (K, h, w) heatmap stack."""
        return ((num_keypoints, *self.heatmap_size),)

    @property
    def name(self) -> str:
        """The :func:`build_codec` name of this configuration."""
        return "msra_dark" if self.refine == "dark" else "msra"

    def _stride(self) -> np.ndarray:
        """Input pixels per heatmap pixel, (x, y)."""
        (ih, iw), (hh, hw) = self.input_size, self.heatmap_size
        return np.array([iw / hw, ih / hh], dtype=np.float64)

    def encode(self, keypoints: np.ndarray, visible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints (K, 2) in input-crop pixels and visibility (K,) -> heatmaps (K, h, w), weights (K,)."""
        mu = np.asarray(keypoints, dtype=np.float64)[:, :2] / self._stride()
        if self.unbiased:
            return _gaussian_targets(mu, None, visible, self.heatmap_size, self.sigma)
        rounded = np.trunc(mu + 0.5)  # HRNet: int(x / stride + 0.5)
        return _gaussian_targets(rounded, rounded, visible, self.heatmap_size, self.sigma)

    def _refine(self, coords: np.ndarray, heatmaps: np.ndarray) -> np.ndarray:
        if self.refine == "dark":
            return _dark_refine(coords, heatmaps, self.blur_kernel)
        return _quarter_offset(coords, heatmaps)

    def decode(self, heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Heatmaps (N, K, h, w) -> keypoints (N, K, 2) in input-crop pixels and scores (N, K)."""
        self._require_heatmaps(heatmaps)
        heatmaps = np.asarray(heatmaps, dtype=np.float32)
        if heatmaps.ndim != 4:
            raise ValueError(f"decode expects heatmaps of shape (N, K, h, w), got {heatmaps.shape}")
        coords, scores = _argmax(heatmaps)
        coords = self._refine(coords, heatmaps)
        return (coords * self._stride()).astype(np.float32), scores

    def flip_back(self, heatmaps: torch.Tensor, flip_pairs: Sequence[tuple[int, int]]) -> torch.Tensor:
        """The flip test's heatmaps in the unflipped frame (:func:`flip_back` with this codec's ``flip_shift``)."""
        self._require_heatmaps(heatmaps)
        return flip_back(heatmaps, flip_pairs, self.flip_shift)

    def _require_heatmaps(self, outputs) -> None:
        """A model with several outputs (SimCC's x and y vectors) is not this codec's: one clear line."""
        if isinstance(outputs, (tuple, list)):
            raise ValueError(
                f"the {self.name} codec decodes heatmaps (N, K, h, w); this model gives {len(outputs)} outputs "
                "(a SimCC model such as RTMPose: use its own codec, simcc)"
            )


class UDPHeatmap(MSRAHeatmap):
    """UDP Gaussian heatmaps as ViTPose uses them; ``refine`` defaults to the UDP form of DARK."""

    use_udp = True
    flip_shift = False  # UDP's unbiased coordinates need no shift (ViTPose/MMPose ``shift_heatmap=False``)

    def __init__(
        self,
        input_size=(256, 192),
        heatmap_size=None,
        sigma: float = 2.0,
        refine: Refine = "dark",
        blur_kernel: int = 11,
    ):
        super().__init__(input_size, heatmap_size, sigma, refine, unbiased=True, blur_kernel=blur_kernel)

    @property
    def name(self) -> str:
        return "udp"

    def _stride(self) -> np.ndarray:
        (ih, iw), (hh, hw) = self.input_size, self.heatmap_size
        return np.array([(iw - 1.0) / (hw - 1.0), (ih - 1.0) / (hh - 1.0)], dtype=np.float64)

    def encode(self, keypoints: np.ndarray, visible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """As MSRAHeatmap.encode, on UDP's grid: window at the rounded point, peak at the exact one."""
        mu = np.asarray(keypoints, dtype=np.float64)[:, :2] / self._stride()
        window = np.trunc(mu + 0.5)  # MMPose 0.x: int(x / stride + 0.5)
        return _gaussian_targets(mu, window, visible, self.heatmap_size, self.sigma)

    def _refine(self, coords: np.ndarray, heatmaps: np.ndarray) -> np.ndarray:
        if self.refine == "dark":
            return _dark_udp_refine(coords, heatmaps, self.blur_kernel)
        return _quarter_offset(coords, heatmaps)


class DarkPoseHeatmap(UDPHeatmap):
    """DarkPose's codec (TokenPose, PPT): UDP's flip convention, DARK's blur-and-Taylor refinement, and
    DarkPose's grid: the crop and the heatmap are aligned at their pixel-centre midpoints, (W - 1) / 2 and
    (w - 1) / 2, with one factor (W - 1) / (w - 1) for both axes (its ``get_affine_transform`` scales both by the
    box width), which puts rows where UDP's separate (H - 1) / (h - 1) does not."""

    def __init__(self, input_size=(256, 192), heatmap_size=None, sigma: float = 2.0, blur_kernel: int = 11):
        super().__init__(input_size, heatmap_size, sigma, refine="dark", blur_kernel=blur_kernel)

    @property
    def name(self) -> str:
        return "darkpose"

    def _grid(self) -> tuple[float, np.ndarray, np.ndarray]:
        """Crop pixels per heatmap pixel, and the crop's and the heatmap's midpoints (x, y)."""
        (ih, iw), (hh, hw) = self.input_size, self.heatmap_size
        factor = (iw - 1.0) / (hw - 1.0)
        return factor, np.array([(iw - 1) / 2, (ih - 1) / 2]), np.array([(hw - 1) / 2, (hh - 1) / 2])

    def encode(self, keypoints: np.ndarray, visible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The Gaussian at the exact sub-pixel keypoint over the whole map (DarkPose's ``generate_target``)."""
        factor, crop_mid, map_mid = self._grid()
        mu = map_mid + (np.asarray(keypoints, dtype=np.float64)[:, :2] - crop_mid) / factor
        return _gaussian_targets(mu, None, visible, self.heatmap_size, self.sigma)

    def decode(self, heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        heatmaps = np.asarray(heatmaps, dtype=np.float32)
        if heatmaps.ndim != 4:
            raise ValueError(f"decode expects heatmaps of shape (N, K, h, w), got {heatmaps.shape}")
        coords, scores = _argmax(heatmaps)
        coords = _dark_refine(coords, heatmaps, self.blur_kernel)
        factor, crop_mid, map_mid = self._grid()
        return (crop_mid + (coords - map_mid) * factor).astype(np.float32), scores


CODECS = {
    "msra": lambda input_size: MSRAHeatmap(input_size),
    "msra_dark": lambda input_size: MSRAHeatmap(input_size, refine="dark"),
    "udp": lambda input_size: UDPHeatmap(input_size),
    "darkpose": lambda input_size: DarkPoseHeatmap(input_size),
    "simcc": lambda input_size: SimCCLabel(input_size),  # RTMPose's coordinate classification (simcc.py)
}


def build_codec(name: str, input_size) -> MSRAHeatmap:
    """Codec by name ("msra", "msra_dark", "udp", "darkpose") for an (H, W) input; heatmap = input / 4, sigma 2."""
    try:
        return CODECS[name](tuple(input_size))
    except KeyError:
        raise KeyError(f"unknown codec {name!r}; known: {', '.join(CODECS)}") from None
