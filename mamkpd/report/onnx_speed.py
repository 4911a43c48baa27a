"""``report --run``'s ONNX Runtime timings: each model it times eager, exported and timed in onnxruntime on the
CPU, stored beside the eager figure (the report's speed table shows it as a column).

A step of this layer, not the harness's: the harness may not import :mod:`mamkpd.export`. It runs last, in what
the budget leaves, and stops between two models when the next would overrun it (expected to take as long as
the slowest so far; the first one :attr:`RunPlan.onnx_first_estimate_s`). A model with a selective scan is
timed in both ONNX scan forms where onnxruntime-extensions is installed: the portable ONNX ``Scan`` and the
custom-op file (Python onnxruntime only); the report shows each beside eager.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable

from ..export import ONNX_RUNTIME
from ..harness.jobs.run_plan import BUDGET_REASON, RunLog, RunPlan, run_measurements
from ..harness.store.fps_records import record_fps

ONNX_STEP_TITLE = "ONNX Runtime speed beside eager"

__all__ = ["ONNX_RUNTIME", "ONNX_STEP_TITLE", "measure_onnx_speeds", "run_measurements_with_onnx"]


def measure_onnx_speeds(store, plan: RunPlan, progress) -> None:
    """Export and time in onnxruntime each model the plan times eager, at its batch and protocol, into ``store``."""
    from ..export import SCAN_FORMS, measure_onnx_fps

    if plan.device != "cpu":
        progress.leave_out(ONNX_STEP_TITLE, f"timed on the CPU only, not on --device {plan.device}")
        return
    names = [n for n in plan.timed_models if n not in plan.onnx_skip]
    for name in plan.onnx_skip:
        if name in plan.speed_models:
            progress.leave_out(
                f"ONNX Runtime speed of {name}",
                f"its export alone takes 25-85 s (RunPlan.onnx_skip): "
                f"`mamkpd fps --runtime onnxruntime --model {name}`",
            )
    slowest = plan.onnx_first_estimate_s
    for index, name in enumerate(names):
        if not progress.fits(slowest):
            for left in names[index:]:
                progress.leave_out(
                    f"ONNX Runtime speed of {left}",
                    f"{BUDGET_REASON}: the next export and timing would take ~{slowest:.0f} s",
                )
            return
        for form in _scan_forms(name):
            started = progress.elapsed
            label = name if form == SCAN_FORMS[0] else f"{name} ({form})"
            try:
                m = measure_onnx_fps(
                    name, plan.speed_batch, "cpu", plan.speed_protocol, scan_form=form, allocator=plan.allocator
                )
            except (RuntimeError, ValueError, OSError, ImportError) as exc:  # the next model may still export
                why = str(exc).splitlines()[0] if str(exc) else repr(exc)
                progress.leave_out(f"ONNX Runtime speed of {label}", f"failed: {why}")
                continue
            took = progress.elapsed - started
            slowest = max(slowest if index else 0.0, took)
            record_fps(store, m)
            progress(
                f"ONNX Runtime speed {label}: {m.result.median:.3g} samples/s (export, check and timing {took:.0f} s)"
            )


def _scan_forms(name: str) -> tuple[str, ...]:
    """The ONNX scan forms to time ``name`` in: the portable one, and for a model with a selective scan the
    custom-op one too where onnxruntime-extensions is installed (what a Python deployment can run)."""
    from ..export import CUSTOM_OP_SCAN_FORM, SCAN_FORMS
    from ..models import model_info

    if model_info(name).has_scan and importlib.util.find_spec("onnxruntime_extensions") is not None:
        return (SCAN_FORMS[0], CUSTOM_OP_SCAN_FORM)
    return SCAN_FORMS[:1]


def run_measurements_with_onnx(
    store_path: str | os.PathLike, plan: RunPlan | None = None, echo: Callable[[str], None] = print
) -> RunLog:
    """:func:`~mamkpd.harness.jobs.run_plan.run_measurements` with the ONNX Runtime timings last (unless the
    plan turns them off)."""
    plan = plan or RunPlan()
    later = [(ONNX_STEP_TITLE, measure_onnx_speeds)] if plan.onnx_speed else []
    return run_measurements(store_path, plan, echo, later_steps=later)
