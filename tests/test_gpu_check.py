"""The GPU check (scripts/gpu_check.sh): its dry run on the CPU, and the FPS path with absent packages blocked."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch

from mamkpd.harness.gpu_check import TABLE2_MODELS, plan_for

ROOT = Path(__file__).resolve().parents[1]

# absent on a bare CUDA machine; the check's path must import none of them
ABSENT = ("fvcore", "pycocotools", "xtcocotools", "mamba_ssm", "matplotlib", "tqdm", "cv2", "scipy")


@pytest.mark.slow
def test_dry_run_writes_store_summary_and_report_with_concrete_backends(tmp_path):
    out = tmp_path / "check"
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(
        [str(ROOT / "scripts" / "gpu_check.sh"), "--dry-run", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "[gpu-check] nothing skipped" in proc.stdout, proc.stdout[-3000:]  # every cell ran: rows are checked below
    store = pd.read_csv(out / "results.csv", keep_default_na=False)
    scans = store[store["table"] == "kernels"]
    assert set(scans["scan_backend"]) == {"triton", "reference"}, set(scans["scan_backend"])
    assert set(scans["metric"]) == {"seconds_per_call", "fraction_of_roofline"}
    fps = store[store["metric"] == "fps"]
    assert {"hrnet_w32", "mamkpd_s"} <= set(fps["model"]), "the dry run's FPS cells wrote no rows"
    assert set(fps[fps["model"] == "mamkpd_s"]["scan_backend"]) == {"torch"}
    assert "auto" not in set(store["scan_backend"]), "a stored figure names `auto`, not the backend that ran"
    ratios = store[(store["metric"] == "fps_ratio_to_hrnet_w32") & (store["model"] == "mamkpd_s")]
    assert len(ratios) >= 1 and (ratios["measured_value"].astype(float) > 0).all()
    compiled = fps[fps["compile_mode"] != ""]
    assert set(compiled["runtime"]) == {"dynamo-eager"}, "the dry run's compiled cell must say it generated no code"
    train = store[store["table"] == "training"]
    assert set(train["metric"]) == {"train_images_per_s", "train_peak_memory_bytes"}, "no training step was stored"
    assert set(train["scan_backend"]) == {"torch"}
    summary = (out / "gpu_check.md").read_text()
    for heading in ("## Goals (reported, not asserted)", "## Skipped, and why", "## One training step"):
        assert heading in summary
    steps = (out / "steps.tsv").read_text()
    assert "install\tok" in steps and "tests\t" in steps and "report\tok" in steps
    assert (out / "report" / "REPORT.md").exists()
    assert "[gpu-check] goals (reported, not asserted):" in proc.stdout


def _gpu_check_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mamkpd.cli.gpu_check", *args], capture_output=True, text=True, timeout=300
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="here the full check would run")
def test_cli_without_cuda_refuses_a_full_check_in_one_line_and_writes_nothing(tmp_path):
    proc = _gpu_check_cli(str(tmp_path / "check"))
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines() == [
        "python -m mamkpd.cli.gpu_check: error: no CUDA device here (torch.cuda.is_available() is False); use --dry-run"
    ]
    assert not (tmp_path / "check").exists()


def test_script_without_cuda_says_so_first_in_one_line_and_does_nothing(tmp_path):
    # CUDA hidden: the same on a GPU machine as on a CPU one
    env = {**os.environ, "PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": ""}
    out = tmp_path / "check"
    proc = subprocess.run(
        [str(ROOT / "scripts" / "gpu_check.sh"), str(out)], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stdout == ""  # no step ran: no install, no test
    assert proc.stderr.splitlines() == [
        "gpu_check.sh: no CUDA device here (torch.cuda.is_available() is False); use --dry-run to rehearse on the CPU"
    ]
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "named"),
    [((), "DIR"), (("wheels", "--python-version", "3"), "--python-version"), (("wheels", "--fast"), "--fast")],
)
def test_make_wheelhouse_usage_error_is_one_line_naming_the_argument(tmp_path, args, named):
    proc = subprocess.run(
        [str(ROOT / "scripts" / "make_wheelhouse.sh"), *args], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], proc.stderr
    assert not (tmp_path / "wheels").exists()  # nothing fetched or made


def test_cli_usage_error_is_one_line_naming_the_argument():
    proc = _gpu_check_cli("--seconds", "soon")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--seconds" in lines[0] and "'soon'" in lines[0], proc.stderr


def test_check_path_imports_no_absent_package(tmp_path):
    """The check's parts (an FPS cell, a training step, a scan cell) run with the packages a bare CUDA
    machine lacks made unimportable, as the worker runs them."""
    code = textwrap.dedent(
        f"""
        import sys
        for name in {ABSENT!r}:
            sys.modules[name] = None  # `import name` now fails as if it were not installed
        from mamkpd.harness.gpu_check import run_part
        from mamkpd.harness.store.results import ResultsStore
        size = [32, 32]
        fps = dict(model="mamkpd_s", preset="fp32", batches=[1], device="cpu", input_size=size, protocol="dry",
                   scan_backend="torch")
        assert [r["kind"] for r in run_part("fps", fps)] == ["progress", "fps"]
        train = dict(model="hrnet_w32", batch=2, device="cpu", amp="", protocol="dry", input_size=size)
        assert [r["kind"] for r in run_part("train", train)] == ["train"]
        scan = dict(device="cpu", shapes={{"s": dict(dim=4, height=2, width=2)}}, batch=1, dtypes=["fp32"],
                    backends=["reference"], backward=[False], reference_steps=4, protocol="dry")
        kinds = [r["kind"] for r in run_part("scan", scan) if r["kind"] != "progress"]
        assert kinds == ["bandwidth", "scan", "scan"], kinds
        ResultsStore(sys.argv[1]).record(table="t", row="r", model="m", metric="x", measured=1.0)
        leaked = sorted(n for n in {ABSENT!r} if sys.modules.get(n) is not None)
        assert not leaked, leaked
        print("ok")
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "store.csv")], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]


