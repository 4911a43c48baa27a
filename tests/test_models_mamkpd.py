"""MamKPD: every registered variant builds, runs at the paper's input sizes and trains."""

import math

import pytest
import torch

import mamkpd
from mamkpd.models.layers import SS2D, cross_merge, cross_scan
from mamkpd.models.mamkpd import VARIANTS, MamKPDConfig

MAMKPD_MODELS = sorted(VARIANTS)
# (input size, keypoints): COCO 17 at 256x192; MPII 16 and AP-10K 17 at 256x256
DATASET_SHAPES = [((256, 192), 17), ((256, 256), 16)]


def test_registry_lists_every_variant():
    names = mamkpd.list_models("mamkpd*")
    for required in (
        "mamkpd_s",
        "mamkpd_b",
        "mamkpd_l",
        "mamkpd_t5a",
        "mamkpd_t5b",
        "mamkpd_t5c",
        "mamkpd_t5d",
        "mamkpd_fig3_base",
        "mamkpd_fig3_wo_stem",
        "mamkpd_fig3_wo_cmm",
        "mamkpd_fig3_w_pm",
    ):
        assert required in names
    with pytest.raises(KeyError, match="unknown model 'mamkpd_xl'.*mamkpd_b"):
        mamkpd.create_model("mamkpd_xl")


def test_cross_merge_of_cross_scan_is_four_times_input():
    x = torch.randn(2, 3, 5, 7)
    scanned = cross_scan(x)
    assert scanned.shape == (2, 4, 3, 35)
    torch.testing.assert_close(cross_merge(scanned, 5, 7), 4 * x)
    # the four sequences are distinct orders of the same patches
    assert torch.equal(scanned[:, 2], scanned[:, 0].flip(-1))
    assert torch.equal(scanned[:, 1], x.transpose(2, 3).flatten(2))


@pytest.mark.slow
@pytest.mark.parametrize("name", MAMKPD_MODELS)
@pytest.mark.parametrize("input_size, keypoints", DATASET_SHAPES)
def test_output_shape_at_paper_sizes(name, input_size, keypoints):
    model = mamkpd.create_model(name, input_size=input_size, num_keypoints=keypoints).eval()
    with torch.inference_mode():
        out = model(torch.randn(1, 3, *input_size))
    assert out.shape == (1, keypoints, input_size[0] // 4, input_size[1] // 4)
    assert torch.isfinite(out).all()


@pytest.mark.slow
@pytest.mark.parametrize("name", MAMKPD_MODELS)
@pytest.mark.parametrize("input_size, keypoints", [((128, 96), 17), ((128, 128), 16)])
def test_training_step_lowers_loss_on_a_fixed_batch(name, input_size, keypoints):
    # reduced input sizes keep CI fast; the code paths are those of the paper sizes tested above
    model = mamkpd.create_model(name, input_size=input_size, num_keypoints=keypoints).train()
    x = torch.randn(2, 3, *input_size)
    target = torch.rand(2, keypoints, input_size[0] // 4, input_size[1] // 4)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(4):
        loss = torch.nn.functional.mse_loss(model(x), target)
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_backends_agree_on_a_whole_model():
    model = mamkpd.create_model("mamkpd_t5a", input_size=(64, 48)).eval()
    x = torch.randn(1, 3, 64, 48)
    with torch.no_grad():
        model.scan_backend = "reference"
        ref = model(x)
        model.scan_backend = "torch"
        fast = model(x)
    torch.testing.assert_close(fast, ref, rtol=1e-4, atol=1e-5)


def test_numba_and_torch_backends_agree_on_a_whole_model_forward_and_backward():
    model = mamkpd.create_model("mamkpd_t5a", input_size=(64, 48)).train()
    x = torch.randn(2, 3, 64, 48)
    results = {}
    for backend in ("torch", "numba"):
        model.scan_backend = backend
        model.zero_grad()
        out = model(x)
        out.square().sum().backward()
        results[backend] = (out.detach(), {k: p.grad.clone() for k, p in model.named_parameters()})
    (out_t, grads_t), (out_n, grads_n) = results["torch"], results["numba"]
    torch.testing.assert_close(out_n, out_t, rtol=1e-4, atol=1e-5)
    for name, grad in grads_t.items():
        torch.testing.assert_close(grads_n[name], grad, rtol=1e-4, atol=1e-5, msg=f"gradient of {name}")


def test_scan_backend_reaches_every_block():
    model = mamkpd.create_model("mamkpd_t5a", scan_backend="reference")
    blocks = [m for m in model.modules() if isinstance(m, SS2D)]
    assert len(blocks) == 1 + 2 + 3 and all(b.scan_backend == "reference" for b in blocks)
    model.scan_backend = "torch"
    assert all(b.scan_backend == "torch" for b in blocks)
    with pytest.raises(ValueError, match="unknown scan backend .gpu."):
        model.scan_backend = "gpu"


def test_paper_readings_are_the_defaults():
    cfg = MamKPDConfig()
    assert (cfg.d_state, cfg.ssm_ratio, cfg.d_conv, cfg.z_gate, cfg.mlp_ratio) == (8, 2.0, 3, False, 0.0)
    model = mamkpd.create_model("mamkpd_b")
    ss2d = model.stages[2].blocks[0].op
    assert ss2d.d_inner == 2 * 384 and ss2d.dt_rank == math.ceil(384 / 16) and ss2d.d_state == 8
    assert model.head.final_layer.in_channels == 384 // 4
    assert model.stages[0].downsample.embed.groups == math.gcd(96, 96)
    assert model.stages[1].downsample.embed.groups == math.gcd(96, 192)
    small = mamkpd.create_model("mamkpd_s")
    assert small.stem is None and small.stages[0].downsample.stride == 4
    four_stage = mamkpd.create_model("mamkpd_t5b")
    assert len(four_stage.head.deconv_layers) == 3 * 3  # /32 -> /4 takes three deconvs


@pytest.mark.parametrize(
    "shape, message",
    [
        ((3, 256, 192), "expects images"),
        ((1, 1, 256, 192), "3 input channels"),
        ((1, 3, 250, 192), "divisible by 16"),
    ],
)
def test_bad_input_is_a_value_error(shape, message):
    model = mamkpd.create_model("mamkpd_t5a")
    with pytest.raises(ValueError, match=message):
        model(torch.randn(*shape))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(downsampling="pool"), "downsampling must be one of"),
        (dict(input_size=(250, 192)), "mamkpd_b: input_size must be .*positive multiples of 16"),
        (dict(dims=(96, 192)), "equal length"),
        (dict(width=3), r"unknown MamKPD config field\(s\) \['width'\]"),
        (dict(scan_backend="fast"), "unknown scan backend .fast.; choose one of auto, "),
    ],
)
def test_bad_config_names_the_field(overrides, message):
    with pytest.raises(ValueError, match=message):
        mamkpd.create_model("mamkpd_b", **overrides)


