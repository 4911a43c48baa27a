"""Trainer: loss form, LR schedule, config/CLI parsing, exact resume, NaN stop, atomic checkpoints."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest
import torch
from engine_synthetic import SyntheticPoses, TinyHeatmapNet
from pose_samples import sample

from mamkpd.cli.train import add_config_arguments, config_from_args
from mamkpd.engine import JointsMSELoss, NonFiniteLossError, TrainConfig, WarmupMultiStep, train
from mamkpd.engine.checkpoint import load_training_state, save_checkpoint


@pytest.fixture(autouse=True)
def _restore_global_torch_flags():
    """train(deterministic=True) switches torch to deterministic kernels process-wide; undo it for other tests."""
    yield
    torch.use_deterministic_algorithms(False)
    torch.backends.cudnn.deterministic = False


def small_config(tmp_path: Path, **overrides) -> TrainConfig:
    values = dict(
        model="tiny",
        dataset="synthetic",
        epochs=3,
        batch_size=4,
        lr=1e-2,
        lr_steps=(2,),
        warmup_iters=5,
        val_interval=0,
        workers=0,
        device="cpu",
        seed=7,
        deterministic=True,
        out_dir=str(tmp_path / "run"),
        checkpoint_interval=1,
        log_interval=1,
    )
    values.update(overrides)
    return TrainConfig(**values)


def run(cfg: TrainConfig, **datasets):
    torch.manual_seed(123)  # the model's initial weights; the trainer seeds everything after
    return train(cfg, model=TinyHeatmapNet(), train_set=datasets.get("train_set", SyntheticPoses(10)))


def test_loss_is_hrnet_joints_mse():
    pred, gt = torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 5)
    weight = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    # HRNet: sum over joints of 0.5 * MSELoss(mean over batch and pixels) of weighted heatmaps, / K
    expected = (
        sum(
            0.5
            * torch.nn.functional.mse_loss(pred[:, k] * weight[:, k, None, None], gt[:, k] * weight[:, k, None, None])
            for k in range(3)
        )
        / 3
    )
    assert torch.allclose(JointsMSELoss()(pred, gt, weight), expected)
    # a zero-weight joint contributes nothing whatever it predicts
    moved = pred.clone()
    moved[0, 1] += 100
    assert torch.allclose(JointsMSELoss()(moved, gt, weight), expected)


def test_schedule_warmup_and_milestones():
    f = WarmupMultiStep(iters_per_epoch=10, milestones=(170, 200), factor=0.1, warmup_iters=500, warmup_ratio=0.001)
    assert f(0) == pytest.approx(0.001)
    assert f(250) == pytest.approx(1 - 0.5 * 0.999)
    assert f(500) == 1.0
    assert f(1699) == 1.0 and f(1700) == pytest.approx(0.1)  # epoch index 170 = the 171st epoch
    assert f(1999) == pytest.approx(0.1) and f(2000) == pytest.approx(0.01)


def test_every_config_field_is_a_cli_option():
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    args = parser.parse_args(
        [
            "--model",
            "mamkpd_b",
            "--epochs",
            "5",
            "--lr-steps",
            "3",
            "4",
            "--amp",
            "--flip-test",
            "false",
            "--model-kwargs",
            '{"depths": [1, 1, 1]}',
            "--input-size",
            "128",
            "96",
            "--max-steps",
            "7",
            "--grad-clip",
            "none",
        ]
    )
    cfg = config_from_args(args)
    assert (cfg.model, cfg.epochs, cfg.lr_steps, cfg.amp, cfg.flip_test) == ("mamkpd_b", 5, (3, 4), True, False)
    assert cfg.model_kwargs == {"depths": [1, 1, 1]} and cfg.input_size == (128, 96) and cfg.max_steps == 7
    assert cfg.lr == 1e-3 and cfg.grad_clip is None  # untouched defaults stay the paper's
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="unknown TrainConfig field"):
        TrainConfig.from_dict({"epoch": 3})


def _params(state_dict):
    return {k: v.clone() for k, v in state_dict.items()}


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_after_a_mid_epoch_kill_matches_an_uninterrupted_run(tmp_path, workers):
    full = run(small_config(tmp_path / "full", workers=workers))
    assert full.epochs_completed == 3 and full.global_step == 9
    reference = load_training_state(full.checkpoint)

    # "kill" in the middle of epoch 2: last.pth stays at epoch 1
    # resume="auto" with nothing to resume starts afresh
    killed = run(small_config(tmp_path / "resumed", max_steps=4, workers=workers, resume="auto"))
    assert killed.checkpoint.name == "partial.pth" and killed.global_step == 4
    assert load_training_state(killed.out_dir / "last.pth")["epoch"] == 1
    with pytest.raises(ValueError, match="weights only"):
        run(small_config(tmp_path / "resumed", resume=str(killed.checkpoint)))

    resumed = run(small_config(tmp_path / "resumed", resume="auto", workers=workers))
    assert resumed.epochs_completed == 3 and resumed.global_step == 9
    final = load_training_state(resumed.checkpoint)
    for key, value in reference["model"].items():
        assert torch.equal(value, final["model"][key]), key
    ref_opt, res_opt = reference["optimizer"]["state"], final["optimizer"]["state"]
    for idx in ref_opt:
        assert torch.equal(ref_opt[idx]["exp_avg_sq"], res_opt[idx]["exp_avg_sq"])
    assert reference["scheduler"] == final["scheduler"]
    # the resumed run did not start over: its first epoch's record is epoch 2
    assert [r["epoch"] for r in resumed.history] == [2, 3]
    log = (resumed.out_dir / "train.log").read_text()
    assert "resumed from" in log and "epoch 3 done" in log


def test_nan_loss_names_step_batch_and_last_good_checkpoint(tmp_path):
    cfg = small_config(tmp_path, epochs=1)
    run(cfg)
    poisoned = SyntheticPoses(10, nan_index=3)
    with pytest.raises(NonFiniteLossError) as err:
        run(small_config(tmp_path, epochs=2, resume="auto"), train_set=poisoned)
    message = str(err.value)
    assert "loss is nan" in message and "epoch 2" in message and "batch" in message and "step" in message
    assert str(Path(cfg.out_dir) / "last.pth") in message
    assert load_training_state(Path(cfg.out_dir) / "last.pth")["epoch"] == 1  # untouched


def test_nan_before_any_checkpoint_says_so(tmp_path):
    with pytest.raises(NonFiniteLossError, match="none \\(no epoch completed yet\\)"):
        run(small_config(tmp_path, epochs=1), train_set=SyntheticPoses(10, nan_index=0))


class _Unpicklable:
    def __reduce__(self):
        raise RuntimeError("disk full (simulated)")


def test_failed_checkpoint_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "last.pth"
    save_checkpoint(path, {"model": {"w": torch.ones(3)}, "config": {}, "epoch": 1})
    with pytest.raises(RuntimeError, match="disk full"):
        save_checkpoint(path, {"model": {"w": torch.zeros(3)}, "config": {}, "epoch": 2, "bad": _Unpicklable()})
    state = load_training_state(path)
    assert state["epoch"] == 1 and torch.equal(state["model"]["w"], torch.ones(3))
    assert os.listdir(tmp_path) == ["last.pth"]  # no temp file left behind
    path.write_bytes(path.read_bytes()[:100])  # what a non-atomic writer killed mid-write would leave
    with pytest.raises(ValueError, match="damaged"):
        load_training_state(path)


def samples_config(tmp_path: Path, **overrides) -> TrainConfig:
    """A reduced MamKPD-S at 64 x 48, trained and validated on the COCO samples."""
    ann = sample("coco", "test_coco.json")
    values = dict(
        model="mamkpd_s",
        model_kwargs={"depths": [1, 1, 1], "dims": [16, 32, 64]},
        dataset="coco",
        input_size=(64, 48),
        train_ann_file=str(ann),
        train_image_dir=str(ann.parent),
        val_ann_file=str(ann),
        val_image_dir=str(ann.parent),
        batch_size=8,
        eval_batch_size=8,
        workers=0,
        device="cpu",
        out_dir=str(tmp_path / "run"),
        checkpoint_interval=0,
    )
    values.update(overrides)
    return TrainConfig(**values)


def test_validation_scores_each_due_epoch_and_keeps_the_best(tmp_path):
    """Validation on the COCO samples: metrics in the history, best.pth written from the best epoch."""
    # validation due at epoch 2 only (and always at the last epoch)
    result = train(samples_config(tmp_path, epochs=2, val_interval=2))
    assert [("val" in r) for r in result.history] == [False, True]
    assert set(result.history[1]["val"]) >= {"AP", "AR"} and result.best_metric == result.history[1]["val"]["AP"]
    assert result.best_checkpoint == tmp_path / "run" / "best.pth" and result.best_checkpoint.is_file()
    assert (tmp_path / "run" / "val_results_epoch_2.json").is_file()
    assert load_training_state(result.best_checkpoint)["best_metric"] == result.best_metric
