"""Tests that share a pytest-xdist worker: the test command runs ``-n 2 --dist loadgroup``, which sends every test
of a group to one worker, in collection order, and starts the largest groups first."""

import pytest

# Tests that count whole registered models with fvcore, one after another: the session's count cache
# (conftest.py) hands each count to the next test that needs it, where two workers would both count a model
# at once (report --run alone counts 40 models, a minute or two)
MODEL_COUNTS = pytest.mark.xdist_group("model-counts")

# The numba scan's tests: its float64 kernels compile once (about a minute, the install warms float32 only),
# not once in each worker at the same time
NUMBA_SCAN = pytest.mark.xdist_group("numba-scan")
