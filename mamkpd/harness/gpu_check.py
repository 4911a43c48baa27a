"""The GPU check (``scripts/gpu_check.sh OUT_DIR``): scan kernels against their roofline, Table 2's
models (eager and compiled, fp32 and half precision) as ratios to HRNet-W32, one training step, in minutes.

The shell script installs the suite and runs the ``gpu``-marked tests, then the check's command line
(``mamkpd/cli/gpu_check.py``), which calls :func:`run_check` with a :class:`CheckRequest`. Each part runs in a
child process of its own (:class:`mamkpd.harness.jobs.launch.CheckJob`, a fresh CUDA context and
compile cache) under a deadline: a step whose budget is spent is skipped with the reason printed and
written to the summary, never silently dropped. Figures go to ``OUT_DIR/results.csv`` (the results store;
every row names the scan backend that ran, never ``auto``) and ``OUT_DIR/gpu_check.md`` (with the issue's
goals set against the measured figures: reported, not asserted). A dry run runs every step on the
CPU at tiny sizes (triton under its interpreter, torch.compile with dynamo's ``eager`` backend), so CI
keeps the script from rotting.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .jobs.launch import CheckJob, launch_collect

__all__ = [
    "CHECK_TOTAL_S",
    "CheckOutcome",
    "CheckPlan",
    "CheckRequest",
    "GOALS",
    "StepBudget",
    "TRITON_GPU_TEST_COMPILES",
    "check_budgets",
    "plan_for",
    "run_check",
    "run_part",
]

TABLE2_MODELS = ("hrnet_w32", "mamkpd_l", "mamkpd_b", "mamkpd_s", "vitpose_b", "rtmo_s")

# the goals: reported against the measured figures, never asserted
# COCO train2017's person instances that top-down training crops per epoch (HRNet's and the paper's set)
COCO_TRAIN_INSTANCES = 149_813
DRY_RUN_ENV = {"TRITON_INTERPRET": "1"}  # a dry run's children run the Triton kernels in Triton's interpreter

GOALS = {
    "mamkpd_l_fps": 4500.0,  # img/s on one H200 at the best preset (3x the paper's 1,492 on an RTX 4090)
    "mamkpd_b_ratio": 2439.0 / 916.0,  # the paper's own MamKPD-B / HRNet-W32 ratio
    "scan_fraction": 0.5,  # of the roofline (bandwidth or exponentials) at the stage-1 shape
}


@dataclass(frozen=True)
class StepBudget:
    """One step's time: ``seconds`` at most, and ``floor`` seconds kept for it, which the install, the tests and
    the harness as a whole leave (they stop early rather than take them)."""

    seconds: float
    floor: float = 0.0


# The whole check (scripts/gpu_check.sh) in under 8 minutes: what is left of CHECK_TOTAL_S goes to the steps in
# the order they run, each stopped at its own budget or where only the later steps' floors are left. The
# harness's floors (scan, FPS, training) are what no install or test can eat; within the harness the steps run
# in the order of what the check is for, the scan cells first, then Table 2's FPS cells, then the training
# step, so a slow one takes only from those after it. The report's floor is what it takes on a loaded machine.
CHECK_TOTAL_S = 450.0  # 8 minutes less the process starts and the final prints
# The `gpu` tests' cap (tests, below), sized by counting compiles on a cold Triton cache. Counted without a GPU by
# tests/triton_specialisations.py (each launch's kernel, constexprs, dtypes, alignments and integer
# specialisations, in the CPU twins of the gpu tests), since the training forward keeps its chunk states: 29
# Triton tests, 81 launches, 63 distinct specialisations (31 of the forward kernel, 32 of the backward), plus a
# few for the AMP training test's model. The tests run with MAMKPD_TRITON_AUTOTUNE=0 (scripts/gpu_check.sh):
# each specialisation is one compile, not one per autotune config (3), and test_every_gpu_config compiles each
# config by name.
# One cold compile of these kernels for sm_90 (Triton 3.6) took 0.15-0.55 s of CPU (0.3-2.1 s of wall time on
# two busy cores). At 1 s a compile (twice the slowest, for the launch and the loads) and 30 s for pytest, torch,
# the CUDA context and the training test: 63 x 1 s + 30 s = 93 s, inside 120 s, which has room for
# TRITON_GPU_TEST_COMPILES = (120 - 30) / 1 compiles; tests/test_gpu_check.py (nightly) counts them again.
TRITON_GPU_TEST_COMPILES = 90
_BUDGETS = {
    False: dict(  # a CUDA machine
        dependencies=StepBudget(90),  # from --wheels only: about 30 wheels offline
        install=StepBudget(60),
        tests=StepBudget(120),  # sized by counting compiles: TRITON_GPU_TEST_COMPILES
        scan=StepBudget(90, floor=90),
        fps=StepBudget(200, floor=120),
        train=StepBudget(50, floor=30),
        report=StepBudget(40, floor=40),
    ),
    True: dict(  # the dry run on a loaded 2-core CPU (the simulated bare machine: tests/test_gpu_check.py)
        dependencies=StepBudget(120),
        install=StepBudget(60),
        tests=StepBudget(60),
        scan=StepBudget(90, floor=60),  # 18-26 s on a busy CPU
        fps=StepBudget(200, floor=90),  # 65-110 s on a busy CPU (a process a cell, one of them dynamo's tracing)
        train=StepBudget(100, floor=30),  # a training step on a busy CPU: 50-60 s
        report=StepBudget(60, floor=45),  # 40 s on a busy CPU
    ),
}
HARNESS_STEPS = ("scan", "fps", "train")


def check_budgets(dry_run: bool) -> dict[str, StepBudget]:
    """Every step of the check and its budget, in the order the check runs them."""
    return dict(_BUDGETS[dry_run])


@dataclass
class CheckPlan:
    """What the check times and how long each step may take (seconds)."""

    device: str
    dry_run: bool
    half: str  # the half-precision autocast dtype the device runs: bf16, else fp16
    scan_shapes: dict[str, dict[str, int]]
    scan_batch: int
    scan_dtypes: tuple[str, ...]
    scan_backends: tuple[str, ...]
    scan_backward: tuple[bool, ...]  # forward only, and forward with backward
    reference_steps: int  # the reference (a Python loop) times only this many positions
    fps_cells: tuple[tuple[str, str], ...]  # (model, preset), one process each, in priority order
    batches: tuple[int, ...]  # eager cells time each; compiled cells the first only (one compilation)
    compile_backend: str
    model_scan_backend: str  # the scan backend the models run ("auto": resolved in each child and recorded)
    input_size: tuple[int, int] | None
    train_models: tuple[str, ...]
    train_batch: int
    fps_protocol: str
    kernel_protocol: str
    budgets: dict[str, StepBudget]  # the harness's steps (scan, fps, train)
    cell_timeout_s: float
    compile_timeout_s: float
    env: dict[str, str] = field(default_factory=dict)


def _fps_cells(half: str) -> tuple[tuple[str, str], ...]:
    """What matters most first, in case the budget runs out: HRNet-W32 before the others in each preset
    (every ratio needs it), MamKPD-L and -B (the goals) eager then compiled, then the other rows."""
    compiled = f"{half}-compile"
    cells = [("hrnet_w32", "fp32"), ("hrnet_w32", half)]
    cells += [(m, p) for m in ("mamkpd_l", "mamkpd_b") for p in (half, "fp32")]
    cells += [(m, compiled) for m in ("hrnet_w32", "mamkpd_l", "mamkpd_b")]
    cells += [(m, p) for m in ("mamkpd_s", "vitpose_b", "rtmo_s") for p in (half, "fp32")]
    cells += [(m, compiled) for m in ("mamkpd_s", "vitpose_b", "rtmo_s")]
    assert {m for m, _ in cells} == set(TABLE2_MODELS)
    return tuple(cells)


def plan_for(dry_run: bool, device: str, half: str, scan_backends: tuple[str, ...]) -> CheckPlan:
    """The full-size plan for one GPU, or the dry run's tiny one for a CPU."""
    from ..engine.config import TrainConfig
    from .measure.scan_bench import SCAN_SHAPES

    if dry_run:
        return CheckPlan(
            device=device,
            dry_run=True,
            half=half,
            scan_shapes={"stage1": dict(dim=8, height=2, width=4)},
            scan_batch=1,
            scan_dtypes=("fp32",),
            scan_backends=scan_backends,
            scan_backward=(False,),
            reference_steps=8,
            fps_cells=(("hrnet_w32", "fp32"), ("mamkpd_s", "fp32"), ("mamkpd_s", f"{half}-compile")),
            batches=(1,),
            compile_backend="eager",  # dynamo traces the model (graph breaks, the custom op); no C++ build
            model_scan_backend="torch",  # numba would compile its kernels first: minutes on a shared CPU
            input_size=(32, 32),  # the smallest HRNet takes (multiples of 32); BatchNorm needs batch 2 to train
            train_models=("mamkpd_s",),
            train_batch=2,
            fps_protocol="dry",
            kernel_protocol="dry",
            budgets={step: check_budgets(True)[step] for step in HARNESS_STEPS},
            cell_timeout_s=100.0,
            compile_timeout_s=100.0,
            env=dict(DRY_RUN_ENV),
        )
    shapes = {name: dict(dim=s.dim, height=s.height, width=s.width) for name, s in SCAN_SHAPES.items()}
    return CheckPlan(
        device=device,
        dry_run=False,
        half=half,
        scan_shapes=shapes,
        scan_batch=64,
        scan_dtypes=(half, "fp32"),
        scan_backends=scan_backends,
        scan_backward=(False, True),
        reference_steps=64,
        fps_cells=_fps_cells(half),
        batches=(64, 1),
        compile_backend="inductor",
        model_scan_backend="auto",
        input_size=None,
        train_models=("mamkpd_b", "hrnet_w32"),
        train_batch=TrainConfig().batch_size,
        fps_protocol="quick",
        kernel_protocol="kernel",
        budgets={step: check_budgets(False)[step] for step in HARNESS_STEPS},
        cell_timeout_s=45.0,
        compile_timeout_s=100.0,
    )


