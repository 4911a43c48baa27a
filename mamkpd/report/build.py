"""``REPORT.md`` and one CSV per paper table, written from the results store.

A report is meant to be shared: it names no absolute path of the machine that wrote it (the store is
named relative to the report; any other absolute path in a reason or a note is cut to its last part),
and it says at which suite commit the measurements ran and whether that code had uncommitted changes.
The committed example (``reports/example-cpu``) carries a marker file; writing into a folder that
holds one needs ``force``.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from ..engine.checkpoint import atomic_write
from ..harness.jobs.run_plan import LOAD_METRIC, LOAD_TABLE, UNCOUNTED_MULTIPLIES, RunLog
from ..harness.measure.machine import environment_info
from ..harness.store.results import NUMERIC_COLUMNS, STATUS_NOT_RUN, ResultsStore, file_lock
from ..paper import TABLES, compared_model, load_table
from .compare import NOT_IN_PAPER, RATIO_METRIC, compare_table, row_status, table_metrics
from .findings import Finding, collect_findings
from .ledger import LedgerEntry, ledger, ledger_frame, ledger_section
from .markdown import md_table as _md_table
from .markdown import one_line
from .onnx_speed import ONNX_RUNTIME
from .rtmpose import rtmpose_section

__all__ = [
    "DEFAULT_OUT_DIR",
    "EXAMPLE_MARKER",
    "RUN_LOG_NAME",
    "Report",
    "build_report",
    "check_out_dir",
    "portable",
    "run_log_section",
    "write_report",
    "write_run_log",
]

DEFAULT_OUT_DIR = Path("runs/report")  # gitignored: a run never writes into the committed example unasked
EXAMPLE_MARKER = ".mamkpd-example"  # in a folder that holds a committed example report
RUN_LOG_NAME = "report-run.log"

_MARK = {"reproduced": "✓", "differs": "✗", "measured": "·"}
_HEADERS = {"params_m": "#Params (M)", "gflops": "GFLOPs", "fps": "FPS", RATIO_METRIC: "× HRNet-W32 FPS"}
_FOOTNOTE_MARKS = "¹²³⁴⁵⁶⁷⁸⁹"
# an absolute path: a slash (or ~/) that starts a word, after a space, a quote or a bracket (not "samples/s",
# "1/21", "https://", "experiments/*/resnet")
_ABSOLUTE_PATH = re.compile(r"(?<![^\s`'\"(\[=])~?/[^\s`'\"|,;()\[\]<>]+")
# what a spreadsheet runs as a formula at the start of a cell (OWASP, "CSV injection")
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass
class Report:
    """Everything the report shows, before it is written."""

    store_path: Path
    store: pd.DataFrame
    torn_lines: list[tuple[int, str]]
    comparisons: dict[str, pd.DataFrame]
    findings: list[Finding]
    extra_sections: list[tuple[str, str]] = field(default_factory=list)  # (title, markdown) from a --run
    invalid_lines: list[tuple[int, str]] = field(default_factory=list)  # (line, what is not data)
    claims: list[LedgerEntry] = field(default_factory=list)  # the paper's comparative claims, evaluated
    left_out: list[tuple[str, str]] = field(default_factory=list)  # (item, reason) a --run did not measure


def build_report(store_path: str | os.PathLike) -> Report:
    """Read the store and compare every paper table with it."""
    contents = ResultsStore(store_path).read()
    # a cell of the store is data: a line break in it (a hand edit) must not start a line of the report
    frame = contents.frame.assign(
        **{c: contents.frame[c].map(one_line) for c in contents.frame.columns if c not in NUMERIC_COLUMNS}
    )
    comparisons = {name: compare_table(name, frame) for name in TABLES}
    return Report(
        Path(store_path),
        frame,
        contents.torn_lines,
        comparisons,
        collect_findings(comparisons, frame),
        invalid_lines=contents.invalid_lines,
        claims=ledger(comparisons),
    )


# ------------------------------------------------------------------------------- escaping, portability


def csv_text(value: object) -> object:
    """A text cell of a report CSV that a spreadsheet shows as text, never runs: a cell that starts like a
    formula gets a leading ``'`` (OWASP's advice); numbers, and text that reads as a number, are kept."""
    if not isinstance(value, str) or not value.startswith(_FORMULA_STARTS):
        return value
    try:
        float(value)
    except ValueError:
        return "'" + value
    return value


def portable(text: str) -> str:
    """``text`` with every absolute path cut to ``…/<last part>``: a report names nothing of the machine's layout."""
    return _ABSOLUTE_PATH.sub(lambda m: "…/" + (Path(m.group(0).rstrip("/.:")).name or ""), text)


