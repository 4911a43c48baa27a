"""What ``mamkpd report --run`` measures before the report is written: what this machine can, into the store.

On a CPU machine with no data sets this means: params and GFLOPs of every paper row (fvcore, and the
HRNet repository's counter for the rows the paper counted with it), Table 1 under the alternative
architecture readings, CPU speed of a few models with HRNet-W32 as the common reference, a short
training and evaluation on the built-in pose samples, the baselines' findings, and a ``not run`` row
with its reason for every accuracy cell. Steps run in order of importance under a time budget; a
step that would start after the budget is spent is recorded as skipped, with that reason. The report
(:mod:`mamkpd.report`) only renders what was stored, and the run log :func:`run_measurements` returns.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from ...models import model_info
from ...paper import TABLES, compared_model, load_table
from ...paper.tolerances import tolerance_for
from ..store.results import ResultsStore
from .availability import cuda_status, dataset_status, sha256_of

__all__ = ["RunPlan", "check_plan", "run_measurements", "worker_layout", "SAME_FUNCTION_REASON", "UNCOUNTED_MULTIPLIES"]

COMPLEXITY_SHARE = 0.5  # of the budget, for counting every row; speed, training and extras get the rest
TABLE1_ROWS = {"mamkpd_s": "MamKPD-Small", "mamkpd_b": "MamKPD-Base", "mamkpd_l": "MamKPD-Large"}
# a reading that, given the default's weights, computes the default's outputs changes only initialisation
SAME_FUNCTION_REASON = (
    "given the default's weights it computes the default's outputs (checked on a random input): it changes "
    "only how training starts, so no count can differ"
)
UNCOUNTED_MULTIPLIES = "uncounted_multiplies"  # metric: element-wise multiplies per sample, reading minus default


@dataclass
class RunPlan:
    """What ``report --run`` measures; the defaults fit a 2-core CPU machine in a few minutes."""

    speed_models: tuple[str, ...] = ("hrnet_w32", "mamkpd_s", "mamkpd_b")
    speed_reference: str = "hrnet_w32"
    speed_batch: int = 1
    speed_protocol: str = "smoke"
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
    budget_s: float = 300.0
    data_roots: dict[str, str] = field(default_factory=dict)  # dataset -> root, else the environment variables


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


class _Progress:
    def __init__(self, echo: Callable[[str], None], budget_s: float):
        self.start, self.echo, self.budget_s = time.monotonic(), echo, budget_s

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def over_budget(self, share: float = 1.0) -> bool:
        """Whether ``share`` of the budget is spent (the counting step stops at half, leaving time for the rest)."""
        return self.elapsed > share * self.budget_s

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
    share: float,
    what: str,
    describe: Callable[[object], str],
) -> dict:
    """Run ``(label, worker, args)`` jobs in worker processes as ``worker(threads, *args)``;
    stop submitting once ``share`` of the budget is spent. One progress line per finished job."""
    workers, threads = worker_layout()
    results, queue, pending = {}, list(jobs), {}
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        while queue or pending:
            while queue and len(pending) < workers and not progress.over_budget(share):
                label, worker, args = queue.pop(0)
                pending[pool.submit(worker, threads, *args)] = label
            if not pending:
                progress(f"{what}: budget spent, {len(queue)} left uncounted")
                break
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                label = pending.pop(future)
                result = results[label] = future.result()
                progress(f"{what} {len(results)}/{len(jobs)} {label}: {describe(result)}")
    return results


def _describe_count(c) -> str:
    return f"{c.params / 1e6:.2f}M params, {c.gflops:.2f} GFLOPs"


def _measure_complexity(store: ResultsStore, progress: _Progress) -> dict[str, object]:
    cells = _complexity_cells()
    models = list(dict.fromkeys(m for _, _, _, m in cells))
    paper = {n: load_table(n).set_index("row") for n in TABLES}
    jobs = [(m, _count_one, (m, {})) for m in models]
    measured = _run_parallel(jobs, progress, COMPLEXITY_SHARE, "complexity", _describe_count)
    for table, row, metric, model in cells:
        printed = paper[table].loc[row].get(metric, math.nan)
        printed = None if isinstance(printed, float) and math.isnan(printed) else float(printed)
        if model not in measured:
            store.record(
                table=table,
                row=row,
                model=model,
                metric=metric,
                paper=printed,
                status="not run",
                status_reason="report --run time budget spent before this model was counted",
            )
            continue
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
    effects = _run_parallel(jobs, progress, 1.0, "reading", _describe_reading)
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


def _measure_speed(store: ResultsStore, plan: RunPlan, progress: _Progress) -> None:
    from ..measure.fps import speed_ratios
    from ..store.fps_records import record_fps
    from .fps_isolated import measure_models_isolated

    names = list(dict.fromkeys([plan.speed_reference, *plan.speed_models]))
    done = measure_models_isolated(
        names,
        plan.speed_batch,
        "fp32",
        plan.device,
        plan.speed_protocol,
        plan.scan_backend,
        on_done=lambda m: progress(
            f"speed {m.model} on {m.device}: {m.result.median:.3g} samples/s "
            f"(IQR {m.result.iqr:.2g}, batch {m.batch}, protocol {m.result.protocol})"
        ),
    )
    ratios = speed_ratios(done, plan.speed_reference)
    for m in done:
        record_fps(store, m, ratios[m.model], plan.speed_reference)


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
        summary = train(config, train_set=_Repeated(samples, plan.train_passes_per_epoch)).summary()
        checkpoint = summary["checkpoint"]
        progress(f"trained a reduced {plan.train_model} for {summary['global_step']} step(s) on the COCO samples")
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
                notes=f"{summary['global_step']} optimiser steps, model overrides {plan.train_model_kwargs}",
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
        timed = list(dict.fromkeys([plan.speed_reference, *plan.speed_models]))
        t2 = load_table("table2")
        for r in t2[(t2["registry_name"] != "") & t2["fps"].notna()].itertuples():
            if r.registry_name not in plan.speed_models and r.registry_name != plan.speed_reference:
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


def run_measurements(
    store_path: str | os.PathLike, plan: RunPlan | None = None, echo: Callable[[str], None] = print
) -> list[str]:
    """Run every step of ``plan`` into the store; return the run log, one line per step (markdown items)."""
    plan = plan or RunPlan()
    store = ResultsStore(store_path)
    check_plan(plan, store)
    progress = _Progress(echo, plan.budget_s)
    steps: list[tuple[str, Callable[[], None]]] = [
        ("reasons for what cannot run here", lambda: _record_unavailable(store, plan, progress)),
        ("params and GFLOPs of every paper row", lambda: _measure_complexity(store, progress)),
        ("CPU speed with HRNet-W32 as reference", lambda: _measure_speed(store, plan, progress)),
        ("short training and evaluation on the pose samples", lambda: _train_on_samples(store, plan, progress)),
    ]
    if plan.readings:
        steps.append(("Table 1 under alternative readings", lambda: _measure_readings(store, progress)))
    steps.append(("GFLOPs with the HRNet repository's counter", lambda: _measure_hrnet_counter(store, progress)))
    if plan.baseline_findings:
        steps.append(("baseline findings", lambda: _record_baseline_findings(store, progress)))
    log = []
    for title, step in steps:
        if progress.over_budget():
            log.append(f"- {title}: skipped, the time budget of {plan.budget_s:.0f} s was spent")
            progress(f"skipped {title}: budget spent")
            continue
        started = progress.elapsed
        progress(f"{title} ...")
        try:
            step()
            log.append(f"- {title}: done in {progress.elapsed - started:.0f} s")
        except (RuntimeError, ValueError, KeyError, OSError) as exc:
            log.append(f"- {title}: failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
            progress(f"{title} failed: {exc}")
    log.append(f"- total {progress.elapsed:.0f} s on {os.cpu_count()} CPU core(s); budget {plan.budget_s:.0f} s")
    return log
