"""Train and evaluate paper rows with each row's own recipe (``mamkpd reproduce`` and the reproductions).

Training calls :func:`mamkpd.engine.train` in this process (on several GPUs, in processes that
:func:`mamkpd.harness.jobs.launch.launch` starts under torchrun) into ``runs/reproduce/<table>/<row>`` with
``resume="auto"``, so an interrupted reproduction continues where it stopped; evaluation calls
:func:`mamkpd.engine.evaluate_checkpoint` on the best (else last) checkpoint and records every metric
the paper prints.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...engine.checkpoint_eval import EvalConfig, evaluate_checkpoint
from ...engine.config import TrainConfig
from ...models import model_info
from ...paper import TABLES, load_table
from ...paper.tolerances import tolerance_for
from .availability import checkpoint_status, dataset_status, reproduce_dir, sha256_of, slug
from .launch import TrainJob, launch

__all__ = [
    "Recipe",
    "recipe_for",
    "reproducible_rows",
    "train_config",
    "train_row",
    "evaluate_recipe",
    "reproduce_row",
    "accuracy_tables",
    "row_requirements",
]

# The paper's recipe (section 4.1): Adam, lr 1e-3, ×0.1 at epochs 170 and 200, 210 epochs; the
# input sizes it does not state are the data sets' standard ones (COCO 256×192, MPII and AP-10K 256×256).
PAPER_EPOCHS = 210
# ViTPose's own recipe is AdamW with layer-wise lr decay; TrainConfig has Adam only, so ViTPose rows train
# with the paper's recipe (and, as every row, with their model's own codec), and the report says so.
_DEVIATIONS = {"vitpose": "trained with Adam (ViTPose's recipe uses AdamW with layer-wise lr decay)"}


@dataclass(frozen=True)
class Recipe:
    table: str
    row: str
    model: str
    dataset: str
    split: str
    input_size: tuple[int, int] | None  # None: the data set's standard size
    codec: str = "msra"
    epochs: int = PAPER_EPOCHS
    deviations: tuple[str, ...] = field(default_factory=tuple)

    def out_dir(self) -> Path:
        return reproduce_dir() / self.table / slug(self.row)


def recipe_for(table: str, row: str) -> Recipe:
    """The recipe of paper row ``row`` of ``table`` (an accuracy table: Tables 2–5 or Figure 3)."""
    spec = TABLES.get(table)
    if spec is None or not spec.accuracy_columns:
        raise ValueError(
            f"{table} has no accuracy to reproduce; choose one of "
            f"{', '.join(n for n, s in TABLES.items() if s.accuracy_columns)}"
        )
    rows = load_table(table).set_index("row")
    if row not in rows.index:
        raise ValueError(f"{table} has no row {row!r}; rows: {', '.join(rows.index)}")
    model = rows.loc[row, "registry_name"]
    if not model:
        raise ValueError(f"{table} row {row!r} ({rows.loc[row, 'method']}) is not implemented by the suite")
    info = model_info(model)
    deviations = tuple(d for f, d in _DEVIATIONS.items() if f == info.family)
    if not info.trains_top_down:
        deviations += (
            f"{model} is not a top-down heatmap model (one sample: {info.sample}; codec {info.codec!r}); "
            "the top-down trainer does not train it",
        )
    return Recipe(table, row, model, spec.dataset, spec.split, None, info.codec, deviations=deviations)


def accuracy_tables() -> list[str]:
    """The tables (and figure) whose rows ``mamkpd reproduce`` trains and evaluates."""
    return [name for name, spec in TABLES.items() if spec.accuracy_columns]


def row_requirements(table: str) -> list[tuple[str, str, str]]:
    """(row, model or "-", what reproducing it takes) for every row of accuracy table ``table``."""
    from ...data import DATASETS
    from .availability import CHECKPOINT_DIR_ENV

    if table not in accuracy_tables():
        raise ValueError(f"no accuracy table {table!r}; choose one of {', '.join(accuracy_tables())}")
    spec = TABLES[table]
    env = DATASETS[spec.dataset].default_root_env
    data = f"{spec.dataset} {spec.split} data (--data-root or ${env})"
    rows = []
    for _, paper_row in load_table(table).iterrows():
        row, model = paper_row["row"], paper_row["registry_name"]
        if not model:
            rows.append((row, "-", "not implemented by the suite (no registered model)"))
            continue
        recipe = recipe_for(table, row)
        blocked = [d for d in recipe.deviations if "does not train" in d]
        if blocked:
            rows.append((row, model, f"not run by `mamkpd reproduce`: {blocked[0]}"))
            continue
        rows.append(
            (
                row,
                model,
                f"{data}; a checkpoint ({recipe.out_dir() / 'best.pth'} or ${CHECKPOINT_DIR_ENV}/{model}_"
                f"{recipe.dataset}.pth), else a {recipe.epochs}-epoch training (a CUDA GPU; --gpus N for several)",
            )
        )
    return rows


def reproducible_rows(table: str) -> list[str]:
    """Rows of ``table`` with a registered model."""
    t = load_table(table)
    return t.loc[t["registry_name"] != "", "row"].tolist()


def train_config(recipe: Recipe, data_root: str | os.PathLike, batch_size: int = 64, **overrides: Any) -> TrainConfig:
    """The training run of ``recipe`` (resumable: ``resume="auto"``); ``overrides`` set other TrainConfig fields."""
    return TrainConfig(
        model=recipe.model,
        dataset=recipe.dataset,
        data_root=str(data_root),
        codec=recipe.codec,
        epochs=recipe.epochs,
        batch_size=batch_size,
        out_dir=str(recipe.out_dir()),
        resume="auto",
        input_size=recipe.input_size,
        **overrides,
    )


def train_row(
    recipe: Recipe, data_root: str | os.PathLike, gpus: int = 1, batch_size: int = 64, **overrides: Any
) -> Path:
    """Train (or resume) ``recipe`` and return its best (else last) checkpoint; several GPUs under torchrun."""
    cfg = train_config(recipe, data_root, batch_size, **overrides)
    if gpus > 1:
        summary = launch(TrainJob(cfg), processes=gpus)
    else:
        from ...engine.trainer import train

        summary = train(cfg).summary()
    return Path(summary.get("best_checkpoint") or summary["checkpoint"])


def _paper_metric_values(dataset: str, metrics: dict[str, float]) -> dict[str, float]:
    """Evaluator output in the paper's columns and units (COCO-style AP as percentages)."""
    if dataset == "mpii":
        return {k.lower(): v for k, v in metrics.items()}
    return {k: 100.0 * v for k, v in metrics.items()}


