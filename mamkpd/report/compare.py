"""Put the results store beside the paper: one comparison per (table, row, metric) cell.

A cell's status is the one its measurement was recorded with (the reproduction that measured it
chose the tolerance), or ``not run`` with the reason recorded by whatever skipped it, or a default
reason saying what is missing.
"""

from __future__ import annotations

import math

import pandas as pd

from ..harness.store.results import FINDING_METRIC, STATUS_MEASURED, STATUS_NOT_RUN
from ..paper import TABLES, compared_model, load_table

__all__ = [
    "COMPARISON_COLUMNS",
    "RATIO_METRIC",
    "NOT_IN_PAPER",
    "compare_table",
    "pick_measurement",
    "protocol_summary",
    "row_status",
    "table_metrics",
]

RATIO_METRIC = "fps_ratio_to_hrnet_w32"  # Table 2's speeds relative to HRNet-W32, the comparable form
NOT_IN_PAPER = "not in paper"  # the paper prints "-" and nothing was measured
MAC_CONVENTION = "MAC"

COMPARISON_COLUMNS = (
    "table",
    "row",
    "method",
    "model",
    "metric",
    "paper",
    "ours",
    "delta",
    "delta_pct",
    "tolerance",
    "tolerance_kind",
    "status",
    "reason",
    "protocol",
    "device",
    "gpu_name",
    "cpu_model",
    "batch_size",
    "precision",
    "scan_backend",
    "flops_convention",
    "input_size",
    "dataset",
    "split",
    "box_source",
    "flip_test",
    "median",
    "iqr",
    "unit",
    "sample",
    "throttled",
    "checkpoint_sha256",
    "git_commit",
    "timestamp",
)
_CARRIED = COMPARISON_COLUMNS[COMPARISON_COLUMNS.index("device") :]


def table_metrics(name: str) -> list[str]:
    """The metric columns of a paper table, in print order (Table 2 gains the ratio to HRNet-W32)."""
    spec = TABLES[name]
    metrics = [*spec.complexity_columns, *spec.speed_columns, *spec.accuracy_columns]
    return metrics + ([RATIO_METRIC] if "fps" in spec.speed_columns else [])


def _paper_values(name: str) -> pd.DataFrame:
    paper = load_table(name)
    if "fps" in paper.columns:
        hrnet = paper.loc[paper["registry_name"] == "hrnet_w32", "fps"]
        paper[RATIO_METRIC] = paper["fps"] / float(hrnet.iloc[0]) if len(hrnet) else math.nan
    return paper


def _present(value) -> bool:
    return not (value is None or value == "" or (isinstance(value, float) and math.isnan(value)))


def protocol_summary(m: pd.Series) -> str:
    """One line saying how a stored measurement was made (only the fields that were recorded)."""
    parts = []
    where = m.get("gpu_name") or (f"CPU {m.get('cpu_model')}" if m.get("device", "") in ("", "cpu") else "")
    if m["metric"] in ("params_m", "gflops"):
        conv = m.get("flops_convention") or ""
        parts.append(f"counter {conv}" if conv else "")
        parts.append(f"input {m.get('input_size')}" if m.get("input_size") else "")
        parts.append(f"scan {m.get('scan_backend')}" if m.get("scan_backend") else "")
    elif m["metric"] == "fps" or str(m["metric"]).startswith("fps_ratio"):
        parts += [
            where,
            f"{m.get('runtime') or 'eager'}" + (f"/{m['provider']}" if m.get("provider") else ""),
            m.get("precision") or "",
            "channels_last" if m.get("channels_last") == "true" else "",
            f"compile {m['compile_mode']}" if m.get("compile_mode") else "",
            "cudnn.benchmark" if m.get("cudnn_benchmark") == "true" else "",
            "TF32" if m.get("tf32") == "true" else "",
            f"batch {int(m['batch_size'])}" if _present(m.get("batch_size")) else "",
            f"input {m.get('input_size')}" if m.get("input_size") else "",
            f"scan {m['scan_backend']}" if m.get("scan_backend") else "",
            # the spread is a result, shown beside the median; the protocol is how many rounds gave it
            f"median of {int(m['timed_rounds'])} rounds" if _present(m.get("timed_rounds")) else "",
            f"1 sample = {m['sample']}" if m.get("sample") else "",
            "THROTTLED" if m.get("throttled") == "true" else "",
        ]
    else:
        parts += [
            f"{m.get('dataset')} {m.get('split')}".strip(),
            f"input {m.get('input_size')}" if m.get("input_size") else "",
            f"boxes: {m['box_source']}" if m.get("box_source") else "",
            "flip test" if m.get("flip_test") == "true" else ("no flip" if m.get("flip_test") == "false" else ""),
            f"checkpoint {str(m['checkpoint_sha256'])[:12]}" if m.get("checkpoint_sha256") else "",
            where,
        ]
    parts.append(
        f"commit {str(m['git_commit'])[:8]}{'+dirty' if m.get('git_dirty') == 'true' else ''}"
        if m.get("git_commit")
        else ""
    )
    return "; ".join(p for p in parts if p)


