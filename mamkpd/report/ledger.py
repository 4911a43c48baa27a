"""The claims ledger: each comparative claim of the paper (:data:`mamkpd.paper.claims.CLAIMS`) beside the
figure it rests on, as the paper's tables give it and as measured here, with a verdict from the measurement.

A claim's formula is evaluated over the paper's cells (checking the paper's arithmetic) and over the
measured cells of the comparisons (:func:`mamkpd.report.compare.compare_table`), so a cell is measured
for the model the paper table's ``registry_name`` (or ``compare_with``) names: a newly registered model
is picked up once its table row names it. Inside ``max``/``min`` a row counts where the paper prints the
cell and the suite implements the method; the verdict then says which rows dropped out. Speeds are
compared only as timings from one GPU under one protocol (the paper's FPS are GPU figures).
"""

from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass

import pandas as pd

from ..paper import TABLES, load_table
from ..paper.claims import CLAIMS, Claim
from .markdown import md_table

__all__ = [
    "HOLDS",
    "DOES_NOT_HOLD",
    "NOT_MEASURABLE",
    "LedgerEntry",
    "evaluate_claim",
    "ledger",
    "ledger_frame",
    "ledger_section",
]

HOLDS = "holds"
DOES_NOT_HOLD = "does not hold"
NOT_MEASURABLE = "not measurable here"

_REF = re.compile(r"\{([^{}:]+):([^{}]+):([^{}:]+)\}")
_AGGREGATES = {"max": max, "min": min}
_BINARY = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b}
_BINARY[ast.Div] = lambda a, b: a / b
_ACCURACY_RUN = {
    "table2": "COCO val2017 and a GPU: `mamkpd reproduce --table 2`",
    "table3": "MPII val and a GPU: `mamkpd reproduce --table 3`",
    "table4": "AP-10K test and a GPU: `mamkpd reproduce --table 4`",
    "table5": "MPII val and a GPU: `mamkpd reproduce --table 5`",
    "fig3": "MPII val and a GPU: `mamkpd reproduce --table fig3`",
}


@dataclass(frozen=True)
class LedgerEntry:
    claim: Claim
    paper_value: float | None  # the quantity over the paper's own cells (None: the paper prints no value)
    paper_holds: bool | None  # the claim's relation on the paper's own figures
    measured_value: float | None  # the quantity over the measured cells (None: not all measured)
    verdict: str  # HOLDS, DOES_NOT_HOLD or NOT_MEASURABLE
    reason: str  # why not measurable and what would measure it; which rows dropped out; the machine


class _Unmeasured(Exception):
    """A cell the quantity needs has no value; the message says why (and what would measure it)."""


_SKIP = object()  # a row that drops out of max/min (the paper prints "-", or the suite lacks the method)


def _parse(formula: str) -> tuple[ast.expr, list[tuple[str, str, str]]]:
    refs: list[tuple[str, str, str]] = []

    def name(match: re.Match) -> str:
        refs.append((match.group(1), match.group(2), match.group(3)))
        return f"c{len(refs) - 1}"

    tree = ast.parse(_REF.sub(name, formula), mode="eval").body
    for node in ast.walk(tree):
        ok = isinstance(node, (ast.BinOp, ast.UnaryOp, ast.Constant, ast.Name, ast.Call, ast.Load, ast.USub))
        ok = ok or type(node) in _BINARY
        if isinstance(node, ast.Call):
            ok = isinstance(node.func, ast.Name) and node.func.id in _AGGREGATES
        if not ok:
            raise ValueError(f"claim formula {formula!r}: {ast.dump(node)[:40]} is not + - * / max min or a cell")
    return tree, refs


def _evaluate(node: ast.expr, value_of, in_aggregate: bool = False):
    """Evaluate a parsed formula; ``value_of(index, in_aggregate)`` gives a cell's value, _SKIP, or raises."""
    if isinstance(node, ast.Constant):
        return float(node.value)
    if isinstance(node, ast.Name):
        return value_of(int(node.id[1:]), in_aggregate)
    if isinstance(node, ast.UnaryOp):
        return -_evaluate(node.operand, value_of)
    if isinstance(node, ast.BinOp):
        return _BINARY[type(node.op)](_evaluate(node.left, value_of), _evaluate(node.right, value_of))
    values = [v for v in (_evaluate(a, value_of, True) for a in node.args) if v is not _SKIP]
    if not values:
        raise _Unmeasured("no row of the comparison has a value")
    return _AGGREGATES[node.func.id](values)


