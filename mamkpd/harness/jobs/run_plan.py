"""What ``mamkpd report --run`` measures before the report is written: what this machine can, into the store.

On a CPU machine with no data sets this means: params and GFLOPs of every paper row (fvcore, and the
HRNet repository's counter for the rows the paper counted with it), Table 1 under the alternative
architecture readings, CPU speed of a few models with HRNet-W32 as the common reference, a short
training and evaluation on the built-in pose samples, the baselines' findings, and a ``not run`` row
with its reason for every accuracy cell.

The same things are measured whatever the machine's load: the counts, the findings and the reasons
(load-independent) always run, first. Only the timing and the training share the time budget, and they
stop at a safe point (between two models, between two epochs) when the next piece would overrun it;
what they left out is listed, item by item with the reason, in :attr:`RunLog.left_out`, which the report
shows at its top. The load during the timings is read (:mod:`mamkpd.harness.measure.load`) and ratios
taken while other processes held more than one core are flagged. The report (:mod:`mamkpd.report`) only
renders what was stored, and the :class:`RunLog` that :func:`run_measurements` returns.
"""

from __future__ import annotations

import dataclasses
import json
import math
import multiprocessing
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from ...models import model_info
from ...paper import TABLES, compared_model, load_table
from ...paper.tolerances import tolerance_for
from ..measure.load import BUSY_CORES
from ..store.results import ResultsStore
from .availability import cuda_status, dataset_status, sha256_of

__all__ = [
    "LOAD_METRIC",
    "LOAD_TABLE",
    "RunLog",
    "RunPlan",
    "check_plan",
    "run_measurements",
    "worker_layout",
    "SAME_FUNCTION_REASON",
    "UNCOUNTED_MULTIPLIES",
]

BUDGET_REASON = "the time budget (--budget-s) was spent"
TABLE1_ROWS = {"mamkpd_s": "MamKPD-Small", "mamkpd_b": "MamKPD-Base", "mamkpd_l": "MamKPD-Large"}
# a reading that, given the default's weights, computes the default's outputs changes only initialisation
SAME_FUNCTION_REASON = (
    "given the default's weights it computes the default's outputs (checked on a random input): it changes "
    "only how training starts, so no count can differ"
)
UNCOUNTED_MULTIPLIES = "uncounted_multiplies"  # metric: element-wise multiplies per sample, reading minus default
LOAD_TABLE, LOAD_METRIC = "load", "other_processes_cores"  # the machine's load during report --run's timings


