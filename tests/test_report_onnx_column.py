"""Issue 18: `report --run` times each model it times eager in ONNX Runtime too, within its budget, and the report's
speed table shows that speed beside the eager one."""

from __future__ import annotations

import importlib.util
import time

import pytest

from mamkpd.export import CUSTOM_OP_SCAN_FORM, OnnxFpsMeasurement
from mamkpd.export import measure_onnx_fps as real_measure_onnx_fps
from mamkpd.harness.jobs import run_plan
from mamkpd.harness.jobs.run_plan import RunPlan
from mamkpd.harness.measure.fps import FpsMeasurement
from mamkpd.harness.measure.presets import PRESETS
from mamkpd.harness.measure.timing import FpsResult
from mamkpd.harness.store.results import ResultsStore
from mamkpd.models import model_info
from mamkpd.report import write_report
from mamkpd.report.onnx_speed import run_measurements_with_onnx

EAGER = {"hrnet_w32": 4.0, "mamkpd_s": 8.0, "mamkpd_b": 6.0, "rtmpose_m": 14.0}
ONNX = {"hrnet_w32": 6.0, "mamkpd_s": 0.5, "mamkpd_b": 0.4, "rtmpose_m": 21.0}
ONNX_S = 0.3  # what a fake export and timing takes
CUSTOM_OP_SPEEDUP = 30  # the fake custom-op file of a model with a scan
HAS_ORTX = importlib.util.find_spec("onnxruntime_extensions") is not None
SPEED_MODELS = tuple(m for m in EAGER if m != "hrnet_w32")  # the plan's models besides its reference, all faked


def _result(fps: float) -> FpsResult:
    return FpsResult([fps * 0.9, fps, fps * 1.1], 1, 5, 3, True, "cpu", "smoke")


def _fake_eager(names, *args, **kwargs):
    (name,) = names
    size = model_info(name).input_size
    return [FpsMeasurement(name, 1, PRESETS["fp32"], "cpu", size, "", "a crop", _result(EAGER[name]))]


def _fake_onnx(name, batch, provider, protocol, scan_form="onnx-scan", **kwargs):
    time.sleep(ONNX_S)
    size = model_info(name).input_size
    fps = ONNX[name] * (CUSTOM_OP_SPEEDUP if scan_form == CUSTOM_OP_SCAN_FORM else 1)
    form = scan_form if model_info(name).has_scan else ""
    return OnnxFpsMeasurement(
        name, batch, PRESETS["fp32"], "cpu", size, form, "a crop", _result(fps), runtime="onnxruntime",
        provider="CPUExecutionProvider", opset=18, threads=1,
    )  # fmt: skip


def _cheap(store, *args):
    store.record(table="cheap", row="step", model="m", metric="x", measured=1.0)


@pytest.fixture
def cheap_run(monkeypatch):
    """report --run with its load-independent steps in miniature, eager and ONNX timings faked, no training."""
    for name in ("_record_unavailable", "_measure_complexity", "_measure_hrnet_counter", "_train_on_samples"):
        monkeypatch.setattr(run_plan, name, _cheap)
    monkeypatch.setattr("mamkpd.harness.jobs.fps_isolated.measure_models_isolated", _fake_eager)
    monkeypatch.setattr("mamkpd.export.measure_onnx_fps", _fake_onnx)


def test_the_report_shows_onnx_runtime_beside_eager(cheap_run, tmp_path):
    store = tmp_path / "r.csv"
    plan = RunPlan(
        speed_models=SPEED_MODELS, readings=False, baseline_findings=False, budget_s=60, onnx_first_estimate_s=1
    )
    run_log = run_measurements_with_onnx(store, plan, echo=lambda line: None)
    assert run_log.left_out == []
    fps = ResultsStore(store).read().frame.query("metric == 'fps'")
    onnx = fps[fps["runtime"] == "onnxruntime"]
    with_scan = [m for m in EAGER if model_info(m).has_scan]
    expected = sorted([*EAGER, *(with_scan if HAS_ORTX else [])])  # a model with a scan: both ONNX scan forms
    assert sorted(onnx["model"]) == expected and set(onnx["provider"]) == {"CPUExecutionProvider"}
    text = write_report(store, tmp_path / "out")["report"].read_text()
    assert "ONNX Runtime samples/s (× this)" in text
    eager_b = next(line for line in text.splitlines() if line.startswith("| mamkpd_b |") and "| eager |" in line)
    if HAS_ORTX:  # 0.4 samples/s in the portable form, 0.4 / 6 of eager; 12 in the custom-op form, 2x eager
        assert "| 0.4 (0.0667×, onnx-scan); 12 (2×, custom-op) |" in eager_b
    else:
        assert "| 0.4 (0.0667×) |" in eager_b
    eager_hrnet = next(line for line in text.splitlines() if line.startswith("| hrnet_w32 |") and "| eager |" in line)
    assert "| 6 (1.5×) |" in eager_hrnet
    # Table 2's FPS cell stays PyTorch eager (the paper's runtime) though the onnxruntime row is newer
    table2 = next(line for line in text.splitlines() if "HRNet-W32" in line and "/ 4" in line)
    assert "/ 6" not in table2


