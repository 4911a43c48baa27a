"""Synthetic top-down data and a tiny heatmap net for the engine tests (fast, no image files).

Each sample draws its augmentation noise from the global python / numpy / torch generators, so that a
resume test fails unless the trainer restores those RNG states.
"""

from __future__ import annotations

import random

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import Dataset

from mamkpd.data.infos import DatasetInfo

INPUT_SIZE = (32, 24)  # (H, W); heatmaps 8 x 6
NUM_KEYPOINTS = 4
INFO = DatasetInfo(
    name="synthetic",
    num_keypoints=NUM_KEYPOINTS,
    keypoint_names=("a", "b", "c", "d"),
    flip_pairs=[(0, 1), (2, 3)],
    sigmas=np.full(NUM_KEYPOINTS, 0.05),
    input_size=INPUT_SIZE,
    default_root_env="MAMKPD_SYNTHETIC_ROOT",
)


class SyntheticPoses(Dataset):
    """``size`` instances: noise images, one Gaussian blob per keypoint; contract-shaped samples."""

    def __init__(self, size: int = 12, nan_index: int | None = None, augment: bool = True) -> None:
        self.size = size
        self.augment = augment
        self.nan_index = nan_index
        self.info = INFO
        self.skipped = 0

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: int) -> dict:
        g = torch.Generator().manual_seed(1000 + i)
        h, w = INPUT_SIZE[0] // 4, INPUT_SIZE[1] // 4
        xy = torch.rand(NUM_KEYPOINTS, 2, generator=g) * torch.tensor([w - 1.0, h - 1.0])
        ys, xs = torch.meshgrid(
            torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij"
        )
        target = torch.exp(-((xs - xy[:, :1, None]) ** 2 + (ys - xy[:, 1:, None]) ** 2) / 2.0)
        image = torch.randn(3, *INPUT_SIZE, generator=g)
        if self.augment:  # noise from the global generators, as a real pipeline's augmentation draws it
            image = image + 0.1 * torch.randn(3, *INPUT_SIZE) + float(np.random.rand()) + random.random()
        if self.nan_index == i:
            target = target * float("nan")
        kpts = np.zeros((NUM_KEYPOINTS, 3), np.float32)
        kpts[:, :2] = xy.numpy() * 4
        kpts[:, 2] = 2
        meta = {
            "image_id": i // 2,
            "instance_index": i,
            "center": np.array([12.0, 16.0], np.float32),
            "scale": np.array([24.0, 32.0], np.float32),
            "rotation": 0.0,
            "box_score": 1.0,
            "keypoints": kpts,
            "area": 24.0 * 32.0,
        }
        return {
            "image": image.float(),
            "target": target.float(),
            "target_weight": torch.ones(NUM_KEYPOINTS),
            "meta": meta,
        }


class TinyHeatmapNet(nn.Module):
    """Conv-BN-ReLU at stride 4 with dropout (so that the torch RNG state matters)."""

    def __init__(self, num_keypoints: int = NUM_KEYPOINTS) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, 2, 1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, 2, 1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Dropout(0.1),
            nn.Conv2d(16, num_keypoints, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)
