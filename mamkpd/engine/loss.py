"""Training losses: heatmap regression (the heatmap codecs) and SimCC's coordinate classification (RTMPose)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["JointsMSELoss", "KLDiscretLoss", "TRAINING_LOSSES", "training_loss_of"]


class JointsMSELoss(nn.Module):
    """HRNet's ``JointsMSELoss`` with target weights.

    loss = 1/K · Σ_k 0.5 · mean_{n,y,x} (w_nk · pred_nkyx − w_nk · gt_nkyx)²
         = 0.5 · mean over (N, K, h, w) of (w · (pred − gt))²

    This is HRNet's form (deep-high-resolution-net ``lib/core/loss.py``: ``0.5 * MSELoss(mean)`` per
    joint, divided by the number of joints). MMPose 0.x's ``JointsMSELoss`` (ViTPose) is the same without
    the 0.5; under Adam a constant factor only rescales the loss value (and eps' relative size), not the
    update direction. ``scale`` multiplies the result (MMPose's ``loss_weight``).
    """

    def __init__(self, use_target_weight: bool = True, scale: float = 0.5) -> None:
        super().__init__()
        self.use_target_weight = use_target_weight
        self.scale = scale

    def forward(self, pred: torch.Tensor, target: torch.Tensor, target_weight: torch.Tensor) -> torch.Tensor:
        if pred.shape != target.shape:
            raise ValueError(f"heatmap shapes differ: prediction {tuple(pred.shape)} vs target {tuple(target.shape)}")
        diff = pred.float() - target.float()
        if self.use_target_weight:
            diff = diff * target_weight.float().reshape(*target_weight.shape[:2], 1, 1)
        return self.scale * diff.pow(2).mean()


class KLDiscretLoss(nn.Module):
    """MMPose 1.x's ``KLDiscretLoss`` (SimCC), as RTMCCHead.loss calls it, against the simcc codec's targets.

    Per keypoint and axis: the KL divergence of the softmax of the predicted bins (``beta`` times the logits)
    from the label vector (softmaxed with ``label_beta`` when ``label_softmax``), averaged over the bins and
    weighted by the keypoint's target weight; summed over the batch and both axes, divided by the number of
    keypoints. MMPose sums over the batch rather than averaging, so the value grows with the batch size (and
    the gradient with it: RTMPose's AdamW is insensitive to that scale).

    The defaults are RTMPose's configs (``beta=10., label_softmax=True, use_target_weight=True``); MMPose's
    own defaults are ``beta=1.0, label_softmax=False``.
    """

    def __init__(
        self, beta: float = 10.0, label_softmax: bool = True, label_beta: float = 10.0, use_target_weight: bool = True
    ) -> None:
        super().__init__()
        self.beta = beta
        self.label_softmax = label_softmax
        self.label_beta = label_beta
        self.use_target_weight = use_target_weight

    def forward(
        self, pred: tuple[torch.Tensor, torch.Tensor], target: torch.Tensor, target_weight: torch.Tensor
    ) -> torch.Tensor:
        """``pred``: (x vectors (N, K, Wx), y vectors (N, K, Wy)); ``target``: (N, K, Wx + Wy), the simcc codec's
        x labels followed by its y labels; ``target_weight``: (N, K)."""
        if not (isinstance(pred, (tuple, list)) and len(pred) == 2):
            raise ValueError("KLDiscretLoss takes a SimCC model's (x vectors, y vectors) pair (a heatmap model: mse)")
        n, k, wx = pred[0].shape
        wy = pred[1].shape[-1]
        if target.shape != (n, k, wx + wy):
            raise ValueError(
                f"SimCC shapes differ: predictions {tuple(pred[0].shape)} and {tuple(pred[1].shape)}, target "
                f"{tuple(target.shape)} (expected {(n, k, wx + wy)})"
            )
        weight = target_weight.float().reshape(n * k) if self.use_target_weight else 1.0
        loss = 0.0
        for vectors, labels in zip(pred, target.float().split((wx, wy), dim=-1), strict=True):
            log_p = F.log_softmax(vectors.float().reshape(n * k, -1) * self.beta, dim=1)
            labels = labels.reshape(n * k, -1)
            if self.label_softmax:
                labels = F.softmax(labels * self.label_beta, dim=1)
            loss = loss + (F.kl_div(log_p, labels, reduction="none").mean(dim=1) * weight).sum()
        return loss / k


# a codec's ``training_loss`` -> the loss the trainer minimises against its targets (with its authors' settings)
TRAINING_LOSSES = {"mse": JointsMSELoss, "kl_discret": KLDiscretLoss}


def training_loss_of(codec) -> nn.Module:
    """The loss of ``codec``'s targets; None (a run given its own data set and no codec): the heatmap loss."""
    return TRAINING_LOSSES["mse" if codec is None else codec.training_loss]()
