"""torchrun / DistributedDataParallel plumbing: process group set-up and result gathering."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

__all__ = ["DistContext", "init_distributed", "gather_by_index", "barrier", "broadcast_object", "broadcast_buffers"]


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: rank, world size, the device it drives."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _resolve_device(requested: str, local_rank: int, distributed: bool) -> torch.device:
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(requested)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {requested!r} requested but CUDA is not available on this machine")
        # one GPU per process under torchrun: cuda:LOCAL_RANK, whatever index was asked for
        device = torch.device("cuda", local_rank if distributed else (device.index or 0))
        torch.cuda.set_device(device)
    return device


def init_distributed(device: str = "auto") -> DistContext:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT).

    Without those variables this is a single process. NCCL drives CUDA devices, gloo the CPU.
    Calling it again in an initialised process returns the existing context.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    distributed = world_size > 1
    dev = _resolve_device(device, local_rank, distributed)
    if distributed and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(
            backend=backend, rank=rank, world_size=world_size, device_id=dev if dev.type == "cuda" else None
        )
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def broadcast_object(ctx: DistContext, obj):
    """Rank 0's ``obj`` on every rank."""
    if not ctx.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def broadcast_buffers(ctx: DistContext, module: torch.nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank.

    DDP syncs buffers at the start of each forward, so after the last training step every rank holds
    running statistics of its own last batch; evaluating shards with different statistics would make
    the score depend on the sharding (MMCV's DistEvalHook broadcasts them for the same reason).
    """
    if ctx.distributed:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def gather_by_index(
    ctx: DistContext, arrays: dict[str, np.ndarray], total: int, index_key: str = "instance_index"
) -> dict[str, np.ndarray]:
    """Gather per-instance arrays from all ranks, ordered by ``arrays[index_key]``, each index once.

    A DistributedSampler pads the last shard by repeating indices so that ranks get equal counts;
    the repeats are trimmed here by instance index. Raises if any index in ``0..total-1`` is missing
    or an index is unknown, so a gathering bug cannot silently change a score.
    """
    if ctx.distributed:
        parts: list = [None] * ctx.world_size
        dist.all_gather_object(parts, arrays)
    else:
        parts = [arrays]
    merged = {key: np.concatenate([np.asarray(p[key]) for p in parts]) for key in arrays}
    index = merged[index_key].astype(np.int64)
    unique, first = np.unique(index, return_index=True)
    if len(unique) != total or (total and (unique[0] != 0 or unique[-1] != total - 1)):
        missing = sorted(set(range(total)) - set(unique.tolist()))[:10]
        raise RuntimeError(
            f"evaluation gathering: expected instances 0..{total - 1} once each, got "
            f"{len(unique)} distinct (first missing: {missing})"
        )
    return {key: value[first] for key, value in merged.items()}
