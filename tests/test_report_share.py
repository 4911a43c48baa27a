"""Issue 13: a report a user can share. Each test reproduces what the user saw in the report (items 6, 11-19)."""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pandas as pd
import pytest
import torch
from matplotlib.text import Text

from mamkpd.harness.jobs.run_plan import SAME_FUNCTION_REASON, UNCOUNTED_MULTIPLIES
from mamkpd.harness.store.results import COLUMNS, ResultsStore
from mamkpd.paper import compared_model, load_table
from mamkpd.report import EXAMPLE_MARKER, build_report, write_report
from mamkpd.report.compare import compare_table
from mamkpd.report.plots import fig1_figure, fps_vs_ap_figure

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "reports" / "example-cpu"
EXAMPLE_STORE = EXAMPLE / "results.csv"
CPU = dict(device="cpu", cpu_model="Test CPU", cpu_count=2)
COUNTED = dict(flops_convention="MAC (fvcore)", input_size=(256, 192), **CPU)


def _section(text: str, title: str) -> str:
    start = text.index(title)
    end = text.find("\n## ", start + len(title))
    return text[start : end if end > 0 else None]


def _sub_section(text: str, title: str) -> str:
    start = text.index(title)
    end = text.find("\n### ", start + len(title))
    return text[start : end if end > 0 else None]


def _mamkpd(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "mamkpd.cli", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300
    )


def _digest(folder: Path) -> dict[str, str]:
    # a store's ".lock" file appears beside it when the store is read (the writers' lock; gitignored): not content
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.suffix != ".lock"}


# ----------------------------------------------------------------------------------------- item 6


def test_hand_edited_store_is_flagged_and_kept_out_of_the_totals(tmp_path):
    store = ResultsStore(tmp_path / "r.csv")
    store.record(
        table="table1",
        row="MamKPD-Base",
        model="mamkpd_b",
        metric="params_m",
        paper=7.1,
        measured=6.98,
        tolerance=0.05,
        tolerance_kind="rel",
        **COUNTED,
    )
    store.record(
        table="table1",
        row="MamKPD-Large",
        model="mamkpd_l",
        metric="params_m",
        paper=12.4,
        measured=12.1,
        tolerance=0.05,
        tolerance_kind="rel",
        **COUNTED,
    )
    lines = store.path.read_text().split("\n")
    cells = lines[2].split(",")
    cells[COLUMNS.index("status")] = "bogus"
    lines[2] = ",".join(cells)
    store.path.write_text("\n".join(lines))
    text = write_report(store.path, tmp_path / "out")["report"].read_text()
    totals = next(line for line in text.splitlines() if line.startswith("Paper cells:"))
    assert "bogus" not in totals
    assert "line 3: status 'bogus' is not a known status" in text
    assert "| MamKPD-Large | 12.4 / — |" in text  # the edited row is not shown as data


# ---------------------------------------------------------------------------------------- item 12


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664)])
def test_files_are_written_with_the_users_umask(tmp_path, umask, mode):
    from mamkpd.engine.checkpoint import save_checkpoint

    previous = os.umask(umask)
    try:
        store = ResultsStore(tmp_path / "store" / "r.csv")
        store.record(
            table="table5",
            row="(a)",
            model="mamkpd_t5a",
            metric="params_m",
            paper=4.0,
            measured=3.97,
            tolerance=0.07,
            tolerance_kind="rel",
        )
        written = write_report(store.path, tmp_path / "out")
        checkpoint = save_checkpoint(tmp_path / "ckpt" / "last.pth", {"model": {"w": torch.zeros(2)}})
    finally:
        os.umask(previous)
    files = [*written.values(), checkpoint, store.path]
    assert {f.name: oct(f.stat().st_mode & 0o777) for f in files} == {f.name: oct(mode) for f in files}


