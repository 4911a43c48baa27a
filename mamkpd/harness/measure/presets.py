"""Named numeric and execution settings of a timing (precision, memory layout, cuDNN/TF32 flags,
compilation), and the device checks that go with them."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from ...ops import OneDNNLinear, onednn_linear_unavailable

__all__ = ["Preset", "PRESETS", "AUTOCAST_DTYPES", "ONEDNN_LINEAR_RUNTIME", "preset_flags", "check_preset_device"]

AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
ONEDNN_LINEAR_RUNTIME = "(Linear on oneDNN)"  # what a timing under an onednn_linear preset adds to its runtime


@dataclass(frozen=True)
class Preset:
    """Numeric and execution settings of one timing: precision, layout, cuDNN/TF32 flags, compilation."""

    name: str
    precision: str = "fp32"  # fp32 | fp16 | bf16 (half precisions under autocast)
    channels_last: bool = False
    cudnn_benchmark: bool = False
    tf32: bool = False
    compile_mode: str = ""  # "" for eager, else a torch.compile mode
    cuda_only: bool = False
    # every float32 Linear on oneDNN, not MKL (CPU only; mamkpd.ops.onednn_linear says why)
    onednn_linear: bool = False
    description: str = ""


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("fp32", description="eager float32, TF32 and cudnn.benchmark off"),
        Preset("fp32-cl", channels_last=True, description="fp32 with channels_last memory format"),
        Preset(
            "fp32-onednn",
            onednn_linear=True,
            description="fp32 with every Linear run by oneDNN's AVX-512 inner product, not MKL's SGEMM (CPU)",
        ),
        Preset("bf16", precision="bf16", description="bfloat16 autocast"),
        Preset("fp16", precision="fp16", cuda_only=True, description="float16 autocast"),
        Preset(
            "fp16-cl",
            precision="fp16",
            channels_last=True,
            cuda_only=True,
            description="float16 autocast with channels_last",
        ),
        Preset(
            "fp16-cudnn-bench",
            precision="fp16",
            cudnn_benchmark=True,
            cuda_only=True,
            description="float16 autocast with cudnn.benchmark",
        ),
        Preset("fp32-cudnn-bench", cudnn_benchmark=True, cuda_only=True, description="fp32 with cudnn.benchmark"),
        Preset("tf32", tf32=True, cuda_only=True, description="float32 storage, TF32 matmul and convolutions"),
        Preset("compile", compile_mode="default", description="torch.compile (default mode), fp32"),
        Preset(
            "fp16-compile",
            precision="fp16",
            compile_mode="default",
            cuda_only=True,
            description="torch.compile (default mode) under float16 autocast",
        ),
        Preset(
            "bf16-compile",
            precision="bf16",
            compile_mode="default",
            description="torch.compile (default mode) under bfloat16 autocast",
        ),
        Preset(
            "compile-max-autotune",
            compile_mode="max-autotune",
            cuda_only=True,
            description="torch.compile max-autotune, fp32",
        ),
    )
}


@contextlib.contextmanager
def preset_flags(preset: Preset):
    """Set cuDNN benchmark and TF32 exactly as the preset says (TF32 is on by default for cuDNN)."""
    saved = (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cudnn.benchmark = preset.cudnn_benchmark
    torch.backends.cuda.matmul.allow_tf32 = preset.tf32
    torch.backends.cudnn.allow_tf32 = preset.tf32
    try:
        with OneDNNLinear() if preset.onednn_linear else contextlib.nullcontext():
            yield
    finally:
        (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) = saved


def check_preset_device(preset: Preset, device: str) -> None:
    """A clear error when ``device`` is not a device this preset can time on."""
    if device.startswith("cuda"):
        if preset.onednn_linear:
            raise ValueError(f"preset {preset.name!r} ({preset.description}) is for the CPU; use fp32 on a GPU")
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {device!r} asked for but no CUDA device is available")
    elif device != "cpu":
        raise ValueError(f"device must be 'cpu' or 'cuda[:i]', got {device!r}")
    elif preset.onednn_linear and onednn_linear_unavailable():
        raise RuntimeError(f"preset {preset.name!r}: {onednn_linear_unavailable()}")
    elif preset.cuda_only:
        raise ValueError(
            f"preset {preset.name!r} ({preset.description}) needs a CUDA device; "
            f"CPU presets: {', '.join(n for n, p in PRESETS.items() if not p.cuda_only)}"
        )
