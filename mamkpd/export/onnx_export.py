"""ONNX export of any registered model, checked with onnxruntime before anything is written.

Pipeline (torch 2.13's ``dynamo=True`` exporter, the only one that sees custom ops as such):
``torch.export`` (each SS2D's scan is one ``mamkpd::cross_selective_scan`` or ``mamkpd::selective_scan``
node) -> :func:`~mamkpd.export.graph.lower_scan` (each node becomes its loop over time, torch's ``scan``
with a seven-op step) -> ``torch.onnx.export`` of that ExportedProgram, which writes each loop as one ONNX
``Scan`` node (:data:`~mamkpd.ops.ONNX_SCAN_FORM`; the form and its timings against the others tried:
:mod:`mamkpd.ops.scan_onnx`). The scans are lowered with the exporter's public entry point
(``ExportedProgram.run_decompositions``) instead of a ``custom_translation_table`` entry, because a
translation would have to restate the scan in onnxscript: a second implementation of the same computation
to keep in sync. This way the ONNX graph is built from the very functions the tests compare with the
reference.

The file is saved into a temporary folder beside ``out``, run with onnxruntime (CPU provider) on a
fixed random batch and compared with the PyTorch eager forward; only an export within ``tolerance``
(max abs difference over every output) is moved into place with ``os.replace``.

``scan_form="custom-op"`` skips the lowering and writes each scan as one node of a custom domain, run by
mamkpd's own kernel through onnxruntime-extensions: faster, but the file runs only in a Python process with
mamkpd and onnxruntime-extensions installed (:mod:`~mamkpd.export.custom_op`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..ops import ONNX_SCAN_FORM
from .custom_op import CUSTOM_OP_SCAN_FORM, custom_op_translations, holds_custom_ops, register_custom_ops
from .graph import count_scan_nodes, example_input, export_program, input_size_of, lower_scan, prepare_for_export

__all__ = [
    "DEFAULT_TOLERANCE",
    "MIN_OPSET",
    "MAX_OPSET",
    "SCAN_FORMS",
    "OnnxExportConfig",
    "OnnxCheck",
    "OnnxExportReport",
    "export_onnx",
    "check_onnx",
    "onnx_session",
    "flat_outputs",
]

DEFAULT_TOLERANCE = 1e-4  # max abs difference of fp32 heatmaps between onnxruntime and PyTorch eager
MIN_OPSET = 18  # the lowest opset torch's dynamo exporter translates to directly (torchlib targets 18+)
MAX_OPSET = torch.onnx._constants.ONNX_MAX_OPSET  # private, but the only place torch states it
DYNAMIC_TRACE_BATCH = 2  # torch.export specialises a batch of 1, so dynamic exports trace with 2 ...
DYNAMIC_CHECK_BATCH = 1  # ... and are checked at another size, which a wrongly specialised graph fails
# how an export writes the scans: ONNX's Scan over time (portable, the default) or one custom node each
SCAN_FORMS = (ONNX_SCAN_FORM, CUSTOM_OP_SCAN_FORM)
WEAK_CHECK_RATIO = 100.0  # outputs smaller than this many tolerances make the check weak (untrained weights)


@dataclass
class OnnxExportConfig:
    """One ONNX export: which model (with factory overrides), which weights, where to, batch (None:
    dynamic), opset, tolerance, whether onnxscript's graph optimiser runs, and the scans' form."""

    model: str
    out: Path
    checkpoint: Path | None = None
    trust_checkpoint: bool = False  # load a checkpoint weights_only=True refuses as a full pickle (a trusted file)
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # e.g. input_size, num_keypoints
    scan_backend: str = "auto"  # what PyTorch eager runs for the check (the ONNX graph has its own scan form)
    batch: int | None = 1
    opset: int | None = None  # None: the exporter's default
    tolerance: float = DEFAULT_TOLERANCE
    seed: int = 0  # of the random check input
    optimize: bool = True  # onnxscript's optimiser (constant folding, rewrites); onnxruntime optimises anyway
    scan_form: str = ONNX_SCAN_FORM  # one of SCAN_FORMS; "custom-op" files need mamkpd + onnxruntime-extensions

    def __post_init__(self):
        self.out = Path(self.out)
        self.checkpoint = Path(self.checkpoint) if self.checkpoint is not None else None
        if self.batch is not None and self.batch < 1:
            raise ValueError(f"batch must be a positive integer or None (dynamic), got {self.batch}")
        if self.opset is not None and not MIN_OPSET <= self.opset <= MAX_OPSET:
            raise ValueError(
                f"opset {self.opset} is outside what torch {torch.__version__}'s exporter supports "
                f"({MIN_OPSET}..{MAX_OPSET})"
            )
        if not self.tolerance > 0:
            raise ValueError(f"tolerance must be positive, got {self.tolerance}")
        if self.scan_form not in SCAN_FORMS:
            raise ValueError(f"scan_form must be one of {', '.join(SCAN_FORMS)}, got {self.scan_form!r}")


@dataclass
class OnnxCheck:
    """onnxruntime against PyTorch eager on one fixed random batch."""

    batch: int
    provider: str
    outputs: int
    max_abs_diff: float  # over every element of every output
    reference_max_abs: float  # scale of PyTorch's outputs: a check of near-zero outputs proves little
    tolerance: float

    @property
    def passed(self) -> bool:
        return bool(self.max_abs_diff <= self.tolerance)  # NaN fails

    @property
    def weak(self) -> bool:
        return self.reference_max_abs < WEAK_CHECK_RATIO * self.tolerance


@dataclass
class OnnxExportReport:
    """What :func:`export_onnx` wrote and measured."""

    model: str
    path: str
    files: list[str]
    batch: int | None  # None: dynamic
    input_size: tuple[int, int]
    opset: int
    checkpoint: str | None
    model_kwargs: dict[str, Any]
    scan_backend: str  # the scan backend of the PyTorch eager reference ("" for a model without a scan)
    optimized: bool  # onnxscript's optimiser ran
    scan_nodes: int  # scan nodes of torch.export's graph (mamkpd::selective_scan, ::cross_selective_scan)
    scan_form: str  # what the ONNX graph runs for them (one of SCAN_FORMS); "" without scans
    onnx_nodes: int
    onnx_op_types: dict[str, int]
    file_bytes: int
    export_seconds: float  # torch.export, scan lowering, ONNX translation and optimisation
    check_seconds: float
    check: OnnxCheck
    torch_version: str = torch.__version__
    onnxruntime_version: str = ""
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["check"].update(passed=self.check.passed, weak=self.check.weak)
        return d


def flat_outputs(output: Any) -> list[Tensor]:
    """Tensors of a model's output in the order the ONNX graph lists them (tensor, sequence or dict)."""
    if isinstance(output, Tensor):
        return [output]
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (list, tuple)):
        return [t for item in output for t in flat_outputs(item)]
    raise TypeError(f"model output of type {type(output).__name__} has no tensors to compare")


