"""``mamkpd fps``: time registered models under the suite's FPS protocol."""

from __future__ import annotations

import argparse
import json

from ..harness.fps import (PRESETS, PROTOCOLS, measure_model_fps, measure_models_isolated, record_fps,
                           speed_ratios)
from ..models import model_info


def add_parser(sub: argparse._SubParsersAction) -> None:
    presets = "; ".join(f"{n}: {p.description}{' (CUDA only)' if p.cuda_only else ''}" for n, p in PRESETS.items())
    p = sub.add_parser(
        "fps", help="time models (forward only, samples/s, median and IQR)",
        description="Time registered models: forward pass only (no flip, no decoding), eval and inference "
                    "mode, warm-up until steady, then timed rounds with device synchronisation. "
                    f"Presets: {presets}.")
    p.add_argument("--model", required=True, nargs="+", help="registered model name(s); several are timed "
                   "each in its own process")
    p.add_argument("--batch", type=int, default=1, help="samples per forward (1: latency, 64: throughput)")
    p.add_argument("--preset", default="fp32", choices=list(PRESETS), help="numeric/execution preset")
    p.add_argument("--input-size", nargs=2, type=int, metavar=("H", "W"),
                   help="input height and width (default: the model's own)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i] (default cpu)")
    p.add_argument("--protocol", default="standard", choices=list(PROTOCOLS),
                   help="timing protocol: 'quick' takes fewer, shorter rounds")
    p.add_argument("--scan-backend", default="auto", choices=("auto", "torch", "cuda"),
                   help="selective-scan backend of MamKPD models ('reference' is refused for timing)")
    p.add_argument("--vs", metavar="MODEL", help="also time MODEL in the same run and give speeds as a ratio "
                   "to it (e.g. hrnet_w32, the paper's common baseline)")
    p.add_argument("--json", action="store_true", help="print one JSON object per model")
    p.add_argument("--store", metavar="PATH", help="append each measurement to this results store (CSV)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    names = list(dict.fromkeys(args.model + ([args.vs] if args.vs else [])))
    for name in names:
        model_info(name)  # unknown names fail before any timing, with the list of registered ones
    size = tuple(args.input_size) if args.input_size else None
    if len(names) == 1:
        measurements = [measure_model_fps(names[0], args.batch, args.preset, args.device, args.protocol,
                                          input_size=size, scan_backend=args.scan_backend)]
    else:
        measurements = measure_models_isolated(names, args.batch, args.preset, args.device, args.protocol,
                                               args.scan_backend, input_size=size)
    ratios = speed_ratios(measurements, args.vs) if args.vs else {}
    if args.store:
        from ..harness.results import ResultsStore

        store = ResultsStore(args.store)
        for m in measurements:
            record_fps(store, m, ratios.get(m.model), args.vs or "hrnet_w32")
    if args.json:
        for m in measurements:
            print(json.dumps(dict(m.as_dict(), **({"ratio_to": args.vs, "ratio": ratios[m.model]} if ratios else {}))))
        return 0
    print(f"{'model':<20} {'batch':>5} {'preset':<16} {'device':<7} {'scan':<6} {'samples/s':>11} {'IQR':>9}"
          + (f" {'x ' + args.vs:>14}" if ratios else ""))
    for m in measurements:
        r = m.result
        line = (f"{m.model:<20} {m.batch:>5} {m.preset.name:<16} {m.device:<7} {m.scan_backend or '-':<6} "
                f"{r.median:>11.2f} {r.iqr:>9.2f}" + (f" {ratios[m.model]:>14.3f}" if ratios else ""))
        flags = [f for f, on in (("THROTTLED", r.throttled), ("warm-up not steady", not r.warmup_steady)) if on]
        print(line + (f"  [{', '.join(flags)}]" if flags else ""))
    sample = {m.sample for m in measurements}
    print(f"one sample = {' / '.join(sorted(sample))}; forward only, no flip, no decoding; "
          f"protocol {args.protocol}")
    return 0