# ------------------------------------------------------------------------------------ child parts


def _error_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"[:300]


def _scan_part(p: dict[str, Any]) -> Iterator[dict[str, Any]]:
    import torch

    from ..ops import SCAN_BACKENDS
    from .measure.scan_bench import (
        ScanShape,
        copy_bandwidth,
        datasheet_bandwidth,
        scan_cell_bytes,
        scan_cell_call,
        scan_cell_exponentials,
        scan_roofline,
        seconds_per_call,
        sfu_exp_rate,
    )

    device = p["device"]
    name = torch.cuda.get_device_name(device) if device.startswith("cuda") else "CPU"
    copy_bytes = 256 * 2**20 if device.startswith("cuda") else 4 * 2**20
    measured_bw, _ = copy_bandwidth(device, copy_bytes, p["protocol"])
    sheet = datasheet_bandwidth(name)
    peak = max(measured_bw, sheet or 0.0)  # the bound divides by the higher: never flatter the kernel
    sms = torch.cuda.get_device_properties(device).multi_processor_count if device.startswith("cuda") else 0
    exp_rate = sfu_exp_rate(name, sms)  # None on the CPU: the bandwidth bound alone
    yield dict(kind="bandwidth", device_name=name, copy_bandwidth=measured_bw, datasheet_bandwidth=sheet, peak=peak)
    cells = []
    # half precision first, both shapes, then fp32: if the budget stops the part, the goal's cells are in
    for dtype in p["dtypes"]:
        for shape_name, dims in p["shapes"].items():
            for backend in p["backends"]:
                for op in ("scan", "cross-fused", "cross-unfused"):
                    if SCAN_BACKENDS[backend].cross is None and op == "cross-fused":
                        continue  # a backend without a fused cross scan runs the unfused path again
                    for backward in p["backward"]:
                        cells.append((shape_name, dims, dtype, backend, op, backward))
    for shape_name, dims, dtype, backend, op, backward in cells:
        shape = ScanShape(shape_name, **dims)
        if not SCAN_BACKENDS[backend].deployable:  # the oracle's Python loop: a slice of the steps
            shape = shape.sliced(p["reference_steps"])
        label = f"{op} {shape.name} {dtype} {backend}{' fwd+bwd' if backward else ' fwd'}"
        yield dict(kind="progress", what=label)  # a part stopped at its budget then names the cell it was on
        try:
            call = scan_cell_call(op, shape, p["batch"], dtype, backend, backward, device)
            seconds = seconds_per_call(call, device, p["protocol"])
        except Exception as exc:  # noqa: BLE001 - one cell's failure is reported, the others still run
            yield dict(kind="skip", step="scan", what=label, reason=_error_line(exc))
            continue
        finally:
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
        moved = scan_cell_bytes("cross" if op.startswith("cross") else "scan", shape, p["batch"], dtype, backward)
        exponentials = scan_cell_exponentials(shape, p["batch"], backward)
        bound = scan_roofline(moved, exponentials, peak, exp_rate)  # traffic or exponentials, the larger
        yield dict(
            kind="scan",
            op=op,
            shape=shape.name,
            batch=p["batch"],
            dtype=dtype,
            backend=backend,
            backward=backward,
            seconds=seconds,
            bytes_moved=moved,
            exponentials=exponentials,
            exp_rate=exp_rate,
            bound_seconds=bound,
            fraction=bound / seconds,
            peak_bandwidth=peak,
            device_name=name,
        )


