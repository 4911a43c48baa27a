"""``mamkpd train``: top-down heatmap training; runs unchanged under torchrun (one process per GPU)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from typing import get_type_hints

from ..engine.config import TrainConfig
from .options import add_input_size, add_scan_backend, parse_json_dict


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (true/false), got {text!r}")


def _optional(parse):
    return lambda text: None if text.lower() == "none" else parse(text)


def add_config_arguments(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """Add one ``--field-name`` option per TrainConfig field (defaults left as None = "not given")."""
    hints = get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        if f.name in skip:
            continue
        if f.name == "input_size":  # the flags several commands share
            add_input_size(parser, f.metadata["default_text"], f.metadata["help"])
            continue
        if f.name == "scan_backend":
            add_scan_backend(parser, default=None)  # None: not given, so a --config file's value stands
            continue
        hint = str(hints[f.name])
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        extra = {k: v for k, v in f.metadata.items() if k != "help"}
        shown = "none" if default is None else " ".join(map(str, default)) if isinstance(default, tuple) else default
        help_text = f.metadata["help"]
        if "default" not in help_text:
            help_text += f" (default: {shown})"
        if "dict" in hint:
            parser.add_argument(flag, type=parse_json_dict, metavar="JSON", help=help_text)
        elif "tuple" in hint:
            item = float if "float" in hint else int
            parser.add_argument(flag, type=item, nargs="+", metavar="N", help=help_text)
        elif "bool" in hint:
            # "--amp" alone means true; "--amp false" turns a default-on flag off
            parser.add_argument(flag, type=_parse_bool, nargs="?", const=True, metavar="BOOL", help=help_text)
        else:
            base = int if "int" in hint else float if "float" in hint else str
            parse = _optional(base) if "None" in hint and base is not str else base
            extra.setdefault("metavar", {int: "N", float: "X"}.get(base))
            parser.add_argument(flag, type=parse, help=help_text, **extra)


def config_from_args(args: argparse.Namespace, base: TrainConfig | None = None) -> TrainConfig:
    """TrainConfig from parsed arguments: options given on the command line replace ``base``'s values."""
    values = (base or TrainConfig()).to_dict()
    for f in dataclasses.fields(TrainConfig):
        given = getattr(args, f.name, None)
        if given is not None:
            values[f.name] = given
    return TrainConfig.from_dict(values)


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
        from ..data.readers import read_json

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
