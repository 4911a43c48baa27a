"""How busy the machine was while something was timed: load average, other processes' CPU use, the cores left.

A speed ratio taken while other processes held CPU cores says as much about them as about the models, so
``report --run`` records this beside its timings and flags the ratios when more than one core was taken.
Read from ``/proc`` (Linux); elsewhere the reading says it is unknown.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

__all__ = ["LoadMonitor", "LoadReading", "BUSY_CORES"]

BUSY_CORES = 1.0  # other processes' CPU use, in cores, above which a timing is flagged


@dataclass(frozen=True)
class LoadReading:
    """The machine's load over one interval: ``others_cores`` is the CPU time of every other process divided
    by the interval (2.0: two cores busy with other work); ``cores`` are those this process may run on."""

    seconds: float
    load_average: float | None  # 1-minute load average at the end of the interval
    others_cores: float | None
    cores: int

    @property
    def busy(self) -> bool:
        return self.others_cores is not None and self.others_cores > BUSY_CORES

    def describe(self) -> str:
        if self.others_cores is None:
            return f"load not readable on this system; {self.cores} core(s) available"
        left = max(0.0, self.cores - self.others_cores)
        return (
            f"load average {self.load_average:.2f}, other processes used {self.others_cores:.1f} of "
            f"{self.cores} core(s) over {self.seconds:.0f} s, leaving about {left:.1f} for the timing"
        )


def _busy_cpu_seconds() -> float | None:
    """CPU seconds every process on the machine has used since boot (``/proc/stat``, all but idle and iowait)."""
    try:
        with open("/proc/stat", encoding="ascii") as handle:
            fields = handle.readline().split()
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    """CPU seconds this process and its waited-for children used (the timing's own worker processes)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


class LoadMonitor:
    """``start()`` before a timing, ``stop()`` after: the :class:`LoadReading` of the interval."""

    def start(self) -> LoadMonitor:
        self._wall, self._busy, self._own = time.monotonic(), _busy_cpu_seconds(), _own_cpu_seconds()
        return self

    def stop(self) -> LoadReading:
        seconds = max(time.monotonic() - self._wall, 1e-9)
        busy = _busy_cpu_seconds()
        others = None
        if busy is not None and self._busy is not None:
            others = max(0.0, (busy - self._busy) - (_own_cpu_seconds() - self._own)) / seconds
        return LoadReading(seconds, _load_average(), others, _cores())
