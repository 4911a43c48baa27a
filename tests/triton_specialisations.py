"""A pytest plugin that counts the Triton compiles the ``gpu`` tests cost on a cold cache, without a GPU.

It runs the CPU twin of each ``gpu`` test (the same test with ``device="cpu"``, whose kernels run in Triton's
interpreter) and records every kernel launch's specialisation: the kernel, its constexpr values, each
tensor's dtype and 16-byte alignment, each integer's ``== 1`` / ``% 16 == 0`` / 32-bit properties and the
launch options, the key under which Triton's JIT compiles a kernel once. The distinct keys are the compiles
the gpu tests make on a machine whose Triton cache is empty; they are written as JSON to
``$MAMKPD_TRITON_SPECIALISATIONS``. The GPU check's test budget is sized by them
(``mamkpd/harness/gpu_check.py``; ``tests/test_gpu_check.py`` runs this plugin):

    MAMKPD_TRITON_SPECIALISATIONS=keys.json PYTHONPATH=.:tests python -m pytest -p triton_specialisations \
        tests/test_ops_triton.py
"""

from __future__ import annotations

import inspect
import json
import os

import pytest

_KEYS: set[tuple] = set()
_LAUNCHES = [0]


def _argument_key(value, constexpr: bool):
    if constexpr:
        return ("constexpr", repr(value))
    if hasattr(value, "data_ptr") and hasattr(value, "dtype"):
        return ("tensor", str(value.dtype), value.data_ptr() % 16 == 0)
    if isinstance(value, bool) or value is None:
        return ("value", repr(value))
    if isinstance(value, int):
        return ("int", value == 1, value % 16 == 0, -(2**31) <= value < 2**31)
    return (type(value).__name__,)


def _record(self, args, kwargs):
    parameters = inspect.signature(self.fn).parameters
    bound = dict(zip(self.arg_names, args, strict=False))
    bound.update(kwargs)
    key = [self.fn.__qualname__]
    for name, value in sorted(bound.items()):
        parameter = parameters.get(name)
        constexpr = parameter is None or "constexpr" in str(parameter.annotation)  # launch options: by value
        key.append((name, _argument_key(value, constexpr)))
    _KEYS.add(tuple(key))
    _LAUNCHES[0] += 1


def pytest_configure(config):
    from triton.runtime.interpreter import InterpretedFunction

    run = InterpretedFunction.run

    def recording_run(self, *args, grid, warmup, **kwargs):
        _record(self, args, kwargs)
        return run(self, *args, grid=grid, warmup=warmup, **kwargs)

    InterpretedFunction.run = recording_run


def _twin_id(item) -> str | None:
    """The node id of this CPU test's CUDA twin (the same parameters, ``device="cuda"``), or None."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    if params.get("device") != "cpu":
        return None
    name, _, ids = item.nodeid.partition("[")
    return f"{name}[{'-'.join('cuda' if part == 'cpu' else part for part in ids.rstrip(']').split('-'))}]"


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    gpu = {item.nodeid for item in items if item.get_closest_marker("gpu")}
    items[:] = [item for item in items if _twin_id(item) in gpu]


def pytest_sessionfinish(session):
    path = os.environ.get("MAMKPD_TRITON_SPECIALISATIONS")
    if path:
        kernels = sorted({key[0] for key in _KEYS})
        per_kernel = {k: sum(1 for key in _KEYS if key[0] == k) for k in kernels}
        data = dict(launches=_LAUNCHES[0], specialisations=len(_KEYS), per_kernel=per_kernel)
        data.update(tests=session.testscollected)
        with open(path, "w") as f:
            json.dump(data, f, indent=1)
