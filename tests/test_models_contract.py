"""The contract every registered model passes (timm-style: one case per name ``list_models()`` returns), so
that a new model is checked against what it declares (:class:`mamkpd.models.ModelInfo`) the moment it
registers:

- it builds on the meta device, and its factory takes ``num_keypoints`` (the head grows with it) and
  ``scan_backend`` exactly when it declares ``has_scan``;
- its data set, codec and flip pairs fit each other and its default head;
- at its declared input size its outputs are what its codec decodes (``codec.output_shapes``): heatmaps
  (N, K, H/s, W/s) at the declared ``heatmap_stride`` s for a heatmap codec, SimCC's x and y vectors for
  ``simcc``; a model that decodes its own outputs gives each image's people from ``model.decode``;
- forward and backward run on the CPU at its smallest valid size, and every parameter of a model the suite
  trains gets a gradient; ``count_params`` counts the model actually built;
- its state dict loads back strictly in each checkpoint layout it declares;
- an installed copy of this tree finds it through the ``mamkpd.models`` entry points.

The check functions raise AssertionError naming the model; the last tests plant a faulty model and check
that they do. Models too large to run on the CPU in a second are checked at their declared size on the meta
device (shapes and autograd without compute); every model with a selective scan runs on the CPU instead
(its scan runs only on CPU or CUDA tensors) at its smallest valid size, where its stride is the same.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from test_checkpoint_layouts import OFFICIAL_KEYS, TO_LAYOUT, rename_to_layout
from torch import Tensor, nn

import mamkpd
from mamkpd.codecs import build_codec
from mamkpd.codecs.letterbox import WholeImageInput
from mamkpd.data import DATASETS
from mamkpd.models import registry
from mamkpd.models.checkpoint import load_weights_from_state
from mamkpd.paper.tolerances import TOLERANCE_CLASSES

REPO = Path(__file__).resolve().parents[1]
NAMES = mamkpd.list_models()
# tried in order for the smallest input a model accepts (its factory's own check decides); never square, so
# that a model that swaps height and width fails
SMALL_SIZES = ((32, 16), (64, 32), (64, 48), (128, 64), (128, 96), (256, 192))
CPU_PARAMS = 25e6  # models up to this many parameters run forward and backward on the CPU (about a second)
BATCH = 2  # BatchNorm in training mode needs more than one value per channel


def factory_kwargs(name: str) -> dict:
    """A model with a selective scan on the portable backend."""
    return {"scan_backend": "torch"} if mamkpd.model_info(name).has_scan else {}


@functools.cache
def params_of(name: str) -> int:
    return mamkpd.count_params(name)


@functools.cache
def smallest_size(name: str) -> tuple[int, int]:
    for size in SMALL_SIZES:
        try:
            with torch.device("meta"):
                mamkpd.create_model(name, input_size=size, **factory_kwargs(name))
        except ValueError:
            continue
        return size
    raise AssertionError(f"{name}: accepts none of the input sizes {SMALL_SIZES}")


def cpu_names() -> list[str]:
    """Every model with a selective scan, every model up to CPU_PARAMS and the smallest of each module."""
    chosen = {n for n in NAMES if mamkpd.model_info(n).has_scan or params_of(n) <= CPU_PARAMS}
    modules: dict[str, list[str]] = {}
    for n in NAMES:
        modules.setdefault(mamkpd.model_info(n).factory.__module__, []).append(n)
    chosen |= {min(names, key=params_of) for names in modules.values()}
    return sorted(chosen)


CPU_NAMES = cpu_names()
META_NAMES = [n for n in NAMES if not mamkpd.model_info(n).has_scan]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny tensors: a second thread only adds synchronisation, and on a loaded machine OpenMP's waiting
    threads turn a tenth of a second into seconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ------------------------------------------------------------------------------------------ the checks
def check_outputs(name: str, out, input_size: Sequence[int], batch: int = BATCH) -> None:
    """The outputs of ``name`` on ``batch`` images of ``input_size`` are what its codec reads."""
    info = mamkpd.model_info(name)
    keypoints = DATASETS[info.dataset].num_keypoints
    h, w = input_size
    if not info.uses_codec:  # decodes its own outputs: batch-first tensors for model.decode
        tensors = out if isinstance(out, (tuple, list)) else (out,)
        assert tensors and all(isinstance(t, Tensor) and t.shape[0] == batch for t in tensors), (
            f"{name}: outputs should be tensors of batch {batch} first, got {[getattr(t, 'shape', t) for t in tensors]}"
        )
        return
    codec = build_codec(info.codec, (h, w))
    if hasattr(codec, "heatmap_size"):  # a heatmap codec: the map is the input over the declared stride
        stride = info.heatmap_stride
        assert h % stride == 0 and w % stride == 0, f"{name}: input {h}x{w} is no multiple of its stride {stride}"
        assert codec.heatmap_size == (h // stride, w // stride), (
            f"{name}: codec {info.codec!r} encodes {codec.heatmap_size} heatmaps at input {h}x{w}, but the model "
            f"declares heatmap stride {stride}: {(h // stride, w // stride)}"
        )
    tensors = out if isinstance(out, (tuple, list)) else (out,)
    shapes = tuple(tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__ for t in tensors)
    expected = tuple((batch, *shape) for shape in codec.output_shapes(keypoints))
    assert shapes == expected, (
        f"{name}: at input {h}x{w} it outputs {shapes}; its codec {info.codec!r} and data set {info.dataset!r} "
        f"expect {expected}"
    )


def check_decoded(name: str, model: nn.Module, out, batch: int = BATCH) -> None:
    """``model.decode(out)``: each image's people, ``keypoints`` (M, K, 2) with scores and boxes."""
    keypoints = DATASETS[mamkpd.model_info(name).dataset].num_keypoints
    assert callable(getattr(model, "decode", None)), (
        f"{name}: codec {mamkpd.model_info(name).codec!r} is no mamkpd.codecs heatmap codec, so the model must "
        "decode its own outputs: model.decode(model(x)) -> each image's people"
    )
    people = model.decode(out)
    assert isinstance(people, list) and len(people) == batch, f"{name}: decode gives {type(people)} for {batch} images"
    for found in people:
        m = len(found["scores"])
        shapes = {k: tuple(found[k].shape) for k in ("keypoints", "keypoint_scores", "scores", "bboxes")}
        assert shapes == {
            "keypoints": (m, keypoints, 2),
            "keypoint_scores": (m, keypoints),
            "scores": (m,),
            "bboxes": (m, 4),
        }, f"{name}: decoded people of shapes {shapes}"


