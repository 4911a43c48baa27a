"""Top-down inference and evaluation: flip test, decoding, COCO results, metrics under a recorded protocol."""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ..codecs.heatmap import flip_back  # the heatmap flip test, exported here as before
from ..models import scan_backend_of
from .checkpoint import unwrap_model, write_json
from .distributed import DistContext, broadcast_object, gather_by_index

__all__ = [
    "flip_back",
    "predict_outputs",
    "run_inference",
    "build_coco_results",
    "results_for_file",
    "evaluate",
    "primary_metric",
    "RESCORE_THR",
    "OKS_NMS_THR",
]

# HRNet / MMPose top-down test protocol for COCO and AP-10K
RESCORE_THR = 0.2  # keypoints above this score enter the mean that rescales the box score
OKS_NMS_THR = 0.9


def _float(outputs):
    """A model's outputs as float32: a tensor (heatmaps) or a tuple of tensors (SimCC's x and y vectors)."""
    return outputs.float() if isinstance(outputs, torch.Tensor) else tuple(t.float() for t in outputs)


def _mean(a, b):
    return 0.5 * (a + b) if isinstance(a, torch.Tensor) else tuple(0.5 * (x + y) for x, y in zip(a, b, strict=True))


def _numpy(outputs):
    return outputs.cpu().numpy() if isinstance(outputs, torch.Tensor) else tuple(t.cpu().numpy() for t in outputs)


def predict_outputs(model: nn.Module, images: torch.Tensor, codec, flip_pairs: Sequence[tuple[int, int]] | None):
    """The model's outputs for a batch (heatmaps, or a tuple such as SimCC's x and y vectors) as float32; with
    ``flip_pairs``, averaged with those of the mirrored batch, which ``codec.flip_back`` maps back."""
    outputs = _float(model(images))
    if flip_pairs is not None:
        outputs = _mean(outputs, codec.flip_back(_float(model(images.flip(-1))), flip_pairs))
    return outputs


