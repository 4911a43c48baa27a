"""The benchmarks' allocator setting: with glibc's defaults, memory freed by one call is faulted in again by
the next; after keep_freed_memory it is reused. Each case runs in a fresh process (mallopt cannot be undone)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt settings are glibc's")

# Two 12 MiB blocks a round, as a call's output and scratch: after the first round glibc serves them from its
# heap, and by default trims the freed 24 MiB off the top again (its trim threshold follows the mmap threshold).
ROUNDS = """
import ctypes, ctypes.util, sys
from mamkpd.harness.measure.allocator import keep_freed_memory, page_faults
if sys.argv[1] == "keep":
    print(keep_freed_memory())
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]

def round_of_calls():
    blocks = [libc.malloc(12 << 20) for _ in range(2)]
    for block in blocks:
        ctypes.memset(block, 1, 12 << 20)
    for block in blocks:
        libc.free(block)

round_of_calls()
before = page_faults()
for _ in range(10):
    round_of_calls()
print((page_faults() - before) // 10)
"""


def faults_a_round(mode: str) -> tuple[int, str]:
    done = subprocess.run([sys.executable, "-c", ROUNDS, mode], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    *setting, faults = done.stdout.splitlines()
    return int(faults), "".join(setting)


def test_system_allocator_faults_freed_memory_in_again():
    faults, _ = faults_a_round("default")
    assert faults > 3000  # 24 MiB is 6,144 pages: most of them fresh every round


def test_keep_freed_memory_reuses_it_and_says_so():
    faults, setting = faults_a_round("keep")
    assert faults < 100
    assert "M_MMAP_THRESHOLD 32 MiB" in setting and "M_TRIM_THRESHOLD 1 GiB" in setting
