"""Issue 20, item 3: every command parses its arguments before the heavy imports, so a typo is answered at once
(it took 10-26 s on a busy machine while torch loaded); --help still lists what the registries hold."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mamkpd.cli import COMMANDS
from mamkpd.ops import SCAN_BACKENDS

REPO = Path(__file__).resolve().parents[1]
CHECK = """
import sys
from mamkpd.cli import main
try:
    main([sys.argv[1], "--bogus"])
except SystemExit as exc:
    print("exit", exc.code, "heavy:", sorted(m for m in ("torch", "pandas", "numpy", "cv2") if m in sys.modules))
"""


def _python(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=120, cwd=REPO)


@pytest.mark.parametrize("command", [c.replace("_", "-") for c in COMMANDS])
def test_a_typo_is_answered_without_importing_torch(command):
    proc = _python("-c", CHECK, command)
    assert "exit 2 heavy: []" in proc.stdout, proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1 and ("--bogus" in proc.stderr or "required" in proc.stderr)


def test_help_still_lists_every_scan_backend_and_a_bad_one_is_named():
    proc = _python("-m", "mamkpd.cli", "fps", "--help")
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    for name, backend in SCAN_BACKENDS.items():
        assert f"{name}: {' '.join(backend.description.split())}" in text
    proc = _python("-m", "mamkpd.cli", "fps", "--model", "mamkpd_s", "--scan-backend", "nope")
    assert proc.returncode == 2 and "--scan-backend" in proc.stderr and "'numba'" in proc.stderr
