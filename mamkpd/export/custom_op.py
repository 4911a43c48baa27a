"""The ``custom-op`` scan form of an ONNX export: each scan one node of a custom domain, run by mamkpd's kernels.

``mamkpd::cross_selective_scan`` becomes one ``ai.onnx.contrib::MamkpdCrossSelectiveScan`` node and
``mamkpd::selective_scan`` one ``ai.onnx.contrib::MamkpdSelectiveScan`` node (the domain onnxruntime-extensions
serves Python ops from), with the op's own inputs and ``delta_softplus`` as an attribute; an absent optional
input (D, z, delta_bias) is an empty tensor, as in the torch op's backward. The cross scan's node takes x as
(batch, H, W, dim) and delta as (batch, 4, H, W, dim) and returns y as (batch, H, W, dim): channels-last, as
SS2D holds them and the ``numba`` kernel reads them. At run time onnxruntime-extensions
calls :func:`mamkpd.ops.cross_selective_scan` / :func:`mamkpd.ops.selective_scan` on the ``auto`` backend
(``numba`` on a CPU with numba), on as many threads as torch is set to use.

**Such a file runs only in a Python process that has mamkpd and onnxruntime-extensions installed**, in a
session from :func:`~mamkpd.export.onnx_export.onnx_session` (which registers the ops); not in OpenVINO, C++
or mobile ONNX Runtime, nor in another Python process that has not imported this module. The portable form
is :data:`~mamkpd.ops.ONNX_SCAN_FORM` (the default). Why this one exists: ONNX's ``Scan`` runs seven small
nodes per time step, and the whole model runs at about half its eager speed (:mod:`mamkpd.ops.scan_onnx`);
here the scan costs what the eager kernel does.

onnxruntime-extensions hands a Python op's output back to C++ as a Python list (``tolist()``, 20 ms for
MamKPD-B's first cross scan against its 11 ms kernel); its C++ side takes a flat numpy array as well, so
the hook installed here returns one for mamkpd's ops and hands every other Python op to the library's own
hook (checked with onnxruntime-extensions 0.15).
"""

from __future__ import annotations

import numpy as np
import torch

from ..ops import AUTO, cross_selective_scan, selective_scan
from .graph import CROSS_SCAN_OP, SCAN_OP

__all__ = [
    "CUSTOM_OP_DOMAIN",
    "CUSTOM_OP_SCAN_FORM",
    "CROSS_SCAN_NODE",
    "SCAN_NODE",
    "INSTALL_HINT",
    "custom_op_translations",
    "holds_custom_ops",
    "register_custom_ops",
]

CUSTOM_OP_SCAN_FORM = "custom-op"  # what an export records as its scan form: one custom node per scan
CUSTOM_OP_DOMAIN = "ai.onnx.contrib"  # the one domain onnxruntime-extensions serves Python ops from
CROSS_SCAN_NODE = "MamkpdCrossSelectiveScan"
SCAN_NODE = "MamkpdSelectiveScan"
INSTALL_HINT = "pip install 'mamkpd[ortx]' (onnxruntime-extensions)"

_CROSS_INPUTS = ("x", "delta", "A", "B", "C", "D", "delta_bias", "delta_proj_weight")
_SCAN_INPUTS = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


# ------------------------------------------------------------------------------------------ export side


def _node(name: str, inputs: tuple[str, ...]):
    """An onnxscript op of the custom domain (the exporter wants a schema for every node it writes)."""
    import onnxscript
    from onnx.defs import OpSchema

    schema = OpSchema(
        name,
        CUSTOM_OP_DOMAIN,
        1,
        inputs=[OpSchema.FormalParameter(n, "T") for n in inputs],
        outputs=[OpSchema.FormalParameter("y", "T")],
        type_constraints=[("T", ["tensor(float)"], "float32, as onnxruntime-extensions' ops are declared")],
        attributes=[OpSchema.Attribute("delta_softplus", OpSchema.AttrType.INT, "softplus on delta (+ bias)")],
    )
    return onnxscript.values.Op(onnxscript.values.Opset(CUSTOM_OP_DOMAIN, 1), name, schema)


