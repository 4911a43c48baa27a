"""The paper's comparative sentences, as data: each quoted with where it stands, and the quantity it rests on.

A claim's ``formula`` is arithmetic (``+ - * /``, ``max(…)``, ``min(…)``) over paper-table cells written
``{table:row:metric}`` (a row key and a column of ``mamkpd/paper/<table>.csv``). It is evaluated twice by
the report's ledger (:mod:`mamkpd.report.ledger`): over the paper's own cells (which checks the paper's
arithmetic) and over the measured cells of the results store (which gives the verdict). A claim holds when
the quantity stands in ``relation`` to ``value``: ``≈`` within ``tolerance`` of the figure the sentence
prints, ``>`` / ``>=`` / ``<`` against a threshold. Qualitative words get a stated reading (``note``).

Tolerances of printed figures: one unit of the sentence's last printed digit (the figure rounds or
truncates to what is printed, the suite's rule for a printed number, :data:`PRINTED_UNIT`'s idea); an
"about"/"approximately" figure: half its leading unit; an accuracy gap: :data:`ACCURACY_ABS`, the
tolerance of a reproduced accuracy. A share of parameters ``a/b`` measured on a reimplemented MamKPD moves
with its count, which may lie :data:`PARAMS_REL_MAMKPD` from the printed one: the verdict allows that much of
the share (:func:`share_tolerance`) where it exceeds the printing's tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import load_table
from .tolerances import ACCURACY_ABS, PARAMS_REL_MAMKPD

__all__ = ["CLAIMS", "Claim", "RELATIONS", "cell", "section_cells", "share_tolerance"]

RELATIONS = ("≈", ">", ">=", "<")
UNITS = ("%", "×", "points", "FPS")  # "%": the quantity is a fraction, shown in percent

# how the ledger reads the paper's qualitative words (a claim's note repeats the reading it uses)
COMPETITIVE_POINTS = -1.0  # "competitive" / "similar": at most one point below
NOTABLE_POINTS = 1.0  # "notable improvement": more than one point (twice a reproduced accuracy's tolerance)
SUBSTANTIAL_RATIO = 2.0  # "substantially increases the number of parameters": more than doubles it


@dataclass(frozen=True)
class Claim:
    """One comparative claim of the paper's text."""

    key: str
    quote: str  # the sentence (or the clause), verbatim
    where: str  # section and paragraph
    formula: str  # over paper cells {table:row:metric}
    relation: str  # one of RELATIONS
    value: float  # the printed figure (relation "≈") or the threshold a qualitative word is read as
    unit: str  # one of UNITS
    tolerance: float = 0.0  # for "≈", in the formula's unit: how precisely the sentence prints its figure
    # for "≈", the verdict's tolerance on the measured quantity where measurement moves it more (None: tolerance)
    measured_tolerance: float | None = None
    note: str = ""  # the reading of a qualitative word, which rows a vague phrase names, caveats
    gpu: str = ""  # a GPU the claim's figures must come from (absolute FPS); "" for any

    def __post_init__(self) -> None:
        if self.relation not in RELATIONS:
            raise ValueError(f"claim {self.key}: relation must be one of {RELATIONS}, got {self.relation!r}")
        if self.unit not in UNITS:
            raise ValueError(f"claim {self.key}: unit must be one of {UNITS}, got {self.unit!r}")


def cell(table: str, row: str, metric: str) -> str:
    """A formula's reference to one paper cell."""
    return f"{{{table}:{row}:{metric}}}"


def share_tolerance(share: float) -> float:
    """How far a measured share of parameters (``a/b``, or the saving ``1 - a/b``: pass ``a/b``) may lie from
    the printed one when the MamKPD count ``a`` lies within :data:`PARAMS_REL_MAMKPD` of its printed value."""
    return PARAMS_REL_MAMKPD * share


def section_cells(table: str, sections: tuple[str, ...], metric: str, exclude: tuple[str, ...] = ()) -> str:
    """Comma-separated references to ``metric`` of every row of ``table`` in ``sections`` (for max/min)."""
    rows = load_table(table)
    rows = rows[rows["section"].isin(sections) & ~rows["row"].isin(exclude)]
    if not len(rows):
        raise ValueError(f"paper table {table} has no rows in sections {sections}")
    return ", ".join(cell(table, r, metric) for r in rows["row"])


