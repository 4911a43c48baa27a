"""A full disk, a read-only folder: one line naming the file and the cause, the previous file intact, no
temp file left. On a real small file system (a tmpfs, where this machine lets the tests mount one), and with
a writer that fails as a full disk does."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import torch

from mamkpd.engine.checkpoint import TEMP_SUFFIX, atomic_write, save_checkpoint

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs (root can mount one); skipped where the machine does not allow it."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _state(megabytes: float) -> dict:
    return {"model": {"w": torch.arange(int(megabytes * 2**20 / 4), dtype=torch.float32)}, "epoch": 3}


def test_a_checkpoint_that_does_not_fit_names_the_file_and_keeps_the_previous_one(small_disk):
    path = small_disk / "last.pth"
    save_checkpoint(path, _state(0.6))  # fits
    before = path.read_bytes()
    with pytest.raises(OSError) as info:
        save_checkpoint(path, _state(0.6))  # the temp file beside it does not
    message = str(info.value)
    assert info.value.errno == errno.ENOSPC
    assert str(path) in message and "No space left on device" in message and "previous last.pth is intact" in message
    assert "\n" not in message and "inline_container" not in message
    assert path.read_bytes() == before
    assert not [p for p in small_disk.iterdir() if p.name.endswith(TEMP_SUFFIX)]


def test_a_read_only_folder_says_so(tmp_path):
    if os.geteuid() == 0:
        # root writes through permission bits: a read-only bind is what stops it; fall back to the injected error
        def write(_):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))

        with pytest.raises(OSError, match=r"out\.json: not written: Read-only file system; no earlier out\.json"):
            atomic_write(tmp_path / "out.json", write, "w")
    else:
        tmp_path.chmod(0o555)
        with pytest.raises(OSError, match=r"out\.json: not written: Permission denied"):
            atomic_write(tmp_path / "out.json", lambda f: f.write("{}"), "w")
    assert not list(tmp_path.glob(f"*{TEMP_SUFFIX}"))


def test_a_quota_exceeded_midway_keeps_the_previous_file(tmp_path):
    path = tmp_path / "results.csv"
    path.write_text("old\n")

    def write(handle):
        handle.write("half")
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))

    with pytest.raises(OSError, match="Disk quota exceeded; the previous results.csv is intact"):
        atomic_write(path, write, "w")
    assert path.read_text() == "old\n" and not list(tmp_path.glob(f"*{TEMP_SUFFIX}"))


def test_train_on_a_full_disk_gives_one_line(small_disk, tmp_path):
    from pose_samples import sample

    ann = sample("coco", "test_coco.json")
    out = small_disk / f"run-{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable, "-m", "mamkpd.cli", "train", "--model", "mamkpd_s",
            "--model-kwargs", '{"depths": [1, 1, 1], "dims": [32, 64, 128]}', "--dataset", "coco",
            "--train-ann-file", str(ann), "--train-image-dir", str(ann.parent), "--input-size", "64", "48",
            "--epochs", "1", "--batch-size", "4", "--max-steps", "1", "--val-interval", "0", "--workers", "0",
            "--device", "cpu", "--out-dir", str(out),
        ],
        capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stdout[-1000:] + proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("mamkpd train: error: ") and "No space left on device" in last, proc.stderr[-2000:]
    assert ".pth" in last and "Traceback" not in proc.stderr
    assert not list(out.glob(f"*{TEMP_SUFFIX}"))
