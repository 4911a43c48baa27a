"""onnxruntime as a runtime for the FPS protocol: a checked export behind a zero-argument callable.

:func:`onnx_runner` exports a registered model (through :func:`~mamkpd.export.onnx_export.export_onnx`,
so the graph has passed its numeric check), opens an onnxruntime session on the chosen execution
provider and binds one fixed input; calling the runner runs one forward pass.
:func:`measure_onnx_fps` times it with the harness's :func:`~mamkpd.harness.measure.timing.time_callable`, so
eager, compiled and onnxruntime speeds come from one protocol and land in one results store.
"""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..harness.measure.allocator import use_allocator
from ..harness.measure.fps import FpsMeasurement
from ..harness.measure.presets import PRESETS
from ..harness.measure.timing import TimingProtocol, time_callable
from ..models import create_model, model_info
from ..ops import ONNX_SCAN_FORM
from .graph import example_input, prepare_for_export
from .onnx_export import OnnxCheck, OnnxExportConfig, OnnxExportReport, check_onnx, export_onnx, onnx_session

__all__ = [
    "ONNX_RUNTIME",
    "PROVIDERS",
    "resolve_provider",
    "OnnxRunner",
    "onnx_runner",
    "OnnxFpsMeasurement",
    "measure_onnx_fps",
]

ONNX_RUNTIME = "onnxruntime"  # the runtime field of an onnxruntime measurement (the store, the report)
# short names accepted on the command line -> onnxruntime execution providers
PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}


def resolve_provider(name: str) -> str:
    """``cpu``/``cuda``/``tensorrt`` or a full provider name -> a provider available in this onnxruntime."""
    import onnxruntime as ort

    full = PROVIDERS.get(name.lower(), name)
    available = ort.get_available_providers()
    if full not in available:
        raise RuntimeError(
            f"onnxruntime execution provider {name!r} is not available here "
            f"(onnxruntime {ort.__version__} has: {', '.join(available)})"
        )
    return full


def _device_of(provider: str) -> str:
    """The device a provider computes on, for the protocol's synchronisation and clock readings."""
    return "cuda" if provider in (PROVIDERS["cuda"], PROVIDERS["tensorrt"]) else "cpu"


@dataclass
class OnnxRunner:
    """One forward pass of an exported model per call, input bound once (on the device for GPU providers)."""

    model: str
    batch: int
    provider: str
    threads: int
    export: OnnxExportReport
    provider_check: OnnxCheck  # the same numeric check on this runner's provider
    session: Any = dataclasses.field(repr=False)
    _run: Any = dataclasses.field(repr=False)

    def __call__(self) -> Any:
        return self._run()


def _bind(session, images) -> Any:
    """A zero-argument function running ``session`` on ``images`` (numpy), outputs left on the device."""
    import onnxruntime as ort

    name = session.get_inputs()[0].name
    if session.get_providers()[0] == PROVIDERS["cpu"]:
        feed = {name: images}
        return lambda: session.run(None, feed)
    # GPU providers: input copied to the device once, outputs stay there (as PyTorch's do under the protocol)
    binding = session.io_binding()
    binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(images, "cuda", 0))
    for output in session.get_outputs():
        binding.bind_output(output.name, "cuda")
    return lambda: session.run_with_iobinding(binding)


def onnx_runner(
    model_name: str,
    batch: int = 1,
    provider: str = "cpu",
    checkpoint: str | Path | None = None,
    opset: int | None = None,
    threads: int | None = None,
    input_size: tuple[int, int] | None = None,
    scan_form: str = ONNX_SCAN_FORM,
) -> OnnxRunner:
    """Export ``model_name`` at a static ``batch``, check it, and return a callable running it on ``provider``.

    ``scan_form`` is how the file runs each selective scan (:data:`~mamkpd.export.SCAN_FORMS`).
    ``threads`` (intra-op threads) defaults to ``torch.get_num_threads()`` on the CPU, so onnxruntime
    and PyTorch eager get the same cores. The ONNX file lives only while the session is created.
    """
    full = resolve_provider(provider)
    threads = threads or torch.get_num_threads()
    overrides = {"input_size": tuple(input_size)} if input_size else {}
    with tempfile.TemporaryDirectory(prefix="mamkpd-onnx-") as folder:
        path = Path(folder) / f"{model_name}_b{batch}.onnx"
        report = export_onnx(
            OnnxExportConfig(
                model=model_name,
                out=path,
                checkpoint=checkpoint,
                batch=batch,
                opset=opset,
                model_kwargs=overrides,
                scan_form=scan_form,
            )
        )
        images = example_input(report.input_size, batch)
        check = report.check
        if full != PROVIDERS["cpu"]:  # the export was checked on the CPU; GPU kernels (TF32, fp16) may differ
            model = prepare_for_export(create_model(model_name, checkpoint_path=checkpoint, **overrides))
            check = check_onnx(path, model, images, report.check.tolerance, full)
        session = onnx_session(path, full, threads if full == PROVIDERS["cpu"] else None)
    return OnnxRunner(
        model=model_name,
        batch=batch,
        provider=full,
        threads=threads,
        export=report,
        provider_check=check,
        session=session,
        _run=_bind(session, images.numpy()),
    )


@dataclass
class OnnxFpsMeasurement(FpsMeasurement):
    """An FPS measurement of an onnxruntime session: the harness's record plus the execution provider."""

    provider: str = ""
    opset: int = 0
    threads: int = 0

    def store_fields(self) -> dict[str, Any]:
        fields = super().store_fields()
        fields.update(
            provider=self.provider, notes=f"{fields['notes']}; ONNX opset {self.opset}; {self.threads} intra-op threads"
        )
        return fields


def measure_onnx_fps(
    model_name: str,
    batch: int = 1,
    provider: str = "cpu",
    protocol: TimingProtocol | str = "standard",
    checkpoint: str | Path | None = None,
    opset: int | None = None,
    input_size: tuple[int, int] | None = None,
    scan_form: str = ONNX_SCAN_FORM,
    allocator: str | None = None,
) -> OnnxFpsMeasurement:
    """Time ``model_name`` under onnxruntime with the suite's FPS protocol (fp32, forward only); the store's
    ``scan_backend`` names the file's scan form. ``allocator``: the process's C allocator setting, as
    :func:`mamkpd.harness.measure.fps.measure_model_fps` takes it (onnxruntime's own arena holds the graph's
    tensors; the setting covers the rest)."""
    if allocator is not None:
        use_allocator(allocator)
    runner = onnx_runner(model_name, batch, provider, checkpoint, opset, input_size=input_size, scan_form=scan_form)
    device = _device_of(runner.provider)
    result = time_callable(runner, batch, device, protocol)
    info = model_info(model_name)
    return OnnxFpsMeasurement(
        model=model_name,
        batch=batch,
        preset=PRESETS["fp32"],
        device=device,
        input_size=runner.export.input_size,
        scan_backend=runner.export.scan_form,
        sample=info.sample,
        result=result,
        runtime=ONNX_RUNTIME,
        provider=runner.provider,
        opset=runner.export.opset,
        threads=runner.threads,
    )
