"""What a new user hit (issue 13, items 3 to 10): each case as the user ran it (the CLI as a subprocess) and
through the function behind it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from pose_samples import sample
from test_checkpoint_safety import crafted_checkpoint, one_error_line
from test_cli_evaluate import TINY, mamkpd_cli
from test_data_readers import _person, _write_synthetic_coco
from test_engine_train import run, small_config

import mamkpd
from mamkpd.data import SPLITS, build_dataset
from mamkpd.engine.checkpoint import TEMP_SUFFIX, load_training_state, remove_stale_temp_files

# --- 3. input sizes --------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(0, 0), (-64, 48), (65, 48)])
def test_every_model_rejects_a_bad_input_size_naming_itself(size):
    for name in mamkpd.list_models():
        with torch.device("meta"), pytest.raises(ValueError, match=rf"^{name}: input_size must be \(H, W\)"):
            mamkpd.create_model(name, input_size=size)


def test_bad_input_sizes_are_one_line_in_every_command(tmp_path):
    for command, args in {
        "complexity": ["--model", "mamkpd_s"],
        "fps": ["--model", "mamkpd_s"],
        "export": ["--model", "mamkpd_s", "--out", str(tmp_path / "m.onnx")],
        "train": ["--model", "mamkpd_s"],
        "evaluate": ["--checkpoint", "x.pth", "--dataset", "coco"],
    }.items():
        line = one_error_line(mamkpd_cli(command, *args, "--input-size", "0", "0", cwd=tmp_path), command)
        assert "--input-size: expected a positive whole number, got '0'" in line, line
    # sizes argparse accepts but the model does not: the model's own constraint, before any work
    line = one_error_line(
        mamkpd_cli("complexity", "--model", "rtmo_s", "--input-size", "100", "100", cwd=tmp_path), "complexity"
    )
    assert line.endswith(
        "rtmo_s: input_size must be (H, W), both positive multiples of 32 (its total stride), got (100, 100)"
    )
    args = ["--model", "mamkpd_s", "--input-size", "250", "190", "--out-dir", str(tmp_path / "run")]
    line = one_error_line(mamkpd_cli("train", *args, cwd=tmp_path), "train")
    assert "mamkpd_s: input_size must be (H, W), both positive multiples of 16" in line, line


# --- 4. malformed annotation files ----------------------------------------------------------------------


def test_a_malformed_annotation_names_the_file_the_record_and_the_field(tmp_path):
    ann_file = _write_synthetic_coco(tmp_path, [_person(1, 1), _person(1, 7)], n_images=1)
    data = json.loads(ann_file.read_text())
    del data["annotations"][1]["keypoints"]
    ann_file.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"annotations\[1\] \(id 7\): missing field 'keypoints'"):
        build_dataset("coco", "train", train=True, ann_file=str(ann_file), on_bad="error")
    data = json.loads(ann_file.read_text())
    del data["images"][0]["id"]
    ann_file.write_text(json.dumps(data))
    with pytest.raises(
        ValueError, match=rf"^{ann_file}: images\[0\] \(file_name 000000000001.jpg\): missing field 'id'"
    ):
        build_dataset("coco", "train", train=True, ann_file=str(ann_file))
    # the evaluator's reading of the same file, as `mamkpd eval-results` runs it
    results = tmp_path / "results.json"
    results.write_text(json.dumps([{"image_id": 1, "category_id": 1, "keypoints": [1.0] * 51, "score": 1.0}]))
    args = ["--dataset", "coco", "--ann-file", str(ann_file), "--results"]
    line = one_error_line(mamkpd_cli("eval-results", *args, str(results), cwd=tmp_path), "eval-results")
    assert line.endswith(f"{ann_file}: images[0] (file_name 000000000001.jpg): missing field 'id'"), line
    (tmp_path / "good").mkdir()
    good = _write_synthetic_coco(tmp_path / "good", [_person(1, 1)], n_images=1)
    args = ["--dataset", "coco", "--ann-file", str(good), "--results", str(tmp_path)]
    line = one_error_line(mamkpd_cli("eval-results", *args, cwd=tmp_path), "eval-results")
    assert "is a directory, not a file" in line and str(tmp_path) in line, line


# --- 5, 7 and 1: `mamkpd train` on annotation files, resumed --------------------------------------------


def test_train_on_annotation_files_then_resume_with_other_settings(tmp_path, monkeypatch):
    monkeypatch.delenv("MAMKPD_COCO_ROOT", raising=False)
    ann = sample("coco", "test_coco.json")
    out = tmp_path / "run"
    args = ["--train-ann-file", str(ann), "--train-image-dir", str(ann.parent), "--model-kwargs", json.dumps(TINY)]
    args += [
        "--input-size",
        "64",
        "48",
        "--batch-size",
        "4",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--out-dir",
        str(out),
    ]
    args += ["--epochs", "1", "--warmup-iters", "0", "--augment", "false"]
    # 7: no data root and no validation files: say which flag to pass
    line = one_error_line(mamkpd_cli("train", *args, cwd=tmp_path), "train")
    assert "--val-ann-file" in line and "--val-interval 0" in line, line
    # ... and validation on the given files works
    val = ["--val-ann-file", str(ann), "--val-image-dir", str(ann.parent), "--val-interval", "1"]
    proc = mamkpd_cli("train", *args, *val, "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert 0.0 <= summary["last_epoch"]["val"]["AP"] <= 1.0
    # 9: the backend that ran, never "auto"
    assert summary["scan_backend"] not in (None, "auto", "")
    # 5: a resume with another learning rate is refused, naming the setting
    resume = [*args, *val, "--resume", "auto", "--epochs", "2"]
    line = one_error_line(mamkpd_cli("train", *resume, "--lr", "0.002", cwd=tmp_path), "train")
    assert "lr 0.001 -> 0.002" in line and "--resume-with-new-settings" in line, line
    # 1: train --resume refuses a crafted checkpoint and its payload never runs
    crafted, marker = crafted_checkpoint(tmp_path)
    crafted_resume = [*args, "--val-interval", "0", "--resume", str(crafted), "--epochs", "2"]
    line = one_error_line(mamkpd_cli("train", *crafted_resume, cwd=tmp_path), "train")
    # train takes no --trust-checkpoint: the refusal names no flag train would reject (issue 20)
    assert str(crafted) in line and "--trust-checkpoint" not in line and not marker.exists(), line


def test_a_resume_with_new_settings_applies_and_records_them(tmp_path):
    first = run(small_config(tmp_path, epochs=1, lr=1e-2, lr_steps=(10,), warmup_iters=0))
    assert load_training_state(first.checkpoint)["optimizer"]["param_groups"][0]["lr"] == pytest.approx(1e-2)
    later = dict(resume="auto", epochs=2, lr=5e-3, lr_steps=(10,), warmup_iters=0)
    with pytest.raises(ValueError, match=r"lr 0\.01 -> 0\.005.*--resume-with-new-settings"):
        run(small_config(tmp_path, **later))
    resumed = run(small_config(tmp_path, resume_with_new_settings=True, **later))
    state = load_training_state(resumed.checkpoint)
    # what is stored is what ran: the new learning rate in the config and in the optimizer
    assert state["config"]["lr"] == 5e-3
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(5e-3)
    assert state["config_changes"] == [{"epoch": 1, "changes": {"lr": [1e-2, 5e-3]}}]


# --- 6. leftovers of a killed checkpoint write, truncated images ---------------------------------------


def test_temp_files_of_a_killed_checkpoint_write_are_removed_on_the_next_start(tmp_path):
    import socket

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    folder = tmp_path / "run"
    folder.mkdir()
    leftover = folder / f".last.pth.{host}.{dead.pid}.k3j2{TEMP_SUFFIX}"
    leftover.write_bytes(bytes(1000))
    live = folder / f".last.pth.{host}.{os.getpid()}.a1b2{TEMP_SUFFIX}"  # a writer still running
    live.write_bytes(b"x")
    other = folder / "notes.tmp"
    other.write_bytes(b"x")
    removed = remove_stale_temp_files(folder)
    assert removed == [(leftover, 1000)] and live.exists() and other.exists()
    # train() does it when it starts, and says so
    leftover.write_bytes(bytes(10))
    run(small_config(tmp_path, epochs=1))
    assert not leftover.exists() and live.exists()
    assert f"removed {leftover}" in (folder / "train.log").read_text()


def test_a_truncated_jpeg_is_counted_and_reported_like_a_missing_image(tmp_path):
    ann_file = _write_synthetic_coco(tmp_path, [_person(1, 1), _person(2, 2)], n_images=2)
    image = tmp_path / "000000000002.jpg"
    noisy = np.random.default_rng(0).integers(0, 255, (160, 200, 3), dtype=np.uint8)  # a JPEG of many bytes
    cv2.imwrite(str(image), noisy)
    image.write_bytes(image.read_bytes()[: image.stat().st_size // 2])
    assert cv2.imread(str(image)) is not None  # OpenCV decodes it, greying out the missing half
    ds = build_dataset("coco", "train", train=True, ann_file=str(ann_file), on_bad="skip")
    assert len(ds) == 1 and ds.skipped == 1
    with pytest.raises(ValueError, match=r"image id 2: image truncated \(a JPEG without its end-of-image marker"):
        build_dataset("coco", "train", train=True, ann_file=str(ann_file), on_bad="error")


# --- 8 and 9: evaluate's results file and recorded backend ---------------------------------------------


def test_default_results_files_of_two_runs_do_not_overwrite_each_other(tmp_path):
    from mamkpd.engine.checkpoint_eval import default_results_path

    a = default_results_path(str(tmp_path / "run_a" / "last.pth"), "mamkpd_s", "coco", "val")
    b = default_results_path(str(tmp_path / "run_b" / "last.pth"), "mamkpd_s", "coco", "val")
    c = default_results_path(str(tmp_path / "run_a" / "last.pth"), "mamkpd_b", "coco", "val")
    assert len({a, b, c}) == 3
    assert a.as_posix() == "runs/eval/mamkpd_s_run_a_last_coco_val_keypoints.json"


def test_the_recorded_scan_backend_is_the_one_that_ran():
    from mamkpd.models import scan_backend_of
    from mamkpd.ops import auto_order

    model = mamkpd.create_model("mamkpd_s", input_size=(64, 48), scan_backend="auto", **TINY)
    assert model.scan_backend == "auto"
    assert scan_backend_of(model) == auto_order("cpu")[0]  # numba, a dependency, is auto's first on a CPU
    assert scan_backend_of(torch.nn.Linear(1, 1)) is None


# --- 10. help texts and lists ---------------------------------------------------------------------------


def _subparser(name: str):
    from mamkpd.cli import build_parser

    parser = build_parser()
    return next(a for a in parser._actions if a.dest == "command").choices[name]


def test_every_train_option_has_a_sentence_and_the_choices():
    actions = {a.dest: a for a in _subparser("train")._actions if a.option_strings}
    for dest, action in actions.items():
        assert action.help and not action.help.startswith("(default"), dest
        assert len(action.help.split(" (default")[0].split()) >= 3, (dest, action.help)
    assert tuple(actions["dataset"].choices) == ("coco", "mpii", "ap10k")
    assert tuple(actions["on_bad"].choices) == ("skip", "error")
    assert "'auto'" in actions["resume"].help and "auto" in actions["resume"].metavar
    assert "JSON file" in actions["config"].help
    evaluate = {a.dest: a for a in _subparser("evaluate")._actions if a.option_strings}
    for dest in ("batch_size", "workers", "dataset", "split"):
        assert evaluate[dest].help, dest
    assert tuple(evaluate["split"].choices) == SPLITS


def test_help_shows_the_choices_and_the_lists_list(tmp_path):
    proc = mamkpd_cli("train", "--help", cwd=tmp_path)
    assert proc.returncode == 0 and "{coco,mpii,ap10k}" in proc.stdout and "{skip,error}" in proc.stdout
    assert "PATH|auto" in proc.stdout and "a JSON file" in proc.stdout
    proc = mamkpd_cli("complexity", "--list", cwd=tmp_path)
    assert proc.returncode == 0
    listed = [line.split()[0] for line in proc.stdout.splitlines()[1:]]
    assert listed == mamkpd.list_models()
    proc = mamkpd_cli("reproduce", "--list", cwd=tmp_path)
    assert proc.returncode == 0 and "Table 2" in proc.stdout and "mamkpd_b" in proc.stdout, proc.stderr


# --- the paper's tables name splits the data sets know ---------------------------------------------------


def test_every_table_names_a_split_of_the_data_sets():
    from mamkpd.paper import TABLES

    for name, spec in TABLES.items():
        assert spec.split in (*SPLITS, ""), (name, spec.split)  # table 2 said "val2017"
