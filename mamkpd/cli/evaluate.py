"""``mamkpd evaluate``: top-down inference with a checkpoint and the data set's published metric."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from ..engine.config import parse_json_dict


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="evaluate a checkpoint on COCO, MPII or AP-10K",
        description="Top-down inference (flip test unless --no-flip) and evaluation: COCO / AP-10K keypoint AP "
        "after rescoring and OKS-NMS 0.9, MPII PCKh@0.5. Checkpoints written by `mamkpd train` "
        "carry their model and codec; for model-zoo checkpoints (HRNet, ViTPose) pass --model. "
        "Runs under torchrun too (each process evaluates a shard).",
        epilog="example: mamkpd evaluate --checkpoint runs/mamkpd_s/best.pth --dataset coco --data-root /data/coco "
        "--box-file /data/coco/person_detection_results/COCO_val2017_detections_AP_H_56_person.json",
    )
    p.add_argument("--checkpoint", required=True, help="a `mamkpd train` checkpoint or a model-zoo .pth file")
    p.add_argument("--dataset", required=True, choices=("coco", "mpii", "ap10k"))
    p.add_argument("--model", help="registered model name (default: the checkpoint's)")
    p.add_argument(
        "--model-kwargs",
        type=parse_json_dict,
        metavar="JSON",
        help="create_model overrides (default: the checkpoint's)",
    )
    p.add_argument("--data-root", help="data set root (default: the dataset's environment variable)")
    p.add_argument("--split", default="val", choices=("train", "val", "test"))
    p.add_argument("--ann-file", help="annotation file (default: the standard one under --data-root)")
    p.add_argument("--image-dir", help="image folder (default: the standard one under --data-root)")
    p.add_argument("--box-file", help="COCO detector results json for the person boxes (default: ground-truth boxes)")
    p.add_argument("--gt-mat", help="MPII mpii_gt_val.mat (default: head sizes from the annotations, if present)")
    p.add_argument(
        "--codec",
        help="msra | msra_dark | udp (default: the checkpoint's, else the model's own: "
        "udp for ViTPose, msra otherwise)",
    )
    p.add_argument(
        "--input-size",
        nargs=2,
        type=int,
        metavar=("H", "W"),
        help="crop size (default: the checkpoint's, else the dataset's)",
    )
    p.add_argument("--no-flip", action="store_true", help="no flip test")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--amp", action="store_true", help="float16 autocast (CUDA only)")
    p.add_argument(
        "--results",
        help="where to write the keypoint results json "
        "(default: runs/eval/<checkpoint>_<dataset>_<split>_keypoints.json)",
    )
    p.add_argument("--json", action="store_true", help="print the report (metrics, protocol) as one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .. import load_checkpoint
    from ..codecs import build_codec
    from ..data import DATASETS, build_dataset
    from ..engine.checkpoint import read_training_checkpoint
    from ..engine.distributed import init_distributed
    from ..engine.inference import evaluate, find_mpii_gt
    from ..engine.trainer import build_model

    if args.batch_size < 1 or args.workers < 0:
        raise ValueError("--batch-size must be >= 1 and --workers >= 0")
    state = read_training_checkpoint(args.checkpoint)
    saved = state["config"] if state else {}
    model_name = args.model or saved.get("model")
    if not model_name:
        raise ValueError(f"{args.checkpoint} is not a `mamkpd train` checkpoint: pass --model NAME")
    model_kwargs = (
        args.model_kwargs
        if args.model_kwargs is not None
        else (saved.get("model_kwargs", {}) if model_name == saved.get("model") else {})
    )
    info = DATASETS[args.dataset]
    input_size = tuple(args.input_size or saved.get("input_size") or info.input_size)
    from ..models import model_info

    codec_name = args.codec or saved.get("codec") or model_info(model_name).codec
    codec = build_codec(codec_name, input_size)
    model = build_model(model_name, info.num_keypoints, input_size, model_kwargs)
    if state:
        model.load_state_dict(state["model"])
    else:
        load_checkpoint(model, args.checkpoint)
    dataset = build_dataset(
        args.dataset,
        args.split,
        args.data_root,
        train=False,
        input_size=input_size,
        codec=codec,
        box_file=args.box_file,
        ann_file=args.ann_file,
        image_dir=args.image_dir,
        channel_order=getattr(model, "input_channels", "rgb"),  # what the loaded layout expects
    )
    ctx = init_distributed(args.device)
    model.to(ctx.device)
    results = (
        Path(args.results)
        if args.results
        else Path("runs/eval") / f"{Path(args.checkpoint).stem}_{args.dataset}_{args.split}_keypoints.json"
    )
    gt_mat = args.gt_mat
    if gt_mat is None and (args.dataset, args.split) == ("mpii", "val"):
        gt_mat = find_mpii_gt(args.data_root)
    report = evaluate(
        model,
        dataset,
        codec,
        codec_name=codec_name,
        flip_test=not args.no_flip,
        batch_size=args.batch_size,
        workers=args.workers,
        ctx=ctx,
        amp=args.amp,
        results_file=results,
        box_source=args.box_file or "ground truth",
        gt_mat=gt_mat,
    )
    report["protocol"].update(
        checkpoint=str(args.checkpoint), model=model_name, model_kwargs=model_kwargs, split=args.split
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
