"""``mamkpd complexity``: params and GFLOPs of registered models."""

from __future__ import annotations

import argparse
import json

from .options import add_input_size


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "complexity",
        help="count params and GFLOPs (fvcore, MACs) of a model",
        description="Count parameters and GFLOPs (fvcore; one multiply-add = one flop) at batch 1.",
    )
    p.add_argument("--model", help="registered model name, or 'all' (see --list)")
    p.add_argument("--list", action="store_true", help="list the registered models with their input and family")
    add_input_size(p, "the model's own")
    p.add_argument("--num-keypoints", type=int, help="heatmap channels (default: the model's own)")
    p.add_argument("--json", action="store_true", help="print one JSON object (a list with --model all)")
    p.set_defaults(func=run)


def print_models() -> None:
    """One line per registered model: name, family, input size, what one sample is, tags."""
    from ..models import list_models, model_info

    print(f"{'model':<22} {'family':<16} {'input':<9} {'one sample':<24} tags")
    for name in list_models():
        info = model_info(name)
        size = f"{info.input_size[0]}x{info.input_size[1]}"
        print(f"{name:<22} {info.family:<16} {size:<9} {info.sample:<24} {', '.join(info.tags) or '-'}")


def run(args: argparse.Namespace) -> int:
    from ..harness.measure.complexity import measure_complexity
    from ..models import list_models, model_info

    if args.list:
        print_models()
        return 0
    if not args.model:
        raise ValueError("--model NAME is required (or --list to see the registered models)")
    names = list_models() if args.model == "all" else [args.model]
    for name in names:
        model_info(name)  # unknown names fail here, with the list of registered ones
    overrides = {} if args.num_keypoints is None else {"num_keypoints": args.num_keypoints}
    rows = []
    for name in names:
        c = measure_complexity(name, tuple(args.input_size) if args.input_size else None, **overrides)
        rows.append(dict(c.as_dict(), sample=model_info(name).sample))
    if args.json:
        print(json.dumps(rows if args.model == "all" else rows[0], indent=2))
        return 0
    print(f"{'model':<22} {'params':>12} {'GFLOPs':>8}  input    uncounted ops")
    for r in rows:
        uncounted = ", ".join(f"{k}x{v}" for k, v in sorted(r["unsupported_ops"].items())) or "-"
        print(
            f"{r['model']:<22} {r['params']:>12,} {r['gflops']:>8.3f}  {r['input_size'][0]}x{r['input_size'][1]:<4} "
            f"{uncounted}"
        )
    print(
        "GFLOPs: fvcore, one multiply-add = one flop (MAC), batch 1, forward only; selective scan counted as "
        "9*B*L*D*N + B*D*L"
    )
    return 0
