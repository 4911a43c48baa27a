"""`mamkpd report` and `mamkpd reproduce` as a user runs them (subprocesses)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from worker_groups import MODEL_COUNTS

from mamkpd.harness.store.results import ResultsStore

REPO = Path(__file__).resolve().parents[1]


def _mamkpd(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "mamkpd.cli", *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=REPO
    )


def test_report_from_store(tmp_path):
    store = ResultsStore(tmp_path / "r.csv")
    store.record(
        table="table5",
        row="(a)",
        model="mamkpd_t5a",
        metric="params_m",
        paper=4.0,
        measured=3.97,
        tolerance=0.07,
        tolerance_kind="rel",
    )
    proc = _mamkpd("report", "--store", str(store.path), "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    assert "4.0 / 3.97 ✓" in (tmp_path / "out" / "REPORT.md").read_text()
    assert (tmp_path / "out" / "table5.csv").exists()


def test_report_without_store_says_what_to_do(tmp_path):
    proc = _mamkpd("report", "--store", str(tmp_path / "none.csv"), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and "report --run" in proc.stderr


def test_reproduce_records_missing_data_as_not_run(tmp_path):
    store = tmp_path / "r.csv"
    proc = _mamkpd("reproduce", "--table", "5", "--row", "(a)", "--store", str(store), env={"MAMKPD_MPII_ROOT": ""})
    assert proc.returncode == 0, proc.stderr
    assert "MPII not found" in proc.stdout
    frame = ResultsStore(store).read().frame
    assert set(frame["status"]) == {"not run"} and frame["metric"].tolist() == ["mean"]


def test_reproduce_rejects_a_table_without_accuracy(tmp_path):
    proc = _mamkpd("reproduce", "--table", "1", "--store", str(tmp_path / "r.csv"))
    assert proc.returncode == 2 and "no accuracy to reproduce" in proc.stderr


@pytest.mark.slow
@MODEL_COUNTS
def test_report_run_end_to_end_on_cpu(tmp_path):
    """The main job on a CPU machine without data: measures, records, reports, within its budget (a small one:
    the counts, findings and reasons run whatever the budget, and the timing steps have tests of their own)."""
    out = tmp_path / "reports"
    proc = _mamkpd(
        "report", "--run", "--budget-s", "20", "--out", str(out), "--store", str(tmp_path / "r.csv"), timeout=420
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "complexity 1/" in proc.stdout  # progress shown
    text = (out / "REPORT.md").read_text()
    assert "What `mamkpd report --run` measured on this machine" in text
    frame = ResultsStore(tmp_path / "r.csv").read().frame
    counted = frame[(frame["table"] == "table1") & (frame["metric"] == "params_m") & frame["measured_value"].notna()]
    assert len(counted) >= 1  # Table 1 is counted first, whatever the machine's speed
    assert (frame["status"] == "not run").any() and (frame["status_reason"].str.contains("not found")).any()


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (("--device", "cuda"), "--device"),
        (("--scan-backend", "cuda"), "--scan-backend"),
        (("--budget-s", "0"), "--budget-s"),
    ],
)
def test_report_run_refuses_what_the_machine_cannot_do_before_any_work(tmp_path, flags, named):
    """Issue 20, item 3: `report --run --device cuda` on a CPU machine exited 0 with a traceback in its log."""
    import torch

    if named != "--budget-s" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    store, out = tmp_path / "r.csv", tmp_path / "out"
    proc = _mamkpd("report", "--run", *flags, "--store", str(store), "--out", str(out), timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1 and named in proc.stderr, proc.stderr
    assert proc.stdout == "" and not store.exists() and not out.exists()  # refused before any work


def test_report_run_refuses_a_foreign_store_before_any_work(tmp_path):
    store, out = tmp_path / "r.csv", tmp_path / "out"
    store.write_text("a,b\n1,2\n")
    proc = _mamkpd("report", "--run", "--store", str(store), "--out", str(out), timeout=120)
    assert proc.returncode == 2 and "MAMKPD_RESULTS" in proc.stderr and proc.stdout == ""
    assert not out.exists()
