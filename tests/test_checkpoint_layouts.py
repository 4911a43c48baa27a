"""mamkpd.load_weights: every layout the zoos ship loads strictly into each baseline; truncated,
renamed or reshaped checkpoints fail naming the tensors; ViTPose's class-token slot is folded in.

Official-layout state dicts are built from the model by the documented renaming, and a handful of real
official key names (with their shapes) are checked as literals, so a drift in our names fails here.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import pytest
import torch

import mamkpd
from mamkpd.models.checkpoint import CheckpointMismatchError, load_weights_from_state, unwrap_state_dict

# Real key names (and shapes) from the official releases, per family and layout.
OFFICIAL_KEYS = {
    ("hrnet_w32", "original"): {
        "conv1.weight": (64, 3, 3, 3),
        "layer1.0.downsample.0.weight": (256, 64, 1, 1),
        "transition1.0.0.weight": (32, 256, 3, 3),
        "transition1.1.0.0.weight": (64, 256, 3, 3),
        "transition3.3.0.0.weight": (256, 128, 3, 3),
        "stage2.0.branches.1.3.bn2.running_var": (64,),
        "stage3.3.fuse_layers.2.0.1.0.weight": (128, 32, 3, 3),
        "stage4.2.fuse_layers.0.3.0.weight": (32, 256, 1, 1),
        "final_layer.weight": (17, 32, 1, 1),
    },
    ("hrnet_w32", "mmpose0"): {
        "backbone.stage4.0.fuse_layers.3.2.0.0.weight": (256, 128, 3, 3),
        "keypoint_head.final_layer.bias": (17,),
    },
    ("sbl_res50", "original"): {
        "layer4.2.conv3.weight": (2048, 512, 1, 1),
        "layer3.0.downsample.1.running_mean": (1024,),
        "deconv_layers.0.weight": (2048, 256, 4, 4),
        "deconv_layers.7.weight": (256,),
        "final_layer.weight": (17, 256, 1, 1),
    },
    ("sbl_res50", "native"): {  # = MMPose 1.x
        "backbone.layer1.0.conv2.weight": (64, 64, 3, 3),
        "head.deconv_layers.3.weight": (256, 256, 4, 4),
        "head.final_layer.bias": (17,),
    },
    ("vitpose_s", "vitpose_official"): {
        "backbone.pos_embed": (1, 193, 384),
        "backbone.patch_embed.proj.weight": (384, 3, 16, 16),
        "backbone.blocks.11.attn.qkv.weight": (1152, 384),
        "backbone.blocks.0.mlp.fc2.weight": (384, 1536),
        "backbone.last_norm.bias": (384,),
        "keypoint_head.deconv_layers.0.weight": (384, 256, 4, 4),
        "keypoint_head.final_layer.weight": (17, 256, 1, 1),
    },
    ("vitpose_s", "mmpose1"): {
        "backbone.patch_embed.projection.weight": (384, 3, 16, 16),
        "backbone.layers.3.ln1.weight": (384,),
        "backbone.layers.3.ffn.layers.0.0.weight": (1536, 384),
        "backbone.layers.3.ffn.layers.1.weight": (384, 1536),
        "backbone.layers.11.attn.proj.weight": (384, 384),
        "backbone.ln1.weight": (384,),
        "head.deconv_layers.1.running_var": (256,),
    },
    ("rtmo_s", "mmpose1"): {
        "backbone.stem.conv.conv.weight": (32, 12, 3, 3),
        "backbone.stage4.1.conv2.conv.weight": (512, 1024, 1, 1),
        "backbone.stage2.1.blocks.2.conv2.bn.running_var": (64,),
        "neck.encoder.0.layers.0.self_attn.attn.in_proj_weight": (768, 256),
        "neck.encoder.0.layers.0.self_attn.attn.out_proj.weight": (256, 256),
        "neck.encoder.0.layers.0.ffn.layers.0.0.weight": (1024, 256),
        "neck.encoder.0.layers.0.norms.1.weight": (256,),
        "neck.sincos_pos_enc.dim_t": (64,),
        "neck.fpn_blocks.0.bottlenecks.0.branch_3x3.conv.weight": (128, 128, 3, 3),
        "neck.pan_blocks.1.conv3.conv.weight": (256, 128, 1, 1),
        "neck.projector.convs.1.bn.weight": (256,),
        "head.head_module.conv_pose.0.1.conv.weight": (144, 18, 3, 3),
        "head.head_module.out_kpt_reg.1.weight": (34, 144, 1, 1),
        "head.head_module.out_pose.0.weight": (256, 144, 1, 1),
        "head.dcc.gau.uv.weight": (640, 128),
        "head.dcc.gau.res_scale.scale": (128,),
        "head.dcc.gau.ln.g": (1,),
        "head.dcc.pos_enc": (17, 128),
        "head.dcc.pose_to_kpts.1.running_var": (2176,),
        "head.dcc.sigma_fc.2.scale": (),
        "head.dcc.x_bins": (192,),
        "head.dcc.y_bins": (256,),
        "head.dcc.spe.dim_t": (64,),
    },
    ("rtmpose_t", "native"): {  # = MMPose 1.x
        "backbone.stem.0.conv.weight": (12, 3, 3, 3),
        "backbone.stage1.1.blocks.0.conv2.depthwise_conv.conv.weight": (24, 1, 5, 5),
        "backbone.stage4.1.conv2.conv.weight": (384, 768, 1, 1),
        "backbone.stage4.2.attention.fc.bias": (384,),
        "head.final_layer.weight": (17, 384, 7, 7),
        "head.mlp.0.g": (1,),
        "head.mlp.1.weight": (256, 48),
        "head.gau.uv.weight": (1152, 256),
        "head.gau.res_scale.scale": (256,),
        "head.cls_x.weight": (384, 256),
        "head.cls_y.weight": (512, 256),
    },
}

# The documented renaming from this suite's names to each published layout (the inverse of the loader's).
TO_LAYOUT = {
    "native": [],
    "mmpose1": [],
    "mmpose0": [(r"^head\.", "keypoint_head.")],
    "original": [(r"^backbone\.", ""), (r"^head\.", "")],
    "vitpose_official": [(r"^head\.", "keypoint_head.")],
}
# ViTPose's MMPose 1.x release names its backbone as mmpretrain's VisionTransformer does
VIT_TO_MMPRETRAIN = [
    (r"^backbone\.patch_embed\.proj\.", "backbone.patch_embed.projection."),
    (r"^backbone\.last_norm\.", "backbone.ln1."),
    (r"^backbone\.blocks\.(\d+)\.norm1\.", r"backbone.layers.\1.ln1."),
    (r"^backbone\.blocks\.(\d+)\.norm2\.", r"backbone.layers.\1.ln2."),
    (r"^backbone\.blocks\.(\d+)\.mlp\.fc1\.", r"backbone.layers.\1.ffn.layers.0.0."),
    (r"^backbone\.blocks\.(\d+)\.mlp\.fc2\.", r"backbone.layers.\1.ffn.layers.1."),
    (r"^backbone\.blocks\.(\d+)\.attn\.", r"backbone.layers.\1.attn."),
]
# a family whose release names a layout differently from TO_LAYOUT: (family, layout) -> its renaming
FAMILY_TO_LAYOUT = {("vitpose", "mmpose1"): VIT_TO_MMPRETRAIN}
# tensors a release holds that the model does not (training-only state its layout drops), per (model, layout)
RELEASE_EXTRAS = {(name, "mmpose1"): ["head.loss_oks.sigmas"] for name in ("rtmo_s", "rtmo_m", "rtmo_l")}


@functools.cache
def built(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = mamkpd.create_model(name).eval()
    for buf in model.buffers():  # make BN statistics distinguishable from a fresh model's
        if buf.is_floating_point():
            buf.add_(torch.rand_like(buf))
    return model


def to_layout(name: str, layout: str) -> dict[str, torch.Tensor]:
    return rename_to_layout(name, layout, {k: v.clone() for k, v in built(name).state_dict().items()})


def rename_to_layout(name: str, layout: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` (model ``name``'s own names) as the release in ``layout`` stores it."""
    rules = FAMILY_TO_LAYOUT.get((mamkpd.model_info(name).family, layout), TO_LAYOUT[layout])
    out = {}
    for key, value in state.items():
        for pattern, repl in rules:
            if re.search(pattern, key):
                key = re.sub(pattern, repl, key, count=1)
                break
        out[key] = value
    if layout == "vitpose_official":  # the release stores a class-token slot in front of the patch tokens
        pe = out["backbone.pos_embed"]
        out["backbone.pos_embed"] = torch.cat((torch.zeros_like(pe[:, :1]), pe), dim=1)
    return out