@dataclass
class RunPlan:
    """What ``report --run`` measures; the defaults fit a 2-core CPU machine in a few minutes."""

    # RTMPose-m: not in the paper, the real-time model users deploy; timed beside the paper's (REPORT.md's
    # RTMPose section), as are its four sizes counted
    # then Table 2's other methods, cheapest first (a few seconds each on 2 idle cores), so that a tight budget
    # leaves out the costliest; the lightweight rows print no FPS, so these timings are the only speeds they have.
    # The 60-1000 GFLOPs ones (ViTPose-L, RTMO-M/L, KAPAO-M/L, GroupPose-L) are left to `mamkpd fps`
    speed_models: tuple[str, ...] = (
        "hrnet_w32",
        "mamkpd_s",
        "mamkpd_b",
        "rtmpose_m",
        "litehrnet_30",
        "ditehrnet_30",
        "tokenpose_s_v1",
        "sbl_res50",
        "ppt_b",
        "ppt_l_d6",
        "tokenpose_l_d6",
        "rtmo_s",
        "sbl_res152",
        "i2rnet_hrformer_b",  # 14.23 GMACs at its 256x192 against HRNet-W48's 15.75 (3.97 against 3.94 at 128x96)
        "hrnet_w48",
        "vitpose_b",
        "kapao_s",
    )
    beside_models: tuple[str, ...] = ("rtmpose_t", "rtmpose_s", "rtmpose_m", "rtmpose_l")
    # timed a second time with every float32 Linear on oneDNN (the fp32-onednn preset; CPU only), right after
    # their plain timings: on AMD CPUs MKL's SGEMM runs its AVX2 code, so models built from linear layers pay
    # about twice per FLOP what convolutional ones pay in plain PyTorch (mamkpd.ops.onednn_linear)
    onednn_models: tuple[str, ...] = ("hrnet_w32", "mamkpd_s", "mamkpd_b", "rtmpose_m")
    speed_reference: str = "hrnet_w32"
    speed_batch: int = 1
    speed_protocol: str = "smoke"
    # the C allocator of every timing (mamkpd.harness.measure.allocator): glibc's defaults, what a plain PyTorch
    # process gets, or keep-freed, what the benchmarks time under; recorded in the store's allocator column
    allocator: str = "system"
    device: str = "cpu"
    scan_backend: str = "auto"  # of the models with a scan, in the speed, training and evaluation steps
    # a MamKPD-S cut to one block per stage and 32/64/128 channels memorises the 12 sample people in ~200
    # passes on CPU: a check that training and evaluation work end to end, not an accuracy claim
    train_model: str = "mamkpd_s"
    train_model_kwargs: dict = field(default_factory=lambda: {"depths": [1, 1, 1], "dims": [32, 64, 128]})
    train_epochs: int = 200  # passes over the samples
    # an epoch goes over the samples this many times, so that the trainer's progress bar has steps to show
    # (one batch per epoch would make 200 one-step bars) and last.pth is written 10 times, not 200
    train_passes_per_epoch: int = 20
    train_batch: int = 12
    train_lr: float = 5e-3
    train_input_size: tuple[int, int] = (64, 48)
    readings: bool = True
    baseline_findings: bool = True
    budget_s: float = 300.0  # for the timing and the training; the rest always runs
    # ONNX Runtime beside eager for the timed models (a step of mamkpd.report, run last, in what the budget
    # leaves): its first model runs only when this many seconds are left (an export, check and timing of a
    # MamKPD takes about a minute on an idle 2-core machine); each next one when the slowest so far fits
    onnx_speed: bool = True
    onnx_first_estimate_s: float = 90.0
    # timed eager but not exported by the ONNX step: their exports (hundreds of small branches) take 25-85 s on
    # an idle 2-core machine, several times any other model's, so the step's estimate (the slowest so far) would
    # let one overrun the budget; `mamkpd fps --runtime onnxruntime --model NAME` times them
    onnx_skip: tuple[str, ...] = ("litehrnet_30", "ditehrnet_30")
    data_roots: dict[str, str] = field(default_factory=dict)  # dataset -> root, else the environment variables

    @property
    def timed_models(self) -> list[str]:
        """The models the speed step times, in order: the reference first, each once."""
        return list(dict.fromkeys([self.speed_reference, *self.speed_models]))


def check_plan(plan: RunPlan, store: ResultsStore) -> None:
    """Refuse, before any work, a plan this machine cannot run or a store it cannot write: one ValueError
    naming the ``report --run`` flag that asked for it (a step failing minutes later would only be logged)."""
    from ...ops import resolve_backend
    from ..measure.presets import PRESETS, check_preset_device

    if not plan.budget_s > 0:
        raise ValueError(f"--budget-s must be a positive number of seconds, got {plan.budget_s:g}")
    try:
        check_preset_device(PRESETS["fp32"], plan.device)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"--device {plan.device}: {exc} (use --device cpu)") from None
    try:
        resolve_backend(plan.scan_backend, plan.device)
    except RuntimeError as exc:
        raise ValueError(f"--scan-backend {plan.scan_backend}: {exc} (use --scan-backend auto)") from None
    store.check_writable()


@dataclass
class RunLog:
    """What a ``report --run`` did: one markdown item per step, what it left out (item, reason) and the
    machine's load during its timings (a :class:`~mamkpd.harness.measure.load.LoadReading`, or None)."""

    lines: list[str] = field(default_factory=list)
    left_out: list[tuple[str, str]] = field(default_factory=list)
    load: object | None = None


class _Progress:
    def __init__(self, echo: Callable[[str], None], budget_s: float, run_log: RunLog | None = None):
        self.start, self.echo, self.budget_s = time.monotonic(), echo, budget_s
        self.run_log = run_log if run_log is not None else RunLog()

    @property
    def left_s(self) -> float:
        return self.budget_s - self.elapsed

    def leave_out(self, item: str, reason: str = BUDGET_REASON) -> None:
        self.run_log.left_out.append((item, reason))
        self(f"left out {item}: {reason}")

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def fits(self, seconds: float) -> bool:
        """Whether a piece of work expected to take ``seconds`` ends within the budget."""
        return seconds <= self.left_s

    def __call__(self, message: str) -> None:
        self.echo(f"[{self.elapsed:6.1f}s] {message}")