# a bare GPU machine has torch, triton, numpy, pandas, pytest, onnxruntime and numba: it lacks these too
ABSENT_AT_TEST_COLLECTION = (*ABSENT, "einops", "onnx", "onnxscript", "filelock", "pynvml")


def test_gpu_test_modules_collect_on_a_bare_machine():
    """The check's step 2 collects every tests/ module that holds gpu-marked tests (gpu_check.sh greps for
    them); on a bare machine each must import, with the packages it lacks unimportable (plugins off: only
    pytest is there)."""
    (pattern,) = re.findall(r"grep -l -E '([^']+)' tests/test_\*\.py", (ROOT / "scripts" / "gpu_check.sh").read_text())
    modules = sorted(
        str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py") if re.search(pattern, p.read_text())
    )
    assert "tests/test_ops_triton.py" in modules and "tests/test_ops_cuda.py" in modules, modules
    code = textwrap.dedent(
        f"""
        import sys
        for name in {ABSENT_AT_TEST_COLLECTION!r}:
            sys.modules[name] = None
        import pytest
        sys.exit(pytest.main(sys.argv[1:]))
        """
    )
    args = ["--collect-only", "-q", "-m", "gpu", "-p", "no:cacheprovider", "-o", "addopts=", *modules]
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    collected = {line.split("::")[0] for line in proc.stdout.splitlines() if "::" in line}
    assert collected == set(modules), f"no gpu test collected from {set(modules) - collected}"


@pytest.mark.parametrize("half", ["bf16", "fp16"])
def test_full_plan_times_every_table2_model_eager_and_compiled_at_both_precisions(half):
    plan = plan_for(dry_run=False, device="cuda", half=half, scan_backends=("triton", "reference"))
    cells = set(plan.fps_cells)
    for model in TABLE2_MODELS:
        assert {(model, "fp32"), (model, half), (model, f"{half}-compile")} <= cells, model
    assert plan.fps_cells[0] == ("hrnet_w32", "fp32"), "HRNet-W32 goes first: every ratio needs it"
    assert set(plan.batches) == {1, 64}
    assert plan.train_models == ("mamkpd_b", "hrnet_w32") and plan.train_batch == 64
    assert set(plan.scan_shapes) == {"stage1", "stage3"} and plan.scan_backward == (False, True)
    assert list(plan.budgets) == ["scan", "fps", "train"]


def test_goals_are_reported_against_the_measured_figures_met_or_short():
    from mamkpd.harness.gpu_check import _goal_lines, _Run

    def fps(model, preset, value):
        m = dict(model=model, batch=64, preset=dict(name=preset), median_samples_per_s=value)
        return dict(kind="fps", reading="", measurement=m)

    run = _Run(plan_for(True, "cpu", "bf16", ("triton",)), None, None, None)
    run.results = [fps("hrnet_w32", "bf16", 1000.0), fps("mamkpd_b", "bf16", 2000.0), fps("mamkpd_l", "bf16", 4000.0)]
    run.results.append(fps("mamkpd_l", "bf16-compile", 5000.0))
    scan = dict(kind="scan", shape="stage1", backend="triton", backward=False, op="scan", dtype="bf16")
    run.results.append(dict(scan, fraction=0.25, seconds=4e-3, bound_seconds=1e-3))
    lines = _goal_lines(run)
    assert "5,000 img/s (batch 64, preset bf16-compile): met" in lines[0]
    assert "2.00x: short (75% of the goal)" in lines[1]
    assert "25.0%" in lines[2] and "short (50% of the goal)" in lines[2]


