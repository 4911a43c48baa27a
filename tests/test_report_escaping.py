"""Issue 20, item 3/4: the store is read as CSV (a quoted line break is data), an empty store reports, and
nothing from the store reaches REPORT.md or the table CSVs as structure (a column, a row, a formula)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

from mamkpd.harness.store.results import COLUMNS, ResultsStore
from mamkpd.report import write_report

REPO = Path(__file__).resolve().parents[1]
HOSTILE = "a|b\n| x | y |\n=cmd|' /C calc'!A0"


def _mamkpd(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "mamkpd.cli", *args], capture_output=True, text=True, env=env, timeout=120, cwd=REPO
    )


def _hand_row(path: Path, **cells: str) -> None:
    """Append a row as a hand edit or another tool would: proper CSV, line breaks inside quoted cells."""
    with open(path, "a", encoding="utf-8", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerow([cells.get(c, "") for c in COLUMNS])


def test_a_quoted_line_break_is_data_not_a_torn_line(tmp_path):
    path = tmp_path / "r.csv"
    store = ResultsStore(path)
    store.record(table="t", row="a", model="m", metric="x", measured=1.0)
    _hand_row(path, table="t", row="b", model="m", metric="finding", status="measured", notes="first\nsecond")
    store.record(table="t", row="c", model="m", metric="x", measured=3.0)
    contents = store.read()
    assert contents.torn_lines == [] and contents.invalid_lines == []
    assert contents.frame["row"].tolist() == ["a", "b", "c"]
    assert contents.frame["notes"].tolist()[1] == "first\nsecond"


def test_a_line_cut_inside_a_quote_does_not_swallow_the_rows_after_it(tmp_path):
    path = tmp_path / "r.csv"
    store = ResultsStore(path)
    store.record(table="t", row="a", model="m", metric="x", measured=1.0)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write('t,b,m,x,"cut inside a quote\n')  # torn, then sealed
    store.record(table="t", row="c", model="m", metric="x", measured=3.0)
    store.record(table="t", row="d", model="m", metric="x", measured=4.0)
    contents = store.read()
    assert contents.frame["row"].tolist() == ["a", "c", "d"]
    assert [n for n, _ in contents.torn_lines] == [3]


def test_an_empty_store_file_reports(tmp_path):
    path = tmp_path / "r.csv"
    path.touch()
    assert len(ResultsStore(path).read().frame) == 0
    proc = _mamkpd("report", "--store", str(path), "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    assert "unexpected header" not in proc.stderr
    assert "0 stored rows" in (tmp_path / "out" / "REPORT.md").read_text()


def _unescaped_pipes(line: str) -> int:
    return len(line.replace("\\\\", "").replace("\\|", "").split("|")) - 1


def test_store_text_cannot_add_columns_rows_or_formulas(tmp_path):
    path = tmp_path / "r.csv"
    store = ResultsStore(path)
    store.record(
        table="table2", row="HRNet-W32", model="hrnet_w32", metric="params_m", paper=28.5, measured=20.0, tolerance=0.1
    )  # a negative delta: a number, kept as a number in the CSV
    _hand_row(
        path,
        table="table2",
        row="HRNet-W32",
        model="hrnet_w32",
        metric="gflops",
        status="not run",
        status_reason="=cmd " + HOSTILE,
    )
    _hand_row(
        path,
        table="samples",
        row=HOSTILE,
        model=HOSTILE,
        metric="AP",
        measured_value="0.5",
        status="measured",
        notes=HOSTILE,
        status_reason="-2+3",
    )
    _hand_row(
        path,
        table="table2",
        row="x",
        model="baselines",
        metric="finding",
        status="measured",
        notes=f"A title: {HOSTILE}",
    )
    _hand_row(
        path,
        table="table2",
        row="x",
        model=HOSTILE,
        metric="fps",
        measured_value="3.0",
        median="3.0",
        status="measured",
        device="cpu",
    )
    assert len(store.read().frame) == 5
    written = write_report(path, tmp_path / "out")
    text = written["report"].read_text()
    assert "\n=cmd" not in text and "\n| x | y |" not in text
    table = []
    for line in text.splitlines():
        if line.startswith("|"):
            table.append(line)
        elif table:  # a table ended: every row has the header's columns
            assert {_unescaped_pipes(row) for row in table} == {_unescaped_pipes(table[0])}, table
            table = []
    with open(written["table2"], encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    cells = [v for r in rows for v in r.values()]
    assert not [v for v in cells if v.startswith(("=", "+", "@")) or (v.startswith("-") and not _number(v))]
    assert any("'=cmd" in v for v in cells)  # neutralised, not dropped
    hrnet = next(r for r in rows if r["metric"] == "params_m" and r["method"] == "HRNet-W32")
    assert float(hrnet["ours"]) - float(hrnet["paper"]) < 0


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
