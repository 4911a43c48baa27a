"""Findings about the paper, derived from the paper's data and the measurements, never typed in as prose.

Each finder reads the paper tables and the comparisons; a finding without the measurements it needs
is simply not produced. Findings recorded by other parts of the suite (store rows whose metric is
``finding``) are listed as they were written.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..harness.store.results import FINDING_METRIC, split_finding
from ..paper import TABLES, load_table

__all__ = ["Finding", "collect_findings"]


@dataclass(frozen=True)
class Finding:
    title: str  # a sentence, in words (no identifiers)
    text: str
    source: str  # what it was derived from


_METRIC_WORDS = {"params_m": "parameter count", "gflops": "GFLOPs"}
_METRIC_UNITS = {"params_m": "M", "gflops": " GFLOPs"}


def _table_name(name: str) -> str:
    """``table2`` → ``Table 2``, ``fig3`` → ``Figure 3`` (as the paper names them)."""
    return TABLES[name].title.split(".")[0]


def _fmt(x: float) -> str:
    return f"{x:.3g}" if abs(x) < 100 else f"{x:.0f}"


def gflops_conventions(comparisons: dict[str, pd.DataFrame], store: pd.DataFrame) -> list[Finding]:
    """Table 2's GFLOPs against one counter: if the paper used one convention the ratios would agree."""
    cells = comparisons.get("table2")
    if cells is None:
        return []
    g = cells[(cells["metric"] == "gflops") & cells["ours"].notna() & cells["paper"].notna()]
    if len(g) < 2:
        return []
    ratios = (g["ours"] / g["paper"]).round(2)
    listing = ", ".join(
        f"{r.method} {_fmt(r.paper)} vs {_fmt(r.ours)} (×{q:.2f})" for r, q in zip(g.itertuples(), ratios, strict=True)
    )
    text = (
        f"Counted with one counter ({g['flops_convention'].iloc[0] or 'see protocol'}, batch 1), our GFLOPs over "
        f"the paper's range from ×{ratios.min():.2f} to ×{ratios.max():.2f}: {listing}. A single counting "
        "convention would give one common ratio; the spread shows the column mixes conventions "
        "(Table 2's notes name the HRNet repository's counter for SimpleBaseline and HRNet)."
    )
    alt = store[
        (store["table"] == "table2")
        & (store["metric"] == "gflops")
        & (store["flops_convention"] != g["flops_convention"].iloc[0])
    ]
    if len(alt):
        for convention, rows in alt.groupby("flops_convention", sort=False):
            per = ", ".join(f"{r.row} {_fmt(r.measured_value)}" for r in rows.itertuples())
            text += f" Counted as {convention}: {per}."
    return [Finding("Table 2's GFLOPs column mixes counting conventions", text, "table2 gflops, measured")]


def small_gflops(store: pd.DataFrame) -> list[Finding]:
    """MamKPD-Small's printed GFLOPs against the lowest any architecture reading measured."""
    paper = load_table("table1").set_index("row")
    s = store[(store["table"] == "table1") & (store["row"] == "MamKPD-Small") & (store["metric"] == "gflops")]
    s = s[s["measured_value"].notna()]
    if not len(s):
        return []
    printed = float(paper.loc["MamKPD-Small", "gflops"])
    low = s.loc[s["measured_value"].idxmin()]
    reading = low["reading"] or "the default reading"
    if low["measured_value"] <= printed:
        return []
    return [
        Finding(
            "MamKPD-Small's printed GFLOPs cannot be reached",
            f"The paper prints {_fmt(printed)} GFLOPs for MamKPD-Small; the lowest count over the {len(s)} "
            f"measurement(s) of its architecture readings is {_fmt(low['measured_value'])} GFLOPs ({reading}), "
            f"×{low['measured_value'] / printed:.1f} the printed value, "
            f"at {low['input_size'] or 'the model input size'}.",
            "table1 gflops over readings",
        )
    ]


def gpu_mix() -> list[Finding]:
    """Which GPU timed which FPS figure, as Table 2's notes (taken from the paper text) record it."""
    t2 = load_table("table2")
    timed = t2[t2["fps"].notna()]
    groups = {gpu: timed[timed["notes"].str.contains(gpu, regex=False)]["method"].tolist() for gpu in ("A100", "4090")}
    unstated = timed[~timed["notes"].str.contains("A100|4090")]["method"].tolist()
    if not groups["A100"] or not groups["4090"]:
        return []
    return [
        Finding(
            "The paper's FPS column compares different GPUs",
            f"Per the paper's text, {', '.join(groups['A100'])} were timed on an A100 and {', '.join(groups['4090'])} "
            f"on an RTX 4090; the GPU behind {', '.join(unstated)} is not stated, nor is any batch size. The report "
            "therefore compares speeds as ratios to HRNet-W32 timed in the same run on the same machine.",
            "paper text (table2 notes)",
        )
    ]


