"""The C allocator under the benchmarks' timings, and the page faults a timed call takes.

glibc's malloc hands a block above its mmap threshold (128 KiB at start, raised on the fly to the largest block
freed, at most 32 MiB) straight back to the operating system when it is freed, and trims free memory off the
top of its heap. The next allocation of that size then takes fresh pages, one page fault for every 4 KiB it
touches. On the 2-core VM of the suite's figures a fault costs about 1.7 us: the stage-1 scan's 9.4 MB output
takes 2,304 faults, about 4 ms, against 6 ms for the scan itself, and whether a call pays them depends on what
was freed before it (the timings come out bimodal). A block above 32 MiB (a batch of 8's activations) is
always mmap()ed and given back (mallopt caps the threshold there): the stage-1 scan's 75 MB output at batch 8
costs about 20 ms of page faults a call (68 against 48 ms with the memory kept). Inference servers avoid this
with an allocator that keeps memory (jemalloc, tcmalloc) and ONNX Runtime with its own arena.
:func:`keep_freed_memory` does the same for glibc, in-process: the benchmarks time under it, so that a kernel
is not charged for the operating system's page zeroing, and record the setting with every run.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import platform
import resource

__all__ = ["SYSTEM_ALLOCATOR", "keep_freed_memory", "page_faults"]

SYSTEM_ALLOCATOR = "the C library's malloc, as configured"
# mallopt's parameters (malloc.h): the free memory at the top of the heap above which it is returned to the
# system (-1: never, as mallopt(3) documents), and how many blocks may be mmap()ed on their own (0: every block
# comes from the heap and is reused)
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_NEVER = -1


@functools.lru_cache(maxsize=1)
def keep_freed_memory() -> str:
    """Set glibc's malloc to keep freed memory for reuse (every block from its heap, none mmap()ed on its own,
    the heap never trimmed: the process keeps its peak), once a process. Returns the allocator setting in words,
    for a run's protocol record; with another C library, says that nothing was changed."""
    if platform.libc_ver()[0] != "glibc":
        return f"{SYSTEM_ALLOCATOR} (not glibc: left unchanged)"
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    if not (libc.mallopt(_M_MMAP_MAX, 0) and libc.mallopt(_M_TRIM_THRESHOLD, _NEVER)):
        return f"{SYSTEM_ALLOCATOR} (glibc refused mallopt: left unchanged)"
    return "glibc malloc keeping freed memory (mallopt: M_MMAP_MAX 0, M_TRIM_THRESHOLD -1)"


def page_faults() -> int:
    """Page faults this process has taken so far that needed no disk (a fresh page's zeroing, mostly)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