def evaluate_recipe(
    recipe: Recipe,
    data_root: str | os.PathLike,
    checkpoint: str | os.PathLike,
    record: Callable[..., dict],
    box_file: str | None = None,
    scan_backend: str = "auto",
) -> list[dict]:
    """Evaluate ``checkpoint`` on the row's data set and record each metric the paper prints."""
    report = evaluate_checkpoint(
        EvalConfig(
            checkpoint=str(checkpoint),
            dataset=recipe.dataset,
            model=recipe.model,
            data_root=str(data_root),
            split=recipe.split,
            codec=recipe.codec,
            box_file=box_file,
            scan_backend=scan_backend,
        )
    )
    values = _paper_metric_values(recipe.dataset, report["metrics"])
    protocol = report["protocol"]
    paper = load_table(recipe.table).set_index("row").loc[recipe.row]
    rows = []
    for metric in TABLES[recipe.table].accuracy_columns:
        if metric not in values:
            continue
        tol, kind = tolerance_for(recipe.table, metric, model_info(recipe.model).tolerance_class)
        rows.append(
            record(
                table=recipe.table,
                row=recipe.row,
                model=recipe.model,
                metric=metric,
                paper=float(paper[metric]),
                measured=values[metric],
                tolerance=tol,
                tolerance_kind=kind,
                dataset=recipe.dataset,
                split=recipe.split,
                input_size=tuple(protocol.get("input_size", ())),
                box_source=protocol.get("box_source"),
                flip_test=protocol.get("flip_test"),
                scan_backend=protocol.get("scan_backend") or "",
                device=protocol.get("device", ""),
                checkpoint_sha256=sha256_of(checkpoint),
                notes="; ".join(recipe.deviations),
            )
        )
    return rows


def reproduce_row(
    table: str,
    row: str,
    data_root: str | os.PathLike | None,
    store,
    gpus: int = 1,
    batch_size: int = 64,
    echo: Callable[[str], None] = print,
    scan_backend: str = "auto",
) -> list[dict]:
    """Train when no checkpoint exists, then evaluate; a row that cannot run is recorded as not run. Models
    with a selective scan train and evaluate on ``scan_backend``; each record names the one that ran."""
    recipe = recipe_for(table, row)
    data = dataset_status(recipe.dataset, data_root, recipe.split)
    reason = data.reason or ("; ".join(d for d in recipe.deviations if "does not train" in d))
    if reason:
        echo(f"{table} {row}: skipped: {reason}")
        return [
            store.record(
                table=table,
                row=row,
                model=recipe.model,
                metric=m,
                status="not run",
                status_reason=reason,
                dataset=recipe.dataset,
                split=recipe.split,
            )
            for m in TABLES[table].accuracy_columns
        ]
    checkpoint = checkpoint_status(recipe.model, recipe.dataset, table, row)
    if checkpoint.ok:
        path = checkpoint.path
        echo(f"{table} {row}: evaluating existing checkpoint {path}")
    else:
        echo(
            f"{table} {row}: training {recipe.model} on {recipe.dataset} ({recipe.epochs} epochs, "
            f"resumable) into {recipe.out_dir()}"
        )
        path = train_row(recipe, data.path, gpus=gpus, batch_size=batch_size, scan_backend=scan_backend)
    return evaluate_recipe(recipe, data.path, path, store.record, scan_backend=scan_backend)