def _fps_part(p: dict[str, Any]) -> Iterator[dict[str, Any]]:
    from .measure.fps import measure_model_fps

    for batch in p["batches"]:
        yield dict(kind="progress", what=f"{p['model']} {p['preset']} batch {batch}")
        try:
            m = measure_model_fps(
                p["model"],
                batch,
                p["preset"],
                p["device"],
                p["protocol"],
                input_size=tuple(p["input_size"]) if p.get("input_size") else None,
                scan_backend=p.get("scan_backend", "auto"),
                model_overrides=p.get("model_overrides"),
                compile_backend=p.get("compile_backend", "inductor"),
            )
        except Exception as exc:  # noqa: BLE001 - e.g. out of memory at batch 64: batch 1 still runs
            what = f"{p['model']} {p['preset']} batch {batch}"
            yield dict(kind="skip", step="fps", what=what, reason=_error_line(exc))
            continue
        finally:
            _free(p["device"])
        yield dict(kind="fps", measurement=m.as_dict(), reading=p.get("reading", ""))


def _free(device: str) -> None:
    import gc

    import torch

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def _train_part(p: dict[str, Any]) -> Iterator[dict[str, Any]]:
    from .measure.train_step import measure_train_step

    m = measure_train_step(
        p["model"],
        p["batch"],
        p["device"],
        amp=p["amp"],
        protocol=p["protocol"],
        input_size=tuple(p["input_size"]) if p.get("input_size") else None,
        scan_backend=p.get("scan_backend", "auto"),
    )
    yield dict(kind="train", measurement=m.as_dict())


