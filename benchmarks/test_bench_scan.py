"""Selective-scan backends at MamKPD stage-1 shape, and whole-model CPU throughput against HRNet-W32.

Benchmarks, not tests: run with ``python -m pytest benchmarks --benchmark-enable``. pytest-benchmark
prints the backends of one group side by side; compare them as ratios within one run. Each scan cell also
prints its share of the CPU's compute bound (:func:`mamkpd.harness.measure.scan_bench.compute_fraction`:
the model's flops and exps over one thread's measured vector peak, times the threads used), as the GPU check
does for bandwidth. The peak is timed in CPU time; on a loaded machine time the cells in CPU time too
(``--benchmark-timer time.process_time``, one thread: ``OMP_NUM_THREADS=1``), or the fraction shows the load.
The model group times MamKPD-B and HRNet-W32 alternately inside one benchmark, so that both see the same
machine load; their img/s and ratio are in extra_info (``--benchmark-json``) and printed at the end of the run.
Every cell runs under the allocator of ``conftest.py`` (freed memory kept) and records its page faults a call.
At the end of the run, issue 18's goals for the stage-1 scan (numba over torch, forward and forward+backward, and
numba's share of the compute bound) are printed met or short, judged from the cells that ran.
"""

import time

import pytest
import torch
from bench_goals import verdict

import mamkpd
from mamkpd.harness.measure.allocator import page_faults
from mamkpd.harness.measure.scan_bench import compute_fraction, cpu_peak, scan_compute
from mamkpd.models import scan_backend_of
from mamkpd.ops import cross_selective_scan, selective_scan

# stage 1 of MamKPD-B at 256x192: 4 directions x 192 inner channels, L = 64*48, d_state 8, 4 groups
STAGE1 = dict(dim=4 * 192, length=64 * 48, d_state=8, groups=4)
MODEL_ROUNDS = 5


def timed(benchmark, target, rounds, warmup_rounds, kwargs=None):
    """benchmark.pedantic after ``warmup_rounds`` untimed calls, and the page faults a timed call took on average
    (recorded: with the system allocator, a fresh output's pages are faulted in again at every call)."""
    for _ in range(warmup_rounds):
        target(**(kwargs or {}))
    before = page_faults()
    benchmark.pedantic(target, kwargs=kwargs, rounds=rounds)
    calls = 1 if benchmark.disabled else rounds
    benchmark.extra_info["page_faults_per_call"] = round((page_faults() - before) / calls)


# issue 18's goals for the stage-1 scan: numba's speed over the torch backend's, per pass, and numba's share of
# the compute bound
SPEEDUP_GOALS = {"forward": 20.0, "forward+backward": 10.0}
COMPUTE_BOUND_GOAL = 0.30
MEDIANS: dict[tuple[str, str, int], tuple[float, float]] = {}  # (pass, backend, batch) -> (seconds, fraction)


def scan_goals() -> list[str]:
    """The goals that the cells timed so far decide, each met or short (a cell not run: not measured)."""
    lines = []
    for batch in (1, 8):
        for pass_, goal in SPEEDUP_GOALS.items():
            numba, torch_ = MEDIANS.get((pass_, "numba", batch)), MEDIANS.get((pass_, "torch", batch))
            what = f"batch {batch}: stage-1 scan {pass_} on numba"
            if numba is None or torch_ is None:
                lines.append(f"{what} >= {goal:.0f}x the torch backend: not measured in this run")
            else:
                ratio = torch_[0] / numba[0]
                lines.append(f"{what} >= {goal:.0f}x the torch backend: {ratio:.1f}x -> {verdict(ratio, goal)}")
            share = f"{what} >= {COMPUTE_BOUND_GOAL:.0%} of the compute bound"
            if numba is None:
                lines.append(f"{share}: not measured in this run")
            else:
                lines.append(f"{share}: {numba[1]:.0%} -> {verdict(numba[1], COMPUTE_BOUND_GOAL)}")
    return lines