def _complexity_cells() -> list[tuple[str, str, str, str]]:
    """(table, row, metric, model) for every complexity cell of a paper row with a registered model; the
    model is the one the paper table says the cell is compared with (:func:`mamkpd.paper.compared_model`)."""
    cells = []
    for name, spec in TABLES.items():
        for r in load_table(name).itertuples():
            if r.registry_name:
                cells += [(name, r.row, metric, compared_model(r, metric)) for metric in spec.complexity_columns]
    return cells


def _count_one(threads: int, model: str, overrides: dict):
    """Worker: fvcore count of one model (fvcore's tracing is mostly single-threaded Python)."""
    import torch

    from ..measure.complexity import measure_complexity

    torch.set_num_threads(threads)
    return measure_complexity(model, **overrides)


def _measure_one_reading(threads: int, model: str, reading: str, overrides: dict):
    """Worker: one model under one architecture reading (:func:`mamkpd.harness.measure.readings.measure_reading`)."""
    import torch

    from ..measure.readings import measure_reading

    torch.set_num_threads(threads)
    return measure_reading(model, reading, overrides)


def worker_layout() -> tuple[int, int]:
    """(worker processes, torch threads each) for counting: together no more threads than this process runs
    (``torch.get_num_threads()``: ``OMP_NUM_THREADS`` where set, else the CPUs the process may use), so that
    ``OMP_NUM_THREADS=1`` on a shared machine gives one worker on one thread."""
    import torch

    total = max(1, torch.get_num_threads())
    workers = min(2, total)
    return workers, max(1, total // workers)


def _run_parallel(
    jobs: list[tuple[str, Callable, tuple]],
    progress: _Progress,
    what: str,
    describe: Callable[[object], str],
) -> dict:
    """Run ``(label, worker, args)`` jobs in worker processes as ``worker(threads, *args)``, every one of them
    (counting does not depend on the load, so it is never cut). One progress line per finished job."""
    workers, threads = worker_layout()
    results, queue, pending = {}, list(jobs), {}
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_leave_ctrl_c_to_parent) as pool:
        try:
            while queue or pending:
                while queue and len(pending) < workers:
                    label, worker, args = queue.pop(0)
                    pending[pool.submit(worker, threads, *args)] = label
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    label = pending.pop(future)
                    result = results[label] = future.result()
                    progress(f"{what} {len(results)}/{len(jobs)} {label}: {describe(result)}")
        except KeyboardInterrupt:  # stop the counts now rather than wait for them; nothing of theirs is stored yet
            for process in list(getattr(pool, "_processes", {}).values()):
                process.terminate()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return results


