"""PyTorch eager (plain, and with every Linear on oneDNN) against ONNX Runtime on the CPU: MamKPD-S/B/L,
HRNet-W32 and RTMPose-m, batch 1 and 8, and the goals of issue 18 that these speeds decide, each printed as met
or short. Models with a selective scan
are timed in both ONNX scan forms: the portable ONNX ``Scan`` and the custom-op file (Python onnxruntime only).

Benchmarks, not tests: run with ``OMP_NUM_THREADS=1 python -m pytest benchmarks/test_bench_runtimes.py
--benchmark-enable -s`` (the issue's figures are 1 thread). One benchmark per batch size builds every runner
(the ONNX exports take minutes on a small machine) and then times them alternately, one call of each per
round, so that all of them see the same machine load; the benchmark's own time is one round of all. Each
runner holds one fixed input (the registered 256x192 crop) and runs the forward pass only; onnxruntime gets
as many intra-op threads as PyTorch. Speeds are samples per CPU-second (the median round; robust to other
processes on a shared machine) and per wall-clock second; the goals are judged on the former. A model whose
export fails is listed with its error, and a goal that needs it prints short.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import torch
from bench_goals import verdict

from mamkpd import create_model
from mamkpd.export import CUSTOM_OP_SCAN_FORM, example_input, input_size_of, onnx_runner, prepare_for_export
from mamkpd.harness.measure.presets import PRESETS, preset_flags
from mamkpd.models import model_info, scan_backend_of

MODELS = ("mamkpd_s", "mamkpd_b", "mamkpd_l", "hrnet_w32", "rtmpose_m")  # RTMPose-m: what real-time users deploy
# onnxruntime runs the portable ONNX Scan form; "onnxruntime custom-op" the file whose scans are custom nodes run
# by mamkpd's kernel (Python onnxruntime only), timed for the models that have a scan
ORT, ORT_CUSTOM = "onnxruntime", f"onnxruntime {CUSTOM_OP_SCAN_FORM}"
# eager with every Linear on oneDNN (the fp32-onednn preset, mamkpd.ops.onednn_linear: MKL's SGEMM runs AVX2
# code on AMD CPUs), for every model alike
EAGER_ONEDNN = "eager fp32-onednn"
RUNTIMES = ("eager", EAGER_ONEDNN, ORT, ORT_CUSTOM)
ROUNDS = {1: 5, 8: 3}  # per batch size: a batch-8 round of the ONNX scan form takes minutes today
SUBJECT, REFERENCE = "mamkpd_b", "hrnet_w32"
# issue 18's goals that these timings decide: MamKPD-B eager over HRNet-W32 eager, per batch size
EAGER_OVER_REFERENCE = {1: 2.0, 8: 1.5}


@dataclass
class Timed:
    """One runner's rounds: CPU and wall seconds per call, or why it could not run."""

    model: str
    runtime: str
    run: Callable[[], object] | None = None
    info: dict = field(default_factory=dict)
    error: str = ""
    cpu_s: list[float] = field(default_factory=list)
    wall_s: list[float] = field(default_factory=list)

    def per_s(self, batch: int, seconds: list[float]) -> float:
        return batch / sorted(seconds)[len(seconds) // 2] if seconds else float("nan")


def _runner(name: str, batch: int, runtime: str) -> Timed:
    """A zero-argument forward pass of ``name`` on ``runtime`` (an export error is kept, not raised)."""
    if runtime in (ORT, ORT_CUSTOM):
        try:
            runner = onnx_runner(
                name, batch, "cpu", **({"scan_form": CUSTOM_OP_SCAN_FORM} if runtime == ORT_CUSTOM else {})
            )
        except Exception as exc:  # noqa: BLE001 - one model's failed export must not hide the others' speeds
            return Timed(name, runtime, error=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        info = dict(
            export_s=round(runner.export.export_seconds, 1),
            onnx_nodes=runner.export.onnx_nodes,
            onnx_max_abs_diff=runner.export.check.max_abs_diff,
        )
        return Timed(name, runtime, runner, info)
    model = prepare_for_export(create_model(name))
    x = example_input(input_size_of(name), batch)
    preset = PRESETS["fp32-onednn" if runtime == EAGER_ONEDNN else "fp32"]

    def run():
        with torch.inference_mode(), preset_flags(preset):
            return model(x)

    return Timed(name, runtime, run, dict(scan_backend=scan_backend_of(model) or "-"))


def _one_round(runners: list[Timed]) -> None:
    for r in runners:
        cpu, wall = time.process_time(), time.perf_counter()
        r.run()
        r.cpu_s.append(time.process_time() - cpu)
        r.wall_s.append(time.perf_counter() - wall)


def _goals(speed: dict[tuple[str, str], float], batch: int) -> list[str]:
    """Issue 18's goals at ``batch``, each with its ratio and met or short (the ONNX goals for both scan forms)."""
    eager = speed[(SUBJECT, "eager")]
    goals = []
    for runtime in (ORT, ORT_CUSTOM):
        ort = speed.get((SUBJECT, runtime), float("nan"))
        goals += [
            (f"MamKPD-B in {runtime} >= 1.0x its own eager speed", ort / eager, 1.0),
            (f"MamKPD-B in {runtime} >= HRNet-W32's onnxruntime speed", ort / speed[(REFERENCE, ORT)], 1.0),
        ]
    goals += [
        (
            f"MamKPD-B {runtime} >= {EAGER_OVER_REFERENCE[batch]:.1f}x HRNet-W32 {runtime}",
            speed[(SUBJECT, runtime)] / speed[(REFERENCE, runtime)],
            EAGER_OVER_REFERENCE[batch],
        )
        for runtime in ("eager", EAGER_ONEDNN)
    ]
    return [f"  batch {batch}: {what}: {ratio:.2f}x -> {verdict(ratio, goal)}" for what, ratio, goal in goals]


def _table(runners: list[Timed], batch: int) -> list[str]:
    lines = [f"{'model':<11} {'runtime':<22} {'img/CPU-s':>9} {'img/s wall':>10}  ÷ eager    notes"]
    cpu = {(r.model, r.runtime): r.per_s(batch, r.cpu_s) for r in runners}
    for r in runners:
        ratio = cpu[(r.model, r.runtime)] / cpu[(r.model, "eager")] if r.runtime != "eager" else None
        ratio = None if r.error else ratio
        notes = r.error or ", ".join(f"{k} {v}" for k, v in r.info.items())
        lines.append(
            f"{r.model:<11} {r.runtime:<22} {cpu[(r.model, r.runtime)]:>9.2f} {r.per_s(batch, r.wall_s):>10.2f}  "
            f"{'' if ratio is None else f'{ratio:.2f}x':>9}  {notes}"
        )
    return lines


@pytest.mark.benchmark(group="runtimes-cpu")
@pytest.mark.parametrize("batch", sorted(ROUNDS))
def test_runtime_throughput(benchmark, batch):
    runners = [
        _runner(name, batch, runtime)
        for name in MODELS
        for runtime in RUNTIMES
        if runtime != ORT_CUSTOM or model_info(name).has_scan
    ]
    ready = [r for r in runners if r.run is not None]
    _one_round(ready)  # warm-up: the scan's JIT, oneDNN's and onnxruntime's first-call work
    for r in ready:
        r.cpu_s.clear(), r.wall_s.clear()
    benchmark.pedantic(_one_round, args=(ready,), rounds=ROUNDS[batch], warmup_rounds=0)
    speed = {(r.model, r.runtime): r.per_s(batch, r.cpu_s) for r in runners}
    lines = [
        f"batch {batch}, {torch.get_num_threads()} thread(s), 256x192 fp32, median of {ROUNDS[batch]} rounds:",
        *_table(runners, batch),
        f"issue 18 goals (samples per CPU-second) at batch {batch}:",
        *_goals(speed, batch),
    ]
    benchmark.extra_info.update(
        batch=batch,
        threads=torch.get_num_threads(),
        samples_per_cpu_s={f"{m}/{rt}": round(v, 3) for (m, rt), v in speed.items()},
        errors={f"{r.model}/{r.runtime}": r.error for r in runners if r.error},
        goals=lines[lines.index(f"issue 18 goals (samples per CPU-second) at batch {batch}:") + 1 :],
    )
    print("\n" + "\n".join(lines))
