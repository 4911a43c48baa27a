"""A training run's input size, codec and keypoint count: worked out once (issue 16), so the model is built
once, the codec once, the resume check compares what the run uses, and `--input-size` is one flag."""

from __future__ import annotations

import argparse
import inspect
import json

import pytest
import torch
from engine_synthetic import SyntheticPoses, TinyHeatmapNet
from pose_samples import sample
from test_checkpoint_safety import one_error_line
from test_cli_evaluate import TINY, mamkpd_cli
from test_engine_train import run, samples_config, small_config

import mamkpd.codecs
import mamkpd.models
from mamkpd.data import build_dataset
from mamkpd.engine import TrainConfig, train


@pytest.fixture(autouse=True)
def _restore_global_torch_flags():
    yield
    torch.use_deterministic_algorithms(False)
    torch.backends.cudnn.deterministic = False


def _counting(monkeypatch, module, name: str) -> list:
    calls = []
    original = getattr(module, name)

    def wrapper(*args, **kwargs):
        calls.append((args, kwargs))
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)
    return calls


def test_one_training_run_builds_the_model_once_and_the_codec_once(tmp_path, monkeypatch):
    models = _counting(monkeypatch, mamkpd.models, "create_model")
    codecs = _counting(monkeypatch, mamkpd.codecs, "build_codec")
    cfg = samples_config(tmp_path, augment=False, epochs=1, batch_size=12, val_interval=1, flip_test=False)
    result = train(cfg)
    assert "AP" in result.history[0]["val"]  # the run read both data sets and validated
    assert len(models) == 1, models
    assert models[0][1]["input_size"] == (64, 48) and models[0][1]["num_keypoints"] == 17
    assert len(codecs) == 1, codecs
    assert codecs[0][0] == ("msra", (64, 48))  # MamKPD's own codec at the run's size


def test_a_resume_compares_the_input_size_the_run_uses(tmp_path):
    run(small_config(tmp_path, epochs=1))
    # the synthetic set's own size, given explicitly, is the same run
    resumed = run(small_config(tmp_path, epochs=2, resume="auto", input_size=(32, 24)))
    assert resumed.epochs_completed == 2
    with pytest.raises(ValueError, match=r"cannot resume .*input_size \[32, 24\] -> \[64, 48\]"):
        run(small_config(tmp_path, epochs=3, resume="auto", input_size=(64, 48)))


def test_a_given_training_set_of_another_size_than_the_run_is_refused(tmp_path):
    ann = sample("coco", "test_coco.json")
    crops = build_dataset(
        "coco", "train", train=False, input_size=(64, 48), ann_file=str(ann), image_dir=str(ann.parent)
    )
    out_dir = str(tmp_path / "run")
    cfg = TrainConfig(model="mamkpd_s", model_kwargs=TINY, dataset="coco", val_interval=0, workers=0, out_dir=out_dir)
    with pytest.raises(ValueError, match=r"^input_size: the given training set crops \(64, 48\), .* \(256, 192\)"):
        train(cfg, train_set=crops)


def test_a_model_object_without_a_codec_is_told_to_name_one_before_training(tmp_path):
    cfg = small_config(tmp_path, val_interval=1)  # model "tiny": an object, not a registered model
    with pytest.raises(ValueError, match=r"^codec: .*set TrainConfig.codec"):
        train(cfg, model=TinyHeatmapNet(), train_set=SyntheticPoses(10), val_set=SyntheticPoses(4))
    assert not (tmp_path / "run" / "last.pth").exists()


def test_input_size_is_declared_in_one_place_for_every_command(monkeypatch):
    from mamkpd.cli import build_parser

    sites: dict[tuple[str, int], list[str]] = {}
    add_argument = argparse.ArgumentParser.add_argument

    def recording(parser, *names, **kwargs):
        if "--input-size" in names:
            caller = inspect.stack()[1]
            sites.setdefault((caller.filename, caller.lineno), []).append(parser.prog)
        return add_argument(parser, *names, **kwargs)

    monkeypatch.setattr(argparse.ArgumentParser, "add_argument", recording)
    build_parser()
    assert len(sites) == 1, sites
    commands = sorted(prog.split()[-1] for progs in sites.values() for prog in progs)
    assert commands == ["complexity", "evaluate", "export", "fps", "train"]


def test_a_bad_input_size_in_a_config_file_is_one_line(tmp_path):
    for size, expected in {
        (0, 0): "input_size must be (H, W), both positive, got (0, 0)",
        (250, 190): "mamkpd_s: input_size must be (H, W), both positive multiples of 16",
    }.items():
        config = tmp_path / "config.json"
        config.write_text(json.dumps({"model": "mamkpd_s", "input_size": list(size), "out_dir": str(tmp_path / "r")}))
        line = one_error_line(mamkpd_cli("train", "--config", str(config), cwd=tmp_path), "train")
        assert expected in line, line