def _budgets(*args: str) -> dict[str, tuple[int, int]]:
    proc = _gpu_check_cli("--budgets", *args)
    assert proc.returncode == 0, proc.stderr
    rows = [line.split("\t") for line in proc.stdout.splitlines()]
    return {name: (int(seconds), int(kept)) for name, seconds, kept in rows}


@pytest.mark.parametrize("mode", [(), ("--dry-run",)])
def test_budgets_the_script_reads_keep_the_harness_its_floor_under_8_minutes(mode):
    budgets = _budgets(*mode)
    steps = ["dependencies", "install", "tests", "scan", "fps", "train", "report", "total"]
    assert list(budgets) == steps, "the script runs the steps in this order: the scan cells first in the harness"
    total = budgets["total"][0]
    assert total <= 480 - 20, "the whole check under 8 minutes, with room for the starts and the final prints"
    kept_from_tests = budgets["tests"][1]
    assert kept_from_tests >= budgets["scan"][0] // 2 + budgets["report"][0] // 2, "the tests could eat the scan"
    # install, dependencies and tests at their caps still leave the harness and the report what they keep
    assert kept_from_tests < total and budgets["report"][1] == 0


nightly = pytest.mark.skipif(
    os.environ.get("MAMKPD_NIGHTLY") != "1",
    reason="nightly (MAMKPD_NIGHTLY=1): builds a venv and a wheelhouse from the network, minutes on two cores",
)


@pytest.mark.nightly
@nightly
def test_simulated_bare_gpu_machine_runs_every_step_and_writes_the_report(tmp_path):
    """scripts/simulate_bare_gpu_machine.sh: a venv with only torch, triton 3.6, numpy, pandas and pytest,
    offline, the wheelhouse, gpu_check.sh --dry-run --wheels (MAMKPD_BARE_VENV / MAMKPD_WHEELHOUSE reuse a
    venv and a wheelhouse already made)."""
    reuse = []
    if os.environ.get("MAMKPD_BARE_VENV"):
        reuse += ["--venv", os.environ["MAMKPD_BARE_VENV"]]
    if os.environ.get("MAMKPD_WHEELHOUSE"):
        reuse += ["--wheels", os.environ["MAMKPD_WHEELHOUSE"]]
    out = tmp_path / "bare"
    proc = subprocess.run(
        [str(ROOT / "scripts" / "simulate_bare_gpu_machine.sh"), *reuse, str(out)],
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    steps = [line.split("\t") for line in (out / "check" / "steps.tsv").read_text().splitlines()]
    assert [(s[0], s[1]) for s in steps] == [
        ("dependencies", "ok"),
        ("install", "ok"),
        ("tests", "passed"),
        ("report", "ok"),
    ], steps
    assert "registered" in steps[1][2] and "skipped" in steps[2][2]  # the gpu tests: only CUDA is missing
    store = pd.read_csv(out / "check" / "results.csv", keep_default_na=False)
    cells = store[(store["table"] == "kernels") & (store["metric"] == "seconds_per_call")]
    # the dry plan: one shape, fp32, forward; triton's scan, fused and unfused cross; the oracle's two (its first
    # 8 positions)
    assert sorted(zip(cells["scan_backend"], cells["row"], strict=True)) == [
        ("reference", "cross-unfused stage1[:8] fp32"),
        ("reference", "scan stage1[:8] fp32"),
        ("triton", "cross-fused stage1 fp32"),
        ("triton", "cross-unfused stage1 fp32"),
        ("triton", "scan stage1 fp32"),
    ]
    assert "hrnet_w32" in set(store["model"]) and (out / "check" / "report" / "REPORT.md").stat().st_size > 0


@pytest.mark.nightly
@nightly
def test_gpu_tests_compile_no_more_kernels_than_their_budget_is_sized_for(tmp_path):
    """The `gpu` tests' Triton compiles on a cold cache, counted without a GPU (tests/triton_specialisations.py
    runs their CPU twins under the interpreter and records each launch's specialisation)."""
    from mamkpd.harness.gpu_check import TRITON_GPU_TEST_COMPILES

    keys = tmp_path / "keys.json"
    env = {**os.environ, "MAMKPD_TRITON_SPECIALISATIONS": str(keys), "PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}"}
    args = ["-p", "triton_specialisations", "tests/test_ops_triton.py", "-q", "-p", "no:cacheprovider"]
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", *args, "-o", "addopts="],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    counted = json.loads(keys.read_text())
    assert counted["tests"] > 0 and counted["specialisations"] > 0, counted
    assert counted["specialisations"] <= TRITON_GPU_TEST_COMPILES, (
        f"the gpu tests compile {counted['specialisations']} kernel specialisations ({counted['per_kernel']}); "
        f"their budget is sized for {TRITON_GPU_TEST_COMPILES}: resize it (mamkpd/harness/gpu_check.py)"
    )