def report_compute_bound(benchmark, batch, backward, goal_lines=None, backend=""):
    """Print and record the cell's share of the compute bound (median time; the bound scales with the threads);
    with ``goal_lines``, judge the scan's goals again with this cell's median."""
    if benchmark.stats is None:  # benchmarks disabled: one untimed call
        return
    seconds = benchmark.stats.stats.median
    compute = scan_compute(batch, STAGE1["dim"], STAGE1["length"], STAGE1["d_state"], backward)
    peak = cpu_peak()
    fraction = compute_fraction(seconds, compute, peak) / torch.get_num_threads()
    bound = compute.flop_equivalents / peak.flops_per_second / torch.get_num_threads()
    benchmark.extra_info.update(compute_bound_s=bound, compute_bound_fraction=round(fraction, 3), cpu=peak.describe())
    print(
        f"\n{benchmark.name}: {seconds * 1e3:.1f} ms, {fraction:.1%} of the compute bound ({bound * 1e3:.2f} ms: "
        f"{compute.flops / 1e6:.0f} Mflop and {compute.exps / 1e6:.1f} M exp on {peak.describe()}); "
        f"{benchmark.extra_info.get('page_faults_per_call', '?')} page faults a call"
    )
    if goal_lines is not None:
        MEDIANS["forward+backward" if backward else "forward", backend, batch] = (seconds, fraction)
        title = f"issue 18 goals: the stage-1 scan ({torch.get_num_threads()} thread(s), the run's timer)"
        goal_lines[title] = scan_goals()


def stage1_inputs(batch):
    g = torch.Generator().manual_seed(0)
    d, L, n, k = (STAGE1[key] for key in ("dim", "length", "d_state", "groups"))
    return dict(
        u=torch.randn(batch, d, L, generator=g),
        delta=0.5 * torch.randn(batch, d, L, generator=g),
        A=-torch.rand(d, n, generator=g) * 2,
        B=torch.randn(batch, k, n, L, generator=g),
        C=torch.randn(batch, k, n, L, generator=g),
        D=torch.randn(d, generator=g),
        delta_bias=0.1 * torch.randn(d, generator=g),
    )


@pytest.mark.benchmark(group="scan-stage1-forward")
@pytest.mark.parametrize("batch", [1, 8])
@pytest.mark.parametrize("backend", ["reference", "torch", "numba"])
def test_scan_forward(benchmark, backend, batch, goal_lines):
    if backend == "reference" and batch > 1:
        pytest.skip("the reference is timed at batch 1 only (minutes at batch 8)")
    inputs = stage1_inputs(batch)
    benchmark.extra_info.update(STAGE1, batch=batch, backend=backend, threads=torch.get_num_threads())
    with torch.inference_mode():
        timed(benchmark, selective_scan, 5, 1, dict(inputs, delta_softplus=True, backend=backend))
    report_compute_bound(benchmark, batch, backward=False, goal_lines=goal_lines, backend=backend)


@pytest.mark.benchmark(group="scan-stage1-forward-backward")
@pytest.mark.parametrize("batch", [1, 8])
@pytest.mark.parametrize("backend", ["torch", "numba"])
def test_scan_forward_backward(benchmark, backend, batch, goal_lines):
    leaves = {k: v.requires_grad_(True) for k, v in stage1_inputs(batch).items()}

    def step():
        selective_scan(**leaves, delta_softplus=True, backend=backend).sum().backward()

    benchmark.extra_info.update(STAGE1, batch=batch, backend=backend, threads=torch.get_num_threads())
    timed(benchmark, step, 3, 1)
    report_compute_bound(benchmark, batch, backward=True, goal_lines=goal_lines, backend=backend)


