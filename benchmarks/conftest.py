"""The benchmarks' allocator: glibc's malloc set to keep freed memory for reuse
(:func:`mamkpd.harness.measure.allocator.keep_freed_memory`: every block from its heap, none given back to
the system), so that no timing carries the operating system's page faults on memory that the call before freed.
``MAMKPD_BENCH_ALLOCATOR=system`` times under glibc's defaults instead. The setting is printed in the run's
header and recorded in ``--benchmark-json``'s machine_info; each scan cell also records its page faults a call."""

import os

from mamkpd.harness.measure.allocator import SYSTEM_ALLOCATOR, keep_freed_memory

ALLOCATOR = SYSTEM_ALLOCATOR if os.environ.get("MAMKPD_BENCH_ALLOCATOR") == "system" else keep_freed_memory()


def pytest_report_header(config):
    return f"allocator: {ALLOCATOR}"


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["allocator"] = ALLOCATOR
