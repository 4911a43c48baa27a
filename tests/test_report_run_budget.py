"""Issue 20, item 1: `report --run` measures the same things whatever the load. The counts, findings and reasons
always run; only the timing and the training share the budget, stop at a safe point (between two models, between
two epochs) and say so at the report's top; the load during the timings is recorded and busy timings flagged."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time

import pytest
from worker_groups import MODEL_COUNTS

from mamkpd.harness.jobs import run_plan
from mamkpd.harness.jobs.run_plan import LOAD_METRIC, RunPlan, _speed_jobs, run_measurements
from mamkpd.harness.measure.fps import FpsMeasurement
from mamkpd.harness.measure.load import LoadMonitor
from mamkpd.harness.measure.presets import PRESETS
from mamkpd.harness.measure.timing import FpsResult
from mamkpd.harness.store.results import ResultsStore
from mamkpd.models import model_info
from mamkpd.report import write_report

TIMING_S = 0.4


def _fake_timing(names, batch=1, preset="fp32", *args, **kwargs):
    """A timing that takes TIMING_S (the real one takes a process and seconds per model); under fp32-onednn
    a model is 1.5 times as fast, the reference not at all (as with no Linear)."""
    time.sleep(TIMING_S)
    (name,) = names
    speed = 10.0 * (1.5 if preset == "fp32-onednn" and name != "hrnet_w32" else 1.0)
    result = FpsResult([speed, speed * 1.1, speed * 1.2], 1, 5, 3, True, "cpu", "smoke")
    runtime = "eager (Linear on oneDNN)" if preset == "fp32-onednn" else "eager"
    shape = model_info(name).input_size
    return [FpsMeasurement(name, 1, PRESETS[preset], "cpu", shape, "", "a person crop", result, runtime=runtime)]


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
    timed_after_the_reference = [
        f"speed of {m}" + ("" if preset == "fp32" else f" under {preset}") for m, preset in _speed_jobs(RunPlan())[1:]
    ]
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


def test_the_headline_models_are_timed_again_with_linear_layers_on_onednn(tmp_path, monkeypatch):
    """HRNet-W32, MamKPD-S/B and RTMPose-m again under fp32-onednn, right after their plain timings (so a budget
    cut takes the costlier Table 2 methods first), each divided by the reference timed the same way; the
    report's speed table shows both rows, and its Table 2 cells keep the plain eager timing."""
    from mamkpd.ops import onednn_linear_unavailable

    if onednn_linear_unavailable():
        pytest.skip(onednn_linear_unavailable())
    plan = RunPlan(readings=False, budget_s=1000.0, train_epochs=1, train_passes_per_epoch=1, onnx_speed=False)
    jobs = _speed_jobs(plan)
    headline = ["hrnet_w32", "mamkpd_s", "mamkpd_b", "rtmpose_m"]
    assert jobs[:8] == [(m, "fp32") for m in headline] + [(m, "fp32-onednn") for m in headline]
    assert [preset for _, preset in jobs[8:]] == ["fp32"] * (len(plan.speed_models) - 4)
    assert _speed_jobs(dataclasses.replace(plan, device="cuda")) == [(m, "fp32") for m in plan.speed_models]

    for name in ("_record_unavailable", "_measure_complexity", "_measure_hrnet_counter", "_record_baseline_findings"):
        monkeypatch.setattr(run_plan, name, _cheap_step(name))
    monkeypatch.setattr("mamkpd.harness.jobs.fps_isolated.measure_models_isolated", _fake_timing)
    monkeypatch.setattr(run_plan, "_train_on_samples", lambda *args: None)
    plan = dataclasses.replace(plan, speed_models=("hrnet_w32", "mamkpd_b", "sbl_res50"))
    run_measurements(tmp_path / "r.csv", plan, echo=lambda line: None)
    frame = ResultsStore(tmp_path / "r.csv").read().frame
    fps = frame[frame["metric"] == "fps"]
    assert sorted(zip(fps["model"], fps["runtime"], strict=True)) == sorted(
        [("hrnet_w32", "eager"), ("mamkpd_b", "eager"), ("sbl_res50", "eager")]
        + [("hrnet_w32", "eager (Linear on oneDNN)"), ("mamkpd_b", "eager (Linear on oneDNN)")]
    )
    ratios = frame[frame["metric"] == "fps_ratio_to_hrnet_w32"].set_index(["model", "runtime"])["measured_value"]
    assert ratios[("mamkpd_b", "eager")] == pytest.approx(1.0)
    assert ratios[("mamkpd_b", "eager (Linear on oneDNN)")] == pytest.approx(1.5)  # to HRNet-W32 under oneDNN too
    from mamkpd.report.compare import compare_table

    table2 = compare_table("table2", frame)
    cell = table2[(table2["model"] == "mamkpd_b") & (table2["metric"] == "fps")]
    assert cell["ours"].tolist() == [pytest.approx(11.0)]  # the plain eager median, not oneDNN's 16.5
    text = write_report(tmp_path / "r.csv", tmp_path / "out")["report"].read_text()
    # the speed table: in the order timed, each row with its own ratio (all recorded in the same second)
    speed = text[text.index("## Speed measurements") :]
    order = [tuple(line.split(" | ")[i] for i in (0, 2)) for line in speed.splitlines() if " | CPU (" in line]
    plain, onednn = "eager", "eager (Linear on oneDNN)"
    assert order == [("| hrnet_w32", plain), ("| mamkpd_b", plain), ("| hrnet_w32", onednn), ("| mamkpd_b", onednn),
                     ("| sbl_res50", plain)]  # fmt: skip
    rows = {line.split(" | ")[2]: line for line in text.splitlines() if line.startswith("| mamkpd_b | CPU")}
    assert set(rows) == {"eager", "eager (Linear on oneDNN)"}
    assert "| 1 (hrnet_w32) |" in rows["eager"] and "| 1.5 (hrnet_w32) |" in rows["eager (Linear on oneDNN)"]
    rtmpose_section = text[text.index("RTMPose") :]
    beside = next(line for line in rtmpose_section.splitlines() if line.startswith("| mamkpd_b |"))
    assert "| 11 | 1 |" in beside, beside  # the plain timing and its own ratio


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


@MODEL_COUNTS
@pytest.mark.slow
def test_the_papers_methods_are_timed_cheapest_first():
    """In increasing cost per sample, so that a budget cut leaves out the costliest (fvcore at each model's own
    input size; in report --run's worker group and after it, so the counts come from the session's count cache)."""
    from mamkpd.harness.measure.complexity import measure_complexity

    plan = RunPlan()
    after = plan.speed_models[plan.speed_models.index("rtmpose_m") + 1 :]
    macs = [measure_complexity(m).flops for m in after]
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
