import os
import shutil
import tempfile

import pytest

# Under pytest-xdist each worker gets its share of the CPUs, for torch, numba's scan and the CLI subprocesses it
# starts alike (they read OMP_NUM_THREADS: mamkpd.data.threads). Two workers on two cores, each on two OpenMP
# threads, wait at every barrier for a thread the other has descheduled: the MamKPD training-step tests took 217 s
# that way, 33 s on one thread a worker. Set before torch is imported; a value the caller set is kept.
if "PYTEST_XDIST_WORKER_COUNT" in os.environ and "OMP_NUM_THREADS" not in os.environ:
    _cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    _share = _cpus // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])
    os.environ["OMP_NUM_THREADS"] = str(max(1, _share))

import torch  # noqa: E402

# Triton's @jit reads TRITON_INTERPRET when a function is defined, its own library's included: set it before
# anything (a test module collected before the Triton tests, torch's native ops) imports triton, so that the
# kernels and triton.language's helpers are all interpreted on a machine without CUDA (tests/triton_interpreter.py)
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


# One complexity cache per test session, started empty (mamkpd.harness.measure.count_cache): every model is
# counted by fvcore once per run, and read back by the next test that counts it (report --run, complexity
# --model all, the reproductions), in this process or a subprocess, which inherits the variable
_OWN_COUNT_CACHE = None


def pytest_configure(config):
    global _OWN_COUNT_CACHE
    if "MAMKPD_COMPLEXITY_CACHE" not in os.environ:
        _OWN_COUNT_CACHE = os.environ["MAMKPD_COMPLEXITY_CACHE"] = tempfile.mkdtemp(prefix="mamkpd-counts-")


def pytest_unconfigure(config):
    if _OWN_COUNT_CACHE:
        shutil.rmtree(_OWN_COUNT_CACHE, ignore_errors=True)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
