"""Top-down keypoint dataset: one item per instance, cropped, augmented and encoded into heatmaps."""

from __future__ import annotations

import logging
import os
from typing import Literal

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from mamkpd.codecs import MSRAHeatmap, build_codec
from mamkpd.data.infos import DatasetInfo, get_info
from mamkpd.data.readers import OnBad, Record, load_mpii_gt, read_coco_format, read_mpii
from mamkpd.data.roots import (
    ANN_FILES,
    IMAGE_DIRS,
    SPLITS,
    find_mpii_gt,
    first_existing,
    resolve_data_root,
    root_or_env,
)
from mamkpd.data.transforms import (
    affine_points,
    flip_keypoints,
    flip_matrix,
    get_affine_transform,
    half_body_center_scale,
    random_scale_rotation,
    warp_and_normalize,
)

log = logging.getLogger("mamkpd.data")

Split = Literal["train", "val", "test"]
ChannelOrder = Literal["rgb", "bgr"]


class TopDownDataset(Dataset):
    """Instances of one split, each cropped around its box into the model input.

    Items are dicts with ``image`` (3, H, W) float32, normalised with the RGB ImageNet statistics, its
    channels in ``channel_order`` ("rgb"; "bgr" for weights trained on cv2's BGR images, such as the
    original SimpleBaseline release, HRNet's COLOR_RGB false), ``target`` (K, h, w) heatmaps,
    ``target_weight`` (K,), and ``meta`` (see ``_meta``). With ``train=True`` HRNet's augmentations
    run (half-body, scale, rotation, flip) from a generator seeded by (seed, epoch, index), so a
    run is reproducible whatever the number of workers or ranks; call ``set_epoch`` every epoch.
    """

    def __init__(
        self,
        info: DatasetInfo,
        records: list[Record],
        *,
        train: bool,
        input_size,
        codec: MSRAHeatmap,
        ann_file: str,
        image_dir: str,
        skipped: int = 0,
        on_bad: OnBad = "skip",
        seed: int | None = None,
        channel_order: ChannelOrder = "rgb",
    ):
        if channel_order not in ("rgb", "bgr"):
            raise ValueError(f"channel_order must be 'rgb' or 'bgr', got {channel_order!r}")
        self.channel_order = channel_order
        self.info = info
        self.records = records
        self.train = train
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.codec = codec
        self.ann_file = ann_file
        self.image_dir = image_dir
        self.skipped = skipped
        self.on_bad = on_bad
        self.seed = seed
        self.epoch = 0
        self.unreadable: set[int] = set()  # indices whose image failed to decode in this process

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation stream of ``epoch`` (with a seed, items are a function of it)."""
        self.epoch = int(epoch)

    def _rng(self, index: int) -> np.random.Generator:
        if self.seed is None:
            return np.random.default_rng()
        return np.random.default_rng([int(self.seed), self.epoch, int(index)])

    def _read_image(self, rec: Record) -> np.ndarray | None:
        img = cv2.imread(rec.image_path, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        if img is None or self.channel_order == "bgr":
            return img
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)

    def __getitem__(self, index: int) -> dict:
        for attempt in range(len(self.records)):
            i = (index + attempt) % len(self.records)
            rec = self.records[i]
            image = self._read_image(rec)
            if image is not None:
                return self._make_item(i, rec, image)
            msg = f"{rec.image_path}: cannot decode image (image id {rec.image_id})"
            # evaluation must not silently swap an instance for another one
            if self.on_bad == "error" or not self.train:
                raise ValueError(msg)
            if i not in self.unreadable:
                self.unreadable.add(i)
                log.warning("skipping %s; using the next instance", msg)
        raise ValueError(f"{self.ann_file}: no readable image in the dataset")

    def _make_item(self, index: int, rec: Record, image: np.ndarray) -> dict:
        info, aug = self.info, self.info.augment
        h, w = self.input_size
        center, scale, rotation = rec.center.copy(), rec.scale.copy(), 0.0
        keypoints = rec.keypoints.copy()
        flipped = False
        if self.train:
            rng = self._rng(index)

            def half_body(keypoints, center, scale):
                visible = keypoints[:, 2] > 0
                if (
                    aug.half_body_prob > 0
                    and visible.sum() > aug.half_body_min_joints
                    and rng.random() < aug.half_body_prob
                ):
                    half = half_body_center_scale(keypoints, visible, info.upper_body_ids, w / h, rng)
                    if half is not None:
                        return half
                return center, scale

            def flip(keypoints, center):
                if rng.random() <= aug.flip_prob:
                    keypoints = flip_keypoints(keypoints, image.shape[1], info.flip_pairs)
                    center = np.array([image.shape[1] - 1 - center[0], center[1]], dtype=center.dtype)
                    return keypoints, center, True
                return keypoints, center, False

            if aug.order == "mmpose":  # MMPose 0.x: centre shift, flip, half-body, scale/rotation
                if aug.center_shift_prob > 0 and rng.random() < aug.center_shift_prob:
                    center = center + rng.uniform(-1, 1, 2) * aug.center_shift_factor * scale
                keypoints, center, flipped = flip(keypoints, center)
                center, scale = half_body(keypoints, center, scale)
                factor, rotation = random_scale_rotation(rng, aug.scale_factor, aug.rotation_factor, aug.rotation_prob)
            else:  # HRNet's JointsDataset: half-body, scale/rotation, flip
                center, scale = half_body(keypoints, center, scale)
                factor, rotation = random_scale_rotation(rng, aug.scale_factor, aug.rotation_factor, aug.rotation_prob)
                keypoints, center, flipped = flip(keypoints, center)
            scale = scale * factor
        crop = get_affine_transform(center, scale, rotation, (w, h), udp=self.codec.use_udp)
        warp = crop
        if flipped:  # crop of the mirrored image == crop matrix composed with the mirror
            f = flip_matrix(image.shape[1])
            warp = np.concatenate([crop[:, :2] @ f[:, :2], (crop[:, :2] @ f[:, 2] + crop[:, 2])[:, None]], 1)
        image_t = warp_and_normalize(image, warp, self.input_size)
        joints = affine_points(keypoints[:, :2], crop)
        target, weight = self.codec.encode(joints, keypoints[:, 2] > 0)
        return {
            "image": torch.from_numpy(image_t),
            "target": torch.from_numpy(target),
            "target_weight": torch.from_numpy(weight),
            "meta": self._meta(index, rec, center, scale, rotation, flipped),
        }

    def _meta(self, index, rec: Record, center, scale, rotation, flipped) -> dict:
        """Plain values for inference and evaluation. ``area`` is the crop box area in pixels^2,
        what HRNet/MMPose pass to OKS-NMS; ``keypoints`` is the unaugmented ground truth."""
        meta = {
            "image_id": int(rec.image_id),
            "instance_index": int(index),
            "center": np.asarray(center, np.float32),
            "scale": np.asarray(scale, np.float32),
            "rotation": float(rotation),
            "box_score": float(rec.box_score),
            "keypoints": rec.keypoints.astype(np.float32),
            "area": float(scale[0] * scale[1]),
            "category_id": int(rec.category_id),
            "flipped": bool(flipped),
        }
        if rec.head_size is not None:
            meta["head_size"] = float(rec.head_size)
        return meta


def data_files(
    name: str, split: Split, data_root: str | None = None, ann_file: str | None = None, image_dir: str | None = None
) -> tuple[str | None, str, str]:
    """(root, annotation file, image folder) of data set ``name``'s ``split``: the given paths, else the standard
    layout under ``data_root`` (or the env var); with only ``ann_file`` and no root, images beside it."""
    info = get_info(name)
    have_root = root_or_env(info, data_root) is not None
    # the root is needed for default paths (and MPII's GT .mat); explicit paths alone need none
    needs_root = ann_file is None or (have_root and (image_dir is None or name == "mpii"))
    root = resolve_data_root(info, data_root) if needs_root else None
    ann_file = ann_file or first_existing(root, ANN_FILES[name][split], info, f"{split} annotations", False)
    if image_dir is None:
        image_dir = (
            first_existing(root, IMAGE_DIRS[name][split], info, "image folder", True)
            if root is not None
            else os.path.dirname(os.path.abspath(ann_file))
        )
    return root, ann_file, image_dir


def build_dataset(
    name: str,
    split: Split,
    data_root: str | None = None,
    *,
    train: bool,
    input_size=None,
    codec: MSRAHeatmap | None = None,
    box_file: str | None = None,
    on_bad: OnBad = "skip",
    ann_file: str | None = None,
    image_dir: str | None = None,
    seed: int | None = None,
    channel_order: ChannelOrder = "rgb",
) -> TopDownDataset:
    """Dataset ``name`` ("coco", "mpii", "ap10k") split ``split`` from ``data_root`` (or the env var).

    ``ann_file``/``image_dir`` override the standard layout (with only ``ann_file`` and no root,
    images are looked up beside it). ``box_file`` is a COCO detector results file (COCO only);
    otherwise ground-truth boxes are used. ``codec`` defaults to MSRA heatmaps for ``input_size``
    (default: the dataset's). ``on_bad="skip"`` skips and counts broken records (``ds.skipped``),
    ``"error"`` raises at the first one. ``channel_order`` is the order the model's weights expect
    (a loaded model's ``input_channels``).
    """
    info = get_info(name)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if on_bad not in ("skip", "error"):
        raise ValueError(f"on_bad must be 'skip' or 'error', got {on_bad!r}")
    if box_file is not None and name != "coco":
        raise ValueError(f"box_file is only supported for coco (got dataset {name!r})")
    input_size = tuple(input_size or info.input_size)
    codec = codec or build_codec("msra", input_size)
    if tuple(codec.input_size) != input_size:
        raise ValueError(f"codec input size {codec.input_size} differs from input_size {input_size}")
    root, ann_file, image_dir = data_files(name, split, data_root, ann_file, image_dir)
    aspect = input_size[1] / input_size[0]
    if name == "mpii":
        head_sizes = None
        gt = find_mpii_gt(root) if root and split == "val" else None
        if gt:
            head_sizes = load_mpii_gt(gt).head_sizes()
        records, skipped = read_mpii(ann_file, image_dir, info, aspect, on_bad, head_sizes)
    else:
        records, skipped = read_coco_format(ann_file, image_dir, info, aspect, on_bad, box_file)
    if not records:
        raise ValueError(f"{ann_file}: no usable {info.name} instances ({skipped} skipped as broken)")
    if skipped:
        log.warning("%s: skipped %d broken record(s)", ann_file, skipped)
    return TopDownDataset(
        info,
        records,
        train=train,
        input_size=input_size,
        codec=codec,
        ann_file=ann_file,
        image_dir=image_dir,
        skipped=skipped,
        on_bad=on_bad,
        seed=seed,
        channel_order=channel_order,
    )


def collate(batch: list[dict]) -> dict:
    """Stack ``image``/``target``/``target_weight``; keep ``meta`` as a list of dicts."""
    if not batch:
        raise ValueError("collate got an empty batch")
    return {
        "image": torch.stack([b["image"] for b in batch]),
        "target": torch.stack([b["target"] for b in batch]),
        "target_weight": torch.stack([b["target_weight"] for b in batch]),
        "meta": [b["meta"] for b in batch],
    }