def check_gradients(name: str, model: nn.Module) -> None:
    """After a backward pass: every parameter of a model the suite trains has a (finite) gradient."""
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    if mamkpd.model_info(name).trains_top_down:  # the heatmap loss reaches every parameter
        missing = [n for n, g in grads.items() if g is None]
        assert not missing, f"{name}: {len(missing)} parameters get no gradient ({', '.join(missing[:3])})"
    else:  # its own loss is not the suite's; what forward reaches must still train
        assert any(g is not None for g in grads.values()), f"{name}: no parameter gets a gradient"
    if next(iter(grads.values())).device.type != "meta":
        bad = [n for n, g in grads.items() if g is not None and not torch.isfinite(g).all()]
        assert not bad, f"{name}: non-finite gradients in {', '.join(bad[:3])}"


def forward_backward(name: str, model: nn.Module, input_size: Sequence[int]):
    model.train()
    x = torch.randn(BATCH, 3, *input_size) if model_device(model) == "cpu" else torch.empty(BATCH, 3, *input_size)
    out = model(x)
    tensors = out if isinstance(out, (tuple, list)) else (out,)
    sum(t.float().mean() for t in tensors).backward()
    return out


def model_device(model: nn.Module) -> str:
    return next(model.parameters()).device.type


def check_found_installed(name: str, installed: set[str]) -> None:
    assert name in installed, (
        f"{name} is registered in this process (module {mamkpd.model_info(name).factory.__module__} was imported "
        "directly) but an installed copy does not find it through the mamkpd.models entry points: import its "
        "module in the entry point's module (baselines/__init__.py for a baseline)"
    )


