"""``reports/REPORT.md`` and one CSV per paper table, written from the results store."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from ..engine.checkpoint import atomic_write
from ..harness.results import ResultsStore
from ..paper import TABLES, load_table
from .compare import NOT_IN_PAPER, RATIO_METRIC, compare_table, row_status, table_metrics
from .findings import Finding, collect_findings

__all__ = ["Report", "build_report", "run_log_section", "write_report"]

_MARK = {"reproduced": "✓", "differs": "✗", "measured": "·"}
_HEADERS = {"params_m": "#Params (M)", "gflops": "GFLOPs", "fps": "FPS", RATIO_METRIC: "× HRNet-W32 FPS"}


@dataclass
class Report:
    """Everything the report shows, before it is written."""

    store_path: Path
    store: pd.DataFrame
    torn_lines: list[tuple[int, str]]
    comparisons: dict[str, pd.DataFrame]
    findings: list[Finding]
    extra_sections: list[tuple[str, str]] = field(default_factory=list)  # (title, markdown) from a --run


def build_report(store_path: str | os.PathLike) -> Report:
    """Read the store and compare every paper table with it."""
    contents = ResultsStore(store_path).read()
    comparisons = {name: compare_table(name, contents.frame) for name in TABLES}
    return Report(
        Path(store_path),
        contents.frame,
        contents.torn_lines,
        comparisons,
        collect_findings(comparisons, contents.frame),
    )


def _num(x: float, printed: bool = False) -> str:
    """Paper values as the paper prints them (one decimal), ours to three significant digits."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    if abs(x) >= 1000:
        return f"{x:.0f}"
    if printed and abs(x) >= 1:
        return f"{x:.1f}"
    return f"{x:.3g}" if abs(x) < 100 else f"{x:.1f}"


def _cell(c: pd.Series) -> str:
    if c["status"] == NOT_IN_PAPER:
        return "-"
    ours = "—" if pd.isna(c["ours"]) else _num(c["ours"])
    return f"{_num(c['paper'], printed=True)} / {ours}{(' ' + _MARK[c['status']]) if c['status'] in _MARK else ''}"


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(map(esc, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(esc, r)) + " |" for r in rows]
    return "\n".join(lines)


def _table_section(name: str, cells: pd.DataFrame) -> str:
    spec = TABLES[name]
    metrics = table_metrics(name)
    header = ["Method", *[_HEADERS.get(m, m) for m in metrics], "Status"]
    rows = []
    for (_row, method), group in cells.groupby(["row", "method"], sort=False):
        by_metric = group.set_index("metric")
        rows.append([method, *[_cell(by_metric.loc[m]) for m in metrics], row_status(group)])
    protocols = cells.loc[cells["protocol"].notna() & (cells["protocol"] != ""), ["metric", "protocol"]]
    protocols = protocols.drop_duplicates()
    proto_lines = "\n".join(f"- `{m}`: {p}" for m, p in protocols.itertuples(index=False)) or "- nothing measured"
    return (
        f"### {spec.title}\n\nCells: paper / ours, ✓ reproduced within the recorded tolerance, ✗ differs, "
        f"· measured without a judgement (no paper value, or a figure from another GPU).\n\n"
        f"{_md_table(header, rows)}\n\nMeasured under:\n{proto_lines}\n"
    )


def _readings_section(store: pd.DataFrame) -> str:
    r = store[(store["table"] == "table1") & (store["metric"].isin(["params_m", "gflops"]))]
    if not len(r):
        return "No Table 1 complexity measurements in the store.\n"
    paper = load_table("table1").set_index("row")
    latest = r.sort_values("timestamp").drop_duplicates(["row", "reading", "metric"], keep="last")
    piv = latest.pivot_table(index=["row", "reading"], columns="metric", values="measured_value", aggfunc="first")
    rows = []
    for (row, reading), values in piv.iterrows():
        cols = []
        for metric in ("params_m", "gflops"):
            ours, printed = values.get(metric, math.nan), paper.loc[row, metric]
            cols.append(f"{_num(ours)} ({(ours - printed) / printed * 100:+.0f}%)" if not pd.isna(ours) else "—")
        rows.append([row, reading or "default (the suite's reading)", *cols])
    return (
        _md_table(["Model", "Reading", "#Params (M) (vs paper)", "GFLOPs (vs paper)"], rows)
        + "\n\nPaper: "
        + "; ".join(f"{i} {paper.loc[i, 'params_m']}M / {paper.loc[i, 'gflops']} GFLOPs" for i in paper.index)
        + "\n"
    )


