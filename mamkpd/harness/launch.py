"""Run a job of the suite in a separate process, where one is really needed: training on several GPUs
(under torchrun) and timing a model in a clean process (no allocator, cache or compile state shared).

:func:`launch` is the one place that builds such a command. The child runs a library module,
``python -m mamkpd.harness.worker KIND JSON``, with the job's typed request serialised as JSON; the
child prints its JSON result as its last line of output. Nothing here goes through the command line
interface, so no layer depends on its flag spelling.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from ..engine.config import TrainConfig

__all__ = ["JOB_KINDS", "TimingJob", "TrainJob", "WORKER_MODULE", "launch", "launch_command"]

WORKER_MODULE = "mamkpd.harness.worker"


@dataclass(frozen=True)
class TrainJob:
    """``mamkpd.engine.train(config)``; the result is the run's summary."""

    config: TrainConfig
    kind: ClassVar[str] = "train"

    def describe(self) -> str:
        return f"training {self.config.model} on {self.config.dataset}"

    def to_dict(self) -> dict[str, Any]:
        return self.config.to_dict()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainJob:
        return cls(TrainConfig.from_dict(data))


@dataclass(frozen=True)
class TimingJob:
    """``mamkpd.harness.fps.measure_model_fps`` with these arguments; the result is the measurement."""

    model: str
    batch: int = 1
    preset: str = "fp32"
    device: str = "cpu"
    protocol: str = "standard"
    scan_backend: str = "auto"
    input_size: tuple[int, int] | None = None
    kind: ClassVar[str] = "time_model"

    def describe(self) -> str:
        return f"timing {self.model}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TimingJob:
        size = data.get("input_size")
        return cls(**{**data, "input_size": tuple(size) if size else None})


JOB_KINDS: dict[str, type[TrainJob] | type[TimingJob]] = {job.kind: job for job in (TrainJob, TimingJob)}


def launch_command(job: TrainJob | TimingJob, processes: int = 1) -> list[str]:
    """The child's command line: the worker module, under torchrun for ``processes > 1``."""
    if processes < 1:
        raise ValueError(f"processes must be at least 1, got {processes}")
    runner = [sys.executable]
    if processes > 1:
        runner += ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
    return [*runner, "-m", WORKER_MODULE, job.kind, json.dumps(job.to_dict())]


def launch(job: TrainJob | TimingJob, *, processes: int = 1, timeout_s: float | None = None) -> dict[str, Any]:
    """Run ``job`` in a child process (``processes`` of them under torchrun); its JSON result.

    A failed child raises RuntimeError with the tail of its error output.
    """
    # the child must import this same checkout whether or not it is installed
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.run(launch_command(job, processes), capture_output=True, text=True, timeout=timeout_s, env=env)
    if proc.returncode != 0:
        tail = " | ".join(proc.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"{job.describe()} in its own process failed: {tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
