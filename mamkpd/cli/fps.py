"""``mamkpd fps``: time registered models under the suite's FPS protocol."""

from __future__ import annotations

import argparse
import dataclasses
import json

from .options import LazyText, add_allocator, add_input_size, add_onnx_scan, add_registry_choice, add_scan_backend


def _presets():
    from ..harness.measure.presets import PRESETS

    return PRESETS


def _presets_described() -> str:
    return "; ".join(f"{n}: {p.description}{' (CUDA only)' if p.cuda_only else ''}" for n, p in _presets().items())


def _protocol_names():
    from ..harness.measure.timing import PROTOCOLS

    return PROTOCOLS


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fps",
        help="time models (forward only, samples/s, median and IQR)",
        description="Time registered models: forward pass only (no flip, no decoding), eval and inference "
        "mode, warm-up until steady, then timed rounds with device synchronisation.",
    )
    p.add_argument(
        "--model", required=True, nargs="+", help="registered model name(s); several are timed each in its own process"
    )
    p.add_argument("--batch", type=int, default=1, help="samples per forward (1: latency, 64: throughput)")
    preset = add_registry_choice(
        p,
        "--preset",
        _presets,
        default="fp32",
        help="numeric/execution preset, one of: %(described)s",
    )
    preset.described = LazyText(_presets_described)
    add_input_size(p, "the model's own")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i] (default cpu)")
    add_registry_choice(
        p,
        "--protocol",
        _protocol_names,
        default="standard",
        help="timing protocol, one of %(choices)s: 'quick' takes fewer, shorter rounds",
    )
    add_scan_backend(p)
    add_allocator(p)
    p.add_argument(
        "--runtime",
        choices=RUNTIMES,
        help="eager PyTorch, torch.compile, or onnxruntime on the model's ONNX export (checked against "
        "PyTorch first; fp32). Default: eager, or compiled for a compiling preset",
    )
    add_onnx_scan(p)
    p.add_argument(
        "--provider",
        choices=("cpu", "cuda", "tensorrt"),
        help="onnxruntime execution provider (default: the --device's)",
    )
    p.add_argument(
        "--vs",
        metavar="MODEL",
        help="also time MODEL in the same run and give speeds as a ratio "
        "to it (e.g. hrnet_w32, the paper's common baseline)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object per model")
    p.add_argument("--store", metavar="PATH", help="append each measurement to this results store (CSV)")
    p.set_defaults(func=run)


RUNTIMES = ("eager", "compiled", "onnxruntime")


def _preset_for_runtime(preset: str, runtime: str | None) -> str:
    """The preset a --runtime asks for: compiled needs a compiling preset, onnxruntime runs fp32 only."""
    presets = _presets()
    compiles = bool(presets[preset].compile_mode)
    if runtime == "compiled" and not compiles:
        if preset == "fp32":
            return "compile"
        raise ValueError(
            f"--runtime compiled needs a compiling preset, not {preset!r}; choose one of "
            f"{', '.join(n for n, p in presets.items() if p.compile_mode)}"
        )
    if runtime == "eager" and compiles:
        raise ValueError(f"preset {preset!r} compiles the model; use --runtime compiled or an eager preset")
    if runtime == "onnxruntime" and preset != "fp32":
        raise ValueError(f"--runtime onnxruntime runs the fp32 ONNX graph; presets do not apply (got {preset!r})")
    return preset


def run(args: argparse.Namespace) -> int:
    from ..harness.jobs.fps_isolated import measure_models_isolated
    from ..harness.measure.fps import measure_model_fps, speed_ratios
    from ..harness.store.fps_records import record_fps
    from ..models import model_info

    names = list(dict.fromkeys(args.model + ([args.vs] if args.vs else [])))
    for name in names:
        model_info(name)  # unknown names fail before any timing, with the list of registered ones
    size = tuple(args.input_size) if args.input_size else None
    args.preset = _preset_for_runtime(args.preset, args.runtime)
    for flag, value in (("--provider", args.provider), ("--onnx-scan", args.onnx_scan)):
        if value and args.runtime != "onnxruntime":
            raise ValueError(f"{flag} applies to --runtime onnxruntime only")
    if args.runtime == "onnxruntime":
        from ..export import SCAN_FORMS, measure_onnx_fps

        provider = args.provider or ("cuda" if args.device.startswith("cuda") else "cpu")
        form = args.onnx_scan or SCAN_FORMS[0]
        measurements = [
            measure_onnx_fps(
                name, args.batch, provider, args.protocol, input_size=size, scan_form=form, allocator=args.allocator
            )
            for name in names
        ]
    else:
        how = (args.batch, args.preset, args.device, args.protocol)
        options = dict(input_size=size, scan_backend=args.scan_backend, allocator=args.allocator)
        if len(names) == 1:
            measurements = [measure_model_fps(names[0], *how, **options)]
        else:
            measurements = measure_models_isolated(names, *how, **options)
    if _presets()[args.preset].compile_mode:
        measurements = [dataclasses.replace(m, runtime="compiled") for m in measurements]
    ratios = speed_ratios(measurements, args.vs) if args.vs else {}
    if args.store:
        from ..harness.store.results import ResultsStore

        store = ResultsStore(args.store)
        for m in measurements:
            record_fps(store, m, ratios.get(m.model), args.vs or "hrnet_w32")
    if args.json:
        for m in measurements:
            print(json.dumps(dict(m.as_dict(), **({"ratio_to": args.vs, "ratio": ratios[m.model]} if ratios else {}))))
        return 0
    print(
        f"{'model':<20} {'batch':>5} {'runtime':<11} {'preset':<16} {'device':<7} {'scan':<8} {'samples/s':>11} "
        f"{'IQR':>9}" + (f" {'x ' + args.vs:>14}" if ratios else "")
    )
    for m in measurements:
        r = m.result
        line = (
            f"{m.model:<20} {m.batch:>5} {m.runtime:<11} {m.preset.name:<16} {m.device:<7} "
            f"{m.scan_backend or '-':<8} "
            f"{r.median:>11.2f} {r.iqr:>9.2f}" + (f" {ratios[m.model]:>14.3f}" if ratios else "")
        )
        flags = [f for f, on in (("THROTTLED", r.throttled), ("warm-up not steady", not r.warmup_steady)) if on]
        print(line + (f"  [{', '.join(flags)}]" if flags else ""))
    sample = {m.sample for m in measurements}
    allocators = " / ".join(sorted({m.result.allocator for m in measurements}))
    print(
        f"one sample = {' / '.join(sorted(sample))}; forward only, no flip, no decoding; protocol {args.protocol}; "
        f"allocator {allocators}"
    )
    return 0
