"""The benchmarks' allocator: glibc's malloc set to keep freed memory for reuse
(:func:`mamkpd.harness.measure.allocator.keep_freed_memory`: every block from its heap, none given back to
the system), so that no timing carries the operating system's page faults on memory that the call before freed.
``MAMKPD_BENCH_ALLOCATOR=system`` times under glibc's defaults instead. The setting is printed in the run's
header and recorded in ``--benchmark-json``'s machine_info; each scan cell also records its page faults a call.

A benchmark module may put lines under a title in the ``goal_lines`` fixture (its goals, met or short, judged
from the cells run so far); they are printed at the end of the run."""

import os

import pytest

from mamkpd.harness.measure.allocator import SYSTEM_ALLOCATOR, keep_freed_memory

ALLOCATOR = SYSTEM_ALLOCATOR if os.environ.get("MAMKPD_BENCH_ALLOCATOR") == "system" else keep_freed_memory()


def pytest_report_header(config):
    return f"allocator: {ALLOCATOR}"


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["allocator"] = ALLOCATOR


GOALS = pytest.StashKey[dict]()


@pytest.fixture(scope="session")
def goal_lines(request) -> dict[str, list[str]]:
    """Title -> lines, printed at the end of the run (replace a title's lines as more cells are timed)."""
    return request.config.stash.setdefault(GOALS, {})


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    for title, lines in config.stash.get(GOALS, {}).items():
        terminalreporter.write_sep("-", title)
        for line in lines:
            terminalreporter.write_line(line)