def test_a_scan_backend_name_is_checked_by_the_ops_registry_wherever_it_is_set(tmp_path):
    from test_checkpoint_safety import one_error_line
    from test_cli_evaluate import TINY, mamkpd_cli, untrained_checkpoint

    model = mamkpd.create_model("mamkpd_s", input_size=(64, 48), **TINY)
    for set_it in (
        lambda: MamKPDConfig(scan_backend="fast"),
        lambda: setattr(model, "scan_backend", "fast"),
        lambda: SS2D(16, scan_backend="fast"),
    ):
        with pytest.raises(ValueError, match="^unknown scan backend 'fast'; choose one of auto, reference, torch"):
            set_it()
    assert model.scan_backend == "auto"  # a refused name is not kept
    # the command line: one line, naming the option that sets it
    ckpt = untrained_checkpoint(tmp_path / "untrained.pth")
    args = ["--checkpoint", str(ckpt), "--dataset", "coco", "--model-kwargs", '{"scan_backend": "fast"}']
    line = one_error_line(mamkpd_cli("evaluate", *args, cwd=tmp_path), "evaluate")
    assert "model_kwargs may not set scan_backend: use EvalConfig.scan_backend (--scan-backend)" in line, line


def test_each_model_names_the_codec_its_authors_used():
    # ViTPose trained and decoded with UDP; HRNet, SimpleBaseline and MamKPD with MSRA heatmaps
    assert mamkpd.model_info("mamkpd_b").codec == "msra"
    assert mamkpd.model_info("hrnet_w32").codec == "msra"
    assert mamkpd.model_info("vitpose_b").codec == "udp"


def test_inference_runs_the_stem_a_few_images_at_a_time_with_the_same_outputs(monkeypatch):
    """At inference the stem and the first downsampling run on chunks of the batch (their activations stay under
    glibc's mmap ceiling); every op there acts on each image alone, so the outputs are those of the whole batch."""
    import importlib

    module = importlib.import_module("mamkpd.models.mamkpd")
    model = mamkpd.create_model("mamkpd_b", depths=[1, 1, 1], dims=[32, 64, 128]).eval()
    x = torch.randn(5, 3, 64, 48)
    stem_calls = []
    model.stem.register_forward_hook(lambda mod, args, out: stem_calls.append(args[0].shape[0]))
    with torch.inference_mode():
        whole = model(x)
        assert stem_calls == [5]
        per_image = 4 * 32 * 32 * 24  # bytes of one image's stem output
        monkeypatch.setattr(module, "STEM_CHUNK_BYTES", 2 * per_image)
        chunked = model(x)
    assert stem_calls[1:] == [2, 2, 1]
    torch.testing.assert_close(chunked, whole, rtol=1e-6, atol=1e-7)
