"""Issue 20, item 7: inputs nobody had tried: a file name that is not UTF-8, a symlinked --out, and more data
workers than the machine has cores. Each is handled, or answered with one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from pose_samples import sample
from test_cli_evaluate import TINY

from mamkpd.data import threads
from mamkpd.data.threads import ClampedWorkersWarning, loader_workers
from mamkpd.harness.store.results import ResultsStore

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def _mamkpd(*args, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mamkpd.cli", *args], capture_output=True, env=ENV, timeout=timeout, cwd=REPO
    )


def test_a_file_name_that_is_not_utf8_is_stored_and_reported(tmp_path):
    store = os.fsencode(tmp_path) + b"/results\xff.csv"
    # a checkpoint named in bytes that are not UTF-8 reaches the store's notes: stored, not a UnicodeEncodeError
    ResultsStore(os.fsdecode(store)).record(
        table="t", row="a", model="m", metric="x", measured=1.0, notes=os.fsdecode(b"from ck\xfe.pth")
    )
    assert ResultsStore(os.fsdecode(store)).read().frame["notes"].tolist() == ["from ck\ufffd.pth"]
    proc = _mamkpd("report", "--store", store, "--out", os.fsencode(tmp_path) + b"/out\xfe")
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    text = Path(os.fsdecode(os.fsencode(tmp_path) + b"/out\xfe/REPORT.md")).read_text(encoding="utf-8")
    assert "results\ufffd.csv" in text


def test_a_symlinked_out_writes_into_its_target_and_a_dangling_one_is_named(tmp_path):
    store = ResultsStore(tmp_path / "r.csv")
    store.record(table="t", row="a", model="m", metric="x", measured=1.0)
    target, link = tmp_path / "target", tmp_path / "link"
    target.mkdir()
    link.symlink_to(target)
    proc = _mamkpd("report", "--store", str(store.path), "--out", str(link))
    assert proc.returncode == 0, proc.stderr
    assert (target / "REPORT.md").is_file() and link.is_symlink()  # the link stays a link
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    proc = _mamkpd("report", "--store", str(store.path), "--out", str(dangling))
    err = proc.stderr.decode()
    assert proc.returncode == 2 and err.count("\n") == 1 and "--out" in err and "does not exist" in err, err


def test_more_workers_than_cores_run_as_many_as_there_are_cores(monkeypatch):
    monkeypatch.setattr(threads, "_usable_cpus", lambda: 2)
    with pytest.warns(ClampedWorkersWarning, match=r"--workers 8 on 2 usable"):
        assert loader_workers(8) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert loader_workers(2) == 2 and loader_workers(0) == 0


def test_train_with_more_workers_than_cores_runs_and_notes_it(tmp_path):
    ann = sample("coco", "test_coco.json")
    usable = len(os.sched_getaffinity(0))
    args = ["train", "--train-ann-file", str(ann), "--train-image-dir", str(ann.parent), "--model-kwargs"]
    args += [json.dumps(TINY), "--input-size", "64", "48", "--batch-size", "4", "--workers", str(usable + 6)]
    args += ["--max-steps", "1", "--val-interval", "0", "--epochs", "1", "--out-dir", str(tmp_path / "run")]
    proc = _mamkpd(*args, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    log = (tmp_path / "run" / "train.log").read_text()  # where train notes what it changed (as for --amp on a CPU)
    assert f"--workers {usable + 6} on {usable} usable CPU core(s): running {usable} data-loading workers" in log
