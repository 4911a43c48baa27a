"""`mamkpd eval-results` run as a user runs it: a subprocess on real sample files."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pose_samples import SAMPLES, requires_samples
from scipy.io import savemat

from mamkpd.cli import main
from mamkpd.evaluation.mpii import MPII_MAT_JOINTS

REPO = Path(__file__).resolve().parents[1]


def _cli(*args):
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-m", "mamkpd.cli", "eval-results", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )


@requires_samples
def test_coco_results_json_and_table(tmp_path, capsys):
    ann = SAMPLES / "coco" / "test_coco.json"
    gt = json.loads(ann.read_text())
    results = [
        {
            "image_id": a["image_id"],
            "category_id": 1,
            "score": 0.9,
            "keypoints": [float(v) if i % 3 != 2 else 0.8 for i, v in enumerate(a["keypoints"])],
        }
        for a in gt["annotations"]
        if a["num_keypoints"] > 0
    ]
    res = tmp_path / "results.json"
    res.write_text(json.dumps(results))
    proc = _cli("--dataset", "coco", "--ann-file", ann, "--results", res, "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["AP"] == pytest.approx(1.0) and out["AR"] == pytest.approx(1.0)
    assert out["protocol"]["evaluator"].startswith("pycocotools")
    assert "none" in out["protocol"]["rescoring"]
    assert main(["eval-results", "--dataset", "coco", "--ann-file", str(ann), "--results", str(res)]) == 0
    table = capsys.readouterr().out
    assert "AP50" in table and "1.0000" in table and "pycocotools" in table


@requires_samples
def test_bad_results_files_exit_2_with_a_clear_message(tmp_path, capsys):
    ann = SAMPLES / "coco" / "test_coco.json"
    cases = {
        "empty.json": ("[]", "empty list"),
        "broken.json": ("[{", "malformed results file"),
        "unknown.json": (
            json.dumps([{"image_id": 999, "category_id": 1, "score": 1.0, "keypoints": [0.0] * 51}]),
            "image_id 999 is not an image",
        ),
    }
    for name, (text, msg) in cases.items():
        (tmp_path / name).write_text(text)
        code = main(
            ["eval-results", "--dataset", "coco", "--ann-file", str(ann), "--results", str(tmp_path / name), "--json"]
        )
        captured = capsys.readouterr()
        assert code == 2 and msg in captured.err and captured.out == "", (name, captured.err)


def test_mpii_predictions_against_a_gt_mat(tmp_path, capsys):
    n = 3
    gt1 = np.tile(np.arange(16, dtype=float)[None, :, None] * 10 + 50, (n, 1, 2))
    savemat(
        tmp_path / "mpii_gt_val.mat",
        {
            "dataset_joints": np.array([list(MPII_MAT_JOINTS)], dtype=object),
            "jnt_missing": np.zeros((16, n), np.uint8),
            "pos_gt_src": gt1.transpose(1, 2, 0),
            "headboxes_src": np.tile(np.array([[0.0, 0.0], [30.0, 40.0]])[:, :, None], (1, 1, n)),
        },
    )
    pred = gt1 - 1  # 0-based, exact
    pred[0, 9] += [16, 0]  # person 0's head top beyond 0.5 x 30 px
    (tmp_path / "pred.json").write_text(json.dumps(pred.tolist()))
    proc = _cli(
        "--dataset", "mpii", "--gt-mat", tmp_path / "mpii_gt_val.mat", "--results", tmp_path / "pred.json", "--json"
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["Head"] == pytest.approx(200 / 3) and out["Shoulder"] == pytest.approx(100.0)
    assert out["Mean"] == pytest.approx(100 * 41 / 42)
    assert out["protocol"]["threshold"] == "<= 0.5"
    (tmp_path / "short.json").write_text(json.dumps(pred[:, :15].tolist()))
    code = main(
        [
            "eval-results",
            "--dataset",
            "mpii",
            "--gt-mat",
            str(tmp_path / "mpii_gt_val.mat"),
            "--results",
            str(tmp_path / "short.json"),
        ]
    )
    assert code == 2 and "expected shape (N, 16, 2)" in capsys.readouterr().err