def test_a_report_in_a_checkout_leaves_the_committed_example_alone(tmp_path):
    checkout = tmp_path / "checkout"
    example = checkout / "reports" / "example-cpu"
    example.parent.mkdir(parents=True)
    import shutil

    shutil.copytree(EXAMPLE, example)
    before = _digest(example)
    assert EXAMPLE_MARKER in before

    plain = _mamkpd("report", "--store", "reports/example-cpu/results.csv", cwd=checkout)
    assert plain.returncode == 0, plain.stderr
    assert (checkout / "runs" / "report" / "REPORT.md").is_file()  # the default: outside the example
    refused = _mamkpd(
        "report", "--store", "reports/example-cpu/results.csv", "--out", "reports/example-cpu", cwd=checkout
    )
    assert refused.returncode == 2 and "--force" in refused.stderr and "Traceback" not in refused.stderr
    assert _digest(example) == before

    forced = _mamkpd(
        "report", "--store", "reports/example-cpu/results.csv", "--out", "reports/example-cpu", "--force", cwd=checkout
    )
    assert forced.returncode == 0, forced.stderr
    after = _digest(example)
    assert after["REPORT.md"] != before["REPORT.md"] and after[EXAMPLE_MARKER] == before[EXAMPLE_MARKER]
    assert "`results.csv` (beside this report)" in (example / "REPORT.md").read_text()


# ---------------------------------------------------------------------------------------- item 13

_ABSOLUTE = re.compile(r"(^|[\s`'\"(\[=])~?/[A-Za-z]")


def test_the_report_names_no_path_of_the_machine(tmp_path, monkeypatch):
    store = ResultsStore(tmp_path / "elsewhere" / "results.csv")
    store.record(
        table="table2",
        row="HRNet-W32",
        model="hrnet_w32",
        metric="AP",
        paper=74.4,
        measured=74.3,
        tolerance=0.5,
        box_source=str(tmp_path / "coco" / "boxes.json"),
        dataset="coco",
        split="val2017",
        git_commit="0123456789abcdef",
        git_dirty=True,
        **CPU,
    )
    store.record(
        table="table2",
        row="MamKPD-B",
        model="mamkpd_b",
        metric="AP",
        paper=76.1,
        status="not run",
        status_reason=f"COCO not found at {tmp_path}/data/coco",
        git_commit="fedcba9876543210",
        git_dirty=False,
    )
    written = write_report(store.path, tmp_path / "out")
    text = written["report"].read_text()
    for name, path in written.items():
        if path.suffix in (".md", ".csv"):
            content = path.read_text()
            assert str(tmp_path) not in content and not _ABSOLUTE.search(content), name
    assert "results store `results.csv` (its file name" in text
    assert "commit(s): 01234567 (with uncommitted changes, 1 row); fedcba98 (clean, 1 row)." in text
    assert "COCO not found at …/coco" in written["table2"].read_text() and "boxes: …/boxes.json" in text

    monkeypatch.chdir(tmp_path)  # store and report in one tree: the store is named relative to the report
    relative = write_report("elsewhere/results.csv", "runs/report")["report"].read_text()
    assert "`../../elsewhere/results.csv` (relative to this report)" in relative


# ---------------------------------------------------------------------------------------- item 14


def test_the_speed_table_shows_only_measured_rows(tmp_path):
    store = ResultsStore(tmp_path / "r.csv")
    timing = dict(
        status="measured",
        batch_size=1,
        precision="fp32",
        timed_rounds=3,
        iqr=0.1,
        unit="samples/s",
        sample="person crop",
        **CPU,
    )
    store.record(
        table="table2",
        row="HRNet-W32",
        model="hrnet_w32",
        metric="fps",
        paper=916.0,
        measured=8.2,
        median=8.2,
        allocator="keep-freed",
        **timing,
    )
    store.record(
        table="table2", row="MamKPD-B", model="mamkpd_b", metric="fps", paper=2439.0, measured=2.3, median=2.3, **timing
    )
    for row, model in (("ViTPose-B", "vitpose_b"), ("RTMO-S", "rtmo_s")):  # as report --run recorded them
        store.record(
            table="table2",
            row=row,
            model=model,
            metric="fps",
            status="not run",
            status_reason=f"no CUDA device; not timed on CPU by report --run (run: mamkpd fps --model {model})",
        )
    speed = _section(write_report(store.path, tmp_path / "out")["report"].read_text(), "## Speed measurements")
    table_rows = [
        line.split("|")[1].strip() for line in speed.splitlines() if line.startswith("| ") and "---" not in line
    ]
    assert table_rows[1:] == ["hrnet_w32", "mamkpd_b"]
    lines = [line.split("|") for line in speed.splitlines() if line.startswith("| ") and "---" not in line]
    allocator = [cells.index(" Allocator ") for cells in lines[:1]][0]
    assert [cells[allocator].strip() for cells in lines[1:]] == ["keep-freed", "not recorded"]
    not_timed = [line for line in speed.splitlines() if line.startswith("Not timed")]
    assert not_timed == [
        "Not timed: vitpose_b, rtmo_s. Why: no CUDA device; not timed on CPU by report --run "
        "(run: mamkpd fps --model NAME)."
    ]


