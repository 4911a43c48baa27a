"""The scan backend as a setting: one registry of backend objects, resolved once per model (when it is built
or moved, never per forward), offered by every command that runs a model, and recorded as the one that ran."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import mamkpd
from mamkpd.models import scan_backend_of
from mamkpd.models.layers import SS2D
from mamkpd.models.layers import ss2d as ss2d_module
from mamkpd.ops import SCAN_BACKEND_CHOICES, SCAN_BACKENDS, auto_order, get_backend, resolve_backend

REPO = Path(__file__).resolve().parents[1]
TINY = dict(depths=(1, 1, 1), dims=(8, 16, 32))
COMMANDS_THAT_RUN_A_MODEL = ("fps", "train", "evaluate", "export", "reproduce", "report")


def _mamkpd(*args: str, cwd: Path = REPO, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "mamkpd.cli", *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=cwd
    )


def test_backends_declare_what_they_can_do():
    for name, backend in SCAN_BACKENDS.items():
        assert backend.name == name and backend.description and backend.device_types
        assert all(isinstance(d, torch.dtype) and d.is_floating_point for d in backend.dtypes)
        if backend.cross is not None:
            assert backend.in_custom_op, f"{name}: a fused cross scan runs inside the custom op"
    # the oracle is never timed and never inside the op; what auto picks comes from the backends' own ranks
    assert not get_backend("reference").deployable and not get_backend("reference").in_custom_op
    assert get_backend("cuda").dtypes == (torch.float32, torch.float16, torch.bfloat16)  # mamba-ssm: no fp64
    assert auto_order("cpu")[-1] == auto_order("cuda")[-1] == "torch"  # the fallback that runs anywhere
    assert SCAN_BACKEND_CHOICES == ("auto", *SCAN_BACKENDS)
    with pytest.raises(ValueError, match="unknown scan backend 'fast'; choose one of auto, reference"):
        get_backend("fast")


def test_resolved_once_when_built_or_moved_never_per_forward(monkeypatch):
    calls = []
    real = ss2d_module.resolve_backend
    monkeypatch.setattr(ss2d_module, "resolve_backend", lambda *a: calls.append(a) or real(*a))
    model = mamkpd.create_model("mamkpd_s", input_size=(64, 48), scan_backend="torch", **TINY).eval()
    blocks = sum(isinstance(m, SS2D) for m in model.modules())
    assert len(calls) >= blocks  # each block resolved at build time (again after the model-level init)
    built = len(calls)
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(1, 3, 64, 48))
    assert len(calls) == built, "a forward resolved the scan backend again"
    model.to(torch.float64)  # .to() / .cuda() / to_empty(): the tensors may have moved, so resolve again
    assert len(calls) == built + blocks
    assert scan_backend_of(model) == "torch"


def test_a_backend_that_cannot_run_here_says_why_at_the_forward(monkeypatch):
    from mamkpd.ops import scan_triton

    monkeypatch.setattr(scan_triton, "interpreting", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    # building on the CPU before .cuda() is fine; running there is not, and the reason is the backend's own
    model = mamkpd.create_model("mamkpd_s", input_size=(64, 48), scan_backend="triton", **TINY)
    assert scan_backend_of(model) is None
    with pytest.raises(RuntimeError, match="needs a CUDA device, or TRITON_INTERPRET=1"):
        model(torch.randn(1, 3, 64, 48))
    model.scan_backend = "auto"
    assert scan_backend_of(model) == auto_order("cpu")[0]


def test_meta_device_builds_and_resolves_when_materialised():
    with torch.device("meta"):
        model = mamkpd.create_model("mamkpd_s", scan_backend="torch")
    assert scan_backend_of(model) is None
    model.to_empty(device="cpu")
    assert scan_backend_of(model) == "torch"


def test_create_model_applies_the_backend_only_to_models_with_a_scan():
    assert scan_backend_of(mamkpd.create_model("sbl_res50", scan_backend="torch")) is None
    assert scan_backend_of(mamkpd.create_model("mamkpd_s", input_size=(64, 48), scan_backend="torch", **TINY)) == (
        "torch"
    )


def test_backend_names_are_compared_only_inside_ops():
    """Outside ``mamkpd/ops`` nothing branches on a backend's name: code asks the backend object."""
    names = {n for n in SCAN_BACKENDS if n not in ("torch", "cuda")}  # "torch"/"cuda" also name devices, builds
    offenders = []
    for path in (REPO / "mamkpd").rglob("*.py"):
        if "ops" in path.relative_to(REPO / "mamkpd").parts[:1]:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                for operand in (node.left, *node.comparators):
                    values = operand.elts if isinstance(operand, (ast.Tuple, ast.List, ast.Set)) else [operand]
                    if any(isinstance(v, ast.Constant) and v.value in names for v in values):
                        offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not offenders, offenders


@pytest.mark.parametrize("command", COMMANDS_THAT_RUN_A_MODEL)
def test_every_command_that_runs_a_model_offers_every_registered_backend(command):
    args = (command, "--run", "--help") if command == "report" else (command, "--help")
    proc = _mamkpd(*args)
    assert proc.returncode == 0, proc.stderr
    assert "--scan-backend" in proc.stdout
    for name in SCAN_BACKEND_CHOICES:
        assert name in proc.stdout, f"`mamkpd {command} --help` does not offer {name}"


def test_fps_records_the_backend_it_was_given():
    proc = _mamkpd(
        "fps", "--model", "mamkpd_s", "--input-size", "64", "48", "--protocol", "smoke", "--json",
        "--scan-backend", "torch",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["scan_backend"] == "torch"
    refused = _mamkpd("fps", "--model", "mamkpd_s", "--scan-backend", "reference", "--protocol", "smoke")
    assert refused.returncode == 2 and "correctness oracle" in refused.stderr and "Traceback" not in refused.stderr


def test_export_records_the_backend_of_its_eager_check(tmp_path):
    proc = _mamkpd(
        "export", "--model", "mamkpd_s", "--input-size", "64", "48", "--out", str(tmp_path / "m.onnx"),
        "--scan-backend", "torch", "--no-optimize", "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["scan_backend"] == "torch"


def test_resolve_backend_returns_the_object_that_runs():
    assert resolve_backend("auto", "cpu") is SCAN_BACKENDS[auto_order("cpu")[0]]
    assert resolve_backend("torch", "cpu") is SCAN_BACKENDS["torch"]


def test_train_records_the_backend_it_was_given(tmp_path):
    from pose_samples import sample

    ann = sample("coco", "test_coco.json")
    args = [
        "train", "--model", "mamkpd_s", "--model-kwargs", json.dumps({"depths": [1, 1, 1], "dims": [8, 16, 32]}),
        "--train-ann-file", str(ann), "--train-image-dir", str(ann.parent), "--input-size", "64", "48",
        "--batch-size", "4", "--max-steps", "1", "--epochs", "1", "--val-interval", "0", "--workers", "0",
        "--device", "cpu", "--out-dir", str(tmp_path / "run"), "--json",
    ]  # fmt: skip
    proc = _mamkpd(*args, "--scan-backend", "torch", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["scan_backend"] == "torch"
    # one way to set it: not also through the model's overrides
    kwargs = json.dumps({"depths": [1, 1, 1], "dims": [8, 16, 32], "scan_backend": "torch"})
    proc = _mamkpd(*[kwargs if a.startswith("{") else a for a in args], cwd=tmp_path)
    assert proc.returncode == 2 and "use TrainConfig.scan_backend (--scan-backend)" in proc.stderr
