"""The child side of :func:`mamkpd.harness.jobs.launch.launch`: ``python -m mamkpd.harness.jobs.worker KIND JSON``
runs one job and prints its JSON result as the last line (under torchrun, rank 0 alone prints)."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from .launch import JOB_KINDS, CheckJob, TimingJob, TrainJob


def run_job(job: TrainJob | TimingJob) -> dict[str, Any]:
    if isinstance(job, TrainJob):
        from ...engine.trainer import train

        return train(job.config).summary()
    from ..measure.fps import measure_model_fps

    measurement = measure_model_fps(
        job.model,
        job.batch,
        job.preset,
        job.device,
        job.protocol,
        input_size=job.input_size,
        scan_backend=job.scan_backend,
        allocator=job.allocator,
    )
    return measurement.as_dict()


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in JOB_KINDS:
        print(f"usage: python -m {__spec__.name} {{{','.join(JOB_KINDS)}}} JSON", file=sys.stderr)
        return 2
    job = JOB_KINDS[argv[0]].from_dict(json.loads(argv[1]))
    if isinstance(job, CheckJob):
        from ..gpu_check import run_part

        for result in run_part(job.part, job.params):  # one line each, as they come: a stopped child keeps them
            print(json.dumps(result), flush=True)
        return 0
    result = run_job(job)
    if os.environ.get("RANK", "0") == "0":
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