def _leave_ctrl_c_to_parent() -> None:
    """Counting workers ignore Ctrl-C (it reaches the whole process group): the parent stops them, so that an
    interrupt prints one line, not a traceback per worker."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _describe_count(c) -> str:
    return f"{c.params / 1e6:.2f}M params, {c.gflops:.2f} GFLOPs"


def _measure_complexity(store: ResultsStore, progress: _Progress, beside: tuple[str, ...] = ()) -> dict[str, object]:
    """Params and GFLOPs of every paper row, and of the ``beside`` models (no paper row: table "complexity")."""
    cells = _complexity_cells()
    cells += [("complexity", m, metric, m) for m in beside for metric in ("params_m", "gflops")]
    models = list(dict.fromkeys(m for _, _, _, m in cells))
    paper = {n: load_table(n).set_index("row") for n in TABLES}
    jobs = [(m, _count_one, (m, {})) for m in models]
    measured = _run_parallel(jobs, progress, "complexity", _describe_count)
    for table, row, metric, model in cells:
        printed = paper[table].loc[row].get(metric, math.nan) if table in paper else math.nan
        printed = None if isinstance(printed, float) and math.isnan(printed) else float(printed)
        c = measured[model]
        tol, kind = tolerance_for(table, metric, model_info(model).tolerance_class)
        store.record(
            table=table,
            row=row,
            model=model,
            metric=metric,
            paper=printed,
            measured=c.params / 1e6 if metric == "params_m" else c.gflops,
            tolerance=tol if printed is not None else None,
            tolerance_kind=kind,
            flops_convention=f"{c.flops_convention} ({c.counter})",
            input_size=c.input_size,
            batch_size=c.batch,
            scan_backend=c.scan_backend or "",
            device="cpu",
            notes="uncounted ops: " + (", ".join(sorted(c.unsupported_ops)) or "none"),
        )
    return measured


def _measure_hrnet_counter(store: ResultsStore, progress: _Progress) -> None:
    """The rows the paper counted with the HRNet repository's counter, counted the same way."""
    from ..measure.complexity import measure_complexity_hrnet_repo

    t2 = load_table("table2")
    rows = t2[t2["notes"].str.contains("HRNet repository's counter", regex=False) & (t2["registry_name"] != "")]
    for r in rows.itertuples():
        c = measure_complexity_hrnet_repo(r.registry_name)
        tol, kind = tolerance_for("table2", "gflops", model_info(r.registry_name).tolerance_class)
        store.record(
            table="table2",
            row=r.row,
            model=r.registry_name,
            metric="gflops",
            paper=r.gflops,
            measured=c.gflops,
            tolerance=tol,
            tolerance_kind=kind,
            flops_convention=f"{c.flops_convention} ({c.counter})",
            input_size=c.input_size,
            batch_size=c.batch,
            device="cpu",
        )
        progress(f"HRNet-repository counter {r.registry_name}: {c.gflops:.2f} GFLOPs (paper {r.gflops})")


def _describe_reading(e) -> str:
    if e.same_function:
        return "computes the default's function given its weights: not counted"
    line = _describe_count(e.complexity)
    if e.counts_as_default:
        line += f"; counts as the default, {e.uncounted_multiplies:+d} element-wise multiplies fvcore does not count"
    return line


def _measure_readings(store: ResultsStore, progress: _Progress) -> None:
    from ...models.mamkpd import ALTERNATIVE_READINGS

    paper = load_table("table1").set_index("row")
    # the default reading is the Table 1 measurement itself
    jobs = [
        (f"{model} / {reading}", _measure_one_reading, (model, reading, overrides))
        for reading, overrides in ALTERNATIVE_READINGS.items()
        if overrides
        for model in TABLE1_ROWS
    ]
    effects = _run_parallel(jobs, progress, "reading", _describe_reading)
    for e in effects.values():
        row, c = TABLE1_ROWS[e.model], e.complexity
        common = dict(
            table="table1", row=row, model=e.model, reading=e.reading, notes=f"overrides {json.dumps(e.overrides)}"
        )
        for metric in ("params_m", "gflops"):
            paper_value = float(paper.loc[row, metric])
            if c is None:
                store.record(
                    metric=metric, paper=paper_value, status="not run", status_reason=SAME_FUNCTION_REASON, **common
                )
                continue
            store.record(
                metric=metric,
                paper=paper_value,
                measured=c.params / 1e6 if metric == "params_m" else c.gflops,
                status="measured",
                flops_convention=f"{c.flops_convention} ({c.counter})",
                input_size=c.input_size,
                scan_backend=c.scan_backend or "",
                device="cpu",
                **common,
            )
        if e.uncounted_multiplies is not None:
            store.record(
                metric=UNCOUNTED_MULTIPLIES,
                measured=float(e.uncounted_multiplies),
                status="measured",
                status_reason="params and fvcore MACs equal the default's; these element-wise multiplies "
                "(aten::mul, one per output element) are what fvcore leaves out",
                unit="multiplies per sample",
                input_size=c.input_size,
                batch_size=1,
                device="cpu",
                **common,
            )


PLAIN, ONEDNN = "fp32", "fp32-onednn"  # the timing presets of report --run


def _speed_jobs(plan: RunPlan) -> list[tuple[str, str]]:
    """(model, preset) in the order they are timed: the reference, then the models, each plain; the
    ``onednn_models`` again under fp32-onednn (the reference first) right after the last of them, on a CPU
    whose torch has oneDNN."""
    from ...ops import onednn_linear_unavailable

    names = plan.timed_models
    jobs = [(name, PLAIN) for name in names]
    again = [n for n in names if n in plan.onednn_models]
    if plan.speed_reference not in again or plan.device != "cpu" or onednn_linear_unavailable() is not None:
        return jobs  # no reference to divide by, or nothing to run them on
    after = max(names.index(n) for n in again) + 1
    return jobs[:after] + [(n, ONEDNN) for n in again] + jobs[after:]


