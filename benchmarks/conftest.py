"""The benchmarks' allocator, set before torch is imported: freed memory kept for reuse by glibc's malloc
(:func:`mamkpd.harness.measure.allocator.keep_freed_memory`), and torch's blocks of 2 MiB or more on
transparent huge pages (``THP_MEM_ALLOC_ENABLE``, where the kernel allows them), so that no timing carries
the operating system's page faults on memory that the last call freed (glibc returns blocks above 32 MiB to
the system whatever its settings; huge pages fault them in 512 times less often). ``MAMKPD_BENCH_ALLOCATOR=
system`` times under the defaults instead. The setting is printed in the run's header and recorded in
``--benchmark-json``'s machine_info; each scan cell also records its page faults a call."""

import os
from pathlib import Path

SYSTEM = os.environ.get("MAMKPD_BENCH_ALLOCATOR") == "system"
if not SYSTEM:
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")  # read by torch at its first allocation

from mamkpd.harness.measure.allocator import SYSTEM_ALLOCATOR, keep_freed_memory  # noqa: E402  after the above


def _huge_pages() -> str:
    modes = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    mode = modes.read_text().split("[")[-1].split("]")[0] if modes.exists() else "unknown"
    asked = os.environ.get("THP_MEM_ALLOC_ENABLE") == "1"
    return f"torch blocks >= 2 MiB on huge pages: {'asked' if asked else 'not asked'} (kernel THP mode: {mode})"


ALLOCATOR = f"{SYSTEM_ALLOCATOR}; {_huge_pages()}" if SYSTEM else f"{keep_freed_memory()}; {_huge_pages()}"


def pytest_report_header(config):
    return f"allocator: {ALLOCATOR}"


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["allocator"] = ALLOCATOR
