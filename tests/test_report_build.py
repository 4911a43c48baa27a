"""Report generation from a small fixture store: every paper row present, statuses right, CSV columns
complete, findings derived from the data, figures written."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from mamkpd.harness.store.results import ResultsStore
from mamkpd.paper import TABLES, load_table
from mamkpd.report import build_report, write_report
from mamkpd.report.compare import COMPARISON_COLUMNS, NOT_IN_PAPER


@pytest.fixture
def fixture_store(tmp_path) -> ResultsStore:
    store = ResultsStore(tmp_path / "results.csv")
    common = dict(flops_convention="MAC (fvcore)", input_size=(256, 192), device="cpu")
    store.record(
        table="table1",
        row="MamKPD-Base",
        model="mamkpd_b",
        metric="params_m",
        paper=7.1,
        measured=6.98,
        tolerance=0.05,
        tolerance_kind="rel",
        **common,
    )
    store.record(
        table="table1",
        row="MamKPD-Small",
        model="mamkpd_s",
        metric="gflops",
        paper=0.5,
        measured=3.24,
        tolerance=0.05,
        tolerance_kind="rel",
        **common,
    )
    store.record(
        table="table1",
        row="MamKPD-Small",
        model="mamkpd_s",
        reading="d_state 1",
        metric="gflops",
        paper=0.5,
        measured=2.9,
        status="measured",
        **common,
    )
    store.record(
        table="table2",
        row="HRNet-W32",
        model="hrnet_w32",
        metric="gflops",
        paper=7.1,
        measured=7.69,
        tolerance=0.05,
        tolerance_kind="rel",
        **common,
    )
    store.record(
        table="table2",
        row="MamKPD-B",
        model="mamkpd_b",
        metric="gflops",
        paper=3.1,
        measured=3.44,
        tolerance=0.05,
        tolerance_kind="rel",
        **common,
    )
    store.record(
        table="table2",
        row="MamKPD-B",
        model="mamkpd_b",
        metric="AP",
        paper=76.1,
        status="not run",
        status_reason="COCO not found at /nowhere",
    )
    store.record(
        table="table2",
        row="MamKPD-B",
        model="mamkpd_b",
        metric="fps",
        paper=2439.0,
        measured=1.5,
        status="measured",
        status_reason="timed on cpu (CPU)",
        batch_size=1,
        precision="fp32",
        timed_rounds=5,
        median=1.5,
        iqr=0.1,
        unit="samples/s",
        sample="person crop",
        device="cpu",
    )
    store.record(
        table="table3",
        row="MamKPD-B",
        model="mamkpd_b",
        metric="mean",
        paper=90.7,
        measured=90.5,
        tolerance=0.5,
        dataset="mpii",
        split="val",
        flip_test=True,
    )
    store.record_finding(
        table="table2",
        row="vitpose_s_simple",
        model="baselines",
        text="the official small simple config is a copy of the classic one",
    )
    return store


def test_every_paper_row_and_cell_present_with_right_statuses(fixture_store):
    report = build_report(fixture_store.path)
    for name in TABLES:
        cells = report.comparisons[name]
        assert list(cells.columns) == list(COMPARISON_COLUMNS)
        assert cells["row"].drop_duplicates().tolist() == load_table(name)["row"].tolist()
    t1 = report.comparisons["table1"].set_index(["row", "metric"])
    assert t1.loc[("MamKPD-Base", "params_m"), "status"] == "reproduced"
    assert t1.loc[("MamKPD-Small", "gflops"), "status"] == "differs"
    assert t1.loc[("MamKPD-Small", "gflops"), "ours"] == pytest.approx(3.24)  # the default reading, not d_state 1
    assert t1.loc[("MamKPD-Large", "params_m"), "status"] == "not run"
    assert "no measurement of mamkpd_l" in t1.loc[("MamKPD-Large", "params_m"), "reason"]
    t2 = report.comparisons["table2"].set_index(["row", "metric"])
    assert t2.loc[("MamKPD-B", "AP"), "reason"] == "COCO not found at /nowhere"
    assert t2.loc[("MamKPD-B", "fps"), "status"] == "measured"
    assert t2.loc[("SwinPose", "AP"), "reason"].startswith("method not implemented by the suite: no public code")
    for row, name in (("I2R-Net", "i2rnet_hrformer_b"), ("GroupPose-L", "grouppose_swin_l")):
        assert t2.loc[(row, "AP"), "reason"] == f"no measurement of {name} in the results store"
    assert t2.loc[("GroupPose-L", "params_m"), "status"] == NOT_IN_PAPER
    assert t2.loc[("HRNet-W32", "gflops"), "delta"] == pytest.approx(0.59)
    assert "counter MAC (fvcore)" in t2.loc[("HRNet-W32", "gflops"), "protocol"]


def test_findings_come_from_the_data(fixture_store):
    titles = {f.title: f.text for f in build_report(fixture_store.path).findings}
    small = titles["MamKPD-Small's printed GFLOPs cannot be reached"]
    assert "2.9 GFLOPs (d_state 1)" in small and "×5.8" in small
    assert any("mixes counting conventions" in t for t in titles)
    assert any("different GPUs" in t for t in titles)
    assert "The paper prints HRNet-W48's parameter count differently in Table 2 and Table 4" in titles
    # a recorded finding whose note has no "title: " is titled by its sentence
    assert "The official small simple config is a copy of the classic one" in titles
    assert "threshold 0.11" in titles["HRNet's MPII Mean@0.1 is PCKh at 0.11"]
    assert "BGR images normalised with the RGB" in titles["SimpleBaseline's original checkpoints expect BGR images"]


def test_written_report_csvs_and_figures(fixture_store, tmp_path):
    written = write_report(fixture_store.path, tmp_path / "out", extra_sections=[("Run log", "- done\n")])
    text = written["report"].read_text()
    for name, spec in TABLES.items():
        assert spec.title in text
        frame = pd.read_csv(written[name])
        assert list(frame.columns) == list(COMPARISON_COLUMNS) and len(frame)
    assert "| MamKPD-Small | 6.3 / — | 0.5 / 3.24 ✗ |" in text and "| MamKPD-Base | 7.1 / 6.98 ✓ | 3.0 / — |" in text
    assert "d_state 1" in text and "## Run log" in text
    for key in ("fig1", "fps_vs_ap"):
        assert written[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and written[key].stat().st_size > 10_000


def test_the_report_says_why_a_paper_method_has_no_model(fixture_store, tmp_path):
    """Table 2's methods without a registered model: the report's status carries the paper table's note on why
    (no public code, or code public but not ported), as the CLI writes it."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mamkpd.cli",
            "report",
            "--store",
            str(fixture_store.path),
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = {
        line.split("|")[1].strip(): line
        for line in (tmp_path / "out" / "REPORT.md").read_text().splitlines()
        if line.startswith("| ")
    }
    assert "not run (8): method not implemented by the suite: no public code at 2026-12-06" in lines["SwinPose"]


def test_empty_store_still_reports_every_row(tmp_path):
    written = write_report(tmp_path / "missing.csv", tmp_path / "out")
    frame = pd.read_csv(written["table5"])
    assert set(frame["row"]) == set(load_table("table5")["row"])
    assert set(frame["status"]) <= {"not run", NOT_IN_PAPER}
