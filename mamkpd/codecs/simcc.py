"""SimCC codec (Li et al., ECCV 2022) as RTMPose trains and tests with it (MMPose 1.x ``SimCCLabel``).

A keypoint is two 1-D classification targets: ``split_ratio`` bins per input pixel along x (``Wx = W *
split_ratio`` bins) and along y (``Wy = H * split_ratio``). Encoding puts an unnormalised Gaussian of
``sigma`` (x, y) bins over the whole vector at the keypoint rounded to the nearest bin (NumPy's round half to
even, as MMPose); a keypoint whose 3-sigma window lies outside the vector gets weight 0. Decoding takes the
argmax of each vector divided by the split ratio; the score is the smaller of the two maxima, and a keypoint
whose score is not positive decodes to (-1, -1) / split ratio (MMPose's ``get_simcc_maximum``).

The flip test (MMPose's ``flip_vectors``) reverses the x vectors of the flipped image and swaps the
left/right keypoints, without a shift; the two predictions are averaged before decoding. Crops are the
plain (non-UDP) affine of RTMPose's ``TopdownAffine``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from mamkpd.codecs.flip import flip_order


def _require_pair(outputs) -> None:
    """A heatmap model's single output is not this codec's: one clear line."""
    if isinstance(outputs, (tuple, list)) and len(outputs) == 2:
        return
    given = f"one output of shape {tuple(outputs.shape)}" if hasattr(outputs, "shape") else f"{len(outputs)} outputs"
    raise ValueError(
        f"the simcc codec decodes a model's (simcc_x, simcc_y) pair; this model gives {given} "
        "(a heatmap model: use its own codec)"
    )


class SimCCLabel:
    """SimCC vectors of an (H, W) input; the defaults are RTMPose's COCO 256x192 configs."""

    name = "simcc"  # its build_codec name, recorded in protocols
    use_udp = False  # RTMPose's TopdownAffine(use_udp=False)
    flip_shift = False  # flip_vectors reverses the bins without a shift
    training_loss = "kl_discret"  # RTMPose trains with KLDiscretLoss (mamkpd.engine.loss) against these labels

    def __init__(self, input_size=(256, 192), sigma: tuple[float, float] = (4.9, 5.66), split_ratio: float = 2.0):
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.sigma = (float(sigma[0]), float(sigma[1]))
        self.split_ratio = float(split_ratio)
        h, w = self.input_size
        self.bins = (int(np.around(w * self.split_ratio)), int(np.around(h * self.split_ratio)))  # (x, y)

    def output_shapes(self, num_keypoints: int) -> tuple[tuple[int, ...], ...]:
        """Per sample, the shapes of the model outputs it decodes: x vectors (K, Wx) and y vectors (K, Wy)."""
        return ((num_keypoints, self.bins[0]), (num_keypoints, self.bins[1]))

    def encode(self, keypoints: np.ndarray, visible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints (K, 2) in input-crop pixels and visibility (K,) -> target (K, Wx + Wy), the x labels
        followed by the y labels (:meth:`split_target` separates them), and weights (K,)."""
        wx, wy = self.bins
        num = len(keypoints)
        target = np.zeros((num, wx + wy), dtype=np.float32)
        weights = (np.asarray(visible, dtype=np.float32).reshape(num) > 0).astype(np.float32)
        mu = np.around(np.asarray(keypoints, dtype=np.float64)[:, :2] * self.split_ratio)
        radius = np.array(self.sigma) * 3
        xs, ys = np.arange(wx, dtype=np.float32), np.arange(wy, dtype=np.float32)
        for k in range(num):
            if weights[k] == 0 or not np.all(np.isfinite(mu[k])):
                weights[k] = 0.0
                continue
            lo, hi = mu[k] - radius, mu[k] + radius + 1
            if lo[0] >= wx or lo[1] >= wy or hi[0] < 0 or hi[1] < 0:
                weights[k] = 0.0
                continue
            target[k, :wx] = np.exp(-((xs - mu[k, 0]) ** 2) / (2 * self.sigma[0] ** 2))
            target[k, wx:] = np.exp(-((ys - mu[k, 1]) ** 2) / (2 * self.sigma[1] ** 2))
        return target, weights

    def split_target(self, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(..., Wx + Wy) encoded targets -> the x labels (..., Wx) and the y labels (..., Wy)."""
        return target[..., : self.bins[0]], target[..., self.bins[0] :]

    def decode(self, outputs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """``(simcc_x (N, K, Wx), simcc_y (N, K, Wy))`` -> keypoints (N, K, 2) in input-crop pixels, scores (N, K)."""
        _require_pair(outputs)
        simcc_x, simcc_y = (np.asarray(v, dtype=np.float32) for v in outputs)
        if simcc_x.ndim != 3 or simcc_y.shape[:2] != simcc_x.shape[:2]:
            raise ValueError(
                f"decode expects (simcc_x (N, K, Wx), simcc_y (N, K, Wy)), got {simcc_x.shape} and {simcc_y.shape}"
            )
        locs = np.stack((simcc_x.argmax(-1), simcc_y.argmax(-1)), axis=-1).astype(np.float32)
        scores = np.minimum(simcc_x.max(-1), simcc_y.max(-1))
        locs[scores <= 0] = -1.0
        return locs / np.float32(self.split_ratio), scores

    def flip_back(
        self, outputs: tuple[torch.Tensor, torch.Tensor], flip_pairs: Sequence[tuple[int, int]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The vectors of a horizontally flipped input in the unflipped frame: x reversed, left/right swapped."""
        _require_pair(outputs)
        simcc_x, simcc_y = outputs
        order = flip_order(simcc_x.shape[1], flip_pairs)
        return simcc_x[:, order].flip(-1), simcc_y[:, order]