def onnx_session(path: str | os.PathLike, provider: str = "CPUExecutionProvider", threads: int | None = None):
    """An onnxruntime session on ``provider`` with full graph optimisation; ``threads`` intra-op threads.
    A ``custom-op`` file gets mamkpd's scan ops registered (RuntimeError if onnxruntime-extensions is missing)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if holds_custom_ops(path):
        options.register_custom_ops_library(register_custom_ops())
        # the scan nodes run on torch's OpenMP team (mamkpd.ops.openmp_team): onnxruntime's idle threads must
        # sleep, not spin, on the cores that team runs on (MamKPD-B on 2 threads: 23 against 12 img/s)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads is not None:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=[provider])


def check_onnx(
    path: str | os.PathLike,
    model: nn.Module,
    example: Tensor,
    tolerance: float = DEFAULT_TOLERANCE,
    provider: str = "CPUExecutionProvider",
) -> OnnxCheck:
    """Run ``path`` with onnxruntime on ``example`` and compare every output with ``model``'s eager forward."""
    with torch.inference_mode():
        expected = [t.float().numpy() for t in flat_outputs(model(example))]
    session = onnx_session(path, provider)
    feed = {session.get_inputs()[0].name: example.numpy()}
    got = session.run(None, feed)
    if len(got) != len(expected):
        raise RuntimeError(f"{path}: onnxruntime gave {len(got)} outputs, PyTorch {len(expected)}")
    diff, scale = 0.0, 0.0
    for index, (ours, theirs) in enumerate(zip(got, expected, strict=True)):
        if ours.shape != theirs.shape:
            raise RuntimeError(
                f"{path}: output {index} has shape {ours.shape} in onnxruntime, {theirs.shape} in PyTorch"
            )
        diff = max(diff, float(np.max(np.abs(ours.astype(np.float64) - theirs))))
        scale = max(scale, float(np.max(np.abs(theirs))))
    return OnnxCheck(
        batch=example.shape[0],
        provider=provider,
        outputs=len(got),
        max_abs_diff=diff,
        reference_max_abs=scale,
        tolerance=tolerance,
    )


def _staging_folder(out: Path) -> Path:
    """A fresh folder beside ``out`` (same file system, so the final move is an atomic rename)."""
    if out.is_dir():
        raise ValueError(f"--out {out}: is a folder; give a file name such as {out / 'model.onnx'}")
    parent = out.parent
    if not parent.exists():
        raise ValueError(f"--out {out}: folder {parent} does not exist")
    if not parent.is_dir():
        raise ValueError(f"--out {out}: {parent} is not a folder")
    try:
        return Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=parent))
    except OSError as exc:
        raise ValueError(f"--out {out}: cannot write in {parent} ({exc.strerror or exc})") from None


