"""``mamkpd export``: export a registered model to ONNX, checked against PyTorch before it is written."""

from __future__ import annotations

import argparse
import json

from .options import (
    LazyText,
    add_input_size,
    add_onnx_scan,
    add_scan_backend,
    add_trust_checkpoint,
    positive_int,
)


def _batch(text: str) -> int | None:
    if text == "dynamic":
        return None
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'dynamic', got {text!r}") from None


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a model to ONNX (checked with onnxruntime before it is written)",
        description="Export a registered model to ONNX through torch.export, with each selective scan lowered "
        "to one ONNX Scan over time (or, with --onnx-scan custom-op, to one custom node). The file is run with "
        "onnxruntime (CPU) on a random batch and compared with PyTorch eager; it is written only if the max abs "
        "difference is within the tolerance.",
    )
    p.add_argument("--model", required=True, help="registered model name")
    p.add_argument("--checkpoint", metavar="FILE", help="weights to export (any layout mamkpd.load_weights reads)")
    add_trust_checkpoint(p)
    p.add_argument("--format", default="onnx", choices=("onnx",), help="export format (default onnx)")
    p.add_argument("--out", required=True, metavar="FILE", help="output file, e.g. mamkpd_b.onnx")
    p.add_argument(
        "--batch",
        type=_batch,
        default=1,
        metavar="N|dynamic",
        help="static batch size, or 'dynamic' for a symbolic batch dimension (default 1)",
    )
    add_input_size(p, "the model's own")
    p.add_argument("--num-keypoints", type=int, help="heatmap channels (default: the model's own)")
    add_scan_backend(p)
    p.add_argument("--opset", type=int, help="ONNX opset (default: the exporter's)")
    add_onnx_scan(p)
    p.add_argument(
        "--no-optimize",
        dest="optimize",
        action="store_false",
        help="skip onnxscript's graph optimiser (faster export; onnxruntime still optimises at load)",
    )
    tolerance = p.add_argument(
        "--tolerance",
        type=float,
        help="max abs difference allowed between onnxruntime and PyTorch (default %(default_tolerance)s)",
    )
    tolerance.default_tolerance = LazyText(lambda: f"{_default_tolerance():g}")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def _default_tolerance() -> float:
    from ..export import DEFAULT_TOLERANCE

    return DEFAULT_TOLERANCE


def run(args: argparse.Namespace) -> int:
    from ..export import SCAN_FORMS, OnnxExportConfig, export_onnx
    from ..models import model_info

    if args.tolerance is None:
        args.tolerance = _default_tolerance()
    model_info(args.model)  # an unknown name fails before any work, with the list of registered ones
    overrides = {}
    if args.input_size:
        overrides["input_size"] = tuple(args.input_size)
    if args.num_keypoints is not None:
        overrides["num_keypoints"] = args.num_keypoints
    report = export_onnx(
        OnnxExportConfig(
            model=args.model,
            out=args.out,
            checkpoint=args.checkpoint,
            trust_checkpoint=args.trust_checkpoint,
            model_kwargs=overrides,
            scan_backend=args.scan_backend,
            batch=args.batch,
            opset=args.opset,
            tolerance=args.tolerance,
            optimize=args.optimize,
            scan_form=args.onnx_scan or SCAN_FORMS[0],
        )
    )
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
        return 0
    check = report.check
    height, width = report.input_size
    batch = "dynamic" if report.batch is None else report.batch
    print(f"wrote {', '.join(report.files)} ({report.file_bytes / 2**20:.1f} MiB)")
    print(
        f"  {report.model}: batch {batch}, input 3x{height}x{width}, opset {report.opset}, "
        f"{report.onnx_nodes} ONNX nodes{'' if report.optimized else ' (not optimised)'}"
        + (f", {report.scan_nodes} selective scans lowered to {report.scan_form}" if report.scan_nodes else "")
        + (f" (PyTorch eager on the {report.scan_backend} scan)" if report.scan_backend else "")
    )
    print(
        f"  check: onnxruntime {report.onnxruntime_version} ({check.provider}) vs PyTorch {report.torch_version} "
        f"eager on a random batch of {check.batch}: max abs diff {check.max_abs_diff:.3g} "
        f"(tolerance {check.tolerance:g}; outputs up to {check.reference_max_abs:.3g})"
    )
    print(f"  export {report.export_seconds:.1f} s, check {report.check_seconds:.1f} s")
    for note in report.notes:
        print(f"  note: {note}")
    return 0