# ------------------------------------------------------------------------------------- per model
@pytest.mark.parametrize("name", NAMES)
def test_builds_on_meta_and_declares_what_it_is(name):
    info = mamkpd.model_info(name)
    with torch.device("meta"):
        model = mamkpd.create_model(name)
    tensors = [*model.parameters(), *model.buffers()]
    assert tensors and all(t.device.type == "meta" for t in tensors), f"{name}: allocates outside the meta device"
    assert info.tolerance_class in TOLERANCE_CLASSES, f"{name}: tolerance_class {info.tolerance_class!r}"
    assert info.dataset in DATASETS, f"{name}: dataset {info.dataset!r} is none of {sorted(DATASETS)}"
    data = DATASETS[info.dataset]
    flipped = [i for pair in data.flip_pairs for i in pair]
    assert len(set(flipped)) == len(flipped) and all(0 <= i < data.num_keypoints for i in flipped), data.flip_pairs
    if info.uses_codec:
        assert build_codec(info.codec, info.input_size).input_size == info.input_size
    if info.whole_image:  # what `mamkpd evaluate` letterboxes each image by (mamkpd.engine.whole_image)
        assert isinstance(getattr(model, "whole_image_input", None), WholeImageInput), (
            f"{name}: a whole-image model declares how its authors letterbox an image: a whole_image_input "
            "attribute (mamkpd.codecs.letterbox.WholeImageInput)"
        )
        assert "placements" in inspect.signature(model.predict).parameters, f"{name}: predict(x, placements=...)"
    # the factory's keyword arguments: a bigger head for more keypoints; a scan backend exactly with has_scan
    assert mamkpd.count_params(name, num_keypoints=data.num_keypoints + 1) > params_of(name), name
    with torch.device("meta"):  # the factory itself: what create_model hands a scan backend to
        if info.has_scan:
            assert info.factory(scan_backend="torch").scan_backend == "torch", name
        else:
            try:
                info.factory(scan_backend="torch")
            except (TypeError, ValueError):
                pass
            else:
                raise AssertionError(f"{name}: its factory takes scan_backend; register it with has_scan=True")


@pytest.mark.parametrize("name", META_NAMES)
def test_outputs_and_gradients_at_the_declared_size_on_meta(name):
    size = mamkpd.model_info(name).input_size
    with torch.device("meta"):
        model = mamkpd.create_model(name)
        out = forward_backward(name, model, size)
    check_outputs(name, out, size)
    check_gradients(name, model)
    assert mamkpd.count_params(model) == params_of(name), f"{name}: forward made parameters (a lazy module)"


@pytest.mark.parametrize("name", CPU_NAMES)
def test_forward_and_backward_on_the_cpu_at_the_smallest_size(name):
    size = smallest_size(name)
    model = mamkpd.create_model(name, input_size=size, **factory_kwargs(name))
    out = forward_backward(name, model, size)
    check_outputs(name, out, size)
    check_gradients(name, model)
    assert mamkpd.count_params(model) == mamkpd.count_params(name, input_size=size), name
    if not mamkpd.model_info(name).uses_codec:
        with torch.no_grad():
            check_decoded(name, model.eval(), model(torch.randn(BATCH, 3, *size)))


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_loads_back_in_every_declared_layout(name):
    with torch.device("meta"):  # names and shapes are what a layout decides; no weights needed
        source, target = mamkpd.create_model(name), mamkpd.create_model(name)
    state = source.state_dict()
    layouts = ["native"] + [lay.name for lay in getattr(source, "checkpoint_layouts", ()) if lay.name != "native"]
    for layout in layouts:
        assert layout in TO_LAYOUT and any(lay == layout for _, lay in OFFICIAL_KEYS), (
            f"{name}: layout {layout!r} needs its renaming (TO_LAYOUT) and real key names of a release in it "
            "(OFFICIAL_KEYS) in tests/test_checkpoint_layouts.py"
        )
        report = load_weights_from_state(target, rename_to_layout(name, layout, dict(state)), layout=layout)
        assert report.clean and report.loaded == len(state), (name, report.summary())