def pick_measurement(candidates: pd.DataFrame, metric: str) -> pd.Series:
    """The measurement a cell shows: GPU before CPU and PyTorch eager before other runtimes (the paper's) for
    speeds, fvcore MACs first for GFLOPs, then the latest."""
    speed = metric.startswith("fps")
    ranked = candidates.assign(
        _gpu=(candidates["device"].str.startswith("cuda")).astype(int) if speed else 0,
        _eager=candidates["runtime"].isin(("", "eager")).astype(int) if speed else 0,
        _mac=candidates["flops_convention"].str.startswith(MAC_CONVENTION).astype(int) if metric == "gflops" else 0,
    ).sort_values(["_gpu", "_eager", "_mac", "timestamp"], kind="stable")
    return ranked.iloc[-1]


def _default_reason(model: str, notes: str = "") -> str:
    if not model:  # the paper table's notes on the row say why (no public code, or code not ported)
        return "method not implemented by the suite" + (f": {notes}" if notes else "")
    return f"no measurement of {model} in the results store"


def compare_table(name: str, store: pd.DataFrame) -> pd.DataFrame:
    """Long-form comparison of paper table ``name`` with the store (one row per paper cell).

    A cell is compared with measurements of the model :func:`mamkpd.paper.compared_model` names for it
    (the row's registered model unless the paper table says another variant printed that figure)."""
    paper = _paper_values(name)
    mine = store[(store["table"] == name) & (store["reading"].fillna("") == "") & (store["metric"] != FINDING_METRIC)]
    records = []
    for _, prow in paper.iterrows():
        row_meas = mine[mine["row"] == prow["row"]]
        for metric in table_metrics(name):
            paper_value = prow.get(metric, math.nan)
            model = compared_model(prow, metric)
            cell = dict(
                table=name,
                row=prow["row"],
                method=prow["method"],
                model=model,
                metric=metric,
                paper=paper_value,
            )
            cands = row_meas[(row_meas["metric"] == metric) & (row_meas["model"] == model)]
            done = cands[cands["status"] != STATUS_NOT_RUN]
            if len(done):
                m = pick_measurement(done, metric)
                ours = float(m["measured_value"])
                delta = ours - paper_value if _present(paper_value) else math.nan
                cell.update(
                    ours=ours,
                    delta=delta,
                    delta_pct=100.0 * delta / paper_value if _present(paper_value) and paper_value else math.nan,
                    tolerance=m["tolerance"],
                    tolerance_kind=m["tolerance_kind"],
                    status=m["status"],
                    reason=m["status_reason"],
                    protocol=protocol_summary(m),
                    **{c: m.get(c, "") for c in _CARRIED},
                )
            elif len(cands):
                m = cands.sort_values("timestamp", kind="stable").iloc[-1]
                cell.update(status=STATUS_NOT_RUN, reason=m["status_reason"] or "recorded as not run")
            elif _present(paper_value):
                cell.update(status=STATUS_NOT_RUN, reason=_default_reason(model, prow.get("notes", "")))
            else:
                cell.update(status=NOT_IN_PAPER, reason="")
            records.append(cell)
    frame = pd.DataFrame.from_records(records).reindex(columns=list(COMPARISON_COLUMNS))
    return frame


def row_status(cells: pd.DataFrame) -> str:
    """One status for a paper row: what its cells add up to, with the reason where nothing ran."""
    counts = cells["status"].value_counts()
    judged = counts.get("reproduced", 0) + counts.get("differs", 0)
    parts = []
    if counts.get("differs", 0):
        parts.append(f"differs ({counts['differs']}/{judged})")
    elif judged:
        parts.append(f"reproduced ({judged}/{judged})")
    if counts.get(STATUS_MEASURED, 0):
        parts.append(f"measured ({counts[STATUS_MEASURED]})")
    not_run = cells[cells["status"] == STATUS_NOT_RUN]
    if len(not_run):
        reasons = not_run["reason"].value_counts().index.tolist()
        parts.append(
            f"not run ({len(not_run)}): {reasons[0]}"
            + (f" (+{len(reasons) - 1} other reasons)" if len(reasons) > 1 else "")
        )
    return "; ".join(parts) or NOT_IN_PAPER