def _store_label(store_path: Path, out_dir: Path) -> str:
    """The store as a reader of the report finds it: relative to the report where both lie under the working
    directory (or the store lies in the report's folder), else by file name."""
    store, out, here = store_path.resolve(), out_dir.resolve(), Path.cwd().resolve()
    if store.parent == out:
        return f"`{one_line(store.name)}` (beside this report)"
    if store.is_relative_to(here) and out.is_relative_to(here):
        return f"`{one_line(os.path.relpath(store, out))}` (relative to this report)"
    return f"`{one_line(store.name)}` (its file name; it lies elsewhere)"


def _commits(store: pd.DataFrame) -> str:
    """Each suite commit that measured, and whether its code had uncommitted changes."""
    parts = []
    for commit, rows in store[store["git_commit"] != ""].groupby("git_commit", sort=False):
        dirty = rows["git_dirty"].eq("true")
        state = "with uncommitted changes" if dirty.all() else "clean" if not dirty.any() else "partly uncommitted"
        parts.append(f"{commit[:8]} ({state}, {len(rows)} row{'s' if len(rows) > 1 else ''})")
    return "; ".join(parts) or "unknown"


# ------------------------------------------------------------------------------------------ sections


def _num(x: float, printed: bool = False) -> str:
    """Paper values as the paper prints them (one decimal), ours to three significant digits."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    if abs(x) >= 1000:
        return f"{x:.0f}"
    if printed and abs(x) >= 1:
        return f"{x:.1f}"
    return f"{x:.3g}" if abs(x) < 100 else f"{x:.1f}"


def _cell(c: pd.Series, mark: str = "") -> str:
    if c["status"] == NOT_IN_PAPER:
        return "-"
    ours = "—" if pd.isna(c["ours"]) else _num(c["ours"])
    status = (" " + _MARK[c["status"]]) if c["status"] in _MARK else ""
    return f"{_num(c['paper'], printed=True)} / {ours}{status}{mark}"


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _measured_under(cells: pd.DataFrame) -> str:
    """One line per protocol, naming the columns and rows it applies to."""
    measured = cells[cells["protocol"].notna() & (cells["protocol"] != "")]
    if not len(measured):
        return "- nothing measured"
    lines = []
    for protocol, group in measured.groupby("protocol", sort=False):
        by_metric = {m: list(dict.fromkeys(g["method"])) for m, g in group.groupby("metric", sort=False)}
        shared = len({tuple(v) for v in by_metric.values()}) == 1
        labels = [_HEADERS.get(m, m) for m in by_metric]
        if shared:
            applies = f"{_and(labels)} of {', '.join(next(iter(by_metric.values())))}"
        else:
            applies = "; ".join(f"{_HEADERS.get(m, m)} of {', '.join(rows)}" for m, rows in by_metric.items())
        lines.append(f"- {protocol}: {applies}")
    return "\n".join(lines)


def _table_section(name: str, cells: pd.DataFrame) -> str:
    spec = TABLES[name]
    metrics = table_metrics(name)
    paper = load_table(name).set_index("row")
    header = ["Method", *[_HEADERS.get(m, m) for m in metrics], "Status"]
    rows, notes = [], []
    for (row, method), group in cells.groupby(["row", "method"], sort=False):
        by_metric = group.set_index("metric")
        marks = {}
        for metric in metrics:
            # a cell compared with another variant than the row's model: the paper table says which, and why
            variant, own = compared_model(paper.loc[row], metric), paper.loc[row, "registry_name"]
            if variant != own:
                marks[metric] = _FOOTNOTE_MARKS[len(notes) % len(_FOOTNOTE_MARKS)]
                why = paper.loc[row, "notes"]
                notes.append(
                    f"{marks[metric]} {method}, {_HEADERS.get(metric, metric)}: compared with `{variant}`, the variant "
                    f"whose figure the paper prints; the row's other cells are `{own}`'s"
                    + (f" (paper table notes: {why})" if why else "")
                    + "."
                )
        rows.append([method, *[_cell(by_metric.loc[m], marks.get(m, "")) for m in metrics], row_status(group)])
    footnotes = ("\n" + "\n".join(f"- {n}" for n in notes) + "\n") if notes else ""
    return (
        f"### {spec.title}\n\nCells: paper / ours, ✓ reproduced within the recorded tolerance, ✗ differs, "
        f"· measured without a judgement (no paper value, or a figure from another GPU).\n\n"
        f"{_md_table(header, rows)}\n{footnotes}\nMeasured under:\n{_measured_under(cells)}\n"
    )


def _readings_section(store: pd.DataFrame) -> str:
    t1 = store[store["table"] == "table1"]
    counted = t1[t1["metric"].isin(["params_m", "gflops"]) & t1["measured_value"].notna()]
    counted = counted.sort_values("timestamp", kind="stable").drop_duplicates(["row", "reading", "metric"], keep="last")
    if not len(counted):
        return "No Table 1 complexity measurements in the store.\n"
    paper = load_table("table1").set_index("row")
    readings = ["", *dict.fromkeys(r for r in t1["reading"] if r)]
    values = {(r.row, r.reading, r.metric): r.measured_value for r in counted.itertuples()}
    rows, same_as_default = [], {}
    for row in paper.index:
        default = (values.get((row, "", "params_m")), values.get((row, "", "gflops")))
        for reading in readings:
            ours = (values.get((row, reading, "params_m")), values.get((row, reading, "gflops")))
            if ours == (None, None):
                continue
            same = bool(reading) and ours == default
            if same:
                same_as_default.setdefault(reading, []).append(row)
            cols = []
            for metric, value in zip(("params_m", "gflops"), ours, strict=True):
                printed = paper.loc[row, metric]
                cols.append("—" if value is None else f"{_num(value)} ({(value - printed) / printed * 100:+.0f}%)")
            rows.append([row, (reading or "default (the suite's reading)") + (" (= default)" if same else ""), *cols])
    out = [_md_table(["Model", "Reading", "#Params (M) (vs paper)", "GFLOPs (vs paper)"], rows), ""]
    for reading, models in same_as_default.items():
        out.append(_same_counts_note(t1, reading, models))
    for (reading, reason), group in t1[(t1["status"] == STATUS_NOT_RUN) & (t1["reading"] != "")].groupby(
        ["reading", "status_reason"], sort=False
    ):
        out.append(f"- **{reading}** is not counted for {', '.join(dict.fromkeys(group['row']))}: {reason}.")
    out.append(
        "\nPaper: "
        + "; ".join(f"{i} {paper.loc[i, 'params_m']}M / {paper.loc[i, 'gflops']} GFLOPs" for i in paper.index)
    )
    return "\n".join(out) + "\n"


def _same_counts_note(t1: pd.DataFrame, reading: str, models: list[str]) -> str:
    """Why a reading counts exactly as the default: the element-wise multiplies fvcore leaves out, as measured."""
    uncounted = t1[(t1["reading"] == reading) & (t1["metric"] == UNCOUNTED_MULTIPLIES) & t1["measured_value"].notna()]
    uncounted = uncounted.sort_values("timestamp", kind="stable").drop_duplicates("row", keep="last").set_index("row")
    head = f"- **{reading}** has exactly the default's #params and GFLOPs for {', '.join(models)}"
    if not len(uncounted):
        return head + (
            ": what it changes lies in ops the counter does not count; this store does not hold the difference "
            "(a `mamkpd report --run` of this version measures it)."
        )
    listing = ", ".join(
        f"{row} {int(uncounted.loc[row, 'measured_value']):+,} ({uncounted.loc[row, 'input_size']})"
        for row in models
        if row in uncounted.index
    )
    largest = uncounted["measured_value"].abs().max() / 1e9
    return (
        head + ": it changes no parameter, only element-wise multiplies, which fvcore counts as free. Element-wise "
        f"multiplies per sample, this reading minus the default: {listing}; at most {largest:.2g} G, below the "
        "three digits shown."
    )


def _speed_section(store: pd.DataFrame) -> str:
    fps = store[store["metric"] == "fps"].sort_values("timestamp", kind="stable")
    timed = fps[(fps["status"] != STATUS_NOT_RUN) & fps["measured_value"].notna()]
    untimed = fps[(fps["status"] == STATUS_NOT_RUN) & ~fps["model"].isin(timed["model"])]
    ratios = store[store["metric"].str.startswith("fps_ratio_to_")]
    onnx = timed[timed["runtime"] == ONNX_RUNTIME]
    rows = []
    for r in timed.itertuples():
        ratio = ratios[
            (ratios["model"] == r.model)
            & (ratios["timestamp"] == r.timestamp)
            & (ratios["device"] == r.device)
            & (ratios["batch_size"] == r.batch_size)
            & (ratios["runtime"] == r.runtime)  # one run records a model plain and on oneDNN in the same second
        ]
        rows.append(
            [
                r.model,
                r.gpu_name or f"CPU ({r.cpu_model}, {r.cpu_count} cores)",
                f"{r.runtime or 'eager'}{'/' + r.provider if r.provider else ''}",
                r.precision,
                _num(r.batch_size),
                r.scan_backend or "-",
                r.allocator or "not recorded",
                _num(r.median),
                _num(r.iqr),
                f"{_num(ratio['measured_value'].iloc[-1])} ({ratio['metric'].iloc[-1][len('fps_ratio_to_') :]})"
                if len(ratio)
                else "—",
                _onnx_beside(onnx, r),
                r.sample,
                "yes" if r.throttled == "true" else "",
            ]
        )
    header = ["Model", "Device", "Runtime", "Precision", "Batch", "Scan", "Allocator", "samples/s (median)", "IQR"]
    header += ["Ratio (to)"]
    header += ["ONNX Runtime samples/s (× this)", "One sample", "Throttled"]
    out = [_md_table(header, rows) if rows else "No timings in the store."]
    if rows:
        out.append(
            "\nAllocator: the C allocator the timing ran under. `system`: glibc's defaults, what a plain PyTorch "
            "process gets, where a call can pay page faults for memory the call before gave back; `keep-freed`: "
            "freed memory kept for reuse (`--allocator keep-freed`, as the benchmarks time)."
        )
    loads = store[(store["table"] == LOAD_TABLE) & (store["metric"] == LOAD_METRIC)].drop_duplicates(
        "timestamp", keep="last"
    )
    for r in loads.itertuples():
        flag = f" **Flagged: {r.notes}.**" if r.notes else ""
        out.append(f"\nLoad during the `report --run` timings of {r.model} ({r.timestamp}): {r.status_reason}.{flag}")
    # one line per reason; a reason that names its model reads as one reason for all of them
    latest = untimed.drop_duplicates("model", keep="last")
    reasons = latest.assign(why=[r.status_reason.replace(r.model, "NAME") for r in latest.itertuples()])
    for why, group in reasons.groupby("why", sort=False):
        out.append(f"\nNot timed: {', '.join(group['model'])}. Why: {why or 'no reason recorded'}.")
    return "\n".join(out) + "\n"


def _onnx_beside(onnx: pd.DataFrame, r) -> str:
    """The latest onnxruntime speed of the model of eager row ``r`` on the same CPU, batch, input size and
    precision, and its ratio to ``r``; "—" for an onnxruntime row itself or when there is none."""
    if r.runtime == ONNX_RUNTIME:
        return "—"
    same = onnx[
        (onnx["model"] == r.model)
        & (onnx["device"] == r.device)
        & (onnx["cpu_model"] == r.cpu_model)
        & (onnx["batch_size"] == r.batch_size)
        & (onnx["input_size"] == r.input_size)
        & (onnx["precision"] == r.precision)
    ]
    if not len(same):
        return "—"
    # the latest of each scan form (a model with a scan may be timed in the portable and the custom-op form)
    latest = same.drop_duplicates("scan_backend", keep="last")
    forms = len(latest) > 1
    cells = []
    for o in latest.itertuples():
        ratio = f" ({_num(o.median / r.median)}×{', ' + o.scan_backend if forms else ''})" if r.median else ""
        cells.append(f"{_num(o.median)}{ratio}")
    return "; ".join(cells)


def _samples_section(store: pd.DataFrame) -> str:
    rows = store[store["table"] == "samples"].sort_values("timestamp", kind="stable")
    if not len(rows):
        return "No end-to-end run on the samples in the store.\n"
    body = [
        [r.row, r.metric, _num(r.measured_value), r.split, r.input_size, r.device, r.notes, r.status_reason]
        for r in rows.itertuples()
    ]
    return _md_table(["Run", "Metric", "Measured", "Split", "Input", "Device", "Notes", "What it shows"], body) + "\n"


def _warnings(report: Report) -> list[str]:
    out = []
    if report.torn_lines:
        out.append(
            f"**Warning:** the store has {len(report.torn_lines)} torn line(s) (lines "
            f"{', '.join(str(n) for n, _ in report.torn_lines)}), skipped: a write was cut short.\n"
        )
    if report.invalid_lines:
        out.append(
            f"**Warning:** the store has {len(report.invalid_lines)} line(s) whose values are not data, skipped "
            "(a hand edit?): " + "; ".join(f"line {n}: {why}" for n, why in report.invalid_lines) + ".\n"
        )
    if report.left_out:
        out.append(
            "**Left out of this run** (on an idle machine, or with a larger `--budget-s`, `mamkpd report --run` "
            "measures them):\n\n"
            + "\n".join(f"- {one_line(item)}: {one_line(why)}" for item, why in report.left_out)
            + "\n"
        )
    return out


def render_markdown(report: Report, figures: dict[str, str], out_dir: str | os.PathLike = DEFAULT_OUT_DIR) -> str:
    store = report.store
    counts = pd.concat(report.comparisons.values())["status"].value_counts()
    machines = sorted({(r.gpu_name or f"CPU {r.cpu_model}") for r in store.itertuples()} - {"CPU "})
    writer = environment_info()
    written_by = (
        f"{writer['git_commit'][:8]}{' with uncommitted changes' if writer['git_dirty'] == 'true' else ''}"
        if writer["git_commit"]
        else f"mamkpd {writer['mamkpd_version']} (no git)"
    )
    out = [
        "# MamKPD reproduction report\n",
        f"Generated {datetime.now(timezone.utc).isoformat(timespec='seconds')} by suite commit {written_by}, from "
        f"the results store {_store_label(report.store_path, Path(out_dir))} ({len(store)} stored rows; machines: "
        f"{', '.join(machines) or 'none'}).\n",
        f"Measured at suite commit(s): {_commits(store)}.\n",
        "Paper cells: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + ".\n",
        *_warnings(report),
    ]
    out.append("## Findings\n")
    out += [f"- **{f.title}.** {f.text} _(from: {f.source})_" for f in report.findings] or ["- none yet\n"]
    out.append("")
    for title, body in report.extra_sections:
        out += [f"## {title}\n", body]
    out += ["## Claims ledger: the paper's comparative sentences\n", ledger_section(report.claims)]
    out.append("## Tables\n")
    out += [_table_section(name, cells) for name, cells in report.comparisons.items()]
    out += ["## Table 1 under alternative architecture readings\n", _readings_section(store)]
    out += ["## Speed measurements (all presets and devices)\n", _speed_section(store)]
    out += ["## RTMPose beside MamKPD (not part of the paper)\n", rtmpose_section(store)]
    out += ["## End-to-end training and evaluation on the built-in samples\n", _samples_section(store)]
    out.append("## Figures\n")
    out += [f"![{title}]({path})\n" for title, path in figures.items()]
    return portable("\n".join(out) + "\n")


def run_log_section(run_log: RunLog) -> tuple[str, str]:
    """The section listing what ``mamkpd report --run`` measured (the log of the harness's ``run_measurements``)."""
    return ("What `mamkpd report --run` measured on this machine", "\n".join(run_log.lines) + "\n")


# ------------------------------------------------------------------------------------------- writing


def check_out_dir(out_dir: str | os.PathLike, force: bool = False) -> Path:
    """``out_dir`` if a report may be written there: refuses a folder holding a committed example unless ``force``."""
    out = Path(out_dir)
    if out.is_symlink() and not out.exists():
        raise ValueError(
            f"--out {out} is a link to {os.readlink(out)}, which does not exist; create it or name a folder"
        )
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder; name a folder for the report")
    if (out / EXAMPLE_MARKER).exists() and not force:
        raise ValueError(
            f"{out} holds the committed example report ({EXAMPLE_MARKER}); write elsewhere (--out DIR, default "
            f"{DEFAULT_OUT_DIR}) or pass --force to regenerate the example"
        )
    return out


def write_run_log(out_dir: str | os.PathLike, lines: list[str]) -> Path:
    """The progress lines of ``mamkpd report --run`` as ``report-run.log`` beside the report (paths made portable)."""
    text = portable("\n".join(lines) + "\n")
    return atomic_write(Path(out_dir) / RUN_LOG_NAME, lambda h: h.write(text), mode="w")


def write_report(
    store_path: str | os.PathLike,
    out_dir: str | os.PathLike = DEFAULT_OUT_DIR,
    extra_sections: list[tuple[str, str]] | None = None,
    force: bool = False,
    left_out: list[tuple[str, str]] | None = None,
) -> dict[str, Path]:
    """Write REPORT.md, one CSV per paper table, the claims ledger's CSV and the figures into ``out_dir``; return
    their paths.

    ``left_out``: (item, reason) of what a ``--run`` did not measure, listed at the report's top.
    Refuses a folder that holds the committed example unless ``force`` (:func:`check_out_dir`)."""
    out = check_out_dir(out_dir, force)
    # one report at a time into a folder, each from the store as it is once the one before has written: two runs
    # into one store and folder (both finish) leave the report of every row, whichever reads the store last
    folder = hashlib.sha1(os.fsencode(out.resolve())).hexdigest()[:16]  # a name of any bytes
    with file_lock(os.path.join(tempfile.gettempdir(), f"mamkpd-report-{folder}.lock"), REPORT_LOCK_TIMEOUT_S):
        return _write_report(store_path, out, extra_sections, left_out)


REPORT_LOCK_TIMEOUT_S = 600.0  # what a report waits for another being written into its folder


def _write_report(store_path, out: Path, extra_sections, left_out) -> dict[str, Path]:
    report = build_report(store_path)
    report.extra_sections = list(extra_sections or [])
    report.left_out = list(left_out or [])
    written: dict[str, Path] = {}
    for name, cells in report.comparisons.items():
        text_columns = cells.select_dtypes(include=["object", "string"]).columns
        shared = cells.assign(
            **{c: cells[c].map(lambda v: csv_text(portable(v)) if isinstance(v, str) else v) for c in text_columns}
        )
        written[name] = atomic_write(out / f"{name}.csv", lambda h, c=shared: c.to_csv(h, index=False), mode="w")
    claims = ledger_frame(report.claims)
    claims["reason"] = claims["reason"].map(portable)
    written["claims"] = atomic_write(out / "claims.csv", lambda h: claims.to_csv(h, index=False), mode="w")
    try:
        from .plots import plot_fig1, plot_fps_vs_ap
    except ImportError as exc:  # matplotlib missing (a bare GPU machine, scripts/gpu_check.sh): no figures, say why
        figures = {}
        report.extra_sections.append(("Figures", f"Not drawn: {exc}. The tables hold every value.\n"))
    else:
        written["fig1"] = plot_fig1(report.comparisons["table2"], out / "fig1_ap_vs_params.png")
        written["fps_vs_ap"] = plot_fps_vs_ap(report.comparisons["table2"], out / "fps_vs_ap.png")
        figures = {
            "Figure 1: COCO AP against #params, as the paper prints them (left) and with our measured #params "
            "(right)": written["fig1"].name,
            "FPS against AP: the paper's figures (left); our timings against AP, the paper's where ours is "
            "missing": written["fps_vs_ap"].name,
        }
    text = render_markdown(report, figures, out)
    written["report"] = atomic_write(out / "REPORT.md", lambda h: h.write(text), mode="w")
    return written