def test_the_onnx_timings_stop_within_the_budget(cheap_run, tmp_path, monkeypatch):
    store = tmp_path / "r.csv"

    def slow_onnx(*args, **kwargs):  # each export and timing takes 4 s: after the first, less than that is left
        time.sleep(4.0)
        return _fake_onnx(*args, **kwargs)

    monkeypatch.setattr("mamkpd.export.measure_onnx_fps", slow_onnx)
    plan = RunPlan(
        speed_models=SPEED_MODELS, readings=False, baseline_findings=False, budget_s=7.0, onnx_first_estimate_s=1.0
    )
    run_log = run_measurements_with_onnx(store, plan, echo=lambda line: None)
    names = list(dict.fromkeys([plan.speed_reference, *plan.speed_models]))
    assert [item for item, _ in run_log.left_out] == [f"ONNX Runtime speed of {m}" for m in names[1:]]
    assert all("--budget-s" in why for _, why in run_log.left_out)
    fps = ResultsStore(store).read().frame.query("metric == 'fps'")
    assert list(fps[fps["runtime"] == "onnxruntime"]["model"]) == [plan.speed_reference]


def test_a_budget_below_the_first_estimate_exports_nothing(cheap_run, tmp_path):
    plan = RunPlan(
        speed_models=SPEED_MODELS, readings=False, baseline_findings=False, budget_s=5, onnx_first_estimate_s=90
    )
    run_log = run_measurements_with_onnx(tmp_path / "r.csv", plan, echo=lambda line: None)
    assert len(run_log.left_out) == len(EAGER) and "~90 s" in run_log.left_out[0][1]


def test_no_onnx_turns_the_step_off(cheap_run, tmp_path):
    plan = RunPlan(speed_models=SPEED_MODELS, readings=False, baseline_findings=False, budget_s=60, onnx_speed=False)
    run_measurements_with_onnx(tmp_path / "r.csv", plan, echo=lambda line: None)
    assert "onnxruntime" not in set(ResultsStore(tmp_path / "r.csv").read().frame["runtime"])


@pytest.mark.slow
def test_a_real_export_is_timed_and_shown(monkeypatch, tmp_path):
    """The real export and onnxruntime session, on a small model at a small size (the fast path)."""
    for name in ("_record_unavailable", "_measure_complexity", "_measure_hrnet_counter", "_train_on_samples"):
        monkeypatch.setattr(run_plan, name, _cheap)
    monkeypatch.setattr("mamkpd.harness.jobs.fps_isolated.measure_models_isolated", _fake_eager_small)
    monkeypatch.setattr(
        "mamkpd.export.measure_onnx_fps", lambda *args, **kwargs: real_measure_onnx_fps(*args, input_size=(64, 48))
    )
    plan = RunPlan(
        speed_models=("vitpose_s",), speed_reference="vitpose_s", readings=False, baseline_findings=False, budget_s=300
    )
    run_log = run_measurements_with_onnx(tmp_path / "r.csv", plan, echo=lambda line: None)
    assert run_log.left_out == []
    fps = ResultsStore(tmp_path / "r.csv").read().frame.query("metric == 'fps'")
    (onnx,) = fps[fps["runtime"] == "onnxruntime"].itertuples()
    assert onnx.model == "vitpose_s" and onnx.median > 0 and onnx.input_size == "64x48"
    text = write_report(tmp_path / "r.csv", tmp_path / "out")["report"].read_text()
    eager = next(line for line in text.splitlines() if line.startswith("| vitpose_s |") and "| eager |" in line)
    assert "×) |" in eager


def _fake_eager_small(names, *args, **kwargs):
    (name,) = names
    return [FpsMeasurement(name, 1, PRESETS["fp32"], "cpu", (64, 48), "", "a crop", _result(10.0))]
