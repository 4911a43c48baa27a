"""Report figures (matplotlib, Agg): Figure 1 and FPS against AP, paper beside measured.

Readable at a glance: every point is labelled once, where its label overlaps no other label, no other
point and no axis edge (a greedy search over positions around the point, with a leader line when the
label has to move away); the axis limits are computed from the data so that every bubble lies inside
its axes; log axes carry plain ticks (1, 2, 5, 10, ...). Each panel says whose values it plots.
"""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: CI runners and servers have no display
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402

from ..engine.checkpoint import atomic_write  # noqa: E402

__all__ = ["fig1_figure", "fps_vs_ap_figure", "plot_fig1", "plot_fps_vs_ap"]

DPI = 110
_FONT = 8
_MAX_BUBBLE_PT2 = 1400.0  # marker area of the largest model (ViTPose-L), in points²
_MIN_BUBBLE_PT2 = 30.0
_EDGE_PAD_PX = 6.0  # between a bubble and the axes frame


@dataclass
class Points:
    """One panel's points: x, y, marker area (points²), label, filled (False: hollow)."""

    x: list[float]
    y: list[float]
    size: list[float]
    label: list[str]
    filled: list[bool]

    def __len__(self) -> int:
        return len(self.x)


TITLE_CHARS = 80  # characters of a 9-pt title line across one of the two panels


def _save(fig, path: Path) -> Path:
    # savefig into the temp file atomic_write hands us, so a half-written PNG never appears
    atomic_write(path, lambda handle: fig.savefig(handle, format="png", dpi=DPI, bbox_inches="tight"))
    plt.close(fig)
    return path


def _wide(cells: pd.DataFrame) -> pd.DataFrame:
    """One row per paper row: ``<metric>_paper`` and ``<metric>_ours`` for every metric (NaN where absent)."""
    wide = cells.pivot(index=["row", "method"], columns="metric", values=["paper", "ours"])
    wide.columns = [f"{metric}_{kind}" for kind, metric in wide.columns]
    return wide.reset_index().astype({c: float for c in wide.columns})


def _bubble_area(params_m: Sequence[float], largest: float) -> list[float]:
    """Marker area proportional to the parameter count, the largest model at :data:`_MAX_BUBBLE_PT2`."""
    return [max(_MIN_BUBBLE_PT2, _MAX_BUBBLE_PT2 * p / largest) if p == p else _MIN_BUBBLE_PT2 for p in params_m]


def _radius_px(area_pt2: float) -> float:
    return math.sqrt(area_pt2 / math.pi) * DPI / 72.0


# ------------------------------------------------------------------------------------------- axes


def _plain_ticks(lo: float, hi: float) -> list[float]:
    """Ticks for a log axis from lo to hi: 1-2-5 per decade, or 1…9 where that gives fewer than three."""
    for mantissas in ((1, 2, 5), (1, 2, 3, 4, 5, 6, 8)):
        ticks = [
            m * 10.0**e
            for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
            for m in mantissas
            if lo <= m * 10.0**e <= hi
        ]
        if len(ticks) >= 3:
            return ticks
    return ticks


def _fit_span(
    values: Sequence[float], radii_px: Sequence[float], length_px: float, min_range: float
) -> tuple[float, float]:
    """Limits (in the axis's scaled units) that keep every value's bubble of radius ``r`` px inside an axis of
    ``length_px``: a fixed point of span = data range + the room the bubbles need. Data spread over less than
    ``min_range`` (one point, say) is centred in ``min_range``."""
    lo, hi = min(values), max(values)
    widen = max(0.0, (min_range - (hi - lo)) / 2)
    values = [*values, lo - widen, hi + widen]
    radii_px = [*radii_px, 0.0, 0.0]
    span = hi - lo + 2 * widen
    new_lo, new_hi = lo - widen, hi + widen
    for _ in range(100):
        per_px = span / length_px
        new_lo = min(v - (r + _EDGE_PAD_PX) * per_px for v, r in zip(values, radii_px, strict=True))
        new_hi = max(v + (r + _EDGE_PAD_PX) * per_px for v, r in zip(values, radii_px, strict=True))
        if abs((new_hi - new_lo) - span) <= 1e-9 * span:
            break
        span = new_hi - new_lo
    return new_lo, new_hi


