"""Heatmap regression loss."""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["JointsMSELoss"]


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
