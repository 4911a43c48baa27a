"""`mamkpd evaluate` as a user runs it: a subprocess on the COCO samples."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from pose_samples import sample

from mamkpd import create_model
from mamkpd.engine import TrainConfig, save_checkpoint
from mamkpd.ops import SCAN_BACKENDS

REPO = Path(__file__).resolve().parents[1]
TINY = {"depths": [1, 1, 1], "dims": [16, 32, 64]}


def mamkpd_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(
        [sys.executable, "-m", "mamkpd.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def untrained_checkpoint(path: Path, input_size=(64, 48), model_kwargs=None) -> Path:
    """A checkpoint as `mamkpd train` writes it, of a freshly initialised reduced MamKPD-S."""
    cfg = TrainConfig(model="mamkpd_s", model_kwargs=model_kwargs or TINY, dataset="coco", input_size=input_size)
    torch.manual_seed(0)
    model = create_model(cfg.model, num_keypoints=17, input_size=input_size, **cfg.model_kwargs)
    return save_checkpoint(path, {"model": model.state_dict(), "config": cfg.to_dict(), "complete_epoch": False})


def test_evaluate_reports_metrics_and_protocol(tmp_path):
    ckpt = untrained_checkpoint(tmp_path / "run_a" / "last.pth")
    ann = sample("coco", "test_coco.json")
    # the default results file names the model and the run: another run's last.pth does not overwrite it
    results = tmp_path / "runs" / "eval" / "mamkpd_s_run_a_last_coco_val_keypoints.json"
    proc = mamkpd_cli(
        "evaluate",
        "--checkpoint",
        str(ckpt),
        "--dataset",
        "coco",
        "--ann-file",
        str(ann),
        "--image-dir",
        str(ann.parent),
        "--box-file",
        str(ann.parent / "test_coco_det_AP_H_56.json"),
        "--device",
        "cpu",
        "--workers",
        "0",
        "--json",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert set(report["metrics"]) >= {"AP", "AP50", "AP75", "APM", "APL", "AR"}
    assert all(0.0 <= v <= 1.0 for v in report["metrics"].values())
    protocol = report["protocol"]
    assert protocol["flip_test"] is True and protocol["flip_shift"] is True and protocol["codec"] == "msra"
    assert protocol["box_source"].endswith("test_coco_det_AP_H_56.json") and protocol["input_size"] == [64, 48]
    assert protocol["scan_backend"] in SCAN_BACKENDS and protocol["model_kwargs"] == TINY  # resolved, never "auto"
    assert report["num_instances"] > 14  # detector boxes, not the 14 ground-truth people
    written = json.loads(results.read_text())
    assert written and set(written[0]) == {"image_id", "category_id", "keypoints", "score"}


def test_evaluate_errors_are_one_clear_line(tmp_path):
    proc = mamkpd_cli("evaluate", "--checkpoint", str(tmp_path / "missing.pth"), "--dataset", "coco", cwd=tmp_path)
    assert proc.returncode == 2 and "checkpoint not found" in proc.stderr and "Traceback" not in proc.stderr
    foreign = tmp_path / "foreign.pth"
    torch.save({"state_dict": {}}, foreign)
    proc = mamkpd_cli("evaluate", "--checkpoint", str(foreign), "--dataset", "coco", cwd=tmp_path)
    assert proc.returncode == 2 and "pass --model" in proc.stderr


def test_checkpoint_setup_comes_from_the_arguments_then_the_checkpoint_then_the_model(tmp_path):
    from mamkpd.engine.checkpoint_eval import EvalConfig, checkpoint_setup

    ours = untrained_checkpoint(tmp_path / "ours.pth", input_size=(64, 48))
    setup = checkpoint_setup(EvalConfig(checkpoint=str(ours), dataset="coco"))
    assert (setup.model, setup.model_kwargs, setup.input_size, setup.codec) == ("mamkpd_s", TINY, (64, 48), "msra")
    given = checkpoint_setup(EvalConfig(checkpoint=str(ours), dataset="coco", input_size=(128, 96), codec="udp"))
    assert (given.input_size, given.codec) == ((128, 96), "udp")
    zoo = tmp_path / "zoo.pth"
    torch.save({"state_dict": {}}, zoo)
    # a model-zoo file records nothing: the named model's codec and the data set's input size
    setup = checkpoint_setup(EvalConfig(checkpoint=str(zoo), dataset="mpii", model="vitpose_b"))
    assert (setup.model_kwargs, setup.input_size, setup.codec, setup.training_state) == ({}, (256, 256), "udp", None)


def test_original_simplebaseline_checkpoint_is_evaluated_on_bgr_images(tmp_path):
    """A checkpoint in the original SimpleBaseline layout (no prefixes) runs on BGR images, as its release."""
    import mamkpd

    model = mamkpd.create_model("sbl_res50")
    state = {k.removeprefix("backbone.").removeprefix("head."): v for k, v in model.state_dict().items()}
    ckpt = tmp_path / "pose_resnet_50.pth"
    torch.save({"state_dict": state}, ckpt)
    ann = sample("coco", "test_coco.json")
    args = ["evaluate", "--checkpoint", str(ckpt), "--model", "sbl_res50", "--dataset", "coco"]
    args += ["--ann-file", str(ann), "--image-dir", str(ann.parent), "--device", "cpu", "--workers", "0"]
    proc = mamkpd_cli(*args, "--no-flip", "--results", str(tmp_path / "kpts.json"), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["protocol"]["input_channels"].startswith("BGR")


def test_rtmpose_checkpoint_is_evaluated_through_its_simcc_codec(tmp_path):
    """A model-zoo RTMPose file: decoded and flip-tested by the SimCC codec the model registers; a heatmap
    codec forced on it is one clear line."""
    torch.manual_seed(0)
    ckpt = tmp_path / "rtmpose-t.pth"
    torch.save({"meta": {}, "state_dict": create_model("rtmpose_t").state_dict()}, ckpt)
    ann = sample("coco", "test_coco.json")
    args = ["evaluate", "--checkpoint", str(ckpt), "--model", "rtmpose_t", "--dataset", "coco"]
    args += ["--ann-file", str(ann), "--image-dir", str(ann.parent), "--device", "cpu", "--workers", "0"]
    proc = mamkpd_cli(*args, "--results", str(tmp_path / "kpts.json"), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["protocol"]["codec"] == "simcc" and report["protocol"]["flip_test"] is True
    assert report["protocol"]["flip_shift"] is False and report["protocol"]["input_size"] == [256, 192]
    assert all(0.0 <= v <= 1.0 for v in report["metrics"].values())  # untrained: the point is that it evaluates
    written = json.loads((tmp_path / "kpts.json").read_text())
    assert written and all(len(r["keypoints"]) == 51 for r in written)
    proc = mamkpd_cli(*args, "--codec", "msra", "--results", str(tmp_path / "msra.json"), cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "the msra codec decodes heatmaps" in proc.stderr and "use its own codec, simcc" in proc.stderr