def _measure_speed(store: ResultsStore, plan: RunPlan, progress: _Progress) -> None:
    """Time the reference, then each model, each in its own process, in the order of :func:`_speed_jobs` (the
    headline models also under fp32-onednn); stop between two timings when the next would overrun the budget
    (expected to take as long as the slowest so far). The load is read throughout."""
    from ..measure.fps import speed_ratios
    from ..measure.load import LoadMonitor
    from ..store.fps_records import record_fps
    from .fps_isolated import measure_models_isolated

    jobs = _speed_jobs(plan)
    timed, slowest, monitor = [], 0.0, LoadMonitor().start()  # timed: in the order timed
    for index, (name, preset) in enumerate(jobs):
        if timed and not progress.fits(slowest):
            for left, left_preset in jobs[index:]:
                progress.leave_out(
                    f"speed of {left}" + ("" if left_preset == PLAIN else f" under {left_preset}"),
                    f"{BUDGET_REASON}: the next timing would take ~{slowest:.0f} s",
                )
            break
        started = progress.elapsed
        (m,) = measure_models_isolated([name], plan.speed_batch, preset, plan.device, plan.speed_protocol,
                                       plan.scan_backend, allocator=plan.allocator)  # fmt: skip
        slowest = max(slowest, progress.elapsed - started)
        progress(
            f"speed {m.model} on {m.device}{'' if preset == PLAIN else f', {m.runtime}'}: {m.result.median:.3g} "
            f"samples/s (IQR {m.result.iqr:.2g}, batch {m.batch}, protocol {m.result.protocol})"
        )
        timed.append(m)
    load = progress.run_log.load = monitor.stop()
    progress(f"load during the timings: {load.describe()}" + (" (ratios flagged)" if load.busy else ""))
    # each timing divided by the reference's under the same preset (the reference is timed first under each)
    ratios = {p: speed_ratios([m for m in timed if m.preset.name == p], plan.speed_reference)
              for p in dict.fromkeys(m.preset.name for m in timed)}  # fmt: skip
    for m in timed:
        record_fps(store, m, ratios[m.preset.name][m.model], plan.speed_reference)
    store.record(
        table=LOAD_TABLE,
        row="report --run timings",
        model=", ".join(dict.fromkeys(m.model for m in timed)),
        metric=LOAD_METRIC,
        measured=load.others_cores,
        status="measured",
        status_reason=load.describe(),
        device=plan.device,
        unit="cores used by other processes",
        notes=f"busy (> {BUSY_CORES:g} core taken): ratios flagged" if load.busy else "",
    )


class _Repeated:
    """A data set seen ``times`` times per epoch (index i is item i mod len); everything else is the data set's."""

    def __init__(self, dataset, times: int):
        self.dataset, self.times = dataset, times

    def __len__(self) -> int:
        return len(self.dataset) * self.times

    def __getitem__(self, index: int):
        return self.dataset[index % len(self.dataset)]

    def __getattr__(self, name: str):
        if name == "dataset":  # not set yet (a copy being built): no recursion
            raise AttributeError(name)
        return getattr(self.dataset, name)


