"""Run a job of the suite in a separate process, where one is really needed: training on several GPUs
(under torchrun), timing a model in a clean process (no allocator, cache or compile state shared), and the
parts of the GPU check (:mod:`mamkpd.harness.gpu_check`), each with its own CUDA context.

:func:`launch_command` is the one place that builds such a command. The child runs a library module,
``python -m mamkpd.harness.jobs.worker KIND JSON``, with the job's typed request serialised as JSON; the
child prints its JSON result as its last line of output (a GPU-check part prints one line per result as
it goes, so that a child stopped at its deadline still hands back what it measured). Nothing here goes
through the command line interface, so no layer depends on its flag spelling.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ...engine.config import TrainConfig

__all__ = [
    "JOB_KINDS",
    "CheckJob",
    "Launched",
    "TimingJob",
    "TrainJob",
    "WORKER_MODULE",
    "launch",
    "launch_collect",
    "launch_command",
]

WORKER_MODULE = "mamkpd.harness.jobs.worker"


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
    """``mamkpd.harness.measure.fps.measure_model_fps`` with these arguments; the result is the measurement."""

    model: str
    batch: int = 1
    preset: str = "fp32"
    device: str = "cpu"
    protocol: str = "standard"
    scan_backend: str = "auto"
    input_size: tuple[int, int] | None = None
    allocator: str | None = None  # the child's C allocator setting (None: its default)
    kind: ClassVar[str] = "time_model"

    def describe(self) -> str:
        return f"timing {self.model}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TimingJob:
        size = data.get("input_size")
        return cls(**{**data, "input_size": tuple(size) if size else None})


@dataclass(frozen=True)
class CheckJob:
    """One part of the GPU check (``mamkpd.harness.gpu_check.run_part(part, params)``); its results stream
    back one JSON line each."""

    part: str
    params: dict[str, Any] = field(default_factory=dict)
    kind: ClassVar[str] = "gpu_check"

    def describe(self) -> str:
        return f"GPU check part {self.params.get('label') or self.part}"

    def to_dict(self) -> dict[str, Any]:
        return {"part": self.part, "params": self.params}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckJob:
        return cls(data["part"], dict(data.get("params") or {}))


Job = TrainJob | TimingJob | CheckJob
JOB_KINDS: dict[str, type[TrainJob] | type[TimingJob] | type[CheckJob]] = {
    job.kind: job for job in (TrainJob, TimingJob, CheckJob)
}


def launch_command(job: Job, processes: int = 1) -> list[str]:
    """The child's command line: the worker module, under torchrun for ``processes > 1``."""
    if processes < 1:
        raise ValueError(f"processes must be at least 1, got {processes}")
    runner = [sys.executable]
    if processes > 1:
        runner += ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
    return [*runner, "-m", WORKER_MODULE, job.kind, json.dumps(job.to_dict())]


@dataclass
class Launched:
    """What a child handed back: every JSON object it printed on a line of its own, in order, and why it
    failed ("" when it exited with status 0)."""

    results: list[dict[str, Any]]
    error: str = ""


def _json_lines(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:  # a library's own output that happens to start with a brace
                continue
    return out


def launch_collect(
    job: Job, *, processes: int = 1, timeout_s: float | None = None, env: dict[str, str] | None = None
) -> Launched:
    """Run ``job`` in a child process (``processes`` of them under torchrun) with ``env`` added to this one's.

    The child runs in a session of its own: at ``timeout_s`` it is killed with every process it started
    (torch.compile's worker pool), and what it printed until then is kept.
    """
    # the child must import this same checkout whether or not it is installed
    root = str(Path(__file__).resolve().parents[2])
    child_env = {**os.environ, **(env or {})}
    child_env["PYTHONPATH"] = os.pathsep.join(p for p in (root, child_env.get("PYTHONPATH")) if p)
    proc = subprocess.Popen(
        launch_command(job, processes),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        return Launched(_json_lines(stdout), f"{job.describe()} ran past its {timeout_s:.0f} s and was stopped")
    if proc.returncode != 0:
        tail = " | ".join(stderr.strip().splitlines()[-5:]) or f"exit status {proc.returncode}"
        return Launched(_json_lines(stdout), f"{job.describe()} in its own process failed: {tail}")
    return Launched(_json_lines(stdout))


def launch(job: Job, *, processes: int = 1, timeout_s: float | None = None) -> dict[str, Any]:
    """Run ``job`` in a child process (``processes`` of them under torchrun); its JSON result.

    A failed child (or one stopped at ``timeout_s``) raises RuntimeError with the tail of its error output.
    """
    done = launch_collect(job, processes=processes, timeout_s=timeout_s)
    if done.error:
        raise RuntimeError(done.error)
    if not done.results:
        raise RuntimeError(f"{job.describe()} printed no result")
    return done.results[-1]
