"""Per-dataset constants: keypoint names, flip pairs, OKS sigmas, default input size, augmentation recipe."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np


@dataclass(frozen=True)
class AugmentConfig:
    """Top-down training augmentation of one data set's reference recipe.

    ``scale_factor``/``rotation_factor`` follow HRNet's JointsDataset: scale multiplier
    clip(N(1, sf), 1 - sf, 1 + sf); rotation clip(N(0, rf), -2 rf, 2 rf) degrees, applied with
    probability ``rotation_prob``. Half-body is tried when more than ``half_body_min_joints``
    joints are visible (HRNet's NUM_JOINTS_HALF_BODY = 8, i.e. at least 9 visible).

    ``order`` is the order of the random steps, which fixes what each random draw means: "hrnet"
    (HRNet's JointsDataset: half-body, scale/rotation, flip) or "mmpose" (MMPose 0.x pipelines: box-centre
    shift, flip, half-body, scale/rotation). The box-centre shift (MMPose's TopDownRandomShiftBboxCenter)
    moves the centre by uniform(-1, 1) x ``center_shift_factor`` x the box size per axis, with probability
    ``center_shift_prob``; it runs only in the "mmpose" order, as only MMPose has it.
    """

    flip_prob: float = 0.5
    half_body_prob: float = 0.3
    half_body_min_joints: int = 8
    scale_factor: float = 0.35
    rotation_factor: float = 45.0
    rotation_prob: float = 0.6
    center_shift_factor: float = 0.0
    center_shift_prob: float = 0.0
    order: Literal["hrnet", "mmpose"] = "hrnet"


@dataclass(frozen=True)
class DatasetInfo:
    """What a model and an evaluator need to know about one keypoint data set."""

    name: str
    num_keypoints: int
    keypoint_names: tuple[str, ...]
    flip_pairs: list[tuple[int, int]]
    sigmas: np.ndarray | None
    input_size: tuple[int, int]  # (H, W)
    default_root_env: str
    upper_body_ids: tuple[int, ...] = ()
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    source: str = ""  # where a user obtains the data set, quoted in error messages


COCO_KEYPOINTS = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)
# pycocotools' cocoeval.py default keypoint sigmas (COCO's per-joint OKS falloff)
COCO_SIGMAS = (
    np.array(
        [0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89],
        dtype=np.float64,
    )
    / 10.0
)

# HRNet/MMPose MPII joint order (the order of annot/*.json and mpii_gt_val.mat)
MPII_KEYPOINTS = (
    "right_ankle",
    "right_knee",
    "right_hip",
    "left_hip",
    "left_knee",
    "left_ankle",
    "pelvis",
    "thorax",
    "upper_neck",
    "head_top",
    "right_wrist",
    "right_elbow",
    "right_shoulder",
    "left_shoulder",
    "left_elbow",
    "left_wrist",
)

AP10K_KEYPOINTS = (
    "left_eye",
    "right_eye",
    "nose",
    "neck",
    "root_of_tail",
    "left_shoulder",
    "left_elbow",
    "left_front_paw",
    "right_shoulder",
    "right_elbow",
    "right_front_paw",
    "left_hip",
    "left_knee",
    "left_back_paw",
    "right_hip",
    "right_knee",
    "right_back_paw",
)
# MMPose configs/_base_/datasets/ap10k.py, in AP-10K's keypoint order (not COCO's): AP-10K's paper gives no
# sigmas; these are the values MMPose's AP-10K evaluation, its OKS-NMS and ViTPose use.
AP10K_SIGMAS = np.array(
    [
        0.025,
        0.025,
        0.026,
        0.035,
        0.035,
        0.079,
        0.072,
        0.062,
        0.079,
        0.072,
        0.062,
        0.107,
        0.087,
        0.089,
        0.107,
        0.087,
        0.089,
    ],
    dtype=np.float64,
)

DATASETS: dict[str, DatasetInfo] = {
    "coco": DatasetInfo(
        name="coco",
        num_keypoints=17,
        keypoint_names=COCO_KEYPOINTS,
        flip_pairs=[(1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)],
        sigmas=COCO_SIGMAS,
        input_size=(256, 192),
        default_root_env="MAMKPD_COCO_ROOT",
        upper_body_ids=tuple(range(11)),
        augment=AugmentConfig(scale_factor=0.35, rotation_factor=45.0),
        source="COCO 2017 (https://cocodataset.org/#download: train2017/val2017 images and "
        "annotations_trainval2017.zip; person detection boxes from the HRNet release)",
    ),
    "mpii": DatasetInfo(
        name="mpii",
        num_keypoints=16,
        keypoint_names=MPII_KEYPOINTS,
        flip_pairs=[(0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13)],
        sigmas=None,
        input_size=(256, 256),
        default_root_env="MAMKPD_MPII_ROOT",
        upper_body_ids=tuple(range(7, 16)),
        # HRNet's MPII recipe: no half-body (PROB_HALF_BODY -1), scale 0.25, rotation 30
        augment=AugmentConfig(half_body_prob=0.0, scale_factor=0.25, rotation_factor=30.0),
        source="MPII Human Pose (images from http://human-pose.mpi-inf.mpg.de/; annot/train.json, "
        "annot/valid.json and gt_valid.mat / mpii_gt_val.mat from the HRNet or MMPose release)",
    ),
    "ap10k": DatasetInfo(
        name="ap10k",
        num_keypoints=17,
        keypoint_names=AP10K_KEYPOINTS,
        flip_pairs=[(0, 1), (5, 8), (6, 9), (7, 10), (11, 14), (12, 15), (13, 16)],
        sigmas=AP10K_SIGMAS,
        input_size=(256, 256),
        default_root_env="MAMKPD_AP10K_ROOT",
        # MMPose's ap10k.py types: eyes, nose, neck, shoulders, elbows and the left front paw are
        # 'upper'; the right front paw (10) is typed 'lower' there, and half-body follows those types
        upper_body_ids=(0, 1, 2, 3, 5, 6, 7, 8, 9),
        # MMPose 0.x hrnet_w32_ap10k_256x256.py: centre shift (0.16, 0.3), flip, half-body (8, 0.3), then
        # rotation 40 and scale 0.5, in that order
        augment=AugmentConfig(
            scale_factor=0.5, rotation_factor=40.0, center_shift_factor=0.16, center_shift_prob=0.3, order="mmpose"
        ),
        source="AP-10K (https://github.com/AlexTheBad/AP-10K: annotations/ap10k-*-split1.json and data/ images)",
    ),
}


def get_info(name: str) -> DatasetInfo:
    """The DatasetInfo called ``name``; a KeyError naming the known data sets otherwise."""
    try:
        return DATASETS[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}") from None
