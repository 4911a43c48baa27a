"""Eager vs torch.compile vs onnxruntime throughput of MamKPD-B, HRNet-W32 and RTMPose-m on the CPU, batch 1 and 8.

Benchmarks, not tests: run with ``python -m pytest benchmarks/test_bench_runtimes.py --benchmark-enable``.
Each group (one model at one batch size) prints its three runtimes side by side; compare them as
ratios within one run. Every runner holds one fixed input (the registered 256x192 crop) and runs the
forward pass only; onnxruntime gets as many intra-op threads as PyTorch. extra_info records the
compile time, the ONNX check and the provider.
"""

from __future__ import annotations

import pytest
import torch

from mamkpd import create_model
from mamkpd.export import compile_model, example_input, input_size_of, onnx_runner, prepare_for_export
from mamkpd.models import scan_backend_of

MODELS = ("mamkpd_b", "hrnet_w32", "rtmpose_m")  # RTMPose-m: the top-down model real-time users deploy
BATCHES = (1, 8)
RUNTIMES = ("eager", "compiled", "onnxruntime")


def _runner(name: str, batch: int, runtime: str):
    """A zero-argument forward pass and what to record about how it was set up."""
    if runtime == "onnxruntime":
        runner = onnx_runner(name, batch, "cpu")
        return runner, dict(
            provider=runner.provider,
            threads=runner.threads,
            opset=runner.export.opset,
            onnx_nodes=runner.export.onnx_nodes,
            export_s=round(runner.export.export_seconds, 1),
            onnx_max_abs_diff=runner.export.check.max_abs_diff,
        )
    model = prepare_for_export(create_model(name))
    x = example_input(input_size_of(name), batch)
    info = dict(threads=torch.get_num_threads(), scan_backend=scan_backend_of(model) or "")
    forward = model
    if runtime == "compiled":
        torch._dynamo.reset()
        forward, stats = compile_model(model, x)
        info.update(compile_s=round(stats.compile_seconds, 1), graph_breaks=stats.graph_breaks)

    def run():
        with torch.inference_mode():
            return forward(x)

    return run, info


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("name", MODELS)
def test_runtime_throughput(benchmark, name, batch, runtime):
    benchmark.group = f"{name} batch {batch}"
    run, info = _runner(name, batch, runtime)
    benchmark.extra_info.update(info, model=name, batch=batch, runtime=runtime, input_size=input_size_of(name))
    # forward passes take seconds on a CPU: a few timed rounds after one warm-up round
    benchmark.pedantic(run, rounds=3, warmup_rounds=1)
    benchmark.extra_info["samples_per_s"] = batch / benchmark.stats.stats.median
