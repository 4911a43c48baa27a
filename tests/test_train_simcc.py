"""RTMPose's training: the simcc codec's targets and KLDiscretLoss against MMPose 1.3.2's own numbers
(tests/fixtures/simcc_training.npz), and `mamkpd train` on an RTMPose model as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pose_samples import sample
from test_cli_evaluate import mamkpd_cli

from mamkpd.codecs import build_codec
from mamkpd.engine import KLDiscretLoss
from mamkpd.models import create_model, load_weights

FIXTURE = np.load(Path(__file__).parent / "fixtures" / "simcc_training.npz")
SETTINGS = json.loads(str(FIXTURE["source"]))["settings"]


def encoded_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """The suite's codec on the fixture's two people: targets (2, 17, Wx + Wy) and weights (2, 17)."""
    codec = build_codec("simcc", (256, 192))
    pairs = [codec.encode(k, v > 0) for k, v in zip(FIXTURE["keypoints"], FIXTURE["visible"], strict=True)]
    return torch.from_numpy(np.stack([t for t, _ in pairs])), torch.from_numpy(np.stack([w for _, w in pairs]))


def test_training_targets_equal_mmpose_simcclabel():
    target, weights = encoded_batch()
    x_labels, y_labels = build_codec("simcc", (256, 192)).split_target(target.numpy())
    assert np.allclose(x_labels, FIXTURE["x_labels"], atol=1e-6)
    assert np.allclose(y_labels, FIXTURE["y_labels"], atol=1e-6)
    assert np.array_equal(weights.numpy(), FIXTURE["label_weights"])
    # invisible (0: 1, 2; 1: 16) and windows outside the vectors (0: 3; 1: 5) weigh 0; just outside still counts
    assert weights[0, [1, 2, 3]].sum() == 0 and weights[1, [5, 16]].sum() == 0 and weights[0, 4] == 1


@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_kl_discret_loss_and_gradients_equal_mmpose(setting):
    target, weights = encoded_batch()
    pred = tuple(torch.tensor(FIXTURE[f"pred_{axis}"], requires_grad=True) for axis in "xy")
    loss = KLDiscretLoss(**{"beta": 1.0, "label_softmax": False, **SETTINGS[setting]})(pred, target, weights)
    loss.backward()
    assert loss.item() == pytest.approx(float(FIXTURE[f"loss_{setting}"]), rel=1e-5)
    for axis, p in zip("xy", pred, strict=True):
        assert torch.allclose(p.grad, torch.from_numpy(FIXTURE[f"grad_{axis}_{setting}"]), rtol=1e-4, atol=1e-9)


def test_kl_discret_loss_defaults_are_rtmpose_configs():
    target, weights = encoded_batch()
    pred = tuple(torch.from_numpy(FIXTURE[f"pred_{axis}"]) for axis in "xy")
    assert KLDiscretLoss()(pred, target, weights).item() == pytest.approx(float(FIXTURE["loss_rtmpose"]), rel=1e-5)


def test_kl_discret_loss_names_what_it_was_given():
    loss = KLDiscretLoss()
    with pytest.raises(ValueError, match=r"\(x vectors, y vectors\) pair \(a heatmap model: mse\)"):
        loss(torch.zeros(2, 17, 64, 48), torch.zeros(2, 17, 64, 48), torch.ones(2, 17))
    with pytest.raises(ValueError, match=r"target \(2, 17, 100\) \(expected \(2, 17, 896\)\)"):
        loss((torch.zeros(2, 17, 384), torch.zeros(2, 17, 512)), torch.zeros(2, 17, 100), torch.ones(2, 17))


def test_mamkpd_train_trains_rtmpose_on_the_samples(tmp_path, monkeypatch):
    monkeypatch.delenv("MAMKPD_COCO_ROOT", raising=False)
    ann = sample("coco", "test_coco.json")
    out = tmp_path / "run"
    args = ["--model", "rtmpose_t", "--train-ann-file", str(ann), "--train-image-dir", str(ann.parent)]
    args += ["--input-size", "64", "64", "--batch-size", "6", "--epochs", "2", "--warmup-iters", "0"]
    args += ["--val-interval", "0", "--workers", "0", "--device", "cpu", "--out-dir", str(out), "--json"]
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # two threads on a loaded two-core machine are slower
    proc = mamkpd_cli("train", *args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert summary["epochs_completed"] == 2 and summary["scan_backend"] is None
    loss = summary["last_epoch"]["loss"]
    assert np.isfinite(loss) and loss > 0, loss  # a KL divergence
    # the weights it wrote load strictly into RTMPose-t at that size, and the loss moved them, by no more than
    # Adam's steps allow (each at most lr (1 - beta1) / sqrt(1 - beta2) = 3.16 lr): the run's initial weights are
    # rebuilt from its seed (0) as the trainer builds them (a different start would differ by far more)
    torch.manual_seed(0)
    model = create_model("rtmpose_t", num_keypoints=17, input_size=(64, 64))
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    load_weights(model, out / "last.pth")
    trained, bound = model.state_dict(), summary["global_step"] * 1e-3 * 3.17
    for name in ("head.cls_x.weight", "head.cls_y.weight", "head.gau.uv.weight", "backbone.stem.0.conv.weight"):
        moved = (trained[name] - initial[name]).abs().max().item()
        assert 0 < moved <= bound, f"{name}: moved by {moved} in {summary['global_step']} steps"
