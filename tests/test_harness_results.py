"""Results store: concurrent appends lose nothing, a killed writer leaves no partial row, torn lines are reported."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mamkpd.harness.store.results import COLUMNS, STATUS_DIFFERS, STATUS_NOT_RUN, STATUS_REPRODUCED, ResultsStore, judge

REPO = Path(__file__).resolve().parents[1]

WRITER = """
import sys
from mamkpd.harness.store.results import ResultsStore
store = ResultsStore(sys.argv[1])
worker, count = sys.argv[2], int(sys.argv[3])
for i in range(count):
    store.record(table="table1", row=f"w{worker}", model="m", metric="params_m", paper=1.0,
                 measured=float(i), tolerance=0.5, notes="x" * 2000)
"""


def _writer(path: Path, worker: int, count: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(worker), str(count)], env=env)


def test_judge_abs_rel_and_missing():
    assert judge(7.1, 7.2, 0.05, "rel") == (STATUS_REPRODUCED, pytest.approx(0.1))
    assert judge(7.1, 8.0, 0.05, "rel")[0] == STATUS_DIFFERS
    assert judge(75.2, 75.0, 0.3)[0] == STATUS_REPRODUCED
    assert judge(75.2, 74.8, 0.3)[0] == STATUS_DIFFERS
    assert judge(75.2, None, 0.3) == (STATUS_NOT_RUN, None)
    assert judge(None, 3.0, None) == ("measured", None)
    with pytest.raises(ValueError, match="tolerance_kind"):
        judge(1.0, 1.0, 0.1, "percent")


def test_record_fills_protocol_machine_and_versions(tmp_path):
    store = ResultsStore(tmp_path / "r.csv")
    store.record(
        table="table2",
        row="HRNet-W32",
        model="hrnet_w32",
        metric="fps",
        measured=10.0,
        batch_size=64,
        precision="fp32",
        input_size=(256, 192),
        channels_last=False,
        device="cpu",
    )
    frame = store.read().frame
    assert list(frame.columns) == list(COLUMNS)
    row = frame.iloc[0]
    assert row["status"] == "measured" and row["input_size"] == "256x192" and row["channels_last"] == "false"
    assert row["batch_size"] == 64 and row["torch_version"] and row["cpu_model"] and row["timestamp"]


def test_unknown_column_and_bad_status_are_named(tmp_path):
    store = ResultsStore(tmp_path / "r.csv")
    with pytest.raises(ValueError, match="unknown columns.*battch"):
        store.record(table="t", row="r", model="m", metric="x", measured=1.0, battch=1)
    with pytest.raises(ValueError, match="status must be"):
        store.record(table="t", row="r", model="m", metric="x", status="fine")


def test_concurrent_writers_lose_nothing(tmp_path):
    path = tmp_path / "r.csv"
    workers, count = 4, 40
    procs = [_writer(path, w, count) for w in range(workers)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    contents = ResultsStore(path).read()
    assert contents.torn_lines == []
    assert len(contents.frame) == workers * count
    for w in range(workers):  # each writer's rows all present, in its own order
        mine = contents.frame[contents.frame["row"] == f"w{w}"]["measured_value"].tolist()
        assert mine == [float(i) for i in range(count)]


def test_killed_writer_leaves_only_complete_rows(tmp_path):
    path = tmp_path / "r.csv"
    proc = _writer(path, 0, 100000)
    deadline = time.monotonic() + 60
    while (not path.exists() or path.stat().st_size < 20000) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    store = ResultsStore(path)
    first = store.read()
    assert first.torn_lines == [] and len(first.frame) > 0
    assert first.frame["measured_value"].tolist() == [float(i) for i in range(len(first.frame))]
    store.record(table="t", row="after", model="m", metric="x", measured=1.0)  # still appendable
    assert len(store.read().frame) == len(first.frame) + 1


def test_torn_last_line_is_reported_and_sealed_by_next_append(tmp_path):
    path = tmp_path / "r.csv"
    store = ResultsStore(path)
    store.record(table="t", row="a", model="m", metric="x", measured=1.0)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("t,b,m,x,,2.0")  # a write cut short
    contents = store.read()
    assert len(contents.frame) == 1 and len(contents.torn_lines) == 1 and contents.torn_lines[0][0] == 3
    store.record(table="t", row="c", model="m", metric="x", measured=3.0)
    contents = store.read()
    assert contents.frame["row"].tolist() == ["a", "c"]
    assert [n for n, _ in contents.torn_lines] == [3]


def test_foreign_header_is_refused(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(ValueError, match="header"):
        ResultsStore(path).read()
    with pytest.raises(ValueError, match="differ") as refused:
        ResultsStore(path).record(table="t", row="r", model="m", metric="x", measured=1.0)
    assert "still reads it" not in str(refused.value)  # not a store any version wrote


def test_hand_edited_values_are_flagged_and_skipped_like_torn_lines(tmp_path):
    """Issue 13, item 6: "bogus" in a number column or as a status is reported with its line, never read as data."""
    path = tmp_path / "r.csv"
    store = ResultsStore(path)
    for row in ("a", "b", "c", "d"):
        store.record(table="t", row=row, model="m", metric="x", paper=1.0, measured=1.0, tolerance=0.1)
    lines = path.read_text().split("\n")
    status, measured = COLUMNS.index("status"), COLUMNS.index("measured_value")
    for number, column, value in ((3, measured, "bogus"), (4, status, "bogus")):
        cells = lines[number - 1].split(",")
        cells[column] = value
        lines[number - 1] = ",".join(cells)
    path.write_text("\n".join(lines))
    contents = store.read()
    assert contents.frame["row"].tolist() == ["a", "d"]
    assert [n for n, _ in contents.invalid_lines] == [3, 4]
    assert "measured_value 'bogus' is not a number" in contents.invalid_lines[0][1]
    assert "status 'bogus'" in contents.invalid_lines[1][1]
    assert contents.torn_lines == []


def test_a_store_from_before_a_column_was_added_reads_with_it_empty(tmp_path):
    """A store an earlier version wrote (here: before the allocator column) still reads, for the report, with
    the new column empty; appending to it is refused, so that no file mixes two headers."""
    path = tmp_path / "r.csv"
    ResultsStore(path).record(table="t", row="a", model="m", metric="fps", measured=2.0, allocator="keep-freed")
    rows = list(csv.reader(path.read_text().splitlines()))
    gone = rows[0].index("allocator")
    path.write_text("".join(",".join(cells[:gone] + cells[gone + 1 :]) + "\n" for cells in rows))
    frame = ResultsStore(path).read().frame
    assert list(frame.columns) == list(COLUMNS)
    assert frame["allocator"].tolist() == [""] and frame["measured_value"].tolist() == [2.0]
    with pytest.raises(ValueError, match="still reads it"):
        ResultsStore(path).record(table="t", row="b", model="m", metric="x", measured=1.0)
    shuffled = rows[0][1:] + rows[0][:1]  # the same names out of order: not a header any version wrote
    path.write_text(",".join(shuffled) + "\n")
    with pytest.raises(ValueError, match="unexpected header"):
        ResultsStore(path).read()