def _speed_section(store: pd.DataFrame) -> str:
    fps = store[store["metric"] == "fps"].sort_values("timestamp")
    if not len(fps):
        return "No timings in the store.\n"
    ratios = store[store["metric"].str.startswith("fps_ratio_to_")]
    rows = []
    for r in fps.itertuples():
        ratio = ratios[
            (ratios["model"] == r.model)
            & (ratios["timestamp"] == r.timestamp)
            & (ratios["device"] == r.device)
            & (ratios["batch_size"] == r.batch_size)
        ]
        rows.append(
            [
                r.model,
                r.gpu_name or f"CPU ({r.cpu_model}, {r.cpu_count} cores)",
                f"{r.runtime or 'eager'}{'/' + r.provider if r.provider else ''}",
                r.precision,
                _num(r.batch_size),
                r.scan_backend or "-",
                _num(r.median),
                _num(r.iqr),
                f"{_num(ratio['measured_value'].iloc[-1])} ({ratio['metric'].iloc[-1][len('fps_ratio_to_') :]})"
                if len(ratio)
                else "—",
                r.sample,
                "yes" if r.throttled == "true" else "",
            ]
        )
    return (
        _md_table(
            [
                "Model",
                "Device",
                "Runtime",
                "Precision",
                "Batch",
                "Scan",
                "samples/s (median)",
                "IQR",
                "Ratio (to)",
                "One sample",
                "Throttled",
            ],
            rows,
        )
        + "\n"
    )


def _samples_section(store: pd.DataFrame) -> str:
    rows = store[store["table"] == "samples"].sort_values("timestamp")
    if not len(rows):
        return "No end-to-end run on the samples in the store.\n"
    body = [
        [r.row, r.metric, _num(r.measured_value), r.split, r.input_size, r.device, r.notes, r.status_reason]
        for r in rows.itertuples()
    ]
    return _md_table(["Run", "Metric", "Measured", "Split", "Input", "Device", "Notes", "What it shows"], body) + "\n"


def render_markdown(report: Report, figures: dict[str, str], figures_note: str = "") -> str:
    store = report.store
    counts = pd.concat(report.comparisons.values())["status"].value_counts()
    machines = sorted({(r.gpu_name or f"CPU {r.cpu_model}") for r in store.itertuples()} - {"CPU "})
    commits = sorted({c[:8] for c in store["git_commit"] if c})
    out = [
        "# MamKPD reproduction report\n",
        f"Generated {datetime.now(timezone.utc).isoformat(timespec='seconds')} from `{report.store_path}` "
        f"({len(store)} stored rows; machines: {', '.join(machines) or 'none'}; suite commits: "
        f"{', '.join(commits) or 'unknown'}).\n",
        "Paper cells: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + ".\n",
    ]
    if report.torn_lines:
        out.append(
            f"**Warning:** the store has {len(report.torn_lines)} torn line(s) (lines "
            f"{', '.join(str(n) for n, _ in report.torn_lines)}), skipped: a write was cut short.\n"
        )
    out.append("## Findings\n")
    out += [f"- **{f.title}.** {f.text} _(from: {f.source})_" for f in report.findings] or ["- none yet\n"]
    out.append("")
    for title, body in report.extra_sections:
        out += [f"## {title}\n", body]
    out.append("## Tables\n")
    out += [_table_section(name, cells) for name, cells in report.comparisons.items()]
    out += ["## Table 1 under alternative architecture readings\n", _readings_section(store)]
    out += ["## Speed measurements (all presets and devices)\n", _speed_section(store)]
    out += ["## End-to-end training and evaluation on the built-in samples\n", _samples_section(store)]
    out.append("## Figures\n")
    out += [f"![{title}]({path})\n" for title, path in figures.items()]
    if figures_note:
        out.append(figures_note + "\n")
    return "\n".join(out) + "\n"


def run_log_section(run_log: list[str]) -> tuple[str, str]:
    """The section listing what ``mamkpd report --run`` measured (the log of the harness's ``run_measurements``)."""
    return ("What `mamkpd report --run` measured on this machine", "\n".join(run_log) + "\n")


def write_report(
    store_path: str | os.PathLike,
    out_dir: str | os.PathLike = "reports",
    extra_sections: list[tuple[str, str]] | None = None,
) -> dict[str, Path]:
    """Write REPORT.md, one CSV per paper table and the figures into ``out_dir``; return their paths."""
    report = build_report(store_path)
    report.extra_sections = list(extra_sections or [])
    out = Path(out_dir)
    written: dict[str, Path] = {}
    for name, cells in report.comparisons.items():
        written[name] = atomic_write(out / f"{name}.csv", lambda h, c=cells: c.to_csv(h, index=False), mode="w")
    figures, figures_note = {}, ""
    try:
        from .plots import plot_fig1, plot_fps_vs_ap
    except ImportError as exc:  # matplotlib missing (a bare GPU machine): the report without figures, saying why
        figures_note = f"No figures: matplotlib does not import here ({exc}); the tables above hold every value."
    else:
        written["fig1"] = plot_fig1(report.comparisons["table2"], out / "fig1_ap_vs_params.png")
        written["fps_vs_ap"] = plot_fps_vs_ap(report.comparisons["table2"], out / "fps_vs_ap.png")
        figures = {
            "Figure 1: AP against parameters, paper and measured": written["fig1"].name,
            "FPS against AP": written["fps_vs_ap"].name,
        }
    text = render_markdown(report, figures, figures_note)
    written["report"] = atomic_write(out / "REPORT.md", lambda h: h.write(text), mode="w")
    return written
