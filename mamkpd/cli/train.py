"""``mamkpd train``: top-down heatmap training; runs unchanged under torchrun (one process per GPU)."""

from __future__ import annotations

import argparse
import json
import os

from ..data.readers import read_json
from ..engine.config import TrainConfig
from .options import add_config_arguments, config_from_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a registered model on COCO, MPII or AP-10K",
        description="Train a top-down heatmap model. Every TrainConfig field is an option (--field-name); "
        "defaults follow the paper (Adam, lr 1e-3, x0.1 at epochs 170 and 200, 210 epochs). "
        "Multi-GPU / multi-node: torchrun --nproc-per-node N -m mamkpd.cli train ... "
        "(--batch-size is per process).",
        epilog="example: mamkpd train --model mamkpd_s --dataset coco --data-root /data/coco "
        "--batch-size 64 --out-dir runs/mamkpd_s_coco",
    )
    p.add_argument(
        "--config",
        metavar="FILE",
        help="a JSON file of TrainConfig fields, e.g. a checkpoint's config; options given here override it",
    )
    add_config_arguments(p)
    p.add_argument("--json", action="store_true", help="print the run summary as one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..engine.trainer import train

    base = None
    if args.config:
        values = read_json(args.config, "config file")
        if not isinstance(values, dict):
            raise ValueError(f"{args.config}: a config file holds one JSON object of TrainConfig fields")
        base = TrainConfig.from_dict(values)
    cfg = config_from_args(args, base)
    result = train(cfg)
    if os.environ.get("RANK", "0") != "0":  # under torchrun only rank 0 reports
        return 0
    summary = result.summary()
    if args.json:
        print(json.dumps(summary))
    else:
        for key, value in summary.items():
            print(f"{key}: {value}")
    return 0
