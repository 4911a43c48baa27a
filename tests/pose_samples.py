"""The real pose samples (../shared/data/pose-samples, or $MAMKPD_SAMPLES) for tests: the one place that
decides whether they are there. Where they are not (a GitHub runner has none), the tests that need them
skip, saying where they were looked for and which variable points elsewhere."""

from __future__ import annotations

from pathlib import Path

import pytest

from mamkpd.data.samples import SAMPLES_ENV, samples_root

SAMPLES = samples_root()
# the file every sample-based test reads first; the folder is whole when it is there
_MARKER = SAMPLES / "coco" / "test_coco.json"
MISSING_REASON = f"pose samples not found at {SAMPLES} (set {SAMPLES_ENV} to the pose-samples folder)"

requires_samples = pytest.mark.skipif(not _MARKER.is_file(), reason=MISSING_REASON)


def sample(*parts: str) -> Path:
    """A file of the samples (``sample("coco", "test_coco.json")``); the calling test skips when it is absent."""
    path = SAMPLES.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{MISSING_REASON}: no {path}")
    return path