def _set_limits(axes, panels: Sequence[Points], log_x: bool) -> None:
    """x limits per axes and y limits over all (shared y), each leaving room for every bubble."""
    fig = axes[0].figure
    fig.canvas.draw()  # positions final
    y_values, y_radii = [], []
    for ax, pts in zip(axes, panels, strict=True):
        box = ax.get_window_extent()
        if len(pts):
            radii = [_radius_px(s) for s in pts.size]
            xs = [math.log10(v) for v in pts.x] if log_x else list(pts.x)
            lo, hi = _fit_span(xs, radii, box.width, min_range=0.5 if log_x else 1.0)
            if log_x:
                lo, hi = 10**lo, 10**hi
                ax.set_xscale("log")
                ax.xaxis.set_major_locator(FixedLocator(_plain_ticks(lo, hi)))
                ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
                ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlim(lo, hi)
            y_values += list(pts.y)
            y_radii += radii
    if y_values:
        height = axes[0].get_window_extent().height
        lo, hi = _fit_span(y_values, y_radii, height, min_range=2.0)  # AP points
        for ax in axes:
            ax.set_ylim(lo, hi)


# ------------------------------------------------------------------------------------------ labels

# directions tried around a point, nearest first: right, left, up, down, then the diagonals and between
_ANGLES = (0, 180, 90, 270, 45, 135, 315, 225, 20, 160, 340, 200, 65, 115, 295, 245)
_GAPS_PT = (2, 7, 14, 24, 38, 56)


def _overlap(a: Bbox, b: Bbox) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w * h if w > 0 and h > 0 else 0.0


def _inside(inner: Bbox, outer: Bbox) -> bool:
    return inner.x0 >= outer.x0 and inner.x1 <= outer.x1 and inner.y0 >= outer.y0 and inner.y1 <= outer.y1


def _label_points(ax, pts: Points) -> None:
    """Annotate each point once: the first position (nearest first) whose text box lies inside the axes and
    overlaps no placed label and no point's centre; a leader line joins a label placed away from its point."""
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent()
    centres = [ax.transData.transform((x, y)) for x, y in zip(pts.x, pts.y, strict=True)]
    dots = [Bbox.from_extents(cx - 3, cy - 3, cx + 3, cy + 3) for cx, cy in centres]
    placed: list[Bbox] = []
    # crowded points first: they have the fewest free places
    crowd = [sum(math.dist(c, d) < 60 for d in centres) for c in centres]
    for i in sorted(range(len(pts)), key=lambda i: (-crowd[i], pts.x[i])):
        radius_pt = math.sqrt(pts.size[i] / math.pi)
        probe = ax.annotate(
            pts.label[i], (pts.x[i], pts.y[i]), xytext=(0, 0), textcoords="offset points", fontsize=_FONT
        )
        best = None
        for gap in _GAPS_PT:
            for angle in _ANGLES:
                c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
                offset = ((radius_pt + gap) * c, (radius_pt + gap) * s)
                ha = "left" if c > 0.3 else "right" if c < -0.3 else "center"
                va = "bottom" if s > 0.3 else "top" if s < -0.3 else "center"
                probe.xyann = offset
                probe.set_horizontalalignment(ha)
                probe.set_verticalalignment(va)
                box = probe.get_window_extent(renderer)
                cost = (
                    sum(_overlap(box, b) for b in placed)
                    + sum(_overlap(box, d) for j, d in enumerate(dots) if j != i)
                    + (0.0 if _inside(box, frame) else 1e6)
                )
                if best is None or cost < best[0]:
                    best = (cost, offset, ha, va, gap, box)
                if cost == 0:
                    break
            if best[0] == 0:
                break
        probe.remove()
        _, offset, ha, va, gap, box = best
        arrow = {"arrowstyle": "-", "lw": 0.6, "color": "0.4", "shrinkA": 0, "shrinkB": radius_pt} if gap > 7 else None
        ax.annotate(
            pts.label[i],
            (pts.x[i], pts.y[i]),
            xytext=offset,
            textcoords="offset points",
            ha=ha,
            va=va,
            fontsize=_FONT,
            arrowprops=arrow,
        )
        placed.append(box)


def _draw(ax, pts: Points, title: str, color: str = "C0") -> None:
    for filled in (True, False):
        idx = [i for i in range(len(pts)) if pts.filled[i] == filled]
        if idx:
            ax.scatter(
                [pts.x[i] for i in idx],
                [pts.y[i] for i in idx],
                s=[pts.size[i] for i in idx],
                facecolors=color if filled else "none",
                edgecolors=color,
                alpha=0.45 if filled else 0.9,
                linewidths=1.0,
            )
    # a long machine name must not run the title past the figure's edge: wrap to the panel's width
    ax.set_title(textwrap.fill(title, TITLE_CHARS), fontsize=9)
    ax.grid(alpha=0.3)


def _panels(axes, panels: Sequence[Points], titles: Sequence[str], log_x: bool, empty: Sequence[str]) -> None:
    for ax, pts, title, message in zip(axes, panels, titles, empty, strict=True):
        _draw(ax, pts, title)
        if not len(pts):
            ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, fontsize=_FONT)
    _set_limits(axes, panels, log_x)
    for ax, pts in zip(axes, panels, strict=True):
        if len(pts):
            _label_points(ax, pts)