@pytest.fixture(scope="module")
def installed_models(tmp_path_factory) -> set[str]:
    """The models an installed copy of this tree lists, from another folder, with nothing else of it on the path."""
    if importlib.util.find_spec("pip") is None:
        pytest.skip("pip is not installed: cannot install a copy of the tree to list its entry points")
    tmp = tmp_path_factory.mktemp("installed")
    ignore = shutil.ignore_patterns(".git", "build", "*.egg-info", "__pycache__", ".pytest_cache", "runs", "results")
    shutil.copytree(REPO, tmp / "src", ignore=ignore)  # a clean copy: no stale build/ of an earlier install
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index"]
    done = subprocess.run(
        [*command, "--no-compile", "--quiet", "--target", str(tmp / "site"), str(tmp / "src")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    listing = "import json, mamkpd; print(json.dumps([mamkpd.__file__, mamkpd.list_models()]))"
    env = {**os.environ, "PYTHONPATH": str(tmp / "site")}
    done = subprocess.run(
        [sys.executable, "-c", listing], capture_output=True, text=True, cwd=tmp, env=env, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    where, models = json.loads(done.stdout.splitlines()[-1])
    assert Path(where).is_relative_to(tmp / "site"), f"the subprocess imported {where}, not the installed copy"
    return set(models)


@pytest.mark.parametrize("name", NAMES)
def test_an_installed_copy_finds_it_through_the_entry_points(name, installed_models):
    check_found_installed(name, installed_models)


# ---------------------------------------------------------------------------------- planted faults
class _Stride8(nn.Module):
    """A planted fault: 32x24 heatmaps from a 256x192 crop, where the msra codec expects 64x48."""

    def __init__(self, num_keypoints: int = 17):
        super().__init__()
        self.conv = nn.Conv2d(3, num_keypoints, 8, stride=8)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


@pytest.fixture
def scratch_registry(monkeypatch):
    """A copy of the registry to plant models in; the real one is back after the test."""
    mamkpd.list_models()  # the providers are loaded into the real registry first
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def test_the_contract_catches_a_model_of_the_wrong_stride(scratch_registry):
    @mamkpd.register_model("planted")
    def planted_stride8(num_keypoints: int = 17, input_size: tuple[int, int] = (256, 192)) -> nn.Module:
        return _Stride8(num_keypoints)

    with torch.device("meta"):
        out = forward_backward("planted_stride8", mamkpd.create_model("planted_stride8"), (256, 192))
    with pytest.raises(AssertionError, match=r"outputs \(\(2, 17, 32, 24\),\).*expect \(\(2, 17, 64, 48\),\)"):
        check_outputs("planted_stride8", out, (256, 192))
    check_outputs("planted_stride8", out, (128, 96))  # the same maps are right for a 128x96 input


def test_the_contract_catches_a_baseline_missing_from_the_entry_point_module(
    scratch_registry, installed_models, tmp_path
):
    # a baseline module that registers on import, imported directly (as a test would), never by its package
    module = tmp_path / "planted_baseline.py"
    module.write_text(
        "from mamkpd.models.registry import register_model\n\n\n"
        "@register_model('planted')\n"
        "def planted_missing(num_keypoints: int = 17, input_size=(256, 192)):\n"
        "    raise NotImplementedError\n"
    )
    spec = importlib.util.spec_from_file_location("planted_baseline", module)
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    assert "planted_missing" in mamkpd.list_models()
    with pytest.raises(AssertionError, match="planted_missing is registered in this process .* does not find it"):
        check_found_installed("planted_missing", installed_models)
    check_found_installed("hrnet_w32", installed_models)
