"""Official baseline checkpoints evaluated by this suite reproduce their published COCO val2017 AP.

Runs only where the user has the data and the checkpoints (and a GPU: a full COCO val pass with
104k detector boxes takes hours on a CPU):

- ``MAMKPD_COCO_ROOT``: COCO 2017 (annotations/, val2017/, and for the top-down models
  person_detection_results/COCO_val2017_detections_AP_H_56_person.json, the 56.4-AP detector boxes,
  or ``MAMKPD_COCO_BOX_FILE``);
- ``MAMKPD_HRNET_W32_CKPT`` (pose_hrnet_w32_256x192.pth), ``MAMKPD_VITPOSE_B_CKPT`` (official
  vitpose-b.pth, classic decoder), ``MAMKPD_RTMO_S_CKPT`` (MMPose rtmo-s COCO checkpoint).

Top-down models go through ``mamkpd.engine.evaluate_checkpoint``, what ``mamkpd evaluate`` runs (flip
test, the model's codec, rescoring, OKS-NMS);
RTMO through its whole-image path (letterbox 640, score 0.1, NMS 0.65, box scores, no OKS-NMS).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mamkpd.harness.jobs.availability import dataset_status, sha256_of
from mamkpd.paper import load_table

from .support import describe, require_cuda, within

DETECTOR_BOXES = "person_detection_results/COCO_val2017_detections_AP_H_56_person.json"

pytestmark = [pytest.mark.data, pytest.mark.gpu]


def paper_value(row: str, metric: str = "AP") -> float:
    table = load_table("table2")
    return float(table.loc[table["row"] == row, metric].iloc[0])


def require(env: str, what: str) -> Path:
    value = os.environ.get(env)
    if not value:
        pytest.skip(f"{what} not given: set {env} to the downloaded checkpoint")
    path = Path(value)
    if not path.is_file():
        pytest.skip(f"{what} not found at {path} ({env})")
    return path


def coco_root() -> Path:
    status = dataset_status("coco", None, "val")
    if not status.ok:
        pytest.skip(status.reason)
    return Path(os.environ["MAMKPD_COCO_ROOT"])


@pytest.mark.parametrize(
    "row,model,env",
    [
        ("HRNet-W32", "hrnet_w32", "MAMKPD_HRNET_W32_CKPT"),
        ("ViTPose-B", "vitpose_b", "MAMKPD_VITPOSE_B_CKPT"),
        # TokenPose and PPT release their checkpoints on Google Drive (their READMEs); S-v1's is the row's 72.5 AP
        ("TokenPose-S", "tokenpose_s_v1", "MAMKPD_TOKENPOSE_S_V1_CKPT"),
        ("TokenPose-L", "tokenpose_l_d6", "MAMKPD_TOKENPOSE_L_D6_CKPT"),
        ("PPT-B", "ppt_b", "MAMKPD_PPT_B_CKPT"),
        ("PPT-L", "ppt_l_d6", "MAMKPD_PPT_L_D6_CKPT"),
    ],
)
def test_topdown_official_checkpoint_reproduces_published_ap(row, model, env, record, tmp_path):
    require_cuda()
    root = coco_root()
    checkpoint = require(env, f"official {row} checkpoint")
    boxes = Path(os.environ.get("MAMKPD_COCO_BOX_FILE", root / DETECTOR_BOXES))
    if not boxes.is_file():
        pytest.skip(f"detector boxes (56.4 AP) not found at {boxes}: set MAMKPD_COCO_BOX_FILE")
    import mamkpd
    from mamkpd.engine import EvalConfig, evaluate_checkpoint

    codec = mamkpd.model_info(model).codec  # ViTPose was trained and is decoded with UDP, TokenPose with DarkPose's
    report = evaluate_checkpoint(
        EvalConfig(
            checkpoint=str(checkpoint),
            dataset="coco",
            model=model,
            data_root=str(root),
            box_file=str(boxes),
            codec=codec,
            device="cuda",
            results=str(tmp_path / "results.json"),
        )
    )
    stored = record(
        table="table2",
        row=row,
        model=model,
        metric="AP",
        paper=paper_value(row),
        measured=100 * report["metrics"]["AP"],
        # the store's own columns (record() refuses any other name)
        dataset="coco",
        split="val",
        box_source=str(boxes),
        flip_test=True,
        device="cuda",
        checkpoint_sha256=sha256_of(checkpoint),
        notes=f"official checkpoint {checkpoint.name}; codec {codec}",
    )
    assert within(stored), describe(stored)


def test_rtmo_s_official_checkpoint_whole_image_ap(record):
    require_cuda()
    root = coco_root()
    checkpoint = require("MAMKPD_RTMO_S_CKPT", "official RTMO-S checkpoint")
    import torch

    import mamkpd
    from mamkpd.engine.whole_image import whole_image_coco_results
    from mamkpd.evaluation import coco_keypoint_ap

    model = mamkpd.create_model("rtmo_s", checkpoint_path=checkpoint)
    model = model.to(torch.device("cuda")).eval()
    ann = root / "annotations" / "person_keypoints_val2017.json"
    results = whole_image_coco_results(model, ann, root / "val2017")
    metrics = coco_keypoint_ap(str(ann), results)
    stored = record(
        table="table2",
        row="RTMO-S",
        model="rtmo_s",
        metric="AP",
        paper=paper_value("RTMO-S"),
        measured=100 * metrics["AP"],
        dataset="coco",
        split="val",
        device="cuda",
        checkpoint_sha256=sha256_of(checkpoint),
        notes="official checkpoint; letterbox 640 pad 114 raw BGR, score 0.1, NMS 0.65, box scores, no OKS-NMS",
    )
    assert within(stored), describe(stored)