# ---------------------------------------------------------------------------------------- item 15

_IDENTIFIER = re.compile(r"\b[a-z][a-z0-9]*_[a-z0-9_]+\b|\btable\d\b|\bfig\d\b")


def test_every_finding_title_is_a_sentence(tmp_path):
    """The committed example's stored findings, one stored as report --run stored them before (the title inside
    the note, which the report titled "table2 vitpose_small_simple_config"), a finding recorded with a title, and
    every derived finding: no title reads as an identifier."""
    store = tmp_path / "r.csv"
    store.write_text(EXAMPLE_STORE.read_text())
    ResultsStore(store).record_finding(
        table="table2",
        row="vitpose_small_simple_config",
        model="baselines",
        text="The official small simple config is a copy of the classic one: it builds deconvolutions (protocol: x)",
    )
    ResultsStore(store).record_finding(
        table="table2",
        row="vitpose_b_params_decoder",
        model="baselines",
        title="ViTPose-B's parameter count is the simple decoder's",
        text="measured 85.91M",
    )
    findings = build_report(store).findings
    assert len(findings) >= 6
    for f in findings:
        assert not _IDENTIFIER.search(f.title), f.title
        assert f.title[0].isupper() and len(f.title.split()) >= 4, f.title
    assert any(f.title == "ViTPose-B's parameter count is the simple decoder's" for f in findings)
    assert any(f.title == "The official small simple config is a copy of the classic one" for f in findings)


# ---------------------------------------------------------------------------------------- item 16


def test_measured_under_names_each_protocol_once_with_its_rows(tmp_path):
    text = write_report(EXAMPLE_STORE, tmp_path / "out")["report"].read_text()
    table2 = _sub_section(text, "### Table 2.")
    lines = table2.split("Measured under:\n")[1].strip().splitlines()
    protocols = [line[2:].split(": ")[0] for line in lines]
    # the user saw 12 lines, each protocol 2 or 3 times, no row named: now each protocol once, with its rows
    assert len(protocols) == len(set(protocols)) and 2 <= len(lines) < 12, lines
    methods = set(load_table("table2")["method"])
    for line in lines:
        named = line.rsplit(" of ", 1)[1].split(", ")
        assert set(named) <= methods and named, line
    fps_lines = [line for line in lines if ": FPS and × HRNet-W32 FPS of " in line]
    assert any("HRNet-W32" in line.rsplit(" of ", 1)[1].split(", ") for line in fps_lines), fps_lines


# ---------------------------------------------------------------------------------------- item 17


def test_the_gate_is_applied_and_fvcore_does_not_count_it():
    """Without the SS2D-CMM gate a MamKPD differs in its outputs, but fvcore counts the same params and MACs:
    the gate is one element-wise multiply per stage output, B·H·W·C, which fvcore does not count."""
    from mamkpd.harness.measure.complexity import measure_model
    from mamkpd.harness.measure.readings import computes_default_function, elementwise_multiplies
    from mamkpd.models import create_model

    small = dict(depths=[1, 1, 1], dims=[32, 64, 128], input_size=(64, 48))
    gated, plain = create_model("mamkpd_s", **small), create_model("mamkpd_s", context_gate=False, **small)
    a, b = measure_model(gated, (64, 48)), measure_model(plain, (64, 48))
    assert (a.params, a.flops) == (b.params, b.flops)
    # stage outputs of a 64x48 input at /4, /8, /16 with 32, 64, 128 channels
    expected = 16 * 12 * 32 + 8 * 6 * 64 + 4 * 3 * 128
    assert elementwise_multiplies(gated, (64, 48)) - elementwise_multiplies(plain, (64, 48)) == expected
    assert not computes_default_function("mamkpd_s", {"context_gate": False})
    assert computes_default_function("mamkpd_s", {"init": "pytorch"})  # only the initial weights differ
    assert not computes_default_function("mamkpd_s", {"d_state": 16})


