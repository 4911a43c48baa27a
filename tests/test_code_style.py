"""The style checks run inside the test command (``.ci/run`` runs exactly the README's install and test):
``ruff check`` and ``ruff format --check`` over the repository, as configured in pyproject.toml."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def ruff(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "ruff", *args], cwd=REPO, capture_output=True, text=True, timeout=300)
    if "No module named ruff" in proc.stderr:
        pytest.fail("ruff is not installed: it comes with the dev extra (./install.sh)")
    return proc


@pytest.mark.parametrize("args", [("check", "."), ("format", "--check", ".")], ids=["check", "format"])
def test_ruff_passes(args):
    proc = ruff(*args, "--no-cache")
    assert proc.returncode == 0, f"ruff {' '.join(args)}:\n{proc.stdout}{proc.stderr}"