def _missing(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _how_to_measure(table: str, metric: str, model: str) -> str:
    if metric in TABLES[table].accuracy_columns:
        return _ACCURACY_RUN[table]
    if metric == "fps":
        return f"a GPU timing: `mamkpd fps --device cuda --model {model} --vs hrnet_w32 --store …`"
    return "a count: `mamkpd report --run` counts every registered model on this CPU"


def _paper_quantity(tree: ast.expr, refs: list[tuple[str, str, str]]) -> float | None:
    tables = {t: load_table(t).set_index("row") for t in {r[0] for r in refs}}

    def value_of(i: int, in_aggregate: bool):
        table, row, metric = refs[i]
        printed = tables[table].loc[row].get(metric, math.nan)
        if _missing(printed):
            if in_aggregate:
                return _SKIP
            raise _Unmeasured(f"the paper prints no {metric} for {row}")
        return float(printed)

    try:
        return _evaluate(tree, value_of)
    except _Unmeasured:
        return None


def _speed_problem(claim: Claim, fps_cells: list[pd.Series]) -> str:
    """Why timings cannot judge the claim ('' where they can): speeds are compared on one GPU, one protocol."""
    machines = {
        (c["gpu_name"] or f"CPU {c['cpu_model']}", c["device"], c["batch_size"], c["precision"]) for c in fps_cells
    }
    where = "; ".join(f"{m[0]}, batch {m[2]:g}, {m[3] or 'fp32'}" for m in sorted(machines, key=str))
    if any(not str(c["device"]).startswith("cuda") for c in fps_cells):
        return f"timed on CPU only ({where}); the paper's speeds are GPU figures: time them on a GPU"
    if len(machines) > 1:
        return f"timings from different machines or protocols ({where}): time them together in one run"
    if claim.gpu and claim.gpu not in str(fps_cells[0]["gpu_name"]):
        return f"needs a timing on an RTX {claim.gpu}, timed on {where}"
    return ""


def _holds(claim: Claim, x: float, measured: bool = False) -> bool:
    if claim.relation == "≈":
        tolerance = max(claim.tolerance, claim.measured_tolerance or 0.0) if measured else claim.tolerance
        return abs(x - claim.value) <= tolerance + 1e-12
    if claim.relation == ">":
        return x > claim.value
    if claim.relation == ">=":
        return x >= claim.value
    return x < claim.value


def evaluate_claim(claim: Claim, comparisons: dict[str, pd.DataFrame]) -> LedgerEntry:
    """One claim over the paper's cells and over the measured cells of ``comparisons`` (table → compare_table)."""
    tree, refs = _parse(claim.formula)
    paper_value = _paper_quantity(tree, refs)
    paper_holds = None if paper_value is None else _holds(claim, paper_value)
    cells = {t: comparisons[t].set_index(["row", "metric"]) for t in {r[0] for r in refs}}
    dropped: list[str] = []
    fps_cells: list[pd.Series] = []

    def value_of(i: int, in_aggregate: bool):
        table, row, metric = refs[i]
        c = cells[table].loc[(row, metric)]
        if in_aggregate and _missing(c["paper"]):
            return _SKIP
        if not c["model"]:
            if in_aggregate:
                dropped.append(row)
                return _SKIP
            raise _Unmeasured(f"{row} is not implemented by the suite")
        if _missing(c["ours"]):
            raise _Unmeasured(f"{c['reason'] or 'not measured'} ({_how_to_measure(table, metric, c['model'])})")
        if metric == "fps":
            fps_cells.append(c)
        return float(c["ours"])

    try:
        measured = _evaluate(tree, value_of)
    except _Unmeasured as missing:
        return LedgerEntry(claim, paper_value, paper_holds, None, NOT_MEASURABLE, str(missing))
    except ZeroDivisionError:
        return LedgerEntry(claim, paper_value, paper_holds, None, NOT_MEASURABLE, "a measured value is zero")
    problem = _speed_problem(claim, fps_cells) if fps_cells else ""
    notes = [f"not implemented by the suite, left out: {', '.join(dict.fromkeys(dropped))}"] if dropped else []
    if fps_cells and not problem:
        first = fps_cells[0]
        notes.append(f"timed on {first['gpu_name']}, batch {first['batch_size']:g}")
    if problem:
        return LedgerEntry(claim, paper_value, paper_holds, measured, NOT_MEASURABLE, problem)
    verdict = HOLDS if _holds(claim, measured, measured=True) else DOES_NOT_HOLD
    return LedgerEntry(claim, paper_value, paper_holds, measured, verdict, "; ".join(notes))


def ledger(comparisons: dict[str, pd.DataFrame]) -> list[LedgerEntry]:
    """Every claim of the paper, evaluated."""
    return [evaluate_claim(c, comparisons) for c in CLAIMS]


def ledger_frame(entries: list[LedgerEntry]) -> pd.DataFrame:
    """The ledger as a table (``claims.csv`` beside the report): the claim's data, both quantities, the verdict."""
    return pd.DataFrame.from_records(
        dict(
            key=e.claim.key,
            where=e.claim.where,
            quote=e.claim.quote,
            formula=e.claim.formula,
            relation=e.claim.relation,
            value=e.claim.value,
            unit=e.claim.unit,
            tolerance=e.claim.tolerance,
            measured_tolerance=e.claim.measured_tolerance,
            paper_value=e.paper_value,
            paper_holds=e.paper_holds,
            measured_value=e.measured_value,
            verdict=e.verdict,
            reason=e.reason,
        )
        for e in entries
    )


# ------------------------------------------------------------------------------------------ markdown


def _fmt(claim: Claim, x: float | None) -> str:
    if x is None:
        return "—"
    if claim.unit == "%":
        return f"{x * 100:.1f}%"
    if claim.unit == "×":
        return f"{x:.2f}×"
    if claim.unit == "FPS":
        return f"{x:.0f} FPS"
    return f"{x:+.1f}"


def _condition(claim: Claim) -> str:
    value = _fmt(claim, claim.value)
    if claim.relation != "≈":
        value = f"{claim.value:g}" if claim.unit == "points" else value
        return f"{claim.relation} {value}"
    pct = lambda t: f"{t * 100:.2g}%" if claim.unit == "%" else f"{t:g}"  # noqa: E731
    loose = claim.measured_tolerance is not None and claim.measured_tolerance > claim.tolerance
    return f"≈ {value} ± {pct(claim.tolerance)}" + (f" (measured: ± {pct(claim.measured_tolerance)})" if loose else "")


_SHORT = {"table1": "T1", "table2": "T2", "table3": "T3", "table4": "T4", "table5": "T5", "fig3": "F3"}
_AGGREGATE_CALL = re.compile(r"(max|min)\(((?:\{[^{}]+\}(?:, )?)+)\)")


def readable_formula(formula: str) -> str:
    """A formula as a reader takes it in: ``params_m(T2 MamKPD-S)``; a long max/min as its metric and rows."""

    def aggregate(m: re.Match) -> str:
        refs = _REF.findall(m.group(2))
        if len(refs) <= 3 or len({(r[0], r[2]) for r in refs}) > 1:
            return m.group(0)
        table, metric = refs[0][0], refs[0][2]
        rows = [r[1] for r in refs]
        listed = ", ".join(rows) if len(rows) <= 6 else f"{len(rows)} rows, {rows[0]} … {rows[-1]}"
        return f"{m.group(1)} {metric}({_SHORT[table]}: {listed})"

    text = _AGGREGATE_CALL.sub(aggregate, formula)
    return _REF.sub(lambda m: f"{m.group(3)}({_SHORT[m.group(1)]} {m.group(2)})", text)


def ledger_section(entries: list[LedgerEntry]) -> str:
    """The ledger as markdown: one line per claim, then the verdicts counted."""
    rows = []
    for i, e in enumerate(entries, 1):
        c = e.claim
        mark = "" if e.paper_holds is None else (" ✓" if e.paper_holds else " ✗")
        rows.append(
            [
                str(i),
                f"“{c.quote}” ({c.where})",
                readable_formula(c.formula) + (f" — {c.note}" if c.note else ""),
                _condition(c),
                _fmt(c, e.paper_value) + mark if e.paper_value is not None else "— (no printed value)",
                _fmt(c, e.measured_value),
                f"**{e.verdict}**",
                e.reason,
            ]
        )
    header = ["#", "Claim", "Rests on", "Holds if", "Paper's tables", "Measured here", "Verdict", "Why / how"]
    counts = pd.Series([e.verdict for e in entries]).value_counts()
    paper_off = [str(i) for i, e in enumerate(entries, 1) if e.paper_holds is False]
    intro = (
        f"Every comparative claim of the paper's text ({len(entries)}, data in `mamkpd/paper/claims.py`), the "
        "quantity it rests on as a formula over paper-table cells (T2 = Table 2, F3 = Figure 3), that quantity "
        "from the paper's own tables (✓ the claim holds on them, ✗ it does not: the paper's arithmetic or "
        "wording is off) and from this store's measurements, with the verdict from the measurement. "
        "Verdicts: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + "."
    )
    off = f" Claims the paper's own tables do not bear out: {', '.join(paper_off)}." if paper_off else ""
    return intro + off + "\n\n" + md_table(header, rows) + "\n"
