"""Checkpoints are read with weights_only=True: a crafted pickle is refused (its payload never runs), the
model zoos' release formats still load through the allow-list, and files that are no checkpoint, damaged
or of another model are one clear line each (issue 13, items 1 and 2)."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import textwrap
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from test_cli_evaluate import REPO, TINY, mamkpd_cli, untrained_checkpoint

import mamkpd
from mamkpd.models.checkpoint_file import (
    ZOO_SAFE_GLOBALS,
    CheckpointFileError,
    TrustedCheckpointWarning,
    UntrustedCheckpointError,
    checkpoint_globals,
    read_checkpoint,
)


class _Payload:
    """What a crafted checkpoint carries: unpickling it calls open(marker, "w"), creating the marker file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def crafted_checkpoint(tmp_path: Path) -> tuple[Path, Path]:
    """A checkpoint that looks like weights and runs code when fully unpickled; and its marker path."""
    marker = tmp_path / "payload-ran"
    path = tmp_path / "crafted.pth"
    weights = mamkpd.create_model("mamkpd_s", input_size=(64, 48), **TINY).state_dict()
    torch.save({"state_dict": weights, "meta": _Payload(marker)}, path)
    assert not marker.exists()  # saving did not run it
    return path, marker


def one_error_line(proc: subprocess.CompletedProcess, command: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"mamkpd {command}: error: "), lines[0]
    return lines[0]


def test_a_crafted_checkpoint_is_refused_by_evaluate_and_export_and_its_payload_never_runs(tmp_path):
    path, marker = crafted_checkpoint(tmp_path)
    proc = mamkpd_cli("evaluate", "--checkpoint", str(path), "--model", "mamkpd_s", "--dataset", "coco", cwd=tmp_path)
    line = one_error_line(proc, "evaluate")
    assert str(path) in line and "open" in line and "--trust-checkpoint" in line, line
    assert not marker.exists()
    out = tmp_path / "m.onnx"
    proc = mamkpd_cli(
        "export", "--model", "mamkpd_s", "--checkpoint", str(path), "--out", str(out), "--input-size", "64", "48",
        cwd=tmp_path,
    )  # fmt: skip
    line = one_error_line(proc, "export")
    assert str(path) in line and "--trust-checkpoint" in line, line
    assert not marker.exists() and not out.exists()
    # the Python API refuses it the same way, with the offending globals named
    with pytest.raises(UntrustedCheckpointError) as err:
        mamkpd.load_weights(mamkpd.create_model("mamkpd_s", input_size=(64, 48), **TINY), path)
    assert any(name.endswith(".open") for name in err.value.globals) and not marker.exists()


