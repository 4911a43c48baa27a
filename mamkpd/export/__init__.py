"""Deployment forms of the registered models: ``torch.compile``, ``torch.export`` and ONNX.

A layer beside :mod:`mamkpd.harness` (it uses the harness's FPS protocol for onnxruntime timings).
"""

from .custom_op import CUSTOM_OP_SCAN_FORM, register_custom_ops
from .graph import (
    CROSS_SCAN_OP,
    SCAN_OP,
    CompileStats,
    compile_model,
    count_scan_nodes,
    count_ss2d,
    example_input,
    export_program,
    input_size_of,
    lower_scan,
    prepare_for_export,
)
from .onnx_export import (
    DEFAULT_TOLERANCE,
    SCAN_FORMS,
    OnnxCheck,
    OnnxExportConfig,
    OnnxExportReport,
    check_onnx,
    export_onnx,
    flat_outputs,
    onnx_session,
)
from .runtimes import (
    ONNX_RUNTIME,
    PROVIDERS,
    OnnxFpsMeasurement,
    OnnxRunner,
    measure_onnx_fps,
    onnx_runner,
    resolve_provider,
)

__all__ = [
    "CUSTOM_OP_SCAN_FORM",
    "register_custom_ops",
    "CROSS_SCAN_OP",
    "SCAN_OP",
    "CompileStats",
    "compile_model",
    "count_scan_nodes",
    "count_ss2d",
    "example_input",
    "export_program",
    "input_size_of",
    "lower_scan",
    "prepare_for_export",
    "DEFAULT_TOLERANCE",
    "SCAN_FORMS",
    "OnnxCheck",
    "OnnxExportConfig",
    "OnnxExportReport",
    "check_onnx",
    "export_onnx",
    "flat_outputs",
    "onnx_session",
    "ONNX_RUNTIME",
    "PROVIDERS",
    "OnnxFpsMeasurement",
    "OnnxRunner",
    "measure_onnx_fps",
    "onnx_runner",
    "resolve_provider",
]
