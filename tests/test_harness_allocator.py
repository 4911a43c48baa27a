"""The benchmarks' allocator setting: with glibc's defaults, memory freed by one call is faulted in again by
the next; after keep_freed_memory it is reused. Each case runs in a fresh process (mallopt cannot be undone)."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc", reason="keep_freed_memory sets glibc's malloc, and this C library is not glibc"
)

# Blocks of one size a round, as a call's output and scratch. Two of 12 MiB: after the first round glibc serves
# them from its heap, and by default trims the freed 24 MiB off the top again (its trim threshold follows the mmap
# threshold). One of 40 MiB: above the largest mmap threshold, so by default mmap()ed and given back every time.
ROUNDS = """
import ctypes, ctypes.util, sys
from mamkpd.harness.measure.allocator import keep_freed_memory, page_faults
mode, count, mib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if mode == "keep":
    print(keep_freed_memory())
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]

def round_of_calls():
    blocks = [libc.malloc(mib << 20) for _ in range(count)]
    for block in blocks:
        ctypes.memset(block, 1, mib << 20)
    for block in blocks:
        libc.free(block)

round_of_calls()
before = page_faults()
for _ in range(10):
    round_of_calls()
print((page_faults() - before) // 10)
"""


BLOCKS = [(2, 12), (1, 40)]  # (blocks, MiB each)


def faults_a_round(mode: str, count: int, mib: int) -> tuple[int, str]:
    command = [sys.executable, "-c", ROUNDS, mode, str(count), str(mib)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    *setting, faults = done.stdout.splitlines()
    return int(faults), "".join(setting)


THP_MODES = Path("/sys/kernel/mm/transparent_hugepage/enabled")


@pytest.mark.skipif(
    THP_MODES.exists() and "[always]" in THP_MODES.read_text(),
    reason="the kernel backs every large mapping with 2 MiB pages: 512 times fewer faults to count",
)
@pytest.mark.parametrize("count, mib", BLOCKS)
def test_system_allocator_faults_freed_memory_in_again(count, mib):
    faults, _ = faults_a_round("default", count, mib)
    assert faults > count * mib * 128  # half of the round's 4 KiB pages, or more, fresh every round


@pytest.mark.parametrize("count, mib", BLOCKS)
def test_keep_freed_memory_reuses_it_and_says_so(count, mib):
    faults, setting = faults_a_round("keep", count, mib)
    assert faults < 100
    assert "M_MMAP_MAX 0" in setting and "M_TRIM_THRESHOLD -1" in setting


SETTINGS = """
from mamkpd.harness.measure.allocator import allocator_in_use, use_allocator
print(allocator_in_use())
use_allocator("system")
print(allocator_in_use())
use_allocator("keep-freed")
print(allocator_in_use())
for asked in ("system", "tcmalloc"):
    try:
        use_allocator(asked)
    except (RuntimeError, ValueError) as exc:
        print(type(exc).__name__, exc)
"""


def test_a_timing_records_the_setting_it_ran_under_and_none_other():
    """A fresh process runs glibc's defaults; once it keeps freed memory it cannot go back (mallopt lasts the
    process), so asking for system then is refused rather than recorded falsely."""
    done = subprocess.run([sys.executable, "-c", SETTINGS], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    first, again, kept, back, unknown = done.stdout.splitlines()
    assert (first, again, kept) == ("system", "system", "keep-freed")
    assert back.startswith("RuntimeError allocator system: this process already keeps freed memory")
    assert unknown.startswith("ValueError allocator must be one of system, keep-freed")
