"""``mamkpd evaluate``: inference with a checkpoint (top-down, or whole images for a one-stage model) and the
data set's published metric."""

from __future__ import annotations

import argparse
import json
import os

from .options import add_input_size, add_registry_choice, add_scan_backend, add_trust_checkpoint, parse_json_dict


def _datasets():
    from ..data import DATASETS

    return DATASETS


def _splits():
    from ..data import SPLITS

    return SPLITS


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="evaluate a checkpoint on COCO, MPII or AP-10K",
        description="Top-down inference (flip test unless --no-flip) and evaluation: COCO / AP-10K keypoint AP "
        "after rescoring and OKS-NMS 0.9, MPII PCKh@0.5. One-stage models (RTMO, KAPAO) run on COCO's whole "
        "images, letterboxed and decoded as their authors evaluate them (their own test-time augmentation as the "
        "flip test, where they have one). Checkpoints written by `mamkpd train` "
        "carry their model and codec; for model-zoo checkpoints (HRNet, ViTPose, RTMPose, RTMO, KAPAO) pass --model. "
        "Runs under torchrun too (each process evaluates a shard).",
        epilog="example: mamkpd evaluate --checkpoint runs/mamkpd_s/best.pth --dataset coco --data-root /data/coco "
        "--box-file /data/coco/person_detection_results/COCO_val2017_detections_AP_H_56_person.json",
    )
    p.add_argument(
        "--checkpoint", required=True, metavar="FILE", help="a `mamkpd train` checkpoint or a model-zoo .pth file"
    )
    add_trust_checkpoint(p)
    add_registry_choice(p, "--dataset", _datasets, required=True, help="one of %(choices)s")
    p.add_argument("--model", help="registered model name (default: the checkpoint's)")
    p.add_argument(
        "--model-kwargs",
        type=parse_json_dict,
        metavar="JSON",
        help="create_model overrides (default: the checkpoint's)",
    )
    p.add_argument("--data-root", help="data set root (default: the dataset's environment variable)")
    add_registry_choice(
        p,
        "--split",
        _splits,
        default="val",
        help="which split's annotations and images, one of %(choices)s (default: val)",
    )
    p.add_argument("--ann-file", help="annotation file (default: the standard one under --data-root)")
    p.add_argument("--image-dir", help="image folder (default: the standard one under --data-root)")
    p.add_argument("--box-file", help="COCO detector results json for the person boxes (default: ground-truth boxes)")
    p.add_argument("--gt-mat", help="MPII mpii_gt_val.mat (default: head sizes from the annotations, if present)")
    p.add_argument(
        "--codec",
        help="msra | msra_dark | udp | darkpose | simcc (default: the checkpoint's, else the model's own: "
        "udp for ViTPose, darkpose for TokenPose and PPT, simcc for RTMPose, msra otherwise)",
    )
    add_input_size(p, "the checkpoint's, else the data set's")
    p.add_argument("--no-flip", action="store_true", help="no flip test")
    p.add_argument("--batch-size", type=int, default=64, metavar="N", help="crops per forward pass (default: 64)")
    p.add_argument(
        "--workers", type=int, default=2, metavar="N", help="DataLoader worker processes (0: none; default: 2)"
    )
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    add_scan_backend(p)
    p.add_argument("--amp", action="store_true", help="float16 autocast (CUDA only)")
    p.add_argument(
        "--results",
        metavar="FILE",
        help="where to write the keypoint results json (default: "
        "runs/eval/<model>_<run folder>_<checkpoint>_<dataset>_<split>_keypoints.json)",
    )
    p.add_argument("--json", action="store_true", help="print the report (metrics, protocol) as one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..engine.checkpoint_eval import EvalConfig, evaluate_checkpoint

    if args.batch_size < 1 or args.workers < 0:
        raise ValueError("--batch-size must be >= 1 and --workers >= 0")
    report = evaluate_checkpoint(
        EvalConfig(
            checkpoint=args.checkpoint,
            dataset=args.dataset,
            model=args.model,
            model_kwargs=args.model_kwargs,
            data_root=args.data_root,
            split=args.split,
            ann_file=args.ann_file,
            image_dir=args.image_dir,
            box_file=args.box_file,
            gt_mat=args.gt_mat,
            codec=args.codec,
            input_size=tuple(args.input_size) if args.input_size else None,
            flip_test=not args.no_flip,
            batch_size=args.batch_size,
            workers=args.workers,
            device=args.device,
            scan_backend=args.scan_backend,
            amp=args.amp,
            results=args.results,
            trust_checkpoint=args.trust_checkpoint,
        )
    )
    if os.environ.get("RANK", "0") != "0":
        return 0
    if args.json:
        print(json.dumps(report))
        return 0
    metrics = report["metrics"]
    print("  ".join(f"{k} {v:.4f}" if args.dataset != "mpii" else f"{k} {v:.2f}" for k, v in metrics.items()))
    print("protocol: " + ", ".join(f"{k}={v}" for k, v in report["protocol"].items()))
    print(f"results: {report['results_file']} ({report['num_instances']} instances)")
    return 0