PARTS = {"scan": _scan_part, "fps": _fps_part, "train": _train_part}


def run_part(part: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Run one part of the check in this process, yielding its results as they come (JSON-able dicts)."""
    if part not in PARTS:
        raise ValueError(f"unknown GPU check part {part!r}; parts: {', '.join(PARTS)}")
    yield from PARTS[part](params)


# ------------------------------------------------------------------------------------ orchestration


class _Clock:
    """The harness's deadline and each step's budget: a step ends at its own budget or at the deadline,
    whichever comes first. The steps run in the order of what matters (scan, FPS, training): a slow one
    takes only from the less important ones after it."""

    def __init__(self, deadline: float, budgets: dict[str, StepBudget]):
        self.deadline, self.budgets = deadline, budgets

    def step_end(self, step: str) -> float:
        return min(time.monotonic() + self.budgets[step].seconds, self.deadline)

    def left(self, step_end: float) -> float:
        return min(self.deadline, step_end) - time.monotonic()


@dataclass
class _Run:
    plan: CheckPlan
    out: Path
    store: Any
    clock: _Clock
    results: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # (step, what, why)
    steps: list[tuple[str, str, str]] = field(default_factory=list)  # (step, status, seconds of its budget)

    def skip(self, step: str, what: str, why: str) -> None:
        self.skipped.append((step, what, why))
        print(f"[gpu-check] skipped {step}: {what}: {why}", flush=True)

    def launch(self, step: str, job: CheckJob, step_end: float, cap: float, min_s: float) -> list[dict[str, Any]]:
        left = self.clock.left(step_end)
        what = job.params.get("label") or job.part
        if left < min_s:
            self.skip(step, what, f"the step's budget ran out ({max(left, 0):.0f} s left, a job needs {min_s:.0f} s)")
            return []
        start, limit = time.monotonic(), min(cap, left)
        done = launch_collect(job, timeout_s=limit, env=self.plan.env)
        print(f"[gpu-check] {step}: {what} ({time.monotonic() - start:.0f} s of its {limit:.0f} s)", flush=True)
        for r in done.results:
            if r.get("kind") == "skip":
                self.skip(r["step"], r["what"], r["reason"])
        if done.error:
            doing = [r["what"] for r in done.results if r.get("kind") == "progress"]
            self.skip(step, what, done.error + (f", while timing {doing[-1]}" if doing else ""))
        got = [r for r in done.results if r.get("kind") not in ("skip", "progress")]
        self.results += got
        return got


def _record_scan(run: _Run, r: dict[str, Any]) -> None:
    if r["kind"] != "scan":
        return
    direction = "forward and backward" if r["backward"] else "forward"
    common = dict(
        table="kernels",
        row=f"{r['op']} {r['shape']} {r['dtype']}{' fwd+bwd' if r['backward'] else ''}",
        model="selective_scan",
        status="measured",
        device=run.plan.device,
        batch_size=r["batch"],
        precision=r["dtype"],
        scan_backend=r["backend"],
    )
    rate = f"{r['exp_rate'] / 1e12:.2f}e12/s" if r["exp_rate"] else "not known"
    note = (
        f"{direction}; roofline: the larger of {r['bytes_moved']} bytes moved at least at "
        f"{r['peak_bandwidth'] / 1e9:.0f} GB/s (the higher of a measured device copy and the datasheet) and "
        f"{r['exponentials']} exponentials at the special function units' {rate}"
    )
    run.store.record(metric="seconds_per_call", measured=r["seconds"], unit="s", notes=note, **common)
    run.store.record(metric="fraction_of_roofline", measured=r["fraction"], notes=note, **common)


def _scan_step(run: _Run) -> None:
    plan = run.plan
    end = run.clock.step_end("scan")
    params = dict(
        device=plan.device,
        shapes=plan.scan_shapes,
        batch=plan.scan_batch,
        dtypes=list(plan.scan_dtypes),
        backends=list(plan.scan_backends),
        backward=list(plan.scan_backward),
        reference_steps=plan.reference_steps,
        protocol=plan.kernel_protocol,
        label="scan kernels",
    )
    for r in run.launch("scan", CheckJob("scan", params), end, plan.budgets["scan"].seconds, 10.0):
        _record_scan(run, r)


def _fps_jobs(plan: CheckPlan) -> list[tuple[dict[str, Any], float]]:
    """One job (its parameters, its time cap) per FPS cell of the plan, in the plan's order."""
    from .measure.presets import PRESETS

    jobs = []
    size = list(plan.input_size) if plan.input_size else None
    for model, preset in plan.fps_cells:
        compiled = bool(PRESETS[preset].compile_mode)
        params = dict(model=model, preset=preset, device=plan.device, input_size=size, protocol=plan.fps_protocol)
        params.update(batches=list(plan.batches[:1] if compiled else plan.batches), label=f"{model} {preset}")
        params.update(scan_backend=plan.model_scan_backend, compile_backend=plan.compile_backend)
        jobs.append((params, plan.compile_timeout_s if compiled else plan.cell_timeout_s))
    if not plan.dry_run:  # SS2D unfused: does the fused kernel pay in the model?
        params = dict(model="mamkpd_b", preset=plan.half, batches=list(plan.batches[:1]), device=plan.device)
        params.update(model_overrides={"fused_cross_scan": False}, reading="fused_cross_scan=False")
        params.update(scan_backend=plan.model_scan_backend, input_size=size, protocol=plan.fps_protocol)
        jobs.append((dict(params, label="mamkpd_b fused_cross_scan=False"), plan.cell_timeout_s))
    return jobs


def _fps_step(run: _Run) -> None:
    from .measure.fps import REFERENCE_MODEL, FpsMeasurement
    from .store.fps_records import record_fps

    plan = run.plan
    end = run.clock.step_end("fps")
    reference: dict[tuple[int, str], float] = {}  # (batch, preset) -> HRNet-W32's median in this run
    for params, cap in _fps_jobs(plan):
        for r in run.launch("fps", CheckJob("fps", params), end, cap, min(cap, 15.0)):
            m = FpsMeasurement.from_dict(r["measurement"])
            key = (m.batch, m.preset.name)
            if m.model == REFERENCE_MODEL and not r["reading"]:
                reference[key] = m.result.median
            ratio = m.result.median / reference[key] if key in reference else None
            record_fps(run.store, m, ratio, reading=r["reading"])


def _train_step(run: _Run) -> None:
    plan = run.plan
    end = run.clock.step_end("train")
    amp = "" if plan.dry_run else plan.half
    for model in plan.train_models:
        params = dict(model=model, batch=plan.train_batch, device=plan.device, amp=amp, label=f"train {model}")
        params.update(protocol=plan.fps_protocol, input_size=list(plan.input_size) if plan.input_size else None)
        params.update(scan_backend=plan.model_scan_backend)
        for r in run.launch("train", CheckJob("train", params), end, plan.cell_timeout_s, 15.0):
            m = r["measurement"]
            common = dict(
                table="training",
                row=f"{model} batch {m['batch']}",
                model=model,
                status="measured",
                device=m["device"],
                batch_size=m["batch"],
                precision=m["amp"] or "fp32",
                scan_backend=m["scan_backend"],
                input_size=tuple(m["input_size"]),
                median=m["median_samples_per_s"],
                iqr=m["iqr_samples_per_s"],
            )
            note = "one optimiser step (forward, JointsMSELoss, backward, Adam) on synthetic inputs"
            run.store.record(metric="train_images_per_s", measured=m["median_samples_per_s"], unit="img/s", **common)
            if m["peak_memory_bytes"] is not None:
                run.store.record(
                    metric="train_peak_memory_bytes",
                    measured=m["peak_memory_bytes"],
                    unit="bytes",
                    notes=f"{note}; {m['peak_memory_kind']}",
                    **common,
                )


# ------------------------------------------------------------------------------------ summary


def _goal_lines(run: _Run) -> list[str]:
    fps = [r for r in run.results if r["kind"] == "fps" and not r["reading"]]
    scans = [r for r in run.results if r["kind"] == "scan"]
    lines = []

    def verdict(value: float | None, goal: float) -> str:
        if value is None or math.isnan(value):
            return "not measured"
        return "met" if value >= goal else f"short ({value / goal:.0%} of the goal)"

    by = {}
    for r in fps:
        m = r["measurement"]
        by[(m["model"], m["batch"], m["preset"]["name"])] = m["median_samples_per_s"]
    l_fps = [(v, k) for k, v in by.items() if k[0] == "mamkpd_l"]
    best = max(l_fps) if l_fps else None
    goal = GOALS["mamkpd_l_fps"]
    where = f" (batch {best[1][1]}, preset {best[1][2]})" if best else ""
    lines.append(
        f"- MamKPD-L >= {goal:,.0f} img/s at the best preset (goal set for one H200): "
        + (f"{best[0]:,.0f} img/s{where}: {verdict(best[0], goal)}" if best else "not measured")
    )
    ratios = []
    for (model, batch, preset), value in by.items():
        ref = by.get(("hrnet_w32", batch, preset))
        if model == "mamkpd_b" and ref:
            ratios.append((value / ref, batch, preset))
    goal = GOALS["mamkpd_b_ratio"]
    if ratios:
        for ratio, batch, preset in sorted(ratios, key=lambda t: (-t[1], t[2])):
            lines.append(
                f"- MamKPD-B / HRNet-W32 >= {goal:.2f}x (batch {batch}, preset {preset}): {ratio:.2f}x: "
                f"{verdict(ratio, goal)}"
            )
    else:
        lines.append(f"- MamKPD-B / HRNet-W32 >= {goal:.2f}x: not measured")
    goal = GOALS["scan_fraction"]
    from ..ops import SCAN_BACKENDS

    kernels = {name for name, b in SCAN_BACKENDS.items() if b.compiled}
    stage1 = [r for r in scans if r["shape"] == "stage1" and r["backend"] in kernels and not r["backward"]]
    for r in stage1:
        lines.append(
            f"- {r['backend']} {r['op']} at stage 1 ({r['dtype']}, forward) >= {goal:.0%} of the roofline: "
            f"{r['fraction']:.1%} ({r['seconds'] * 1e3:.3f} ms, bound {r['bound_seconds'] * 1e3:.3f} ms): "
            f"{verdict(r['fraction'], goal)}"
        )
    if not stage1:
        lines.append(f"- compiled scan kernels at stage 1 >= {goal:.0%} of the roofline: not measured")
    return lines


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(out + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"


def _summary(run: _Run, steps: list[tuple[str, str, str]], seconds: float) -> str:
    from ..engine.config import TrainConfig

    plan = run.plan
    out = [f"# GPU check{' (dry run: CPU, tiny sizes; figures say nothing of speed)' if plan.dry_run else ''}\n"]
    bw = next((r for r in run.results if r["kind"] == "bandwidth"), None)
    out.append(f"Device: {bw['device_name'] if bw else plan.device}; harness took {seconds:.0f} s.")
    if plan.dry_run:
        out.append("Compiled cells ran torch.compile with dynamo's `eager` backend (tracing only, no code generated).")
    out.append("\n## Goals (reported, not asserted)\n")
    out += _goal_lines(run)
    out.append("\n## Scan kernels against their roofline (memory bandwidth or exponentials, the larger)\n")
    if bw:
        sheet = f"{bw['datasheet_bandwidth'] / 1e9:.0f} GB/s" if bw["datasheet_bandwidth"] else "unknown"
        copy = f"{bw['copy_bandwidth'] / 1e9:.0f} GB/s"
        out.append(f"Device copy {copy}, datasheet {sheet}; the bound uses the higher.\n")
    rows = [
        [
            r["op"],
            r["shape"],
            r["dtype"],
            "fwd+bwd" if r["backward"] else "fwd",
            r["backend"],
            f"{r['seconds'] * 1e3:.3f}",
            f"{r['bound_seconds'] * 1e3:.3f}",
            f"{r['fraction']:.1%}",
        ]
        for r in run.results
        if r["kind"] == "scan"
    ]
    out.append(_md_table(["Op", "Shape", "Dtype", "Pass", "Backend", "ms", "Bound ms", "Of bound"], rows))
    out.append("## Model speed (samples/s; ratio to HRNet-W32 in this run)\n")
    ref = {}
    fps = [r for r in run.results if r["kind"] == "fps"]
    for r in fps:
        m = r["measurement"]
        if m["model"] == "hrnet_w32" and not r["reading"]:
            ref[(m["batch"], m["preset"]["name"])] = m["median_samples_per_s"]
    rows = []
    for r in fps:
        m = r["measurement"]
        base = ref.get((m["batch"], m["preset"]["name"]))
        rows.append(
            [
                m["model"] + (f" ({r['reading']})" if r["reading"] else ""),
                m["preset"]["name"],
                str(m["batch"]),
                m["scan_backend"] or "-",
                f"{m['median_samples_per_s']:,.1f}",
                f"{m['median_samples_per_s'] / base:.2f}" if base else "-",
            ]
        )
    out.append(_md_table(["Model", "Preset", "Batch", "Scan backend", "Samples/s", "x HRNet-W32"], rows))
    out.append("## One training step\n")
    rows = []
    for r in run.results:
        if r["kind"] == "train":
            m = r["measurement"]
            peak = f"{m['peak_memory_bytes'] / 2**30:.2f} GiB" if m["peak_memory_bytes"] is not None else "-"
            epochs = TrainConfig().epochs
            hours = epochs * COCO_TRAIN_INSTANCES / m["median_samples_per_s"] / 3600
            rows.append(
                [
                    m["model"],
                    str(m["batch"]),
                    m["amp"] or "fp32",
                    m["scan_backend"] or "-",
                    f"{m['median_samples_per_s']:,.1f}",
                    peak,
                    f"{hours:,.1f}",
                ]
            )
    header = ["Model", "Batch", "AMP", "Scan backend", "img/s", "Peak memory"]
    hours_column = f"h for {TrainConfig().epochs} COCO epochs ({COCO_TRAIN_INSTANCES:,} crops), model only"
    out.append(_md_table([*header, hours_column], rows))
    out.append("## Steps\n")
    out.append(_md_table(["Step", "Status", "Detail"], [list(s) for s in steps]))
    out.append("## Skipped, and why\n")
    skipped = [[s, w, y] for s, w, y in run.skipped] or [["-", "nothing", "-"]]
    out.append(_md_table(["Step", "What", "Why"], skipped))
    return "\n".join(out) + "\n"


def _shell_steps(out: Path) -> list[tuple[str, str, str]]:
    """The steps the shell script ran before (install, tests), one ``step<TAB>status<TAB>detail`` a line."""
    path = out / "steps.tsv"
    if not path.exists():
        return []
    return [tuple((line.split("\t") + ["", ""])[:3]) for line in path.read_text().splitlines() if line.strip()]


def _scan_backends(device: str, dry_run: bool) -> tuple[tuple[str, ...], list[tuple[str, str]]]:
    """The backends the scan step times here (every compiled GPU kernel, and the oracle they are checked
    against), and the ones left out with the reason. A dry run times those that also run on its CPU, in the
    environment its children get (``TRITON_INTERPRET=1``)."""
    from ..ops import SCAN_BACKENDS, backend_unavailable

    here = device.split(":")[0]
    wanted = [
        b for b in SCAN_BACKENDS.values() if {"cuda", here} <= set(b.device_types) and (b.compiled or not b.deployable)
    ]
    wanted.sort(key=lambda b: not b.compiled)  # the kernels' cells first, within the step's budget
    chosen, left_out = [], []
    with _environment(DRY_RUN_ENV if dry_run else {}):
        for backend in wanted:
            why = backend_unavailable(backend.name, device)
            (left_out.append((backend.name, why)) if why else chosen.append(backend.name))
    return tuple(chosen), left_out


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@dataclass(frozen=True)
class CheckRequest:
    """What the check is asked to do (its command line, ``mamkpd/cli/gpu_check.py``, fills it from its arguments)."""

    out: Path  # folder for results.csv, gpu_check.md and gpu_check.json
    dry_run: bool = False  # every step on the CPU at tiny sizes
    seconds: float | None = None  # the harness's whole budget (None: the plan's budgets, by mode)


@dataclass
class CheckOutcome:
    """What the check wrote, and what its caller shows: the goals' lines and everything skipped."""

    store: Path
    summary: Path
    goals: list[str]
    skipped: list[tuple[str, str, str]]  # (step, what, why)
    seconds: float


def run_check(request: CheckRequest) -> CheckOutcome:
    """Run the check's steps under their budgets and write the store, ``gpu_check.md`` and ``gpu_check.json``
    into ``request.out``. Without CUDA, only a dry run is possible (ValueError otherwise)."""
    import torch

    from .store.results import ResultsStore

    start = time.monotonic()
    if request.dry_run:
        device, half = "cpu", "bf16"
    else:
        if not torch.cuda.is_available():
            raise ValueError("no CUDA device here (torch.cuda.is_available() is False); use --dry-run")
        device = "cuda"
        half = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    backends, left_out = _scan_backends(device, request.dry_run)
    plan = plan_for(request.dry_run, device, half, backends)
    total = request.seconds if request.seconds is not None else sum(b.seconds for b in plan.budgets.values())
    request.out.mkdir(parents=True, exist_ok=True)
    run = _Run(plan, request.out, ResultsStore(request.out / "results.csv"), _Clock(start + total, plan.budgets))
    for name, why in left_out:
        run.skip("scan", f"backend {name}", why)
    for name, step in zip(HARNESS_STEPS, (_scan_step, _fps_step, _train_step), strict=True):
        step_start, skipped = time.monotonic(), len(run.skipped)
        step(run)
        took = f"{time.monotonic() - step_start:.0f} s of its {plan.budgets[name].seconds:.0f} s"
        status = "done" if len(run.skipped) == skipped else f"done, {len(run.skipped) - skipped} skipped"
        run.steps.append((name, status, took))
        print(f"[gpu-check] {name} {status} ({took})", flush=True)
    seconds = time.monotonic() - start
    steps = _shell_steps(request.out) + run.steps
    (request.out / "gpu_check.md").write_text(_summary(run, steps, seconds))
    goals = _goal_lines(run)
    summary = dict(
        plan=asdict(plan),
        results=run.results,
        skipped=[dict(step=s, what=w, why=y) for s, w, y in run.skipped],
        goals=goals,
        seconds=seconds,
    )
    (request.out / "gpu_check.json").write_text(json.dumps(summary, indent=1, default=str))
    return CheckOutcome(
        store=request.out / "results.csv",
        summary=request.out / "gpu_check.md",
        goals=goals,
        skipped=list(run.skipped),
        seconds=seconds,
    )
