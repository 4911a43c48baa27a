"""Issue 20, item 1: `report --run` measures the same things whatever the load. The counts, findings and reasons
always run; only the timing and the training share the budget, stop at a safe point (between two models, between
two epochs) and say so at the report's top; the load during the timings is recorded and busy timings flagged."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from mamkpd.harness.jobs import run_plan
from mamkpd.harness.jobs.run_plan import LOAD_METRIC, RunPlan, run_measurements
from mamkpd.harness.measure.fps import FpsMeasurement
from mamkpd.harness.measure.load import LoadMonitor
from mamkpd.harness.measure.presets import PRESETS
from mamkpd.harness.measure.timing import FpsResult
from mamkpd.harness.store.results import ResultsStore
from mamkpd.models import model_info
from mamkpd.report import write_report

TIMING_S = 0.4


def _fake_timing(names, *args, **kwargs):
    """A timing that takes TIMING_S (the real one takes a process and seconds per model)."""
    time.sleep(TIMING_S)
    (name,) = names
    result = FpsResult([10.0, 11.0, 12.0], 1, 5, 3, True, "cpu", "smoke")
    return [FpsMeasurement(name, 1, PRESETS["fp32"], "cpu", model_info(name).input_size, "", "a person crop", result)]


def _cheap_step(name):
    def step(store, *args):
        store.record(table="cheap", row=name, model="m", metric="x", measured=1.0)

    return step


@pytest.fixture
def tight_budget_run(tmp_path, monkeypatch):
    """A report --run whose budget lets the reference timing and one training epoch run, nothing more."""
    for name in ("_record_unavailable", "_measure_complexity", "_measure_hrnet_counter", "_record_baseline_findings"):
        monkeypatch.setattr(run_plan, name, _cheap_step(name))  # the load-independent steps, in miniature
    monkeypatch.setattr("mamkpd.harness.jobs.fps_isolated.measure_models_isolated", _fake_timing)
    plan = RunPlan(readings=False, budget_s=TIMING_S * 1.5, train_epochs=4, train_passes_per_epoch=2)
    store = tmp_path / "r.csv"
    return store, run_measurements(store, plan, echo=lambda line: None)


def test_a_tight_budget_stops_at_safe_points_and_the_report_says_what_it_left_out(tight_budget_run, tmp_path):
    store, run_log = tight_budget_run
    frame = ResultsStore(store).read().frame
    cheap = frame[frame["table"] == "cheap"]["row"].tolist()
    assert sorted(cheap) == sorted(  # every load-independent step ran, whatever the budget
        ["_record_unavailable", "_measure_complexity", "_measure_hrnet_counter", "_record_baseline_findings"]
    )
    items = [item for item, _ in run_log.left_out]
    timed_after_the_reference = [f"speed of {m}" for m in RunPlan().speed_models if m != RunPlan().speed_reference]
    assert items == [*timed_after_the_reference, "training epochs 2-2 of 2"]
    assert all("--budget-s" in why for _, why in run_log.left_out)
    assert set(frame[frame["metric"] == "fps"]["model"]) == {"hrnet_w32"}  # the reference, before the stop
    samples = frame[frame["table"] == "samples"]
    assert len(samples) and samples["notes"].str.contains(r"\(1 of 2 epochs\)").all()  # evaluated what was trained
    assert len(frame[frame["metric"] == LOAD_METRIC]) == 1
    text = write_report(store, tmp_path / "out", left_out=run_log.left_out)["report"].read_text()
    top = text[: text.index("## Findings")]
    assert "Left out of this run" in top
    for item, why in run_log.left_out:
        assert f"- {item}: {why}" in top
    assert "Load during the `report --run` timings of hrnet_w32" in text


def test_the_default_timings_are_the_papers_methods():
    """Besides RTMPose-m (the report's own section), report --run times Table 2 methods: every one whose FPS the
    paper prints up to 35 GFLOPs (the costlier are left to `mamkpd fps`), and the lightweight rows, which print none."""
    from mamkpd.paper import load_table

    t2 = load_table("table2")
    methods = set(t2.loc[t2["registry_name"] != "", "registry_name"])
    timed = set(RunPlan().speed_models)
    assert timed - {"rtmpose_m"} <= methods
    lightweight = set(t2.loc[t2["section"] == "Lightweight Methods", "registry_name"])
    assert lightweight and lightweight <= timed
    printed_fps = set(t2.loc[t2["fps"].notna() & (t2["registry_name"] != ""), "registry_name"])
    assert printed_fps - timed == {"vitpose_l", "rtmo_m", "rtmo_l", "kapao_m", "kapao_l", "mamkpd_l"}


@pytest.mark.slow
def test_the_papers_methods_are_timed_cheapest_first():
    """In increasing cost per sample, so that a budget cut leaves out the costliest (fvcore at half of each model's
    own input size: the same order, 4x cheaper to count; a couple of minutes on a loaded 2-core machine)."""
    from mamkpd.harness.measure.complexity import measure_complexity

    plan = RunPlan()
    after = plan.speed_models[plan.speed_models.index("rtmpose_m") + 1 :]
    macs = [measure_complexity(m, tuple(s // 2 for s in model_info(m).input_size)).flops for m in after]
    assert macs == sorted(macs), dict(zip(after, macs, strict=True))


def test_the_load_of_other_processes_is_read():
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        time.sleep(0.3)
        monitor = LoadMonitor().start()
        time.sleep(1.0)
        reading = monitor.stop()
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    assert reading.others_cores is not None and reading.others_cores > 1.0 and reading.busy
    assert "other processes used" in reading.describe()