def test_a_file_the_user_trusts_needs_the_flag_and_is_loaded_saying_so(tmp_path):
    """A full-pickle checkpoint without a payload (metadata as an argparse Namespace, as some releases have)."""
    import argparse

    path = tmp_path / "trusted.pth"
    weights = mamkpd.create_model("mamkpd_s", input_size=(64, 48), **TINY).state_dict()
    torch.save({"state_dict": weights, "args": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(UntrustedCheckpointError, match="argparse.Namespace"):
        read_checkpoint(path)
    with pytest.warns(TrustedCheckpointWarning, match="full pickle"):
        assert read_checkpoint(path, trust=True)["args"].lr == 0.1
    args = ["evaluate", "--checkpoint", str(path), "--model", "mamkpd_s", "--model-kwargs", json.dumps(TINY)]
    proc = mamkpd_cli(*args, "--dataset", "coco", cwd=tmp_path)
    assert "--trust-checkpoint" in one_error_line(proc, "evaluate")
    # with the flag it loads (and says so); it then stops at the next thing missing: the data
    proc = mamkpd_cli(*args, "--dataset", "coco", "--trust-checkpoint", "--data-root", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert re.search(r"warning: .*trusted.pth: loaded as a full pickle", proc.stderr), proc.stderr
    assert "person_keypoints_val2017.json" in proc.stderr  # got past the checkpoint


def _calls_torch_load(source: str) -> bool:
    return any(
        isinstance(node, ast.Call) and ast.unparse(node.func) == "torch.load" for node in ast.walk(ast.parse(source))
    )


def test_only_the_safe_reader_calls_torch_load():
    sources = [*REPO.joinpath("mamkpd").rglob("*.py"), *REPO.joinpath("baselines").rglob("*.py")]
    callers = {p.relative_to(REPO).as_posix() for p in sources if _calls_torch_load(p.read_text())}
    assert callers == {"mamkpd/models/checkpoint_file.py"}


def _damaged_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    text = tmp_path / "notes.pth"
    text.write_text("these are not weights\n")
    jpeg = tmp_path / "photo.pth"
    jpeg.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(200))
    ours = untrained_checkpoint(tmp_path / "run" / "last.pth")
    truncated_ours = tmp_path / "run" / "truncated_last.pth"
    truncated_ours.write_bytes(ours.read_bytes()[: ours.stat().st_size // 2])
    zoo = tmp_path / "zoo.pth"
    torch.save(OrderedDict(w=torch.ones(1000)), zoo, _use_new_zipfile_serialization=False)  # HRNet's format
    truncated_zoo = tmp_path / "truncated_zoo.pth"
    truncated_zoo.write_bytes(zoo.read_bytes()[:-100])
    return {
        "empty": (empty, r"is empty \(0 bytes\)"),
        "text": (text, r"is not a PyTorch checkpoint \(it starts with b'these are not weights\\n': text\)"),
        "jpeg": (jpeg, r"is not a PyTorch checkpoint \(it starts with b'\\xff\\xd8\\xff.*: a JPEG image\)"),
        "truncated ours": (truncated_ours, r"is truncated/damaged: a `mamkpd train` checkpoint, damaged \(.*\)"),
        "truncated zoo": (truncated_zoo, r"is truncated/damaged: it ends early"),
    }


def test_bad_checkpoint_files_are_one_line_naming_the_file_and_the_problem(tmp_path):
    for kind, (path, expected) in _damaged_files(tmp_path).items():
        proc = mamkpd_cli("evaluate", "--checkpoint", str(path), "--dataset", "coco", cwd=tmp_path)
        line = one_error_line(proc, "evaluate")
        assert str(path) in line and re.search(expected, line), (kind, line)
        assert "pass --model" not in line, (kind, line)  # a damaged training checkpoint is not "another kind"
    directory = tmp_path / "run"
    proc = mamkpd_cli("evaluate", "--checkpoint", str(directory), "--dataset", "coco", cwd=tmp_path)
    line = one_error_line(proc, "evaluate")
    assert line.endswith(f"checkpoint {directory} is a directory, not a file"), line


def test_a_checkpoint_of_another_model_is_summarised_in_one_line(tmp_path):
    ours = untrained_checkpoint(tmp_path / "mamkpd_run" / "last.pth")
    args = ["--checkpoint", str(ours), "--model", "sbl_res50", "--input-size", "64", "64", "--dataset", "coco"]
    proc = mamkpd_cli("evaluate", *args, cwd=tmp_path)
    line = one_error_line(proc, "evaluate")
    match = re.search(
        r"does not match sbl_res50 \(closest layout '\w+', (\d+) tensors fit\): (\d+) missing from the checkpoint "
        r"\(([^)]*)\); (\d+) unexpected in the checkpoint \(([^)]*)\)",
        line,
    )
    assert match, line
    assert int(match[2]) > 100 and int(match[4]) > 20
    for names in (match[3], match[5]):
        assert len(names.split(", ")) == 4 and names.endswith("...")  # three names, then "..."


# --- the model zoos' release formats ------------------------------------------------------------------------
# Stand-ins for the classes of mmengine (not installed here) under their own module names, holding the state
# the real ones pickle: HistoryBuffer (mmengine/logging/history_buffer.py: max_length and two numpy arrays),
# MessageHub (early mmengine pickled the hub itself), ConfigDict (an addict Dict: its state is the dict).
_MMENGINE_STUBS = {
    "mmengine/__init__.py": "",
    "mmengine/logging/__init__.py": "",
    "mmengine/logging/history_buffer.py": """
        import numpy as np
        class HistoryBuffer:
            def __init__(self, log_history=(), count_history=(), max_length=1000000):
                self.max_length = max_length
                self._log_history = np.array(log_history)
                self._count_history = np.array(count_history)
        """,
    "mmengine/logging/message_hub.py": """
        class MessageHub:
            def __init__(self, name, log_scalars, runtime_info):
                self._instance_name = name
                self._log_scalars = log_scalars
                self._runtime_info = runtime_info
                self._resumed_keys = {k: True for k in [*log_scalars, *runtime_info]}
        """,
    "mmengine/config/__init__.py": "",
    "mmengine/config/config.py": """
        class ConfigDict(dict):
            def __getstate__(self):
                return self
            def __setstate__(self, state):
                self.update(state)
        """,
}

_WRITE_RELEASES = """
import sys
from collections import OrderedDict
import numpy as np
import torch
import mamkpd
from mmengine.config.config import ConfigDict
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.logging.message_hub import MessageHub

out = sys.argv[1]
torch.manual_seed(0)
model = mamkpd.create_model("mamkpd_s", input_size=(64, 48), depths=[1, 1, 1], dims=[16, 32, 64])
weights = OrderedDict(model.state_dict())
torch.save(weights, f"{out}/reference.pth")
loss = HistoryBuffer([0.5, 0.25], [1, 1])
dataset_meta = {
    "dataset_name": "coco",
    "sigmas": np.full(17, 0.05, dtype=np.float32),
    "keypoint_colors": np.zeros((17, 3), dtype=np.uint8),
    "flip_indices": list(range(17)),
}
runtime = {"epoch": 600, "iter": 1000, "cfg": "model = dict(...)", "dataset_meta": dataset_meta}
meta = {"cfg": "model = dict(...)", "dataset_meta": dataset_meta, "seed": 0, "experiment_name": "rtmo-s",
        "time": "20231219_000000", "mmengine_version": "0.10.1", "epoch": 600, "iter": 1000}
hub = {"log_scalars": {"train/loss": loss}, "runtime_info": runtime, "resumed_keys": {"train/loss": True}}
optimizer = {"state": {}, "param_groups": [{"lr": 4e-4, "params": [0]}]}
# MMPose 1.x (mmengine): the message hub's state_dict; early mmengine pickled the hub object itself
torch.save({"meta": meta, "state_dict": weights, "message_hub": hub, "optimizer": optimizer,
            "param_schedulers": [{"base_lrs": [4e-4], "last_step": 600}]}, f"{out}/mmpose1.pth")
torch.save({"meta": meta, "state_dict": weights, "message_hub": MessageHub("rtmo", {"train/loss": loss}, runtime)},
           f"{out}/mmpose1_early.pth")
# MMPose 0.x and ViTPose (mmcv 1.x): plain meta, the best score a numpy float64 from COCOeval
mmcv_meta = {"mmcv_version": "1.3.9", "time": "Tue Jun 14 2022", "config": "model = dict(...)", "seed": 0,
             "exp_name": "ViTPose_base_coco_256x192.py", "epoch": 210, "iter": 187320,
             "hook_msgs": {"last_ckpt": "work_dirs/epoch_210.pth", "best_score": np.float64(0.758),
                           "best_ckpt": "work_dirs/best_AP_epoch_200.pth"}}
torch.save({"meta": mmcv_meta, "state_dict": weights, "optimizer": optimizer}, f"{out}/mmcv.pth")
torch.save({"meta": mmcv_meta, "state_dict": weights}, f"{out}/mmcv_legacy.pth", _use_new_zipfile_serialization=False)
# a config pickled as a ConfigDict (a dict subclass), which torch's weights_only unpickler cannot fill
cfg = ConfigDict(type="TopdownPoseEstimator", backbone=ConfigDict(type="CSPNeXt", widen_factor=0.5))
torch.save({"meta": {"cfg": cfg}, "state_dict": weights}, f"{out}/configdict.pth")
# HRNet / SimpleBaseline releases: a bare state dict in torch's legacy (pre-1.6) format
torch.save(weights, f"{out}/hrnet_legacy.pth", _use_new_zipfile_serialization=False)
"""


@pytest.fixture(scope="module")
def zoo_releases(tmp_path_factory) -> Path:
    """Checkpoints in the release formats of MMPose 1.x, MMPose 0.x / ViTPose and HRNet, written by a process
    that has (stand-ins of) mmengine's classes, as the real files were."""
    root = tmp_path_factory.mktemp("zoo")
    stubs = root / "stubs"
    for name, source in _MMENGINE_STUBS.items():
        (stubs / name).parent.mkdir(parents=True, exist_ok=True)
        (stubs / name).write_text(textwrap.dedent(source))
    out = root / "files"
    out.mkdir()
    env = {"PYTHONPATH": f"{stubs}:{REPO}", "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-c", _WRITE_RELEASES, str(out)], check=True, env=env, timeout=300)
    # files written under numpy 1.x name numpy.core, not numpy._core: the legacy format's pickle shows it as
    # text (GLOBAL opcodes end at a newline), so a numpy-1.x file is this one with the module renamed
    legacy = (out / "mmcv_legacy.pth").read_bytes()
    assert b"numpy._core.multiarray\n" in legacy
    (out / "mmcv_numpy1.pth").write_bytes(legacy.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n"))
    return out


# what each release pickles beyond torch's own allow-list, as torch.serialization.get_unsafe_globals_in_checkpoint
# reports it (zip files) and this suite's scanner finds it (all formats)
EXPECTED_GLOBALS = {
    "mmpose1.pth": {
        "mmengine.logging.history_buffer.HistoryBuffer",
        "numpy.ndarray",
        "numpy.dtype",
        "numpy._core.multiarray._reconstruct",
    },
    "mmpose1_early.pth": {
        "mmengine.logging.message_hub.MessageHub",
        "mmengine.logging.history_buffer.HistoryBuffer",
        "numpy.ndarray",
        "numpy.dtype",
        "numpy._core.multiarray._reconstruct",
    },
    "mmcv.pth": {"numpy.dtype", "numpy._core.multiarray.scalar"},
    "mmcv_legacy.pth": {"numpy.dtype", "numpy._core.multiarray.scalar"},
    "mmcv_numpy1.pth": {"numpy.dtype", "numpy.core.multiarray.scalar"},
    "hrnet_legacy.pth": set(),
}


@pytest.mark.parametrize("name", sorted(EXPECTED_GLOBALS))
def test_model_zoo_release_formats_load_with_weights_only(zoo_releases, name):
    path = zoo_releases / name
    outside_torch = {g for g in checkpoint_globals(path) if not g.startswith("torch.")} - {
        "collections.OrderedDict",
        "_codecs.encode",
    }
    assert outside_torch == EXPECTED_GLOBALS[name]
    if path.read_bytes()[:2] == b"PK":  # torch's own static scan agrees (it reads zip checkpoints only)
        assert set(torch.serialization.get_unsafe_globals_in_checkpoint(path)) == EXPECTED_GLOBALS[name]
        with torch.serialization.safe_globals(list(ZOO_SAFE_GLOBALS)):
            assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == []
    assert outside_torch <= {qualified for _, qualified in ZOO_SAFE_GLOBALS}
    model = mamkpd.create_model("mamkpd_s", input_size=(64, 48), **TINY)
    report = mamkpd.load_weights(model, path)  # weights_only=True: no warning, no trust needed
    assert report.clean
    reference = read_checkpoint(zoo_releases / "reference.pth")
    for key, value in model.state_dict().items():
        assert torch.equal(value, reference[key]), key


def test_the_stand_ins_hold_the_state_and_nothing_else(zoo_releases):
    contents = read_checkpoint(zoo_releases / "mmpose1_early.pth")
    hub = contents["message_hub"]
    assert type(hub).__module__ == "mamkpd.models.checkpoint_file"  # mmengine is not imported, nor needed
    loss = hub._log_scalars["train/loss"]
    assert loss._log_history.tolist() == [0.5, 0.25] and loss.max_length == 1000000
    assert hub._runtime_info["cfg"] == "model = dict(...)" and hub._runtime_info["dataset_meta"]["sigmas"].shape == (
        17,
    )
    assert "mmengine" not in sys.modules
    assert read_checkpoint(zoo_releases / "mmcv_numpy1.pth")["meta"]["hook_msgs"]["best_score"] == 0.758


def test_unknown_classes_are_still_refused_next_to_the_allowed_ones(tmp_path):
    import fractions

    path = tmp_path / "x.pth"
    torch.save({"state_dict": {"w": torch.ones(1)}, "meta": {"ratio": fractions.Fraction(1, 3)}}, path)
    with pytest.raises(UntrustedCheckpointError, match=r"imports fractions.Fraction, which"):
        read_checkpoint(path)
    with pytest.raises(CheckpointFileError):
        read_checkpoint(path)  # every refusal is a CheckpointFileError (a ValueError): one line in the CLI


def test_a_release_with_a_pickled_configdict_is_refused_naming_it(zoo_releases):
    with pytest.raises(UntrustedCheckpointError, match=r"imports mmengine\.config\.config\.ConfigDict, which"):
        read_checkpoint(zoo_releases / "configdict.pth")


def test_train_refuses_a_crafted_resume_without_advising_a_flag_it_does_not_take(tmp_path):
    from pose_samples import sample

    path, marker = crafted_checkpoint(tmp_path)
    ann = sample("coco", "test_coco.json")
    proc = mamkpd_cli(
        "train", "--model", "mamkpd_s", "--model-kwargs", json.dumps(TINY), "--train-ann-file", str(ann),
        "--train-image-dir", str(ann.parent), "--input-size", "64", "48", "--val-interval", "0", "--workers", "0",
        "--device", "cpu", "--out-dir", str(tmp_path / "run"), "--resume", str(path),
        cwd=tmp_path,
    )  # fmt: skip
    line = one_error_line(proc, "train")
    assert str(path) in line and "open" in line and "resume only from a checkpoint `mamkpd train` wrote" in line
    assert "--trust-checkpoint" not in line, line
    assert not marker.exists()