def _figure():
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.2), dpi=DPI, sharey=True)
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.11, top=0.9, wspace=0.06)
    return fig, axes


# ------------------------------------------------------------------------------------------ figures


def fig1_figure(table2: pd.DataFrame):
    """Figure 1 as a matplotlib figure: COCO AP against parameters (area ∝ parameters), the paper's and ours.

    Our panel uses measured parameters; AP is ours where measured (filled), else the paper's (hollow)."""
    wide = _wide(table2)
    paper = wide.dropna(subset=["params_m_paper", "AP_paper"])
    ours = wide.dropna(subset=["params_m_ours"])
    ours = ours[ours["AP_ours"].notna() | ours["AP_paper"].notna()]
    largest = max([*paper["params_m_paper"], *ours["params_m_ours"], 1.0])
    measured_ap = ours["AP_ours"].notna()
    left = Points(
        list(paper["params_m_paper"]),
        list(paper["AP_paper"]),
        _bubble_area(paper["params_m_paper"], largest),
        list(paper["method"]),
        [True] * len(paper),
    )
    right = Points(
        list(ours["params_m_ours"]),
        list(ours["AP_ours"].where(measured_ap, ours["AP_paper"])),
        _bubble_area(ours["params_m_ours"], largest),
        list(ours["method"]),
        list(measured_ap),
    )
    fig, (ax_left, ax_right) = _figure()
    _panels(
        (ax_left, ax_right),
        (left, right),
        (
            "Paper (Table 2): AP and #params as printed",
            "Measured #params; AP ours where measured (filled), else the paper's (hollow)",
        ),
        log_x=True,
        empty=("", "no measured parameters in the store"),
    )
    for ax in (ax_left, ax_right):
        ax.set_xlabel("#params (M, log scale; circle area ∝ #params)")
    ax_left.set_ylabel("COCO val2017 AP")
    return fig


def plot_fig1(table2: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Figure 1 written to ``path`` (PNG)."""
    return _save(fig1_figure(table2), Path(path))


def fps_vs_ap_figure(table2: pd.DataFrame):
    """FPS against AP as a matplotlib figure: the paper's figures (mixed GPUs), and our timings against
    the AP (ours where measured, filled; else the paper's, hollow), the device in the title."""
    wide = _wide(table2)
    paper = wide.dropna(subset=["fps_paper", "AP_paper"])
    timed = table2[(table2["metric"] == "fps") & table2["ours"].notna()]
    by_row = wide.set_index("row")
    ap_ours = timed["row"].map(by_row["AP_ours"])
    ap = ap_ours.fillna(timed["row"].map(by_row["AP_paper"]))
    timed, ap, ap_ours = timed[ap.notna()], ap[ap.notna()], ap_ours[ap.notna()]
    params = [*paper["params_m_paper"], *timed["row"].map(by_row["params_m_paper"])]
    largest = max([p for p in params if p == p] + [1.0])
    left = Points(
        list(paper["fps_paper"]),
        list(paper["AP_paper"]),
        _bubble_area(paper["params_m_paper"], largest),
        list(paper["method"]),
        [True] * len(paper),
    )
    right = Points(
        list(timed["ours"]),
        list(ap),
        _bubble_area(timed["row"].map(by_row["params_m_paper"]), largest),
        list(timed["method"]),
        list(ap_ours.notna()),
    )
    devices = sorted({(r.gpu_name or f"CPU {r.cpu_model}") for r in timed.itertuples()})
    batches = sorted({int(b) for b in timed["batch_size"] if b == b})
    whose_ap = "our AP" if ap_ours.notna().all() else "the paper's AP" if ap_ours.isna().all() else "AP"
    fig, (ax_left, ax_right) = _figure()
    _panels(
        (ax_left, ax_right),
        (left, right),
        (
            "Paper (Table 2): FPS as printed (A100 for ViTPose, RTX 4090 for MamKPD, others unstated)",
            f"Our samples/s on {', '.join(devices) or 'no device'}"
            + (f", batch {', '.join(map(str, batches))}" if batches else "")
            + f", against {whose_ap}",
        ),
        log_x=True,
        empty=("", "no timings in the store"),
    )
    ax_left.set_xlabel("FPS printed by the paper (log scale)")
    ax_right.set_xlabel("samples/s measured here (log scale); filled: our AP, hollow: the paper's AP")
    ax_left.set_ylabel("COCO val2017 AP (the paper's on the left)")
    return fig


def plot_fps_vs_ap(table2: pd.DataFrame, path: str | os.PathLike) -> Path:
    """FPS against AP written to ``path`` (PNG)."""
    return _save(fps_vs_ap_figure(table2), Path(path))
