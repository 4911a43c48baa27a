"""Where each data set lives: its root (given, else its environment variable) and the standard layout under it.

One resolver for every file a run needs: annotations, images and MPII's ground-truth ``.mat``.
"""

from __future__ import annotations

import os

from mamkpd.data.infos import DatasetInfo, get_info

__all__ = [
    "SPLITS",
    "ANN_FILES",
    "IMAGE_DIRS",
    "MPII_GT_FILES",
    "find_mpii_gt",
    "first_existing",
    "resolve_data_root",
    "root_or_env",
]

# The split names every data set, paper table and command uses ("val" is COCO's val2017, MPII's valid).
SPLITS = ("train", "val", "test")

# Standard layouts under the data root, for each of SPLITS; the first candidate that exists is used.
ANN_FILES = {
    "coco": {
        "train": ["annotations/person_keypoints_train2017.json"],
        "val": ["annotations/person_keypoints_val2017.json"],
        "test": ["annotations/image_info_test-dev2017.json"],
    },
    "mpii": {
        "train": ["annot/train.json", "annotations/mpii_train.json"],
        "val": ["annot/valid.json", "annotations/mpii_val.json"],
        "test": ["annot/test.json", "annotations/mpii_test.json"],
    },
    "ap10k": {s: [f"annotations/ap10k-{s}-split1.json"] for s in ("train", "val", "test")},
}
IMAGE_DIRS = {
    "coco": {
        "train": ["train2017", "images/train2017"],
        "val": ["val2017", "images/val2017"],
        "test": ["test2017", "images/test2017"],
    },
    "mpii": {s: ["images"] for s in ("train", "val", "test")},
    "ap10k": {s: ["data"] for s in ("train", "val", "test")},
}
MPII_GT_FILES = ["annot/gt_valid.mat", "annot/mpii_gt_val.mat", "annotations/mpii_gt_val.mat"]


def root_or_env(info: DatasetInfo | str, given: str | os.PathLike | None) -> str | None:
    """The data root given, else the dataset's environment variable; None when neither is set."""
    info = get_info(info) if isinstance(info, str) else info
    root = given or os.environ.get(info.default_root_env)
    return str(root) if root else None


def resolve_data_root(info: DatasetInfo, data_root: str | os.PathLike | None) -> str:
    """The data root given, else the dataset's environment variable; a clear error if neither."""
    root = root_or_env(info, data_root)
    if not root:
        raise ValueError(
            f"no data root for {info.name}: pass --data-root or set "
            f"{info.default_root_env}. {info.name} comes from {info.source}"
        )
    if not os.path.isdir(root):
        raise FileNotFoundError(
            f"data root {root} for {info.name} is not a directory. {info.name} comes from {info.source}"
        )
    return root


def first_existing(root: str, candidates: list[str], info: DatasetInfo, what: str, isdir: bool) -> str:
    paths = [os.path.join(root, c) for c in candidates]
    for p in paths:
        if os.path.isdir(p) if isdir else os.path.isfile(p):
            return p
    raise FileNotFoundError(
        f"{info.name} {what} not found; looked for {' and '.join(paths)}. {info.name} comes from {info.source}"
    )


def find_mpii_gt(data_root: str | os.PathLike | None) -> str | None:
    """The MPII validation ground truth (.mat) under ``data_root`` (or $MAMKPD_MPII_ROOT), if present."""
    root = root_or_env("mpii", data_root)
    found = [os.path.join(root, name) for name in MPII_GT_FILES if root and os.path.isfile(os.path.join(root, name))]
    return found[0] if found else None