def stage1_cross_inputs(batch, channels_last):
    """SS2D's cross scan at stage 1: x (batch, 192, 64, 48), delta, B, C at spatial positions; with
    ``channels_last`` in the memory SS2D gives them on the numba path."""
    g = torch.Generator().manual_seed(0)
    dim, n, (h, w) = STAGE1["dim"] // 4, STAGE1["d_state"], (64, 48)
    x, delta = torch.randn(batch, dim, h, w, generator=g), 0.5 * torch.randn(batch, 4, dim, h, w, generator=g)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        delta = delta.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
    return dict(
        x=x,
        delta=delta,
        A=-torch.rand(4 * dim, n, generator=g) * 2,
        B=torch.randn(batch, 4, n, h, w, generator=g),
        C=torch.randn(batch, 4, n, h, w, generator=g),
        D=torch.randn(4 * dim, generator=g),
        delta_bias=0.1 * torch.randn(4 * dim, generator=g),
    )


@pytest.mark.benchmark(group="cross-scan-stage1-forward-backward")
@pytest.mark.parametrize("batch", [1, 8])
@pytest.mark.parametrize("backend", ["torch", "numba"])
def test_cross_scan_forward_backward(benchmark, backend, batch):
    """SS2D's whole cross scan (gather, scan, merge) as the model runs it: fused on numba, unfused on torch."""
    leaves = {k: v.requires_grad_(True) for k, v in stage1_cross_inputs(batch, backend == "numba").items()}

    def step():
        cross_selective_scan(**leaves, delta_softplus=True, backend=backend).sum().backward()

    benchmark.extra_info.update(STAGE1, batch=batch, backend=backend, threads=torch.get_num_threads())
    timed(benchmark, step, 3, 1)
    report_compute_bound(benchmark, batch, backward=True)


@pytest.mark.benchmark(group="model-cpu-forward-vs-hrnet")
@pytest.mark.parametrize("batch", [1, 8])
def test_mamkpd_b_vs_hrnet_w32(benchmark, batch):
    """fp32 forward, 256x192, MamKPD-B (auto scan backend) and HRNet-W32 timed alternately; the benchmark's
    own time is one round of both."""
    models = {name: mamkpd.create_model(name).eval() for name in ("mamkpd_b", "hrnet_w32")}
    x = torch.randn(batch, 3, 256, 192, generator=torch.Generator().manual_seed(0))
    seconds = {name: [] for name in models}

    def one_round():
        for name, model in models.items():
            start = time.perf_counter()
            model(x)
            seconds[name].append(time.perf_counter() - start)

    with torch.inference_mode():
        for model in models.values():
            model(x)  # warm-up (and the scan's JIT)
        benchmark.pedantic(one_round, rounds=MODEL_ROUNDS, warmup_rounds=0)
    ips = {name: batch / sorted(s)[len(s) // 2] for name, s in seconds.items()}  # median round
    benchmark.extra_info.update(
        batch=batch,
        input_size=[256, 192],
        threads=torch.get_num_threads(),
        scan_backend=scan_backend_of(models["mamkpd_b"]),
        mamkpd_b_img_per_s=round(ips["mamkpd_b"], 3),
        hrnet_w32_img_per_s=round(ips["hrnet_w32"], 3),
        ratio_mamkpd_over_hrnet=round(ips["mamkpd_b"] / ips["hrnet_w32"], 3),
    )
    print(
        f"\nbatch {batch}: MamKPD-B {ips['mamkpd_b']:.2f} img/s, HRNet-W32 {ips['hrnet_w32']:.2f} img/s, "
        f"ratio {ips['mamkpd_b'] / ips['hrnet_w32']:.2f} ({torch.get_num_threads()} threads)"
    )


@pytest.mark.benchmark(group="model-cpu-forward")
@pytest.mark.parametrize("batch", [1, 8])
@pytest.mark.parametrize("name", ["mamkpd_s", "mamkpd_b", "mamkpd_l"])
def test_model_forward(benchmark, name, batch):
    model = mamkpd.create_model(name).eval()
    x = torch.randn(batch, 3, 256, 192)
    benchmark.extra_info.update(
        model=name,
        batch=batch,
        input_size=[256, 192],
        scan_backend=scan_backend_of(model),
        unit="samples per round",
    )
    with torch.inference_mode():
        benchmark.pedantic(model, args=(x,), rounds=3, warmup_rounds=1)