def custom_op_translations() -> dict:
    """``torch.onnx.export``'s ``custom_translation_table`` writing each scan node as one custom node."""
    import onnx
    from onnxscript import opset18 as op

    cross_node, scan_node = _node(CROSS_SCAN_NODE, _CROSS_INPUTS), _node(SCAN_NODE, _SCAN_INPUTS)

    absent = onnx.helper.make_tensor("absent", onnx.TensorProto.FLOAT, [0], [])

    def given(t):
        return op.Constant(value=absent) if t is None else t  # empty: "no such input"

    # each returns the torch op's (output, tensors kept for its backward); an exported graph runs no backward
    def cross(x, delta, A, B, C, D=None, delta_bias=None, delta_proj_weight=None, delta_softplus=False, backend=AUTO,
              keep_saved=False):  # fmt: skip
        # the node takes x and delta, and gives y, channels-last: SS2D holds them so, and
        # onnxruntime cancels these Transposes against the model's own instead of copying twice each way
        x, delta = op.Transpose(x, perm=[0, 2, 3, 1]), op.Transpose(delta, perm=[0, 1, 3, 4, 2])
        y = cross_node(
            x, delta, A, B, C, given(D), given(delta_bias), given(delta_proj_weight),
            delta_softplus=int(delta_softplus),
        )  # fmt: skip
        return op.Transpose(y, perm=[0, 3, 1, 2]), op.SequenceEmpty(dtype=onnx.TensorProto.FLOAT)

    def scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, backend=AUTO, keep_saved=False):
        out = scan_node(u, delta, A, B, C, given(D), given(z), given(delta_bias), delta_softplus=int(delta_softplus))
        return out, op.SequenceEmpty(dtype=onnx.TensorProto.FLOAT)

    return {CROSS_SCAN_OP: cross, SCAN_OP: scan}


# ------------------------------------------------------------------------------------------ run-time side


def _tensors(arrays) -> list[torch.Tensor | None]:
    return [torch.from_numpy(a) if a.size else None for a in arrays]


def _run_cross(x, delta, A, B, C, D, delta_bias, delta_proj_weight, delta_softplus=0):
    x_, delta_, A_, B_, C_, D_, bias_, proj_ = _tensors((x, delta, A, B, C, D, delta_bias, delta_proj_weight))
    # the op's shapes as channels-last views, the memory the numba kernel reads and writes (no copy)
    x_, delta_ = x_.permute(0, 3, 1, 2), delta_.permute(0, 1, 4, 2, 3)
    with torch.inference_mode():
        y = cross_selective_scan(
            x_, delta_, A_, B_, C_, D_, bias_, bool(delta_softplus), backend=AUTO, delta_proj_weight=proj_
        )
    return y.permute(0, 2, 3, 1).contiguous().numpy()


def _run_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus=0):
    with torch.inference_mode():
        out = selective_scan(*_tensors((u, delta, A, B, C, D, z, delta_bias)), bool(delta_softplus), backend=AUTO)
    return out.contiguous().numpy()


_registered: dict[int, object] = {}  # onnxruntime-extensions' op id -> its definition, for the hook


def register_custom_ops() -> str:
    """Declare mamkpd's scan ops to onnxruntime-extensions (once per process) and return its
    library's path; a session registers that library to run a ``custom-op`` file.

    Raises RuntimeError with the install command when onnxruntime-extensions is missing.
    """
    try:
        import onnxruntime_extensions as ortx
        from onnxruntime_extensions import _ocos
    except ImportError:
        raise RuntimeError(
            f"this ONNX file holds mamkpd's {CUSTOM_OP_SCAN_FORM} scan nodes, which need onnxruntime-extensions: "
            f"{INSTALL_HINT}"
        ) from None
    if not _registered:
        floats = ortx.PyCustomOpDef.dt_float
        attrs = {"delta_softplus": ortx.PyCustomOpDef.dt_int64}
        for name, inputs, body in ((CROSS_SCAN_NODE, _CROSS_INPUTS, _run_cross), (SCAN_NODE, _SCAN_INPUTS, _run_scan)):
            definition = ortx.onnx_op(op_type=name, inputs=[floats] * len(inputs), outputs=[floats], attrs=attrs)(body)
            _registered[id(definition)] = definition  # the library calls back with id(definition)
        library_hook = _ocos._on_pyop_invocation

        def hook(op_id, inputs, attributes):
            definition = _registered.get(op_id)
            if definition is None:
                return library_hook(op_id, inputs, attributes)
            out = definition.body(*inputs, **definition.cast_attributes(attributes))
            return op_id, out.shape, np.ascontiguousarray(out).reshape(-1)

        ortx.PyCustomOpDef.install_hooker(hook)
    return ortx.get_library_path()


def holds_custom_ops(path) -> bool:
    """Whether the ONNX file at ``path`` imports :data:`CUSTOM_OP_DOMAIN` (a ``custom-op`` export)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return any(opset.domain == CUSTOM_OP_DOMAIN for opset in model.opset_import)
