"""Thread counts: the main process's intra-op threads and the DataLoader workers', as PyTorch, MMEngine and
Detectron2 set them.

- Main process: an explicit count wins; else ``OMP_NUM_THREADS`` (or ``MKL_NUM_THREADS``) when set, which
  torch already read at start-up; else torch's default (the machine's physical cores) capped at the CPUs
  this process may run on (its affinity mask: a container or ``taskset`` often allows fewer). The numba
  scan runs on the same count.
- DataLoader workers: one torch thread each and no OpenCV thread pool (``cv2.setNumThreads(0)``); the
  workers themselves are the parallelism, and a pool per worker would oversubscribe the cores. More
  workers than usable CPUs only contend for them: the count is lowered to the CPUs, with a warning.
"""

from __future__ import annotations

import os
import warnings

import cv2
import torch

__all__ = ["ClampedWorkersWarning", "loader_workers", "main_process_threads", "set_main_process_threads", "worker_init"]

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class ClampedWorkersWarning(UserWarning):
    """More DataLoader workers were asked for than this process has CPUs; fewer run."""


def loader_workers(requested: int) -> int:
    """The DataLoader workers to start for ``--workers requested``: at most the CPUs this process may use."""
    usable = _usable_cpus()
    if requested > usable:
        warnings.warn(
            f"--workers {requested} on {usable} usable CPU core(s): running {usable} data-loading workers "
            "(more would only contend for the cores)",
            ClampedWorkersWarning,
            stacklevel=2,
        )
        return usable
    return requested


def main_process_threads(requested: int | None = None) -> int:
    """The intra-op thread count the policy above gives (``requested`` when given)."""
    if requested is not None:
        if requested < 1:
            raise ValueError(f"threads must be at least 1, got {requested}")
        return requested
    if any(os.environ.get(name) for name in THREAD_ENV):
        return torch.get_num_threads()  # torch honoured the variable at start-up
    return max(1, min(torch.get_num_threads(), _usable_cpus()))


def set_main_process_threads(requested: int | None = None) -> int:
    """Apply :func:`main_process_threads` to torch; returns the count."""
    threads = main_process_threads(requested)
    torch.set_num_threads(threads)
    return threads


def worker_init(worker_id: int) -> None:
    """``worker_init_fn`` for every DataLoader: one torch thread, no OpenCV pool, in each worker."""
    torch.set_num_threads(1)
    cv2.setNumThreads(0)
