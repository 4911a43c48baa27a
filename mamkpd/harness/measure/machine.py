"""What a measurement ran on: machine identity, GPU clock state and software versions.

GPU details come from nvidia-ml-py (``pynvml``) when it and a driver are present; every helper
returns empty strings instead of failing on machines without them, so CPU runs record the same columns.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["GpuClockState", "gpu_clock_state", "machine_info", "environment_info", "THROTTLE_REASONS"]

# nvml clock-event bits that mean the GPU was slowed below what it would otherwise run at; idle,
# application-clock and sync-boost bits are normal states, not throttling.
THROTTLE_REASONS = {
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
}


def _nvml():
    """The initialised pynvml module, or None where nvidia-ml-py or the driver is missing."""
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml
    except Exception:  # no library, no driver, no device: all mean "no NVML here"
        return None


@dataclass(frozen=True)
class GpuClockState:
    """One reading of a GPU's clocks and slow-down reasons."""

    sm_clock_mhz: float
    sm_clock_max_mhz: float
    app_sm_clock_mhz: float
    power_limit_w: float
    temperature_c: float
    throttle_reasons: tuple[str, ...]

    @property
    def throttled(self) -> bool:
        return bool(self.throttle_reasons)


def gpu_clock_state(index: int = 0) -> GpuClockState | None:
    """Read SM clock, its limits, power limit, temperature and active throttle reasons of GPU ``index``.

    Returns None where NVML is unavailable (CPU machines).
    """
    nvml = _nvml()
    if nvml is None:
        return None
    try:
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        reasons = nvml.nvmlDeviceGetCurrentClocksEventReasons(handle)
        return GpuClockState(
            sm_clock_mhz=float(nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM)),
            sm_clock_max_mhz=float(nvml.nvmlDeviceGetMaxClockInfo(handle, nvml.NVML_CLOCK_SM)),
            app_sm_clock_mhz=float(nvml.nvmlDeviceGetApplicationsClock(handle, nvml.NVML_CLOCK_SM)),
            power_limit_w=nvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000.0,
            temperature_c=float(nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)),
            throttle_reasons=tuple(name for bit, name in THROTTLE_REASONS.items() if reasons & bit),
        )
    except Exception:  # a query the device does not support: report nothing rather than guess
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.cache
def machine_info(device: str = "cpu") -> dict[str, str]:
    """Machine identity columns of the results store for a run on ``device`` ("cpu" or "cuda[:i]")."""
    info = {
        "cpu_model": _cpu_model(),
        "cpu_count": str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()),
        "os": f"{platform.system()} {platform.release()}",
        "gpu_name": "",
        "gpu_driver": "",
        "cuda_version": "",
    }
    if not device.startswith("cuda"):
        return info
    import torch

    index = int(device.split(":")[1]) if ":" in device else 0
    info["cuda_version"] = torch.version.cuda or ""
    if torch.cuda.is_available():
        info["gpu_name"] = torch.cuda.get_device_name(index)
    nvml = _nvml()
    if nvml is not None:
        try:
            info["gpu_driver"] = str(nvml.nvmlSystemGetDriverVersion())
        except Exception:
            pass
    return info


def distribution_version(distribution: str) -> str:
    """The installed version of ``distribution`` ("" where it is not installed)."""
    # metadata only: importing mamba_ssm fails on machines without its CUDA extension
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return ""


def _git_state() -> tuple[str, str]:
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        # the code's state: changes to the committed example report (which a run may be regenerating) are not
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)reports"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        return commit, "true" if dirty else "false"
    except (OSError, subprocess.SubprocessError):
        return "", ""  # installed from a wheel or no git: nothing to record


@functools.cache
def environment_info() -> dict[str, str]:
    """Software columns of the results store: library versions and the suite's git commit."""
    from mamkpd import __version__ as mamkpd_version

    commit, dirty = _git_state()
    return {
        "python_version": platform.python_version(),
        "torch_version": distribution_version("torch"),
        "mamba_ssm_version": distribution_version("mamba-ssm"),
        "fvcore_version": distribution_version("fvcore"),
        "onnxruntime_version": distribution_version("onnxruntime"),
        "mamkpd_version": mamkpd_version,
        "git_commit": commit,
        "git_dirty": dirty,
    }
