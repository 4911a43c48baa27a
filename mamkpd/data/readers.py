"""Readers of the real annotation formats into per-instance records.

COCO 2017 person keypoints and AP-10K (both COCO format) follow HRNet's / MMPose 0.x's loaders:
crowd instances and instances without any labelled keypoint are left out (that is the protocol, not
an error), boxes are clipped to the image. MPII follows HRNet's ``mpii.py``: ``center``/``scale``
come in MATLAB 1-based pixels and units of 200 px; the center moves down by 15 * scale, the scale
grows by 1.25, and centers and joints are shifted to 0-based pixels.

Records that are broken (keypoint array of the wrong length, a box of zero or negative size, a
missing or unreadable image) are reported with their image id and either skipped and counted or
raised as a ValueError, as ``on_bad`` says.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np

from mamkpd.data.infos import DatasetInfo
from mamkpd.data.transforms import box_to_center_scale, fix_aspect_ratio

log = logging.getLogger("mamkpd.data")

OnBad = Literal["skip", "error"]
# HRNet's TEST.IMAGE_THRE and MMPose's det_bbox_thr: detector boxes with score < 0.0 are dropped,
# i.e. every person box of the detector file is used.
DET_SCORE_THRESHOLD = 0.0
PIXEL_STD = 200.0  # HRNet/MPII scale unit


@dataclass
class Record:
    """One person (or animal) instance to crop."""

    image_id: int
    image_path: str
    center: np.ndarray  # (2,) float32, image pixels
    scale: np.ndarray  # (2,) float32, crop width/height in image pixels (padded, aspect-fixed)
    keypoints: np.ndarray  # (K, 3) float32: x, y (0-based image pixels), visibility flag
    box_score: float = 1.0
    category_id: int = 1
    head_size: float | None = None  # MPII PCKh normaliser (0.6 x head-box diagonal) when known


@dataclass
class BadRecords:
    """Collects broken records: raises at the first one (``error``) or counts them (``skip``)."""

    source: str
    on_bad: OnBad
    count: int = 0
    reasons: list[str] = field(default_factory=list)

    def report(self, image_id, reason: str) -> None:
        msg = f"{self.source}: image id {image_id}: {reason}"
        if self.on_bad == "error":
            raise ValueError(msg + " (pass on_bad='skip' to skip such records)")
        self.count += 1
        if len(self.reasons) < 20:
            self.reasons.append(msg)
            log.warning("skipping %s", msg)


def read_json(path: str, what: str, hint: str = ""):
    """Parse a JSON file; a missing or malformed file, or a directory, is an error naming it (plus ``hint``)."""
    tail = f". {hint}" if hint else ""
    if os.path.isdir(path):
        raise ValueError(f"{what} {path} is a directory, not a file")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} not found: {path}{tail}")
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: malformed {what} ({exc}){tail}") from None


def load_json(path: str, info: DatasetInfo, what: str = "annotation file"):
    """``read_json`` whose errors also say where the data set comes from."""
    return read_json(path, what, f"{info.name} comes from {info.source}")


def describe_record(section: str, index: int, record) -> str:
    """``annotations[3] (id 123)``: where a record sits in a COCO-format file, with its id (or file name)."""
    label = ""
    if isinstance(record, dict):
        if "id" in record:
            label = f" (id {record['id']})"
        elif "file_name" in record:
            label = f" (file_name {record['file_name']})"
    return f"{section}[{index}]{label}"


def check_coco_records(data, path: str, section: str, fields: tuple[str, ...]) -> None:
    """Every record of ``data[section]`` is an object holding ``fields``; else a ValueError naming the file, the
    record (index and id) and the field: "x.json: annotations[3] (id 123): missing field 'keypoints'"."""
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a COCO-format file (the top level is not an object)")
    records = data.get(section)
    if not isinstance(records, list):
        raise ValueError(f"{path}: no '{section}' list")
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise ValueError(f"{path}: {section}[{index}]: expected an object, got {type(record).__name__}")
        missing = next((name for name in fields if name not in record), None)
        if missing:
            raise ValueError(f"{path}: {describe_record(section, index, record)}: missing field '{missing}'")


def _require(cond: bool, path: str, info: DatasetInfo, what: str) -> None:
    if not cond:
        raise ValueError(f"{path}: malformed {info.name} annotation file: {what}. {info.name} comes from {info.source}")


def _finite_box(box) -> bool:
    return (
        isinstance(box, (list, tuple))
        and len(box) == 4
        and all(isinstance(v, (int, float)) and math.isfinite(v) for v in box)
    )


def _clean_box(box, width: float, height: float, hrnet: bool):
    """Clip a box to the image. HRNet (COCO) treats w/h as inclusive pixel counts and keeps
    degenerate-but-inside boxes; MMPose 0.x (AP-10K) needs a positive clipped extent."""
    x, y, w, h = box
    x1, y1 = max(0.0, x), max(0.0, y)
    if hrnet:
        x2, y2 = min(width - 1, x1 + max(0.0, w - 1)), min(height - 1, y1 + max(0.0, h - 1))
        ok = x2 >= x1 and y2 >= y1
    else:
        x2, y2 = min(width - 1, x1 + max(0.0, w)), min(height - 1, y1 + max(0.0, h))
        ok = x2 > x1 and y2 > y1
    return [x1, y1, x2 - x1, y2 - y1] if ok else None


_JPEG_STANDALONE = frozenset(range(0xD0, 0xDA)) | {0x01}  # RSTn, SOI, EOI, TEM: markers without a length


def _jpeg_complete(data: bytes) -> bool:
    """Whether a JPEG stream reaches the end-of-image marker of its main image.

    Marker segments are skipped by their length (an EXIF thumbnail, with its own markers, sits inside one);
    in the entropy-coded data after each SOS a 0xFF byte is followed by 0x00 or a restart marker, so the
    first other marker found there ends the scan: EOI, or the next segment of a progressive image.
    """
    position = 2  # after SOI
    while position + 2 <= len(data):
        if data[position] != 0xFF:
            return False
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker == 0xD9:
            return True
        if marker in _JPEG_STANDALONE:
            position += 2
            continue
        if position + 4 > len(data):
            return False
        position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
        if marker != 0xDA:  # SOS: entropy-coded data follows its header
            continue
        while True:
            position = data.find(b"\xff", position)
            if position < 0 or position + 1 >= len(data):
                return False
            following = data[position + 1]
            if following == 0x00 or 0xD0 <= following <= 0xD7 or following == 0xFF:
                position += 1 if following == 0xFF else 2
                continue
            break
    return False


def image_problem(path: str) -> str | None:
    """What is wrong with an image file, in words ("missing", "truncated ..."), or None if it is whole.

    Beyond the header check (a format OpenCV decodes), a JPEG must reach its end-of-image marker and a PNG
    its IEND chunk: OpenCV decodes a truncated file without an error, greying out what is missing.
    """
    if not os.path.isfile(path):
        return "missing"
    size = os.path.getsize(path)
    if size == 0:
        return "unreadable (empty file)"
    if not cv2.haveImageReader(path):
        return "unreadable (not an image format OpenCV reads)"
    with open(path, "rb") as handle:
        head = handle.read(8)
        handle.seek(max(0, size - 4096))
        tail = handle.read()
        if head.startswith(b"\xff\xd8"):
            if tail.rstrip(b"\x00\r\n\t ").endswith(b"\xff\xd9"):
                return None
            handle.seek(0)
            if not _jpeg_complete(handle.read()):  # trailing bytes after EOI are allowed: look for it
                return f"truncated (a JPEG without its end-of-image marker; {size:,} bytes)"
        elif head.startswith(b"\x89PNG\r\n\x1a\n") and b"IEND" not in tail:
            return f"truncated (a PNG without its IEND chunk; {size:,} bytes)"
    return None


class _ImageChecker:
    """Checks each image file once and reports bad ones for every instance they hold."""

    def __init__(self, bad: BadRecords):
        self.bad = bad
        self.cache: dict[str, str | None] = {}

    def __call__(self, path: str, image_id) -> bool:
        if path not in self.cache:
            self.cache[path] = image_problem(path)
        problem = self.cache[path]
        if problem:
            self.bad.report(image_id, f"image {problem}: {path}")
        return problem is None


def read_coco_format(
    ann_file: str, image_dir: str, info: DatasetInfo, aspect_ratio: float, on_bad: OnBad, box_file: str | None = None
) -> tuple[list[Record], int]:
    """COCO-format keypoints (COCO person keypoints, AP-10K) -> records and the bad-record count.

    With ``box_file`` (COCO detector results), instances are the detector's person boxes
    (category 1, score >= DET_SCORE_THRESHOLD) instead of the ground truth.
    """
    data = load_json(ann_file, info)
    _require(isinstance(data, dict), ann_file, info, "top level is not an object")
    _require(isinstance(data.get("images"), list), ann_file, info, "no 'images' list")
    check_coco_records(data, ann_file, "images", ("id", "file_name"))
    bad = BadRecords(ann_file, on_bad)
    check_image = _ImageChecker(bad)
    images = {img["id"]: img for img in data["images"]}
    k = info.num_keypoints
    records: list[Record] = []
    if box_file is not None:
        return _read_detections(box_file, images, image_dir, info, aspect_ratio, on_bad, k)
    _require(
        isinstance(data.get("annotations"), list),
        ann_file,
        info,
        "no 'annotations' list (an image-info file needs a detector box file)",
    )
    person_only = info.name == "coco"
    check_coco_records(data, ann_file, "annotations", ("image_id",))
    for index, ann in enumerate(data["annotations"]):
        image_id = ann["image_id"]
        if ann.get("iscrowd", 0):
            continue
        if person_only and ann.get("category_id", 1) != 1:
            continue
        if image_id not in images:
            bad.report(image_id, f"annotation {ann.get('id')} names an image not in 'images'")
            continue
        if "keypoints" not in ann:
            bad.report(image_id, f"{describe_record('annotations', index, ann)}: missing field 'keypoints'")
            continue
        kp = ann["keypoints"]
        if not isinstance(kp, list) or len(kp) != 3 * k:
            n = len(kp) if isinstance(kp, list) else type(kp).__name__
            bad.report(
                image_id, f"annotation {ann.get('id')}: keypoints has {n} values, expected {3 * k} ({k} joints x 3)"
            )
            continue
        kp = np.asarray(kp, dtype=np.float32).reshape(k, 3)
        if not np.all(np.isfinite(kp)):
            bad.report(image_id, f"annotation {ann.get('id')}: non-finite keypoints")
            continue
        if kp.max() <= 0 or ann.get("num_keypoints", 1) == 0:
            continue  # no labelled joint: not used for training or GT-box testing (HRNet)
        box = ann.get("bbox")
        if not _finite_box(box):
            bad.report(image_id, f"annotation {ann.get('id')}: bbox must be 4 finite numbers, got {box!r}")
            continue
        if box[2] <= 0 or box[3] <= 0:
            bad.report(image_id, f"annotation {ann.get('id')}: zero-size bbox {box}")
            continue
        if ann.get("area", 1) <= 0:
            continue  # HRNet's sanitiser drops zero-area instances
        img = images[image_id]
        clean = _clean_box(box, img.get("width", np.inf), img.get("height", np.inf), hrnet=person_only)
        if clean is None:
            continue  # box lies outside the image: dropped by the reference sanitisers
        path = os.path.join(image_dir, img["file_name"])
        if not check_image(path, image_id):
            continue
        center, scale = box_to_center_scale(clean, aspect_ratio)
        records.append(
            Record(
                image_id=int(image_id),
                image_path=path,
                center=center,
                scale=scale,
                keypoints=kp,
                category_id=int(ann.get("category_id", 1)),
            )
        )
    return records, bad.count


def _read_detections(
    box_file: str, images: dict, image_dir: str, info: DatasetInfo, aspect_ratio: float, on_bad: OnBad, k: int
) -> tuple[list[Record], int]:
    dets = load_json(box_file, info, what="detector box file")
    if not isinstance(dets, list) or not dets:
        raise ValueError(
            f"{box_file}: detector box file must be a non-empty JSON list of {{image_id, category_id, bbox, score}}"
        )
    bad = BadRecords(box_file, on_bad)
    check_image = _ImageChecker(bad)
    unknown = sorted({d.get("image_id") for d in dets if isinstance(d, dict)} - set(images))
    if unknown:
        raise ValueError(
            f"{box_file}: {len(unknown)} detector boxes name images not in the "
            f"annotation file (e.g. image id {unknown[0]}); is it the right split?"
        )
    records = []
    for d in dets:
        if not isinstance(d, dict) or not {"image_id", "bbox", "score", "category_id"} <= set(d):
            raise ValueError(f"{box_file}: each detection needs image_id, category_id, bbox, score; got {d!r}")
        if d["category_id"] != 1 or d["score"] < DET_SCORE_THRESHOLD:
            continue
        box = d["bbox"]
        if not _finite_box(box):
            bad.report(d["image_id"], f"detector bbox must be 4 finite numbers, got {box!r}")
            continue
        if box[2] <= 0 or box[3] <= 0:
            bad.report(d["image_id"], f"zero-size detector bbox {box}")
            continue
        path = os.path.join(image_dir, images[d["image_id"]]["file_name"])
        if not check_image(path, d["image_id"]):
            continue
        center, scale = box_to_center_scale(box, aspect_ratio)
        records.append(
            Record(
                image_id=int(d["image_id"]),
                image_path=path,
                center=center,
                scale=scale,
                keypoints=np.zeros((k, 3), np.float32),
                box_score=float(d["score"]),
            )
        )
    return records, bad.count


def read_mpii(
    ann_file: str,
    image_dir: str,
    info: DatasetInfo,
    aspect_ratio: float,
    on_bad: OnBad,
    head_sizes: np.ndarray | None = None,
) -> tuple[list[Record], int]:
    """HRNet/MMPose MPII json -> records. ``image_id`` is the position in the file (MPII has no
    numeric ids; mpii_gt_val.mat and PCKh use this order). ``head_sizes`` (one per entry) fill
    ``Record.head_size``."""
    data = load_json(ann_file, info)
    _require(isinstance(data, list), ann_file, info, "top level is not a list of people")
    if head_sizes is not None and len(head_sizes) != len(data):
        raise ValueError(f"{ann_file}: {len(data)} people but the MPII GT .mat has {len(head_sizes)}")
    bad = BadRecords(ann_file, on_bad)
    check_image = _ImageChecker(bad)
    k = info.num_keypoints
    records = []
    for idx, a in enumerate(data):
        _require(
            isinstance(a, dict) and {"image", "center", "scale"} <= set(a),
            ann_file,
            info,
            f"entry {idx} lacks 'image', 'center' or 'scale'",
        )
        try:
            center = np.asarray(a["center"], dtype=np.float64).reshape(2)
            s200 = float(a["scale"])
        except (TypeError, ValueError):
            bad.report(idx, f"bad center/scale {a.get('center')!r}/{a.get('scale')!r}")
            continue
        if not (s200 > 0 and math.isfinite(s200)):
            bad.report(idx, f"zero-size person scale {a['scale']!r}")
            continue
        joints = np.asarray(a.get("joints", np.zeros((k, 2))), dtype=np.float32)
        vis = np.asarray(a.get("joints_vis", np.zeros(k)), dtype=np.float32).reshape(-1)
        if joints.ndim != 2 or joints.shape != (k, 2) or vis.shape != (k,):
            bad.report(idx, f"joints {joints.shape} / joints_vis {vis.shape}, expected ({k}, 2) / ({k},)")
            continue
        if center[0] != -1:  # HRNet: move the center down and pad so limbs are not cut
            center[1] += 15 * s200
            s200 *= 1.25
        center -= 1  # MATLAB 1-based -> 0-based pixels
        kp = np.zeros((k, 3), np.float32)
        kp[:, :2] = joints - 1
        kp[:, 2] = vis
        side = s200 * PIXEL_STD
        w, h = fix_aspect_ratio(side, side, aspect_ratio)
        path = os.path.join(image_dir, a["image"])
        if not check_image(path, idx):
            continue
        records.append(
            Record(
                image_id=idx,
                image_path=path,
                center=center.astype(np.float32),
                scale=np.array([w, h], np.float32),
                keypoints=kp,
                head_size=None if head_sizes is None else float(head_sizes[idx]),
            )
        )
    return records, bad.count


@dataclass
class MPIIGroundTruth:
    """Contents of HRNet's gt_valid.mat / MMPose's mpii_gt_val.mat, one row per person."""

    joint_names: list[str]  # 16 short names: rank, rkne, ..., head, ..., lwri
    positions: np.ndarray  # (N, 16, 2) MATLAB 1-based pixels (pos_gt_src)
    missing: np.ndarray  # (N, 16) bool (jnt_missing)
    head_boxes: np.ndarray  # (N, 2, 2): [top-left (x, y), bottom-right (x, y)] (headboxes_src)

    def head_sizes(self, sc_bias: float = 0.6) -> np.ndarray:
        """PCKh normaliser per person: ``sc_bias`` x head-box diagonal (HRNet's SC_BIAS 0.6)."""
        return sc_bias * np.linalg.norm(self.head_boxes[:, 1] - self.head_boxes[:, 0], axis=1)


MPII_GT_FIELDS = ("dataset_joints", "jnt_missing", "pos_gt_src", "headboxes_src")


def load_mpii_gt(path: str) -> MPIIGroundTruth:
    """Read mpii_gt_val.mat (fields dataset_joints 1x16 cell, jnt_missing 16xN, pos_gt_src 16x2xN,
    headboxes_src 2x2xN); errors name the file and the field."""
    from scipy.io import loadmat  # scipy is slow to import; only MPII evaluation needs it

    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"MPII ground truth not found: {path} (mpii_gt_val.mat / gt_valid.mat "
            "ships with the HRNet and MMPose MPII annotations)"
        )
    try:
        mat = loadmat(path)
    except Exception as exc:  # scipy raises several types for a non-.mat file
        raise ValueError(f"{path}: not a readable MATLAB .mat file ({exc})") from None
    missing_fields = [f for f in MPII_GT_FIELDS if f not in mat]
    if missing_fields:
        raise ValueError(f"{path}: missing field(s) {', '.join(missing_fields)}; expected {', '.join(MPII_GT_FIELDS)}")
    names = [
        str(np.asarray(v).ravel()[0]) if np.asarray(v).size else "" for v in np.asarray(mat["dataset_joints"]).ravel()
    ]
    pos = np.asarray(mat["pos_gt_src"], dtype=np.float64)
    miss = np.asarray(mat["jnt_missing"])
    boxes = np.asarray(mat["headboxes_src"], dtype=np.float64)
    if len(names) != 16 or pos.ndim != 3 or pos.shape[:2] != (16, 2):
        raise ValueError(
            f"{path}: dataset_joints must have 16 names and pos_gt_src shape (16, 2, N); "
            f"got {len(names)} names and {pos.shape}"
        )
    n = pos.shape[2]
    if miss.shape != (16, n) or boxes.shape != (2, 2, n):
        raise ValueError(
            f"{path}: jnt_missing {miss.shape} / headboxes_src {boxes.shape} do not match "
            f"pos_gt_src {pos.shape} (expected (16, {n}) / (2, 2, {n}))"
        )
    return MPIIGroundTruth(
        joint_names=names,
        positions=pos.transpose(2, 0, 1),
        missing=miss.T.astype(bool),
        head_boxes=boxes.transpose(2, 0, 1),
    )