def test_readings_equal_to_the_default_are_explained_not_listed_as_news(tmp_path):
    store = ResultsStore(tmp_path / "r.csv")
    for reading, params, gflops in (("", 6.96, 3.24), ("no SS2D-CMM gate", 6.96, 3.24), ("d_state 1", 6.42, 2.24)):
        for metric, value, printed in (("params_m", params, 6.3), ("gflops", gflops, 0.5)):
            store.record(
                table="table1",
                row="MamKPD-Small",
                model="mamkpd_s",
                reading=reading,
                metric=metric,
                paper=printed,
                measured=value,
                status="measured",
                **COUNTED,
            )
    store.record(
        table="table1",
        row="MamKPD-Small",
        model="mamkpd_s",
        reading="no SS2D-CMM gate",
        metric=UNCOUNTED_MULTIPLIES,
        measured=-516096.0,
        status="measured",
        **COUNTED,
    )
    for metric in ("params_m", "gflops"):
        store.record(
            table="table1",
            row="MamKPD-Small",
            model="mamkpd_s",
            reading="PyTorch default init",
            metric=metric,
            status="not run",
            status_reason=SAME_FUNCTION_REASON,
        )
    readings = _section(write_report(store.path, tmp_path / "out")["report"].read_text(), "## Table 1 under")
    assert "| MamKPD-Small | no SS2D-CMM gate (= default) | 6.96 (+10%) | 3.24 (+548%) |" in readings
    assert "**no SS2D-CMM gate** has exactly the default's #params and GFLOPs for MamKPD-Small" in readings
    assert "multiplies per sample, this reading minus the default: MamKPD-Small -516,096 (256x192)" in readings
    assert "| MamKPD-Small | PyTorch default init" not in readings  # no counts listed for it
    assert "**PyTorch default init** is not counted for MamKPD-Small: given the default's weights" in readings


# ---------------------------------------------------------------------------------------- item 18


def _check_readable(fig) -> None:
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    figure_box = fig.bbox.padded(1)
    for text in fig.findobj(Text):
        if text.get_visible() and text.get_text():
            box = Text.get_window_extent(text, renderer)
            assert figure_box.x0 <= box.x0 and box.x1 <= figure_box.x1, text.get_text()
            assert figure_box.y0 <= box.y0 and box.y1 <= figure_box.y1, text.get_text()
    for ax in fig.axes:
        frame = ax.get_window_extent().padded(1)
        labels = [Text.get_window_extent(t, renderer) for t in ax.texts if t.get_text()]
        points = sum(len(c.get_offsets()) for c in ax.collections)
        assert len(labels) == points  # each point labelled once
        for box in labels:
            assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
        for a, b in itertools.combinations(labels, 2):
            assert not a.overlaps(b), (a, b)
        for collection in ax.collections:  # bubbles inside the axes
            centres = ax.transData.transform(collection.get_offsets())
            radii = (collection.get_sizes() / torch.pi) ** 0.5 * fig.dpi / 72
            radii = radii if len(radii) == len(centres) else [radii[0]] * len(centres)
            for (cx, cy), r in zip(centres, radii, strict=True):
                assert frame.x0 <= cx - r and cx + r <= frame.x1 and frame.y0 <= cy - r and cy + r <= frame.y1
        if ax.get_xscale() == "log":
            ticks = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
            assert ticks and all(re.fullmatch(r"\d+(\.\d+)?", t) for t in ticks), ticks


