"""`mamkpd train` as a user runs it: a reduced MamKPD really learns the COCO samples on CPU."""

from __future__ import annotations

import json

import pytest
from pose_samples import sample
from test_cli_evaluate import mamkpd_cli, untrained_checkpoint

INPUT = ("64", "48")
# MamKPD-S with one block per stage and 32/64/128 channels: learns the samples in ~200 steps on CPU
REDUCED = {"depths": [1, 1, 1], "dims": [32, 64, 128]}


def coco_ap(checkpoint, ann, cwd) -> float:
    proc = mamkpd_cli(
        "evaluate",
        "--checkpoint",
        str(checkpoint),
        "--dataset",
        "coco",
        "--split",
        "train",
        "--ann-file",
        str(ann),
        "--image-dir",
        str(ann.parent),
        "--device",
        "cpu",
        "--workers",
        "0",
        "--results",
        str(cwd / f"{checkpoint.stem}_results.json"),
        "--json",
        cwd=cwd,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)["metrics"]["AP"]


@pytest.mark.slow
def test_training_on_the_samples_raises_train_set_ap(tmp_path, monkeypatch):
    # one thread: two threads on a loaded two-core machine are several times slower, never faster
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    ann = sample("coco", "test_coco.json")
    before = coco_ap(untrained_checkpoint(tmp_path / "untrained.pth", (64, 48), REDUCED), ann, tmp_path)
    proc = mamkpd_cli(
        "train",
        "--model",
        "mamkpd_s",
        "--model-kwargs",
        json.dumps(REDUCED),
        "--dataset",
        "coco",
        "--train-ann-file",
        str(ann),
        "--train-image-dir",
        str(ann.parent),
        "--input-size",
        *INPUT,
        "--augment",
        "false",  # memorising 12 people: augmentation would only slow it down
        "--epochs",
        "200",
        "--batch-size",
        "12",
        "--lr",
        "5e-3",
        "--warmup-iters",
        "0",
        "--lr-steps",
        "160",
        "--val-interval",
        "0",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--seed",
        "0",
        "--checkpoint-interval",
        "0",
        "--log-interval",
        "25",
        "--out-dir",
        str(tmp_path / "run"),
        "--json",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout)
    assert summary["epochs_completed"] == 200 and summary["checkpoint"].endswith("last.pth")
    log = (tmp_path / "run" / "train.log").read_text()
    assert "loss" in log and "samples/s" in log
    after = coco_ap(tmp_path / "run" / "last.pth", ann, tmp_path)
    assert before < 0.02, before
    assert after > 0.15 and after > before + 0.1, (before, after)


def test_train_without_data_is_a_clear_error(tmp_path, monkeypatch):
    env_var = "MAMKPD_COCO_ROOT"
    monkeypatch.delenv(env_var, raising=False)
    proc = mamkpd_cli(
        "train",
        "--model",
        "mamkpd_s",
        "--dataset",
        "coco",
        "--out-dir",
        str(tmp_path / "r"),
        "--device",
        "cpu",
        cwd=tmp_path,
    )
    assert proc.returncode == 2 and env_var in proc.stderr and "Traceback" not in proc.stderr
    proc = mamkpd_cli("train", "--epochs", "zero", cwd=tmp_path)
    assert proc.returncode == 2 and "--epochs" in proc.stderr