@functools.cache
def _target(name: str) -> torch.nn.Module:
    return mamkpd.create_model(name).eval()


def scrambled_copy(name: str) -> torch.nn.Module:
    """A second instance of the model, all tensors zeroed (reused across tests: building HRNet is slow)."""
    model = _target(name)
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            t.zero_()
    return model


@pytest.mark.parametrize("name,layout", sorted(OFFICIAL_KEYS))
def test_official_layout_loads_strictly(name, layout):
    state = to_layout(name, layout)
    for key, shape in OFFICIAL_KEYS[(name, layout)].items():
        assert key in state, f"official key {key} not produced by {name}'s names"
        assert tuple(state[key].shape) == shape, (key, tuple(state[key].shape), shape)
    for key in RELEASE_EXTRAS.get((name, layout), ()):  # the release also holds training-only loss buffers
        state[key] = torch.rand(17)
    state = unwrap_state_dict({"meta": {"epoch": 210}, "state_dict": state})  # the zoos' container
    model = scrambled_copy(name)
    report = load_weights_from_state(model, state)
    assert report.layout == layout and report.clean
    reference = built(name).state_dict()
    for key, value in model.state_dict().items():
        assert torch.equal(value, reference[key]), key


def test_vitpose_class_token_slot_is_folded_into_every_patch_token(tmp_path):
    state = to_layout("vitpose_s", "vitpose_official")
    torch.manual_seed(1)
    pe = torch.randn(1, 193, 384)
    state["backbone.pos_embed"] = pe
    torch.save({"state_dict": state}, tmp_path / "vitpose.pth")
    model = scrambled_copy("vitpose_s")
    report = mamkpd.load_weights(model, tmp_path / "vitpose.pth")
    assert report.layout == "vitpose_official"
    assert any("class-token slot" in note for note in report.notes)
    assert torch.allclose(model.backbone.pos_embed, pe[:, 1:] + pe[:, :1])
    assert not torch.allclose(model.backbone.pos_embed, pe[:, 1:])  # dropping the slot would be wrong