def test_figures_are_readable_at_a_glance():
    import matplotlib.pyplot as plt

    table2 = build_report(EXAMPLE_STORE).comparisons["table2"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for make in (fig1_figure, fps_vs_ap_figure):
            fig = make(table2)
            _check_readable(fig)
            plt.close(fig)
    fig = fps_vs_ap_figure(table2)
    left, right = (" ".join(ax.get_title().split()) for ax in fig.axes)  # titles wrap to the panel's width
    assert "FPS as printed" in left and "Our samples/s" in right and "the paper's AP" in right
    plt.close(fig)


def test_a_single_timing_still_gives_a_readable_figure(tmp_path):
    import matplotlib.pyplot as plt

    store = ResultsStore(tmp_path / "r.csv")
    store.record(
        table="table2",
        row="HRNet-W32",
        model="hrnet_w32",
        metric="fps",
        paper=916.0,
        measured=8.2,
        status="measured",
        batch_size=1,
        **CPU,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = fps_vs_ap_figure(compare_table("table2", store.read().frame))
        _check_readable(fig)
    plt.close(fig)


# ---------------------------------------------------------------------------------------- item 19


def test_vitpose_b_params_are_compared_with_the_variant_the_finding_names():
    from mamkpd.harness.findings.baseline_findings import vitpose_b_params_finding
    from mamkpd.models import list_models

    finding = vitpose_b_params_finding()
    assert finding["holds"] and "simple decoder's" in finding["finding"]
    for name in ("table2", "table4"):
        row = load_table(name).set_index("row").loc["ViTPose-B"]
        assert compared_model(row, "params_m") == "vitpose_b_simple"  # the finding's variant
        assert compared_model(row, "AP") == compared_model(row, "gflops") == "vitpose_b"
    for name in ("table1", "table2", "table3", "table4", "table5", "fig3"):
        table = load_table(name)
        for r in table.itertuples():
            for metric in ("params_m", "gflops", "fps", "AP"):
                assert compared_model(r, metric) in {*list_models(), ""}


def test_the_table_compares_vitpose_b_params_with_the_simple_decoder_and_says_so(tmp_path):
    from mamkpd.harness.jobs.run_plan import _complexity_cells

    assert ("table2", "ViTPose-B", "params_m", "vitpose_b_simple") in _complexity_cells()
    assert ("table2", "ViTPose-B", "gflops", "vitpose_b") in _complexity_cells()
    store = ResultsStore(tmp_path / "r.csv")
    for model, value in (("vitpose_b", 89.99), ("vitpose_b_simple", 85.91)):
        store.record(
            table="table2",
            row="ViTPose-B",
            model=model,
            metric="params_m",
            paper=86.0,
            measured=value,
            tolerance=0.005,
            tolerance_kind="rel",
            **COUNTED,
        )
    table2 = _sub_section(write_report(store.path, tmp_path / "out")["report"].read_text(), "### Table 2.")
    # the footnote's number depends on the rows above (TokenPose-S has one too): match the mark, not the number
    mark = re.search(r"\| ViTPose-B \| 86\.0 / 85\.9 ✓(\S) \|", table2).group(1)
    assert f"{mark} ViTPose-B, #Params (M): compared with `vitpose_b_simple`" in table2


# ---------------------------------------------------------------------------------------- item 11


@pytest.mark.slow
def test_the_training_step_of_report_run_shows_progress(tmp_path, capsys):
    from mamkpd.harness.jobs.run_plan import RunPlan, _Progress, _train_on_samples

    plan = RunPlan(train_epochs=4, train_passes_per_epoch=2, train_input_size=(64, 48))
    _train_on_samples(ResultsStore(tmp_path / "r.csv"), plan, _Progress(print, 600))
    captured = capsys.readouterr()
    assert "epoch 2/2" in captured.err and "2/2 [" in captured.err  # the trainer's bar, two steps per epoch
    assert "2 epochs of 2 passes" in captured.out
    frame = ResultsStore(tmp_path / "r.csv").read().frame
    assert "4 optimiser steps" in frame["notes"].iloc[0]


def test_comparison_columns_keep_the_store_format():
    frame = ResultsStore(EXAMPLE_STORE).read().frame
    assert list(frame.columns) == list(COLUMNS) and len(frame) > 100  # the example as a report --run wrote it
    assert isinstance(compare_table("table2", frame), pd.DataFrame)


# ----------------------------------------------------------------------------------------- README


@pytest.mark.parametrize("threads, layout", [(1, (1, 1)), (2, (2, 1)), (6, (2, 3))])
def test_report_run_counts_on_no_more_threads_than_it_is_given(threads, layout):
    """The README tells a shared machine to set OMP_NUM_THREADS: report --run's counting workers follow it
    (they used to start 2 workers on os.cpu_count() threads whatever it said)."""
    from mamkpd.harness.jobs.run_plan import worker_layout

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        assert worker_layout() == layout
    finally:
        torch.set_num_threads(previous)