_T2 = "table2"
_CONVENTIONAL = ("Conventional Methods",)
_LIGHT_RT = ("Lightweight Methods", "Real-Time Methods")
_MAMKPD_T2 = ("MamKPD-S", "MamKPD-B", "MamKPD-L")
_MPII_PRIOR = ("Conventional Methods", "Lightweight Methods")
_MPII_JOINTS = ("head", "shoulder", "elbow", "wrist", "hip", "knee", "ankle")
_T4_OTHERS = ("SBL-Res50", "SBL-Res101", "HRNet-W32", "HRNet-W48", "ViTPose-S", "ViTPose-B")


def _t4_others(metric: str) -> str:
    return ", ".join(cell("table4", r, metric) for r in _T4_OTHERS)


def _joint_margin(joint: str) -> str:
    return f"{cell('table3', 'MamKPD-L', joint)} - max({section_cells('table3', _MPII_PRIOR, joint)})"


CLAIMS: tuple[Claim, ...] = (
    Claim(
        "abstract-mpii-sota",
        "MamKPD achieves state-of-the-art results on the MPII dataset",
        "Abstract",
        f"{cell('table3', 'MamKPD-L', 'mean')} - max({section_cells('table3', _MPII_PRIOR, 'mean')})",
        ">",
        0.0,
        "points",
        note="MPII val Mean of MamKPD-L against every prior method of Table 3",
    ),
    Claim(
        "abstract-ap10k-saving",
        "competitive results on the AP-10K dataset while saving 85% of the parameters compared to ViTPose",
        "Abstract",
        f"1 - {cell('table4', 'MamKPD-L', 'params_m')} / {cell('table4', 'ViTPose-B', 'params_m')}",
        "≈",
        0.85,
        "%",
        0.01,
        note="85% fits MamKPD-L against ViTPose-B, Table 4's only ViTPose of that size (MamKPD-B would save 92%)",
        measured_tolerance=share_tolerance(12.4 / 86.0),
    ),
    Claim(
        "abstract-ap10k-competitive",
        "competitive results on the AP-10K dataset",
        "Abstract",
        f"{cell('table4', 'MamKPD-L', 'AP')} - max({_t4_others('AP')})",
        ">=",
        COMPETITIVE_POINTS,
        "points",
        note="'competitive' read as at most 1 AP point below the best other method of Table 4",
    ),
    Claim(
        "contrib-fastest",
        "The proposed MamKPD surpasses existing approaches in inference speed",
        "1. Introduction, contributions",
        f"{cell(_T2, 'MamKPD-S', 'fps')} / max({section_cells(_T2, _CONVENTIONAL + _LIGHT_RT, 'fps', _MAMKPD_T2)})",
        ">",
        1.0,
        "×",
        note="the fastest MamKPD (S) against every other timed row of Table 2; the paper's figures come from "
        "different GPUs (4090, A100, unstated)",
    ),
    Claim(
        "contrib-l-beats-realtime",
        "MamKPD-L achieved an inference speed of 1492 FPS with a keypoint detection accuracy of 77.3%, "
        "surpassing existing real-time methods",
        "1. Introduction, contributions",
        f"{cell(_T2, 'MamKPD-L', 'AP')} - max({section_cells(_T2, ('Real-Time Methods',), 'AP', _MAMKPD_T2)})",
        ">",
        0.0,
        "points",
        note="accuracy: MamKPD-L's COCO AP against the real-time rows (its 1492 FPS is below RTMO-S's 1522, so "
        "only the accuracy surpasses them; see contrib-l-speed-realtime)",
    ),
    Claim(
        "contrib-l-speed-realtime",
        "MamKPD-L achieved an inference speed of 1492 FPS […], surpassing existing real-time methods",
        "1. Introduction, contributions",
        f"{cell(_T2, 'MamKPD-L', 'fps')} / max({section_cells(_T2, ('Real-Time Methods',), 'fps', _MAMKPD_T2)})",
        ">",
        1.0,
        "×",
        note="speed: MamKPD-L's FPS against the real-time rows' FPS",
    ),
    Claim(
        "coco-beats-lite-dite",
        "On COCO val2017, MamKPD surpasses the Lite-HRNet and Dite-HRNet.",
        "4.2.1, COCO",
        f"min({', '.join(cell(_T2, r, 'AP') for r in _MAMKPD_T2)}) - "
        f"max({cell(_T2, 'Lite-HRNet', 'AP')}, {cell(_T2, 'Dite-HRNet', 'AP')})",
        ">",
        0.0,
        "points",
        note="every MamKPD variant above both",
    ),
    Claim(
        "coco-s-vs-ppt-saving",
        "MamKPD-S achieves competitive performance with PPT while saving 53.3% in parameter count.",
        "4.2.1, COCO",
        f"1 - {cell(_T2, 'MamKPD-S', 'params_m')} / {cell(_T2, 'PPT-B', 'params_m')}",
        "≈",
        0.533,
        "%",
        0.001,
        note="53.3% fits PPT-B (13.5M); Table 2 has no PPT-S",
        measured_tolerance=share_tolerance(6.3 / 13.5),
    ),
    Claim(
        "coco-s-vs-ppt-ap",
        "MamKPD-S achieves competitive performance with PPT",
        "4.2.1, COCO",
        f"{cell(_T2, 'MamKPD-S', 'AP')} - {cell(_T2, 'PPT-B', 'AP')}",
        ">=",
        COMPETITIVE_POINTS,
        "points",
        note="'competitive' read as at most 1 AP point below PPT-B",
    ),
    Claim(
        "coco-l-vs-pptl-ap",
        "MamKPD-L outperforms PPT-L by 2.1% AP",
        "4.2.1, COCO",
        f"{cell(_T2, 'MamKPD-L', 'AP')} - {cell(_T2, 'PPT-L', 'AP')}",
        "≈",
        2.1,
        "points",
        ACCURACY_ABS,
    ),
    Claim(
        "coco-l-vs-pptl-params",
        "with approximately 40% fewer parameters",
        "4.2.1, COCO",
        f"1 - {cell(_T2, 'MamKPD-L', 'params_m')} / {cell(_T2, 'PPT-L', 'params_m')}",
        "≈",
        0.40,
        "%",
        0.05,
        note="PPT-L's printed 20.8M is TokenPose-L/D6's count (Table 2's notes); measured likewise",
        measured_tolerance=share_tolerance(12.4 / 20.8),
    ),
    Claim(
        "coco-l-vs-vitpose-ap",
        "MamKPD-L scores 1% AP lower than ViTPose",
        "4.2.1, COCO",
        f"{cell(_T2, 'ViTPose-L', 'AP')} - {cell(_T2, 'MamKPD-L', 'AP')}",
        "≈",
        1.0,
        "points",
        ACCURACY_ABS,
        note="1 point fits ViTPose-L (78.3)",
    ),
    Claim(
        "coco-l-vs-vitpose-params",
        "it requires only 4% of ViTPose's parameters",
        "4.2.1, COCO",
        f"{cell(_T2, 'MamKPD-L', 'params_m')} / {cell(_T2, 'ViTPose-L', 'params_m')}",
        "≈",
        0.04,
        "%",
        0.01,
        note="ViTPose-L, as in the sentence before",
        measured_tolerance=share_tolerance(0.04),
    ),
    Claim(
        "coco-b-vs-vitposeb-ap",
        "MamKPD-B achieves performance exceeding that of ViTPose-B",
        "4.2.1, COCO",
        f"{cell(_T2, 'MamKPD-B', 'AP')} - {cell(_T2, 'ViTPose-B', 'AP')}",
        ">",
        0.0,
        "points",
    ),
    Claim(
        "coco-b-vs-vitposeb-params",
        "with only 8.3% of ViTPose-B's parameter count",
        "4.2.1, COCO",
        f"{cell(_T2, 'MamKPD-B', 'params_m')} / {cell(_T2, 'ViTPose-B', 'params_m')}",
        "≈",
        0.083,
        "%",
        0.001,
        note="ViTPose-B's printed 86.0M is the simple decoder's count (Table 2's notes); measured likewise",
        measured_tolerance=share_tolerance(0.083),
    ),
    Claim(
        "mpii-s-beats-prior",
        "the overall performance of MamKPD-S already surpasses existing methods",
        "4.2.1, MPII",
        f"{cell('table3', 'MamKPD-S', 'mean')} - max({section_cells('table3', _MPII_PRIOR, 'mean')})",
        ">",
        0.0,
        "points",
    ),
    Claim(
        "mpii-l-best-every-joint",
        "MamKPD-L achieves the best localization results for each keypoint",
        "4.2.1, MPII",
        f"min({', '.join(_joint_margin(j) for j in _MPII_JOINTS)})",
        ">",
        0.0,
        "points",
        note="the smallest margin over the prior methods across the seven joints (rows that print no joints drop out)",
    ),
    Claim(
        "mpii-l-wrist",
        "with notable improvements in wrist […] localization accuracy compared to prior methods",
        "4.2.1, MPII",
        _joint_margin("wrist"),
        ">",
        NOTABLE_POINTS,
        "points",
        note="'notable' read as more than 1 point (twice a reproduced accuracy's tolerance)",
    ),
    Claim(
        "mpii-l-ankle",
        "with notable improvements in […] ankle localization accuracy compared to prior methods",
        "4.2.1, MPII",
        _joint_margin("ankle"),
        ">",
        NOTABLE_POINTS,
        "points",
        note="'notable' read as more than 1 point",
    ),
    Claim(
        "ap10k-lighter",
        "Compared to CNN-based and Transformer-based methods, our proposed MamKPD achieves competitive "
        "performance while being more lightweight.",
        "4.2.1, AP-10K",
        f"min({_t4_others('params_m')}) / {cell('table4', 'MamKPD-L', 'params_m')}",
        ">",
        1.0,
        "×",
        note="the larger MamKPD (L) against the smallest other method of Table 4",
    ),
    Claim(
        "ap10k-b-saving",
        "compared to ViTPose-B, our method obtains a similar level of accuracy while saving about 92% model parameters",
        "4.2.1, AP-10K",
        f"1 - {cell('table4', 'MamKPD-B', 'params_m')} / {cell('table4', 'ViTPose-B', 'params_m')}",
        "≈",
        0.92,
        "%",
        0.01,
        note="92% fits MamKPD-B (MamKPD-L saves 86%)",
        measured_tolerance=share_tolerance(7.1 / 86.0),
    ),
    Claim(
        "ap10k-b-similar",
        "compared to ViTPose-B, our method obtains a similar level of accuracy",
        "4.2.1, AP-10K",
        f"{cell('table4', 'MamKPD-B', 'AP')} - {cell('table4', 'ViTPose-B', 'AP')}",
        ">=",
        COMPETITIVE_POINTS,
        "points",
        note="MamKPD-B, the model whose saving is 92%; 'similar' read as at most 1 AP point below",
    ),
    Claim(
        "speed-l-fewest-params",
        "MamKPD-L has the fewest parameters compared to conventional methods",
        "4.2.2",
        f"min({section_cells(_T2, _CONVENTIONAL, 'params_m')}) / {cell(_T2, 'MamKPD-L', 'params_m')}",
        ">",
        1.0,
        "×",
    ),
    Claim(
        "speed-l-beats-conventional",
        "its inference speed surpasses conventional methods",
        "4.2.2",
        f"{cell(_T2, 'MamKPD-L', 'fps')} / max({section_cells(_T2, _CONVENTIONAL, 'fps')})",
        ">",
        1.0,
        "×",
    ),
    Claim(
        "speed-l-4x-vitpose-l",
        "the inference speed of MamKPD-L is approximately 4 times faster than ViTPose-L's",
        "4.2.2",
        f"{cell(_T2, 'MamKPD-L', 'fps')} / {cell(_T2, 'ViTPose-L', 'fps')}",
        "≈",
        4.0,
        "×",
        0.5,
        note="the paper's figures come from a 4090 (MamKPD) and an A100 (ViTPose), as the text says",
    ),
    Claim(
        "speed-best-vs-light-rt",
        "compared to lightweight and real-time methods, MamKPD achieves the best results in both inference speed",
        "4.2.2",
        f"max({', '.join(cell(_T2, r, 'fps') for r in _MAMKPD_T2)}) / "
        f"max({section_cells(_T2, _LIGHT_RT, 'fps', _MAMKPD_T2)})",
        ">",
        1.0,
        "×",
        note="the fastest MamKPD against the fastest lightweight or real-time row (the lightweight rows print no FPS)",
    ),
    Claim(
        "accuracy-best-vs-light-rt",
        "compared to lightweight and real-time methods, MamKPD achieves the best results in […] localization accuracy",
        "4.2.2",
        f"max({', '.join(cell(_T2, r, 'AP') for r in _MAMKPD_T2)}) - "
        f"max({section_cells(_T2, _LIGHT_RT, 'AP', _MAMKPD_T2)})",
        ">",
        0.0,
        "points",
    ),
    Claim(
        "ablation-a-drop",
        "The performance of (a) decreases by 1.1%.",
        "4.3.1",
        f"{cell('table5', 'Ours', 'mean')} - {cell('table5', '(a)', 'mean')}",
        "≈",
        1.1,
        "points",
        ACCURACY_ABS,
    ),
    Claim(
        "ablation-b-drop",
        "The performance of (b) decreases by 6.5%",
        "4.3.1",
        f"{cell('table5', 'Ours', 'mean')} - {cell('table5', '(b)', 'mean')}",
        "≈",
        6.5,
        "points",
        ACCURACY_ABS,
    ),
    Claim(
        "ablation-c-declines",
        "the network's performance also declines as the feature dimensions decrease",
        "4.3.1",
        f"{cell('table5', 'Ours', 'mean')} - {cell('table5', '(c)', 'mean')}",
        ">",
        0.0,
        "points",
    ),
    Claim(
        "ablation-d-improves",
        "increasing the feature dimensions can improve the network's performance",
        "4.3.1",
        f"{cell('table5', '(d)', 'mean')} - {cell('table5', 'Ours', 'mean')}",
        ">",
        0.0,
        "points",
    ),
    Claim(
        "ablation-d-params",
        "it also substantially increases the number of parameters",
        "4.3.1",
        f"{cell('table5', '(d)', 'params_m')} / {cell('table5', 'Ours', 'params_m')}",
        ">",
        SUBSTANTIAL_RATIO,
        "×",
        note="'substantially' read as more than doubling",
    ),
    Claim(
        "fig3-stem-drop",
        "MamKPD drops by 1.3% after removing the Stem",
        "4.3.2",
        f"{cell('fig3', 'MamKPD', 'mean')} - {cell('fig3', 'w/o-Stem', 'mean')}",
        "≈",
        1.3,
        "points",
        ACCURACY_ABS,
        note="Figure 3 prints bars only: its CSV's Means are read from this sentence, so the paper check is circular",
    ),
    Claim(
        "fig3-cmm-drop",
        "after removing the context modeling module (i.e., w/o-CMM), the performance of MamKPD decreases by 3.2%",
        "4.3.2",
        f"{cell('fig3', 'MamKPD', 'mean')} - {cell('fig3', 'w/o-CMM', 'mean')}",
        "≈",
        3.2,
        "points",
        ACCURACY_ABS,
        note="circular paper check, as for the Stem",
    ),
    Claim(
        "fig3-pm-beats-wo-cmm",
        "w-PM's performance improves compared to w/o-CMM",
        "4.3.2",
        f"{cell('fig3', 'w-PM', 'mean')} - {cell('fig3', 'w/o-CMM', 'mean')}",
        ">",
        0.0,
        "points",
        note="the paper prints no value for w-PM (a bar in Figure 3)",
    ),
    Claim(
        "fig3-pm-below-mamkpd",
        "making its performance inferior to MamKPD's",
        "4.3.2",
        f"{cell('fig3', 'MamKPD', 'mean')} - {cell('fig3', 'w-PM', 'mean')}",
        ">",
        0.0,
        "points",
        note="the paper prints no value for w-PM (a bar in Figure 3)",
    ),
    Claim(
        "conclusion-l-1400",
        "MamKPD-L achieving a frame rate exceeding 1400 FPS on a single 4090 GPU",
        "5. Conclusion",
        cell(_T2, "MamKPD-L", "fps"),
        ">",
        1400.0,
        "FPS",
        note="an absolute frame rate: only a timing on an RTX 4090 measures it",
        gpu="4090",
    ),
    Claim(
        "conclusion-bs-2400",
        "and MamKPD-B and MamKPD-S exceeding 2400 FPS",
        "5. Conclusion",
        f"min({cell(_T2, 'MamKPD-B', 'fps')}, {cell(_T2, 'MamKPD-S', 'fps')})",
        ">",
        2400.0,
        "FPS",
        note="an absolute frame rate: only a timing on an RTX 4090 measures it",
        gpu="4090",
    ),
)

if len({c.key for c in CLAIMS}) != len(CLAIMS):
    raise ValueError("paper claims: duplicate claim keys")
