"""Issue 20, item 6: a batch that does not fit in memory gives one line with the size tried and a size that fits,
before anything is allocated, never an out-of-memory kill without a word."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from mamkpd.engine import memory
from mamkpd.engine.memory import check_batch_fits, peak_activation_bytes

REPO = Path(__file__).resolve().parents[1]
UNDER_A_LIMIT = """
import resource, sys
import torch  # mapped before the limit: the limit is on what the command allocates
used = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
limit = used + 2 * 2**30
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
from mamkpd.cli import main
sys.exit(main(["fps", "--model", "mamkpd_s", "--batch", "4096", "--protocol", "quick"]))
"""


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads /proc")
def test_fps_with_a_batch_beyond_the_memory_limit_says_what_fits():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", UNDER_A_LIMIT], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.count("\n") == 1 and "--batch 4096 does not fit in memory" in proc.stderr, proc.stderr
    fits = int(re.search(r"--batch (\d+) fits", proc.stderr).group(1))
    assert 1 <= fits < 4096


def test_the_peak_counts_what_is_alive_at_once():
    """Three layers of 1000 floats each, each output freed once the next is made: at most two alive at once."""
    model = nn.Sequential(nn.Linear(10, 1000), nn.ReLU(), nn.Linear(1000, 1000)).eval()
    x = torch.zeros(1, 10)
    assert peak_activation_bytes(model, x) == 2 * 1000 * 4 + 10 * 4


def test_the_size_that_fits_fits(monkeypatch):
    model = nn.Sequential(nn.Linear(10, 1000), nn.ReLU(), nn.Linear(1000, 1000)).eval()
    x = torch.zeros(1, 10)
    monkeypatch.setattr(memory, "available_bytes", lambda device: 1_000_000)
    with pytest.raises(ValueError, match=r"--batch 1000 does not fit") as refused:
        check_batch_fits(model, x, 1000, "cpu")
    fits = int(re.search(r"--batch (\d+) fits", str(refused.value)).group(1))
    check_batch_fits(model, x, fits, "cpu")  # accepted
    with pytest.raises(ValueError):
        check_batch_fits(model, x, fits + 1, "cpu")


TRAIN_UNDER_A_LIMIT = """
import resource, sys
import torch
used = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
limit = used + 2 * 2**30
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
from mamkpd.cli import main
sys.exit(main(["train", *sys.argv[1:]]))
"""


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads /proc")
def test_train_with_a_batch_beyond_the_memory_limit_says_what_fits(tmp_path):
    import json

    from pose_samples import sample
    from test_cli_evaluate import TINY

    ann = sample("coco", "test_coco.json")
    args = ["--train-ann-file", str(ann), "--train-image-dir", str(ann.parent), "--model-kwargs", json.dumps(TINY)]
    args += ["--input-size", "256", "192", "--batch-size", "100000", "--workers", "0", "--val-interval", "0"]
    args += ["--out-dir", str(tmp_path / "run")]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", TRAIN_UNDER_A_LIMIT, *args], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.count("\n") == 1 and "--batch-size 100000 does not fit in memory" in proc.stderr, proc.stderr
    fits = int(re.search(r"--batch-size (\d+) fits", proc.stderr).group(1))
    assert 1 <= fits < 100000


EVALUATE_WITH_LITTLE_MEMORY = """
import sys
from mamkpd.engine import memory
memory.available_bytes = lambda device: 4_000_000  # a machine with 4 MB to spare (a mocked reading)
from mamkpd.cli import main
sys.exit(main(["evaluate", *sys.argv[1:]]))
"""


def test_evaluate_with_a_batch_beyond_the_memory_available_says_what_fits(tmp_path):
    from pose_samples import sample
    from test_cli_evaluate import untrained_checkpoint

    ckpt = untrained_checkpoint(tmp_path / "last.pth")
    ann = sample("coco", "test_coco.json")
    args = ["--checkpoint", str(ckpt), "--dataset", "coco", "--ann-file", str(ann), "--image-dir", str(ann.parent)]
    args += ["--device", "cpu", "--workers", "0", "--batch-size", "64", "--results", str(tmp_path / "k.json")]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", EVALUATE_WITH_LITTLE_MEMORY, *args], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = proc.stderr.strip().splitlines()[-1]
    assert "does not fit in memory" in line and "--batch-size" in line, proc.stderr[-2000:]
    match = re.search(r"--batch-size (\d+) does not fit .* --batch-size (\d+) fits", line)
    assert match, line
    assert 1 <= int(match.group(2)) < int(match.group(1)) <= 64