def _train_on_samples(store: ResultsStore, plan: RunPlan, progress: _Progress) -> None:
    """A few optimiser steps on the COCO-format samples, then evaluation on them: the pipeline works end to end."""
    from ...data.samples import samples_root

    coco = samples_root() / "coco"
    ann = coco / "test_coco.json"
    if not ann.is_file():
        progress(f"training on samples skipped: pose samples not found at {coco} (set MAMKPD_SAMPLES)")
        return
    from ...engine import EvalConfig, TrainConfig, evaluate_checkpoint, train
    from ...engine.trainer import build_datasets

    epochs = max(1, plan.train_epochs // plan.train_passes_per_epoch)
    with tempfile.TemporaryDirectory(prefix="mamkpd-report-run-") as out:
        config = TrainConfig(
            model=plan.train_model,
            model_kwargs=dict(plan.train_model_kwargs),
            scan_backend=plan.scan_backend,
            dataset="coco",
            train_ann_file=str(ann),
            train_image_dir=str(coco),
            augment=False,
            val_interval=0,
            epochs=epochs,
            lr=plan.train_lr,
            lr_steps=(int(epochs * 0.8),),
            batch_size=plan.train_batch,
            checkpoint_interval=0,
            seed=0,
            workers=0,
            device=plan.device,
            input_size=plan.train_input_size,
            warmup_iters=0,
            out_dir=out,
        )
        samples, _ = build_datasets(config)
        progress(
            f"training a reduced {plan.train_model} on {len(samples)} sample people: {epochs} epochs of "
            f"{plan.train_passes_per_epoch} passes (progress bars on stderr)"
        )
        # one epoch per call, resumed exactly from last.pth: an epoch's end is the safe point to stop at
        # when the next epoch would overrun the budget (the first one always runs)
        slowest, trained = 0.0, 0
        for epoch in range(1, epochs + 1):
            if trained and not progress.fits(slowest):
                progress.leave_out(
                    f"training epochs {epoch}-{epochs} of {epochs}",
                    f"{BUDGET_REASON}: an epoch takes ~{slowest:.0f} s; the evaluation below is of epoch {trained}",
                )
                break
            started = progress.elapsed
            resume = str(Path(out) / "last.pth") if trained else None
            step = dataclasses.replace(config, epochs=epoch, resume=resume)
            summary = train(step, train_set=_Repeated(samples, plan.train_passes_per_epoch)).summary()
            trained, slowest = epoch, max(slowest, progress.elapsed - started)
        checkpoint = summary["checkpoint"]
        progress(
            f"trained a reduced {plan.train_model} for {summary['global_step']} step(s) ({trained} of {epochs} "
            "epochs) on the COCO samples"
        )
        evaluation = evaluate_checkpoint(
            EvalConfig(
                checkpoint=checkpoint,
                dataset="coco",
                split="train",
                ann_file=str(ann),
                image_dir=str(coco),
                device=plan.device,
                scan_backend=plan.scan_backend,
                workers=0,
                batch_size=8,
                flip_test=False,
                results=str(Path(out) / "keypoints.json"),
            )
        )
        sha = sha256_of(checkpoint)
    metrics = evaluation.get("metrics", evaluation)
    for metric in ("AP", "AP50", "AP75", "AR"):
        if metric in metrics:
            store.record(
                table="samples",
                row=f"{plan.train_model} on the COCO samples",
                model=plan.train_model,
                metric=metric,
                measured=float(metrics[metric]),
                status="measured",
                status_reason="pipeline check: a reduced model memorising the 4 sample images (training-set AP), "
                "not comparable to the paper",
                dataset="coco",
                split="samples (test_coco.json)",
                input_size=plan.train_input_size,
                box_source="ground truth",
                flip_test=False,
                batch_size=plan.train_batch,
                device=plan.device,
                checkpoint_sha256=sha,
                seed=0,
                notes=f"{summary['global_step']} optimiser steps ({trained} of {epochs} epochs), model overrides "
                f"{plan.train_model_kwargs}",
            )
    progress(f"evaluated on the samples: AP {metrics.get('AP', float('nan')):.3f} (pipeline check only)")


def _record_baseline_findings(store: ResultsStore, progress: _Progress) -> None:
    try:
        from ..findings.baseline_findings import BASELINE_FINDERS
    except ImportError as exc:
        progress(f"baseline findings skipped: {exc}")
        return
    for finder in tqdm(BASELINE_FINDERS, desc="baseline findings", unit="finding", dynamic_ncols=True):
        f = finder()
        store.record_finding(
            table="table2",
            row=f["id"],
            model="baselines",
            title=f["title"],
            text=f"{f['finding']} (protocol: {f['protocol']})",
        )
    progress(f"{len(BASELINE_FINDERS)} baseline findings recorded")


def _record_unavailable(store: ResultsStore, plan: RunPlan, progress: _Progress) -> None:
    """A ``not run`` row with its reason for every accuracy cell and every GPU timing this machine cannot do."""
    cuda = cuda_status()
    for name, spec in TABLES.items():
        if not spec.accuracy_columns:
            continue
        data = dataset_status(spec.dataset, plan.data_roots.get(spec.dataset), spec.split)
        reason = data.reason or "accuracy is measured by `mamkpd reproduce` and the pytest reproductions"
        for r in load_table(name).itertuples():
            if not r.registry_name:
                continue
            for metric in spec.accuracy_columns:
                store.record(
                    table=name,
                    row=r.row,
                    model=r.registry_name,
                    metric=metric,
                    paper=getattr(r, metric),
                    status="not run",
                    status_reason=reason,
                    dataset=spec.dataset,
                    split=spec.split,
                )
    if not cuda.ok:
        timed = plan.timed_models
        t2 = load_table("table2")
        for r in t2[(t2["registry_name"] != "") & t2["fps"].notna()].itertuples():
            if r.registry_name not in timed:
                store.record(
                    table="table2",
                    row=r.row,
                    model=r.registry_name,
                    metric="fps",
                    paper=r.fps,
                    status="not run",
                    status_reason=f"{cuda.reason}; report --run times only {', '.join(timed)} on the CPU "
                    "(time another with `mamkpd fps --model NAME`)",
                )
    progress("recorded the reasons for what this machine cannot measure")


BudgetedStep = Callable[[ResultsStore, RunPlan, _Progress], None]


def run_measurements(
    store_path: str | os.PathLike,
    plan: RunPlan | None = None,
    echo: Callable[[str], None] = print,
    later_steps: Sequence[tuple[str, BudgetedStep]] = (),
) -> RunLog:
    """Run every step of ``plan`` into the store: the load-independent ones first and always, then the timing
    and the training within the budget, then ``later_steps`` (``(title, step(store, plan, progress))``, steps
    of a higher layer such as :mod:`mamkpd.report`'s ONNX Runtime timings) in what the budget leaves. Returns
    the :class:`RunLog`."""
    plan = plan or RunPlan()
    store = ResultsStore(store_path)
    check_plan(plan, store)
    run_log = RunLog()
    progress = _Progress(echo, plan.budget_s, run_log)
    always: list[tuple[str, Callable[[], None]]] = [
        ("reasons for what cannot run here", lambda: _record_unavailable(store, plan, progress)),
        ("params and GFLOPs of every paper row", lambda: _measure_complexity(store, progress, plan.beside_models)),
        ("GFLOPs with the HRNet repository's counter", lambda: _measure_hrnet_counter(store, progress)),
    ]
    if plan.readings:
        always.append(("Table 1 under alternative readings", lambda: _measure_readings(store, progress)))
    if plan.baseline_findings:
        always.append(("baseline findings", lambda: _record_baseline_findings(store, progress)))
    budgeted: list[tuple[str, Callable[[], None]]] = [
        ("CPU speed with HRNet-W32 as reference", lambda: _measure_speed(store, plan, progress)),
        ("short training and evaluation on the pose samples", lambda: _train_on_samples(store, plan, progress)),
        *((title, lambda step=step: step(store, plan, progress)) for title, step in later_steps),
    ]
    for title, step in always:
        _run_step(title, step, progress)
    budget_start = progress.elapsed  # the budget is for the timing and the training, whatever the rest took
    progress.budget_s = plan.budget_s + budget_start
    for title, step in budgeted:
        if progress.left_s <= 0:
            run_log.lines.append(f"- {title}: skipped, {BUDGET_REASON}")
            progress.leave_out(title)
            continue
        _run_step(title, step, progress)
    run_log.lines.append(
        f"- total {progress.elapsed:.0f} s on {os.cpu_count()} CPU core(s): {budget_start:.0f} s for the counts, "
        f"findings and reasons (always run), the rest for timing and training (budget {plan.budget_s:.0f} s)"
    )
    if run_log.load is not None:
        flag = " **Speed ratios flagged: measured on a busy machine.**" if run_log.load.busy else ""
        run_log.lines.append(f"- load during the timings: {run_log.load.describe()}.{flag}")
    return run_log


def _run_step(title: str, step: Callable[[], None], progress: _Progress) -> None:
    """One step, logged; a failure is logged (and listed as left out) and the next step runs."""
    started = progress.elapsed
    progress(f"{title} ...")
    try:
        step()
        progress.run_log.lines.append(f"- {title}: done in {progress.elapsed - started:.0f} s")
    except (RuntimeError, ValueError, KeyError, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        progress.run_log.lines.append(f"- {title}: failed: {first}")
        progress.leave_out(title, f"failed: {first}")
