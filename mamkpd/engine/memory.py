"""Whether a batch fits in memory, asked before it runs: a batch that does not fit is refused with one line
naming the size tried and a size that fits, never left to an out-of-memory kill without a word.

The need is estimated from a forward at batch 1 (eval mode, no autograd: the model's state is untouched): the
most activation memory alive at once (module outputs, tracked as they are made and freed) for inference, every
module output (what autograd keeps for the backward pass) for training; times a margin for the temporaries
inside modules and the gradients, times the batch.
The memory available is the device's free memory (CUDA) or the kernel's ``MemAvailable``, bounded by the
process's address-space limit where one is set (``ulimit -v``)."""

from __future__ import annotations

import resource
import weakref

import torch
from torch import nn

__all__ = ["TEMPORARIES_MARGIN", "available_bytes", "peak_activation_bytes", "check_batch_fits", "out_of_memory"]

TEMPORARIES_MARGIN = 2.0  # a module's own temporaries (attention scores, scan states) beside its output


def available_bytes(device: str) -> int | None:
    """Bytes this process may still allocate on ``device``; None when it cannot be read."""
    if device.startswith("cuda"):
        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    free = None
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    free = int(line.split()[1]) * 1024
    except OSError:
        pass
    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    if limit != resource.RLIM_INFINITY:
        try:
            with open("/proc/self/statm", encoding="ascii") as handle:
                used = int(handle.read().split()[0]) * resource.getpagesize()
        except OSError:
            used = 0
        free = max(0, limit - used) if free is None else min(free, max(0, limit - used))
    return free


def peak_activation_bytes(model: nn.Module, example: torch.Tensor, training: bool = False) -> int:
    """The most bytes of module outputs alive at once during ``model(example)`` (inference mode); with
    ``training``, all of them (autograd keeps them for the backward pass)."""
    live = peak = 0

    def freed(nbytes: int) -> None:
        nonlocal live
        if not training:
            live -= nbytes

    def track(_module, _inputs, output) -> None:
        nonlocal live, peak
        for t in output if isinstance(output, (tuple, list)) else (output,):
            if isinstance(t, torch.Tensor):
                nbytes = t.untyped_storage().nbytes()
                live += nbytes
                peak = max(peak, live)
                weakref.finalize(t, freed, nbytes)

    hooks = [m.register_forward_hook(track) for m in model.modules() if not list(m.children())]
    was_training = model.training
    try:
        with torch.inference_mode():
            model.eval()(example)
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return peak + example.untyped_storage().nbytes()


def _gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:.2f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.1f} MiB"


def _refusal(batch: int, per_sample: float, available: int, device: str, flag: str) -> ValueError:
    fits = int(available // per_sample) if per_sample > 0 else 0
    advice = f"{flag} {fits} fits" if fits >= 1 else "not even one sample fits: free memory or use a smaller model"
    return ValueError(
        f"{flag} {batch} does not fit in memory on {device}: it needs about {_gib(per_sample * batch)}, "
        f"{_gib(available)} is available; {advice}"
    )


def check_batch_fits(
    model: nn.Module, example: torch.Tensor, batch: int, device: str, flag: str = "--batch", training: bool = False
) -> float:
    """Refuse (ValueError, one line) a ``batch`` whose estimated need exceeds the memory available; ``example``
    is one sample (batch 1) on ``device``. Returns the estimated bytes per sample."""
    per_sample = peak_activation_bytes(model, example, training) * TEMPORARIES_MARGIN
    available = available_bytes(device)
    if available is not None and per_sample * batch > available:
        raise _refusal(batch, per_sample, available, device, flag)
    return per_sample


def out_of_memory(
    exc: BaseException, batch: int, per_sample: float, device: str, flag: str = "--batch"
) -> ValueError | None:
    """The one-line refusal for an allocation that failed anyway (the estimate was short), else None."""
    text = str(exc)
    oom = isinstance(exc, torch.cuda.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "not enough memory" in text)
    )
    if not oom:
        return None
    available = available_bytes(device) or 0
    return _refusal(batch, max(per_sample, available / max(batch, 1)), available, device, flag)
