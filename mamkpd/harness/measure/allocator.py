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

Every FPS timing records the setting it ran under (:func:`allocator_in_use`, the store's ``allocator`` column):
``system`` (glibc's defaults, what a plain PyTorch process gets; ``mamkpd fps`` and ``report --run`` time under
it unless told ``--allocator keep-freed``) or ``keep-freed``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import platform
import resource

__all__ = ["ALLOCATORS", "KEEP_FREED", "SYSTEM", "SYSTEM_ALLOCATOR", "allocator_in_use", "keep_freed_memory",
           "page_faults", "use_allocator"]  # fmt: skip

SYSTEM_ALLOCATOR = "the C library's malloc, as configured"
SYSTEM, KEEP_FREED = "system", "keep-freed"  # the allocator settings a timing can ask for, as recorded
ALLOCATORS = (SYSTEM, KEEP_FREED)
# mallopt's parameters (malloc.h): the free memory at the top of the heap above which it is returned to the
# system (-1: never, as mallopt(3) documents), and how many blocks may be mmap()ed on their own (0: every block
# comes from the heap and is reused)
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_NEVER = -1
_KEEPING = "glibc malloc keeping freed memory (mallopt: M_MMAP_MAX 0, M_TRIM_THRESHOLD -1)"


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
    return _KEEPING


def allocator_in_use() -> str:
    """The setting this process's timings run under: ``keep-freed`` once :func:`keep_freed_memory` has set it,
    else ``system``."""
    applied = keep_freed_memory.cache_info().currsize and keep_freed_memory() == _KEEPING
    return KEEP_FREED if applied else SYSTEM


def use_allocator(setting: str) -> None:
    """Time under ``setting`` (one of :data:`ALLOCATORS`) in this process. ``system`` after ``keep-freed`` is
    refused (mallopt's change lasts the process), and so is ``keep-freed`` where the C library cannot keep
    memory: a timing never records a setting it did not run under."""
    if setting not in ALLOCATORS:
        raise ValueError(f"allocator must be one of {', '.join(ALLOCATORS)}, got {setting!r}")
    if setting == KEEP_FREED and keep_freed_memory() != _KEEPING:
        raise RuntimeError(f"allocator {KEEP_FREED}: {keep_freed_memory()}")
    if setting == SYSTEM and allocator_in_use() == KEEP_FREED:
        raise RuntimeError(f"allocator {SYSTEM}: this process already keeps freed memory (mallopt lasts the process)")


def page_faults() -> int:
    """Page faults this process has taken so far that needed no disk (a fresh page's zeroing, mostly)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
