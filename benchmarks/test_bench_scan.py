"""Selective-scan backends at MamKPD stage-1 shape, and whole-model CPU throughput.

Benchmarks, not tests: run with ``python -m pytest benchmarks --benchmark-enable``. pytest-benchmark
prints the backends of one group side by side; compare them as ratios within one run.
"""

import pytest
import torch

import mamkpd
from mamkpd.ops import selective_scan

# stage 1 of MamKPD-B at 256x192: 4 directions x 192 inner channels, L = 64*48, d_state 8
STAGE1 = dict(batch=8, dim=4 * 192, length=64 * 48, d_state=8, groups=4)


@pytest.fixture(scope="module")
def stage1_inputs():
    g = torch.Generator().manual_seed(0)
    b, d, L, n, k = (STAGE1[key] for key in ("batch", "dim", "length", "d_state", "groups"))
    return dict(
        u=torch.randn(b, d, L, generator=g),
        delta=0.5 * torch.randn(b, d, L, generator=g),
        A=-torch.rand(d, n, generator=g) * 2,
        B=torch.randn(b, k, n, L, generator=g),
        C=torch.randn(b, k, n, L, generator=g),
        D=torch.randn(d, generator=g),
        delta_bias=0.1 * torch.randn(d, generator=g),
    )


@pytest.mark.benchmark(group="scan-stage1-forward")
@pytest.mark.parametrize("backend", ["reference", "torch"])
def test_scan_forward(benchmark, stage1_inputs, backend):
    benchmark.extra_info.update(STAGE1, backend=backend, threads=torch.get_num_threads())
    with torch.inference_mode():
        benchmark.pedantic(
            selective_scan, kwargs=dict(stage1_inputs, delta_softplus=True, backend=backend), rounds=3, warmup_rounds=1
        )


@pytest.mark.benchmark(group="scan-stage1-forward-backward")
@pytest.mark.parametrize("backend", ["reference", "torch"])
def test_scan_forward_backward(benchmark, stage1_inputs, backend):
    leaves = {k: v.clone().requires_grad_(True) for k, v in stage1_inputs.items()}

    def step():
        selective_scan(**leaves, delta_softplus=True, backend=backend).sum().backward()

    benchmark.extra_info.update(STAGE1, backend=backend, threads=torch.get_num_threads())
    benchmark.pedantic(step, rounds=2, warmup_rounds=1)


@pytest.mark.benchmark(group="model-cpu-forward")
@pytest.mark.parametrize("batch", [1, 8])
@pytest.mark.parametrize("name", ["mamkpd_s", "mamkpd_b", "mamkpd_l"])
def test_model_forward(benchmark, name, batch):
    model = mamkpd.create_model(name, scan_backend="torch").eval()
    x = torch.randn(batch, 3, 256, 192)
    benchmark.extra_info.update(
        model=name, batch=batch, input_size=[256, 192], scan_backend="torch", unit="samples per round = batch"
    )
    with torch.inference_mode():
        benchmark.pedantic(model, args=(x,), rounds=3, warmup_rounds=1)
