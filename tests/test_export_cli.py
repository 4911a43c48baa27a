"""``mamkpd export`` as a user runs it: a subprocess, success and the error cases."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_export_onnx import heatmap_scale_checkpoint, onnxruntime_vs_eager

from mamkpd import create_model
from mamkpd.cli import main
from mamkpd.export import DEFAULT_TOLERANCE, count_ss2d, example_input, prepare_for_export

REPO = Path(__file__).resolve().parent.parent
SIZE = (128, 96)


def _export(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-m", "mamkpd.cli", "export", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=600,
    )


@pytest.mark.slow
def test_export_mamkpd_s(tmp_path):
    ckpt = heatmap_scale_checkpoint(tmp_path / "weights.pt", "mamkpd_s", input_size=SIZE)
    out = tmp_path / "mamkpd_s.onnx"
    proc = _export(
        "--model",
        "mamkpd_s",
        "--checkpoint",
        str(ckpt),
        "--format",
        "onnx",
        "--out",
        str(out),
        "--input-size",
        *map(str, SIZE),
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    model = prepare_for_export(create_model("mamkpd_s", checkpoint_path=ckpt, input_size=SIZE))
    assert report["check"]["passed"] and not report["check"]["weak"]
    assert report["check"]["max_abs_diff"] <= DEFAULT_TOLERANCE
    assert report["optimized"] and report["batch"] == 1 and report["input_size"] == list(SIZE)
    assert report["scan_nodes"] == count_ss2d(model) == 12
    assert onnxruntime_vs_eager(out, model, example_input(SIZE, seed=3)) <= DEFAULT_TOLERANCE


def test_unknown_model_lists_names(tmp_path):
    proc = _export("--model", "mamkpd_xl", "--out", str(tmp_path / "x.onnx"))
    assert proc.returncode == 2
    assert "unknown model 'mamkpd_xl'" in proc.stderr and "mamkpd_b" in proc.stderr and "hrnet_w32" in proc.stderr
    assert list(tmp_path.iterdir()) == []


# The remaining error paths run main() in-process (the function the `mamkpd` script calls): a
# subprocess per case would spend most of its time importing torch.
def _main(capsys, *args: str) -> tuple[int, str]:
    code = main(["export", *args])
    return code, capsys.readouterr().err


def test_checkpoint_that_does_not_fit(tmp_path, capsys):
    ckpt = tmp_path / "other.pt"
    torch.save({"model": torch.nn.Linear(3, 4).state_dict()}, ckpt)
    code, err = _main(capsys, "--model", "mamkpd_s", "--checkpoint", str(ckpt), "--out", str(tmp_path / "x.onnx"))
    assert code == 2
    assert "does not match" in err and str(ckpt) in err and "missing" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.pt"]


def test_missing_checkpoint(tmp_path, capsys):
    code, err = _main(
        capsys, "--model", "mamkpd_s", "--checkpoint", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "x.onnx")
    )
    assert code == 2 and "checkpoint not found" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "where,message",
    [
        ("missing/x.onnx", "does not exist"),
        ("file.txt/x.onnx", "is not a folder"),
        (".", "is a folder"),
    ],
)
def test_unwritable_output(tmp_path, capsys, where, message):
    (tmp_path / "file.txt").write_text("not a folder")
    code, err = _main(capsys, "--model", "mamkpd_s", "--out", str(tmp_path / where))
    assert code == 2 and "--out" in err and message in err


@pytest.mark.parametrize(
    "args,message",
    [
        (["--batch", "zero"], "expected a positive integer or 'dynamic'"),
        (["--format", "tflite"], "invalid choice"),
        (["--opset", "9"], "opset 9 is outside"),
        (["--tolerance", "0"], "tolerance must be positive"),
    ],
)
def test_bad_arguments(tmp_path, capsys, args, message):
    try:
        code = main(["export", "--model", "mamkpd_s", "--out", str(tmp_path / "x.onnx"), *args])
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    assert code == 2 and message in capsys.readouterr().err