def _publish(staged: Path, out: Path) -> list[str]:
    """Move the staged ONNX file (and any external-data files) to ``out``; the .onnx file goes last."""
    names = sorted(p.name for p in staged.iterdir() if p.name != out.name) + [out.name]
    for name in names:
        os.replace(staged / name, out.parent / name)
    return [str(out.parent / name) for name in names]


def _op_types(path: Path) -> Counter:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return Counter(node.op_type for node in graph.node)


def export_onnx(config: OnnxExportConfig) -> OnnxExportReport:
    """Export ``config.model`` to ONNX, check it with onnxruntime, and write it only if the check passes.

    Raises KeyError for an unknown model (listing the registered ones), ValueError for an output path
    that cannot be written or a checkpoint that does not fit, RuntimeError for a failed numeric check
    (nothing is written then).
    """
    import onnxruntime as ort

    from ..models import create_model, model_info, scan_backend_of

    model_info(config.model)
    custom_op = config.scan_form == CUSTOM_OP_SCAN_FORM
    if custom_op:
        register_custom_ops()  # onnxruntime-extensions missing: one line before any work
    staged = _staging_folder(config.out)
    try:
        model = prepare_for_export(
            create_model(
                config.model,
                checkpoint_path=config.checkpoint,
                trust=config.trust_checkpoint,
                scan_backend=config.scan_backend,
                **config.model_kwargs,
            )
        )
        size = input_size_of(config.model, config.model_kwargs)
        dynamic = config.batch is None
        trace = example_input(size, DYNAMIC_TRACE_BATCH if dynamic else config.batch, config.seed)
        start = time.perf_counter()
        program = export_program(model, trace, dynamic_batch=dynamic)
        scan_nodes = count_scan_nodes(program)
        lowered = program if custom_op else lower_scan(program)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # pytree deprecation notices from inside torch
            onnx_program = torch.onnx.export(
                lowered,
                (trace,),
                dynamo=True,
                opset_version=config.opset,
                input_names=["images"],
                optimize=config.optimize,
                custom_translation_table=custom_op_translations() if custom_op else None,
                verbose=False,
            )
        target = staged / config.out.name
        onnx_program.save(str(target))
        export_seconds = time.perf_counter() - start

        start = time.perf_counter()
        check_input = example_input(size, DYNAMIC_CHECK_BATCH, config.seed + 1) if dynamic else trace
        try:
            check = check_onnx(target, model, check_input, config.tolerance)
        except Exception as exc:  # onnxruntime refusing the graph is a failed check too
            raise RuntimeError(
                f"ONNX export of {config.model} could not be run by onnxruntime "
                f"({type(exc).__name__}: {exc}); nothing written to {config.out}"
            ) from exc
        check_seconds = time.perf_counter() - start
        if not check.passed:
            raise RuntimeError(
                f"ONNX export of {config.model} failed its numeric check: max abs difference "
                f"{check.max_abs_diff:.3g} to PyTorch eager > tolerance {config.tolerance:g} "
                f"(batch {check.batch}, onnxruntime {check.provider}); nothing written to {config.out}"
            )
        op_types = _op_types(target)
        file_bytes = sum(p.stat().st_size for p in staged.iterdir())
        files = _publish(staged, config.out)
    finally:
        shutil.rmtree(staged, ignore_errors=True)

    notes = []
    if check.weak:
        notes.append(
            f"the outputs are small (max |heatmap| {check.reference_max_abs:.2g}, under "
            f"{WEAK_CHECK_RATIO:g}x the tolerance), as with untrained weights: the check says little; "
            "export a trained checkpoint for a meaningful one"
        )
    return OnnxExportReport(
        model=config.model,
        path=str(config.out),
        files=files,
        batch=config.batch,
        input_size=size,
        opset=onnx_program.model.opset_imports[""],
        checkpoint=str(config.checkpoint) if config.checkpoint else None,
        model_kwargs=dict(config.model_kwargs),
        scan_backend=scan_backend_of(model) or "",
        optimized=config.optimize,
        scan_nodes=scan_nodes,
        scan_form=config.scan_form if scan_nodes else "",
        onnx_nodes=sum(op_types.values()),
        onnx_op_types=dict(op_types.most_common()),
        file_bytes=file_bytes,
        export_seconds=export_seconds,
        check_seconds=check_seconds,
        check=check,
        onnxruntime_version=ort.__version__,
        notes=notes,
    )
