"""Issue 20, item 4: the store and the report under concurrency and interruption. Two `report --run` into one
store both finish and lose no row; Ctrl-C leaves the store consistent, the report whole or absent, one line
said; the command run again continues from the store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from mamkpd.harness.store.results import ResultsStore

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}

# a report --run whose steps each append ROWS rows, slowly (the real steps take minutes), then the report
RUN = """
import sys, time
from mamkpd.harness.jobs import run_plan
from mamkpd.report import run_log_section, write_report

ROWS = 20

def step(name):
    def append(store, *args):
        for i in range(ROWS):
            store.record(table="run", row=f"{sys.argv[3]} {name} {i}", model="m", metric="x", measured=float(i))
            time.sleep(0.01)
    return append

for name in ("_record_unavailable", "_measure_complexity", "_measure_hrnet_counter", "_record_baseline_findings",
             "_measure_speed", "_train_on_samples"):
    setattr(run_plan, name, step(name))
log = run_plan.run_measurements(sys.argv[1], run_plan.RunPlan(readings=False), echo=lambda line: None)
write_report(sys.argv[1], sys.argv[2], extra_sections=[run_log_section(log)], left_out=log.left_out)
"""


def test_two_report_runs_into_one_store_both_finish_and_lose_no_row(tmp_path):
    store, out = tmp_path / "r.csv", tmp_path / "out"
    runs = [
        subprocess.Popen([sys.executable, "-c", RUN, str(store), str(out), f"run{i}"], env=ENV, stderr=subprocess.PIPE)
        for i in range(2)
    ]
    for run in runs:
        _, err = run.communicate(timeout=300)
        assert run.returncode == 0, err.decode()[-2000:]
    contents = ResultsStore(store).read()
    assert contents.torn_lines == [] and contents.invalid_lines == []
    rows = contents.frame["row"].tolist()
    assert len(rows) == len(set(rows)) == 2 * 6 * 20
    text = (out / "REPORT.md").read_text()
    assert (
        text.startswith("# MamKPD reproduction report") and "## Figures" in text and f"{len(rows)} stored rows" in text
    )
    assert not [p.name for p in out.iterdir() if p.name.endswith(".mamkpd-tmp")]


def test_ctrl_c_during_report_run_leaves_a_consistent_store_and_no_half_report(tmp_path):
    store, out = tmp_path / "r.csv", tmp_path / "out"
    run = subprocess.Popen(
        [sys.executable, "-m", "mamkpd.cli", "report", "--run", "--store", str(store), "--out", str(out)],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, which Ctrl-C in a terminal signals as a whole
        # Ctrl-C as a terminal delivers it: a shell that starts jobs in the background (a CI runner's) has them
        # ignore SIGINT, and the ignoring is inherited
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    for line in run.stdout:  # its progress lines: Ctrl-C once its first model is counted, as the pool counts more
        if " complexity 1/" in line:
            break
    os.killpg(run.pid, signal.SIGINT)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 130, err[-2000:]
    assert err.strip().count("\n") == 0 and "interrupted" in err and "again" in err, err[-2000:]
    contents = ResultsStore(store).read()
    assert len(contents.frame) > 0 and contents.torn_lines == [] and contents.invalid_lines == []
    assert not (out / "REPORT.md").exists()  # the report is whole or absent: here, absent
    again = subprocess.run(
        [sys.executable, "-m", "mamkpd.cli", "report", "--store", str(store), "--out", str(out)],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0, again.stderr
    assert f"{len(contents.frame)} stored rows" in (out / "REPORT.md").read_text()


# a report whose store is read, then rendered slowly (a large store, the figures), into the folder argv[2]
SLOW_REPORT = """
import sys, time
from mamkpd.report import build

read = build.build_report

def read_then_wait(store):
    report = read(store)
    print("read", flush=True)
    time.sleep(3)
    return report

build.build_report = read_then_wait
build.write_report(sys.argv[1], sys.argv[2])
"""


def test_a_report_written_after_another_shows_the_rows_the_other_had_not_read(tmp_path):
    """Two reports into one folder: the one that reads the store last writes last, so a slow first report cannot
    leave the folder showing fewer rows than the store held when the second was asked for."""
    store, out = ResultsStore(tmp_path / "r.csv"), tmp_path / "out"
    for i in range(5):
        store.record(table="run", row=f"first {i}", model="m", metric="x", measured=float(i))
    slow = subprocess.Popen(
        [sys.executable, "-c", SLOW_REPORT, str(store.path), str(out)], env=ENV, stdout=subprocess.PIPE, text=True
    )
    assert slow.stdout.readline().strip() == "read"  # it has read 5 rows and now renders them
    store.record(table="run", row="second", model="m", metric="x", measured=9.0)
    later = subprocess.run(
        [sys.executable, "-m", "mamkpd.cli", "report", "--store", str(store.path), "--out", str(out)],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert later.returncode == 0, later.stderr[-2000:]
    assert slow.wait(timeout=300) == 0
    assert "(6 stored rows" in (out / "REPORT.md").read_text()