def cross_table_inconsistencies() -> list[Finding]:
    """The same model printed with different params/GFLOPs in different tables."""
    seen: dict[tuple[str, str], list[tuple[str, str, float]]] = {}
    for name in TABLES:
        table = load_table(name)
        for metric in ("params_m", "gflops"):
            if metric not in table.columns:
                continue
            for r in table[(table["registry_name"] != "") & table[metric].notna()].itertuples():
                seen.setdefault((r.registry_name, metric), []).append((name, r.method, getattr(r, metric)))
    out = []
    for (_model, metric), places in sorted(seen.items()):
        if len({v for _, _, v in places}) > 1:
            method = places[0][1].replace(" (Ours)", "")
            tables = list(dict.fromkeys(_table_name(name) for name, _, _ in places))
            listing = "; ".join(
                f"{_table_name(name)} ({row}): {_fmt(v)}{_METRIC_UNITS[metric]}" for name, row, v in places
            )
            tables = tables[0] if len(tables) == 1 else ", ".join(tables[:-1]) + " and " + tables[-1]
            title = f"The paper prints {method}'s {_METRIC_WORDS[metric]} differently in {tables}"
            out.append(Finding(title, listing, "paper tables"))
    return out


def run_quality(store: pd.DataFrame) -> list[Finding]:
    """Throttled timings and timings whose warm-up never became steady."""
    out = []
    throttled = store[store["throttled"] == "true"]
    if len(throttled):
        out.append(
            Finding(
                "Some timings ran while the GPU throttled",
                f"{len(throttled)} timing(s) ran while the GPU reported throttling: "
                + ", ".join(sorted(set(throttled["model"]))),
                "gpu clocks",
            )
        )
    unsteady = store[store["notes"].str.contains("warm-up cap reached", regex=False)]
    if len(unsteady):
        out.append(
            Finding(
                "Timings with a warm-up that never became steady",
                f"{len(unsteady)} timing row(s), models: {', '.join(sorted(set(unsteady['model'])))}; "
                "their spread (IQR) says how far to trust them",
                "fps protocol",
            )
        )
    return out


def reference_conventions() -> list[Finding]:
    """Conventions of the reference code that its names hide, read from the protocols the suite follows."""
    import torch

    from ..evaluation.mpii import HRNET_MEAN01_NAME, HRNET_MEAN01_THRESHOLD
    from ..models import create_model

    out = [
        Finding(
            "HRNet's MPII Mean@0.1 is PCKh at 0.11",
            f"HRNet's mpii.py reads its 'Mean@0.1' from row 11 of PCKh over np.arange(0, 0.51, 0.01), i.e. "
            f"at threshold {HRNET_MEAN01_THRESHOLD:g}, not 0.1 (MMPose 0.x copied it). MPII results here give "
            f"both: Mean@0.1 at 0.1 and '{HRNET_MEAN01_NAME}' as HRNet computes it.",
            "HRNet lib/dataset/mpii.py, mamkpd.evaluation.mpii",
        )
    ]
    with torch.device("meta"):
        layouts = {lay.name: lay for lay in create_model("sbl_res50").checkpoint_layouts}
    original, mmpose = layouts["original"].input_channels, layouts["mmpose0"].input_channels
    if original and mmpose and original != mmpose:
        out.append(
            Finding(
                "SimpleBaseline's original checkpoints expect BGR images",
                f"The original SimpleBaseline release, like HRNet's resnet experiments (COLOR_RGB false), feeds "
                f"cv2's {original.upper()} images normalised with the RGB ImageNet mean and std; MMPose's "
                f"SimpleBaseline checkpoints take {mmpose.upper()}. Evaluations here use the order of the layout a "
                "checkpoint was loaded from and record it in their protocol.",
                "HRNet experiments/*/resnet/*.yaml, checkpoint layouts",
            )
        )
    return out


def recorded(store: pd.DataFrame) -> list[Finding]:
    """Findings other parts of the suite stored (their notes: "<title>: <text>"), the latest per key."""
    rows = store[store["metric"] == FINDING_METRIC].sort_values("timestamp", kind="stable")
    rows = rows.drop_duplicates(["table", "row"], keep="last")
    return [Finding(*split_finding(r.notes), f"recorded by the suite ({r.model})") for r in rows.itertuples()]


def collect_findings(comparisons: dict[str, pd.DataFrame], store: pd.DataFrame) -> list[Finding]:
    """All findings, derived ones first."""
    return [
        *gflops_conventions(comparisons, store),
        *small_gflops(store),
        *gpu_mix(),
        *cross_table_inconsistencies(),
        *reference_conventions(),
        *recorded(store),
        *run_quality(store),
    ]
