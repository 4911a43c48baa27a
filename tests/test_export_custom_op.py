"""ONNX export with ``--onnx-scan custom-op``: each scan one onnxruntime-extensions node run by mamkpd's kernel."""

from __future__ import annotations

import importlib.util
import json
import sys

import onnx
import pytest
from test_export_cli import _export
from test_export_onnx import TINY_MAMKPD, heatmap_scale_checkpoint, onnxruntime_vs_eager

from mamkpd import create_model
from mamkpd.cli import main
from mamkpd.export import (
    CUSTOM_OP_SCAN_FORM,
    DEFAULT_TOLERANCE,
    OnnxExportConfig,
    count_ss2d,
    example_input,
    export_onnx,
    onnx_session,
)

needs_ortx = pytest.mark.skipif(
    importlib.util.find_spec("onnxruntime_extensions") is None,
    reason="onnxruntime-extensions is not installed (pip install 'mamkpd[ortx]')",
)


@needs_ortx
@pytest.mark.parametrize("backend,node", [("numba", "MamkpdCrossSelectiveScan"), ("torch", "MamkpdSelectiveScan")])
def test_custom_op_export_matches_the_reference(tmp_path, backend, node):
    """numba: SS2D's fused cross scan; torch (no fused form): the plain scan, with z and D absent or given."""
    ckpt = heatmap_scale_checkpoint(tmp_path / "weights.pt", "mamkpd_s", **TINY_MAMKPD)
    out = tmp_path / "custom.onnx"
    report = export_onnx(
        OnnxExportConfig(
            model="mamkpd_s",
            out=out,
            checkpoint=ckpt,
            model_kwargs=TINY_MAMKPD,
            scan_backend=backend,
            batch=None,
            optimize=False,
            scan_form=CUSTOM_OP_SCAN_FORM,
        )
    )
    assert report.check.passed and not report.check.weak, report.check
    assert report.scan_form == CUSTOM_OP_SCAN_FORM and report.scan_nodes == 3
    graph = onnx.load(str(out)).graph
    assert [n.domain for n in graph.node if n.op_type == node] == ["ai.onnx.contrib"] * 3
    assert "Scan" not in report.onnx_op_types and report.onnx_op_types[node] == 3
    # re-run in a fresh session at a third batch size (the graph is dynamic), against the model eager on the
    # pure-PyTorch reference scan, not on the kernel the custom node calls
    reference = create_model("mamkpd_s", checkpoint_path=ckpt, scan_backend="reference", **TINY_MAMKPD).eval()
    x = example_input(TINY_MAMKPD["input_size"], batch=3, seed=5)
    assert onnxruntime_vs_eager(out, reference, x) <= DEFAULT_TOLERANCE
    # the scan nodes run on torch's OpenMP team: onnxruntime's idle threads sleep rather than spin beside it
    spinning = onnx_session(out).get_session_options().get_session_config_entry("session.intra_op.allow_spinning")
    assert spinning == "0"


@needs_ortx
def test_cli_custom_op(tmp_path):
    out = tmp_path / "s.onnx"
    proc = _export(
        "--model",
        "mamkpd_s",
        "--input-size",
        "64",
        "48",
        "--no-optimize",
        "--out",
        str(out),
        "--onnx-scan",
        "custom-op",
    )
    assert proc.returncode == 0, proc.stderr
    assert "12 selective scans lowered to custom-op" in proc.stdout, proc.stdout
    nodes = [n.op_type for n in onnx.load(str(out)).graph.node]
    assert nodes.count("MamkpdCrossSelectiveScan") == count_ss2d(create_model("mamkpd_s", input_size=(64, 48))) == 12
    assert "Scan" not in nodes


def test_missing_onnxruntime_extensions_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime_extensions", None)  # import fails as if not installed
    code = main(["export", "--model", "mamkpd_s", "--out", str(tmp_path / "x.onnx"), "--onnx-scan", "custom-op"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "onnxruntime-extensions" in err and "pip install" in err
    assert list(tmp_path.iterdir()) == []


def test_unknown_scan_form(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["export", "--model", "mamkpd_s", "--out", str(tmp_path / "x.onnx"), "--onnx-scan", "loop"])
    assert exc.value.code == 2 and "invalid choice" in capsys.readouterr().err
    with pytest.raises(ValueError, match="scan_form must be one of onnx-scan, custom-op"):
        OnnxExportConfig(model="mamkpd_s", out=tmp_path / "x.onnx", scan_form="loop")


@needs_ortx
def test_fps_times_the_custom_op_file(capsys):
    """`mamkpd fps --runtime onnxruntime --onnx-scan custom-op` times the custom-op file and says so."""
    code = main(
        ["fps", "--model", "mamkpd_s", "--input-size", "64", "48", "--runtime", "onnxruntime"]
        + ["--onnx-scan", CUSTOM_OP_SCAN_FORM, "--protocol", "smoke", "--json"]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    row = json.loads(out.strip().splitlines()[-1])
    assert row["runtime"] == "onnxruntime" and row["scan_backend"] == CUSTOM_OP_SCAN_FORM
    assert row["median_samples_per_s"] > 0