def test_engine_checkpoint_and_module_prefix_load(tmp_path):
    state = {f"module.{k}": v for k, v in built("sbl_res50").state_dict().items()}
    torch.save({"model": state, "optimizer": {"state": {}}, "epoch": 3}, tmp_path / "engine.pth")
    report = mamkpd.load_weights(scrambled_copy("sbl_res50"), tmp_path / "engine.pth")
    assert report.layout == "native" and report.clean and report.loaded == len(state)


def test_missing_bn_step_counters_are_not_errors():
    state = {k: v for k, v in to_layout("sbl_res50", "original").items() if not k.endswith("num_batches_tracked")}
    assert load_weights_from_state(scrambled_copy("sbl_res50"), state).clean


def test_truncated_checkpoint_fails_naming_the_missing_tensors():
    state = to_layout("hrnet_w32", "original")
    del state["final_layer.weight"], state["stage4.2.fuse_layers.0.3.1.running_var"]
    with pytest.raises(CheckpointMismatchError) as err:
        load_weights_from_state(scrambled_copy("hrnet_w32"), state)
    message = str(err.value)
    assert "2 missing" in message
    assert "head.final_layer.weight" in message and "backbone.stage4.2.fuse_layers.0.3.1.running_var" in message


def test_renamed_key_fails_naming_both_sides():
    state = to_layout("vitpose_s", "vitpose_official")
    state["backbone.blocks.0.attn.qkv_renamed.weight"] = state.pop("backbone.blocks.0.attn.qkv.weight")
    model = scrambled_copy("vitpose_s")
    with pytest.raises(CheckpointMismatchError) as err:
        load_weights_from_state(model, state)
    message = str(err.value)
    assert "1 missing from the checkpoint (backbone.blocks.0.attn.qkv.weight)" in message
    assert "1 unexpected in the checkpoint (backbone.blocks.0.attn.qkv_renamed.weight)" in message
    assert torch.count_nonzero(model.backbone.blocks[1].attn.qkv.weight) == 0  # strict failure loads nothing


def test_shape_mismatch_is_named_and_non_strict_loads_the_rest():
    state = to_layout("sbl_res50", "mmpose0")
    state["keypoint_head.final_layer.weight"] = torch.zeros(16, 256, 1, 1)  # an MPII head on a COCO model
    with pytest.raises(CheckpointMismatchError, match=r"head\.final_layer\.weight: checkpoint \(16, 256, 1, 1\)"):
        load_weights_from_state(scrambled_copy("sbl_res50"), state)
    model = scrambled_copy("sbl_res50")
    report = load_weights_from_state(model, state, strict=False)
    assert report.mismatched and report.loaded == len(state) - 1
    assert torch.equal(model.backbone.conv1.weight, built("sbl_res50").backbone.conv1.weight)


def test_bad_files_and_layout_names_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not-there.pth"):
        mamkpd.load_weights(scrambled_copy("sbl_res50"), tmp_path / "not-there.pth")
    torch.save({"epoch": 3}, tmp_path / "empty.pth")
    with pytest.raises(ValueError, match="no tensors"):
        mamkpd.load_weights(scrambled_copy("sbl_res50"), tmp_path / "empty.pth")
    with pytest.raises(ValueError, match="unknown layout 'timm'"):
        load_weights_from_state(scrambled_copy("sbl_res50"), built("sbl_res50").state_dict(), layout="timm")


@pytest.mark.parametrize(("hrnet_model", "name"), [("pose_resnet", "sbl_res50"), ("pose_hrnet", "hrnet_w32")])
def test_channel_order_follows_the_layout_as_the_original_experiments_set_it(hrnet_model, name):
    """HRNet's experiments set COLOR_RGB false for SimpleBaseline (pose_resnet), true for pose_hrnet: a
    checkpoint in the original layout expects images in that order; MMPose's layouts are RGB."""
    experiments = json.loads((Path(__file__).parent / "fixtures" / "hrnet_color_rgb.json").read_text())["experiments"]
    orders = {e["COLOR_RGB"] for e in experiments.values() if e["model"] == hrnet_model}
    assert len(orders) == 1, orders
    original = "rgb" if orders.pop() else "bgr"
    model = scrambled_copy(name)
    for layout, expected in (("original", original), ("mmpose0", "rgb"), ("original", original), ("native", "rgb")):
        report = load_weights_from_state(model, to_layout(name, layout))
        assert (report.layout, model.input_channels) == (layout, expected)
    assert mamkpd.create_model(name).input_channels == "rgb"  # a fresh model: what this suite trains on
