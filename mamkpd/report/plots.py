"""Report figures (matplotlib, Agg): Figure 1 and FPS against AP, paper beside measured."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: CI runners and servers have no display
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from ..engine.checkpoint import atomic_write  # noqa: E402

__all__ = ["plot_fig1", "plot_fps_vs_ap"]


def _save(fig, path: Path) -> Path:
    # savefig into the temp file atomic_write hands us, so a half-written PNG never appears
    atomic_write(path, lambda handle: fig.savefig(handle, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)
    return path


def _wide(cells: pd.DataFrame) -> pd.DataFrame:
    """One row per paper row: ``<metric>_paper`` and ``<metric>_ours`` for every metric (NaN where absent)."""
    wide = cells.pivot(index=["row", "method"], columns="metric", values=["paper", "ours"])
    wide.columns = [f"{metric}_{kind}" for kind, metric in wide.columns]
    return wide.reset_index().astype({c: float for c in wide.columns})


def _scatter(ax, x, y, size, labels, hollow=None, title=""):
    hollow = hollow if hollow is not None else [False] * len(x)
    for xi, yi, si, label, h in zip(x, y, size, labels, hollow, strict=True):
        ax.scatter(
            xi,
            yi,
            s=max(si, 1.0) * 12,
            alpha=0.5,
            facecolors="none" if h else None,
            edgecolors="C0",
            color=None if h else "C0",
        )
        ax.annotate(label, (xi, yi), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)


def plot_fig1(table2: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Figure 1: COCO AP against parameters (circle area ∝ parameters), the paper's and ours.

    Our panel uses measured parameters; AP is ours where measured, else the paper's (hollow circle).
    """
    wide = _wide(table2)
    paper = wide.dropna(subset=["params_m_paper", "AP_paper"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    _scatter(
        left,
        paper["params_m_paper"],
        paper["AP_paper"],
        paper["params_m_paper"],
        paper["method"],
        title="Paper (Table 2): AP vs #params",
    )
    m = wide.dropna(subset=["params_m_ours"])
    m = m[m["AP_ours"].notna() | m["AP_paper"].notna()]
    if len(m):
        ap_measured = m["AP_ours"].notna()
        _scatter(
            right,
            m["params_m_ours"],
            m["AP_ours"].where(ap_measured, m["AP_paper"]),
            m["params_m_ours"],
            m["method"],
            hollow=list(~ap_measured),
            title="Measured #params (hollow: AP not measured here, paper's AP shown)",
        )
    else:
        right.text(0.5, 0.5, "no measured parameters in the store", ha="center", transform=right.transAxes)
    for ax in (left, right):
        ax.set_xlabel("#params (M)")
    left.set_ylabel("COCO val2017 AP")
    return _save(fig, Path(path))


def plot_fps_vs_ap(table2: pd.DataFrame, path: str | os.PathLike) -> Path:
    """FPS against AP: the paper's figures (mixed GPUs) and our timings (device in the title)."""
    wide = _wide(table2)
    paper = wide.dropna(subset=["fps_paper", "AP_paper"])
    ours = table2[(table2["metric"] == "fps") & table2["ours"].notna()]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    _scatter(
        left,
        paper["fps_paper"],
        paper["AP_paper"],
        paper["params_m_paper"].fillna(5.0),
        paper["method"],
        title="Paper (Table 2; A100 for ViTPose, RTX 4090 for MamKPD)",
    )
    ap = ours["row"].map(wide.set_index("row")["AP_ours"].fillna(wide.set_index("row")["AP_paper"]))
    ours, ap = ours[ap.notna()], ap[ap.notna()]
    if len(ours):
        devices = sorted({(r.gpu_name or f"CPU {r.cpu_model}") for r in ours.itertuples()})
        _scatter(
            right,
            ours["ours"],
            ap,
            [5.0] * len(ours),
            ours["method"],
            hollow=[True] * len(ours),
            title=f"Measured samples/s on {', '.join(devices)}",
        )
        right.set_xscale("log")
    else:
        right.text(0.5, 0.5, "no timings in the store", ha="center", transform=right.transAxes)
    for ax in (left, right):
        ax.set_xlabel("samples/s")
        ax.set_ylabel("COCO val2017 AP")
    return _save(fig, Path(path))