def run_inference(
    model: nn.Module,
    dataset: Dataset,
    codec,
    *,
    flip_test: bool = True,
    batch_size: int = 64,
    workers: int = 2,
    ctx: DistContext | None = None,
    amp: bool = False,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Predict every instance of ``dataset``; keypoints come back in image pixels, ordered by instance index.

    ``codec`` decodes the model's outputs, maps the flip test's back (``flip_back``) and says how the crop
    mapping treats them (``use_udp``).

    Under DDP each rank predicts its shard and all ranks receive the full, de-duplicated set.
    """
    from ..data import collate, worker_init
    from ..data.threads import loader_workers
    from ..data.transforms import crop_to_image
    from .memory import check_batch_fits

    ctx = ctx or DistContext()
    sampler = (
        DistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=False)
        if ctx.distributed
        else None
    )
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=loader_workers(workers),
        worker_init_fn=worker_init,
        collate_fn=collate,
        pin_memory=ctx.device.type == "cuda",
    )
    flip_pairs = [tuple(p) for p in dataset.info.flip_pairs] if flip_test else None
    udp = codec.use_udp  # UDP crops map the box onto the (W-1) x (H-1) pixel-centre grid
    autocast = torch.autocast("cuda", dtype=torch.float16) if amp and ctx.device.type == "cuda" else nullcontext()
    fields: dict[str, list] = {
        k: []
        for k in (
            "instance_index",
            "image_id",
            "category_id",
            "keypoints",
            "scores",
            "box_score",
            "area",
            "center",
            "scale",
            "gt_keypoints",
            "head_size",
        )
    }
    was_training = model.training
    model.eval()
    from tqdm import tqdm  # here, not at the top: the GPU check imports the engine on machines without tqdm

    bar = tqdm(loader, desc="inference", disable=not (progress and ctx.is_main), dynamic_ncols=True)
    with torch.inference_mode():
        for index, batch in enumerate(bar):
            images = batch["image"].to(ctx.device, non_blocking=True)
            if index == 0:  # a batch that does not fit is refused before its forward, with a size that fits
                check_batch_fits(model, images[:1], len(images), str(ctx.device), flag="--batch-size")
            with autocast:
                outputs = predict_outputs(model, images, codec, flip_pairs)
            crop_xy, scores = codec.decode(_numpy(outputs))
            input_size = tuple(images.shape[-2:])
            for n, meta in enumerate(batch["meta"]):
                center, scale = np.asarray(meta["center"]), np.asarray(meta["scale"])
                fields["keypoints"].append(
                    np.asarray(crop_to_image(crop_xy[n], center, scale, input_size, udp=udp), dtype=np.float32)
                )
                fields["scores"].append(np.asarray(scores[n], dtype=np.float32))
                fields["instance_index"].append(int(meta["instance_index"]))
                fields["image_id"].append(int(meta["image_id"]))
                fields["category_id"].append(int(meta.get("category_id", 1)))
                fields["box_score"].append(float(meta["box_score"]))
                # HRNet's area for OKS-NMS: the padded box (scale) area
                fields["area"].append(float(np.prod(scale)))
                fields["center"].append(center.astype(np.float32))
                fields["scale"].append(scale.astype(np.float32))
                fields["gt_keypoints"].append(np.asarray(meta["keypoints"], dtype=np.float32))
                fields["head_size"].append(float(meta.get("head_size") or 0.0))  # MPII PCKh without the .mat
    model.train(was_training)
    num_keypoints = len(dataset.info.keypoint_names)
    arrays = {
        k: np.asarray(v) if v else np.zeros((0, num_keypoints, 2) if k == "keypoints" else (0,))
        for k, v in fields.items()
    }
    return gather_by_index(ctx, arrays, total=len(dataset))


def build_coco_results(pred: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """COCO keypoint results (``image_id``, ``category_id``, ``keypoints`` flat [x, y, s]·K, ``score``).

    ``score`` is the box score here; rescoring happens in :func:`evaluate`. ``area`` rides along for
    OKS-NMS and is dropped before the file is written. Nothing is rounded here: rescoring, OKS-NMS and
    the metric see full precision, as in HRNet and MMPose; :func:`results_for_file` rounds for the file.
    """
    results = []
    for i in range(len(pred["instance_index"])):
        kpts = np.concatenate([pred["keypoints"][i], pred["scores"][i][:, None]], axis=1)
        results.append(
            {
                "image_id": int(pred["image_id"][i]),
                "category_id": int(pred["category_id"][i]),
                "keypoints": [float(v) for v in kpts.reshape(-1)],
                "score": float(pred["box_score"][i]),
                "area": float(pred["area"][i]),
            }
        )
    return results


def results_for_file(results: list[dict[str, Any]], decimals: int = 3) -> list[dict[str, Any]]:
    """The results as the file holds them: keypoints rounded to ``decimals`` (a smaller file)."""
    return [{**r, "keypoints": [round(v, decimals) for v in r["keypoints"]]} for r in results]


def primary_metric(dataset_name: str) -> str:
    """The metric a run is ranked by (best.pth): COCO/AP-10K AP, MPII mean PCKh."""
    return "Mean" if dataset_name == "mpii" else "AP"


def _mpii_ground_truth(pred: dict[str, np.ndarray], gt_mat: str | None):
    """``gt_mat`` when given, else (gt, visible, head_sizes) from the annotations the dataset read."""
    if gt_mat:
        if not Path(gt_mat).is_file():
            raise FileNotFoundError(
                f"MPII ground-truth file not found: {gt_mat} (mpii_gt_val.mat of the MPII "
                "annotations HRNet/MMPose ship)"
            )
        return gt_mat
    missing = np.flatnonzero(pred["head_size"] <= 0)
    if len(missing):
        raise ValueError(
            f"MPII instance(s) {missing[:10].tolist()} have no head size; "
            "pass the ground-truth file mpii_gt_val.mat (--gt-mat)"
        )
    gt = pred["gt_keypoints"].astype(np.float64)
    return gt[..., :2], gt[..., 2] > 0, pred["head_size"].astype(np.float64)


def evaluate(
    model: nn.Module,
    dataset: Dataset,
    codec,
    *,
    flip_test: bool = True,
    batch_size: int = 64,
    workers: int = 2,
    ctx: DistContext | None = None,
    amp: bool = False,
    results_file: str | os.PathLike | None = None,
    box_source: str = "ground truth",
    gt_mat: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run top-down inference on ``dataset`` and score it with the data set's published protocol.

    COCO / AP-10K: rescoring (box score × mean keypoint score above 0.2), OKS-NMS at 0.9 with the data
    set's sigmas, then keypoint AP (``coco_keypoint_ap`` / ``ap10k_ap``); results are written to
    ``results_file`` in the COCO keypoint results format. MPII: PCKh@0.5 (HRNet / MMPose-0.x protocol),
    from ``gt_mat`` or, without it, from the dataset's own keypoints and head sizes; the file then holds
    16 ``[x, y]`` 0-based pixel coordinates per person in annotation order.

    Returns ``{"metrics": {...}, "protocol": {...}, "num_instances": N, "results_file": path}``,
    the same on every rank.
    """
    from .. import evaluation

    ctx = ctx or DistContext()
    channels = getattr(dataset, "channel_order", "rgb")
    expected = getattr(unwrap_model(model), "input_channels", "rgb")
    if channels != expected:
        raise ValueError(
            f"the model expects {expected.upper()} images (the layout its weights were loaded from) but the "
            f"dataset gives {channels.upper()}: build it with channel_order={expected!r}"
        )
    pred = run_inference(
        model,
        dataset,
        codec,
        flip_test=flip_test,
        batch_size=batch_size,
        workers=workers,
        ctx=ctx,
        amp=amp,
        progress=progress,
    )
    info = dataset.info
    inner = unwrap_model(model)
    protocol = {
        "dataset": info.name,
        "ann_file": str(getattr(dataset, "ann_file", "")),
        "box_source": box_source,
        "flip_test": flip_test,
        "flip_shift": flip_test and codec.flip_shift,
        "codec": codec.name,
        "input_channels": f"{channels.upper()}, normalised with the RGB ImageNet mean/std",
        "input_size": list(_crop_size(dataset)),
        "scan_backend": scan_backend_of(inner),
        "amp": bool(amp and ctx.device.type == "cuda"),
        "device": str(ctx.device),
        "world_size": ctx.world_size,
        "skipped_records": int(getattr(dataset, "skipped", 0)),
    }
    report: dict[str, Any] | None = None
    if ctx.is_main:
        if info.name == "mpii":
            protocol.update(metric="PCKh@0.5 (HRNet / MMPose 0.x)", gt=gt_mat or "annotations + head sizes")
            metrics = evaluation.mpii_pckh(pred["keypoints"].astype(np.float64), _mpii_ground_truth(pred, gt_mat))
            file_content: Any = pred["keypoints"].round(3).tolist()
        else:
            results = build_coco_results(pred)
            results = evaluation.rescore(results, thr=RESCORE_THR)
            results = evaluation.oks_nms(results, thr=OKS_NMS_THR, sigmas=info.sigmas)
            for r in results:
                r.pop("area", None)
            protocol.update(rescore_thr=RESCORE_THR, oks_nms_thr=OKS_NMS_THR)
            if info.name == "ap10k":
                protocol.update(
                    metric="AP-10K keypoint AP (ap10k_ap)", evaluator=evaluation.evaluator_version("xtcocotools")
                )
                metrics = evaluation.ap10k_ap(dataset.ann_file, results, evaluator="xtcocotools")
            else:
                protocol.update(
                    metric="COCO keypoint AP (coco_keypoint_ap)", evaluator=evaluation.evaluator_version("pycocotools")
                )
                metrics = evaluation.coco_keypoint_ap(
                    dataset.ann_file, results, sigmas=info.sigmas, evaluator="pycocotools"
                )
            file_content = results_for_file(results)
        if results_file is not None:
            write_json(results_file, file_content)
        report = {
            "metrics": {k: float(v) for k, v in metrics.items()},
            "protocol": protocol,
            "num_instances": len(dataset),
            "results_file": str(results_file) if results_file else None,
        }
    return broadcast_object(ctx, report)


def _crop_size(dataset: Dataset) -> tuple[int, int]:
    """(H, W) of the dataset's crops."""
    return tuple(int(v) for v in dataset[0]["image"].shape[-2:]) if len(dataset) else (0, 0)
