"""Two-process gloo DistributedDataParallel: identical parameters on both ranks, exact result gathering."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from engine_synthetic import INPUT_SIZE, SyntheticPoses, TinyHeatmapNet

WORLD_SIZE = 2
NUM_EVAL = 7  # odd: the DistributedSampler pads one rank with a repeated instance


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, out_dir: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD_SIZE)
    )
    torch.set_num_threads(1)
    from mamkpd.codecs import build_codec
    from mamkpd.engine import TrainConfig, init_distributed, run_inference, train

    # different initial weights per rank: DDP must broadcast rank 0's
    torch.manual_seed(100 + rank)
    cfg = TrainConfig(
        model="tiny",
        dataset="synthetic",
        epochs=2,
        batch_size=3,
        lr=1e-2,
        warmup_iters=0,
        val_interval=0,
        workers=0,
        device="cpu",
        seed=3,
        out_dir=str(Path(out_dir) / "run"),
        checkpoint_interval=0,
    )
    model = TinyHeatmapNet()
    result = train(cfg, model=model, train_set=SyntheticPoses(10))
    torch.save({"state": model.state_dict(), "steps": result.global_step}, Path(out_dir) / f"rank{rank}.pt")

    ctx = init_distributed("cpu")
    pred = run_inference(
        model,
        SyntheticPoses(NUM_EVAL, augment=False),
        build_codec("msra", INPUT_SIZE),
        flip_test=True,
        batch_size=2,
        workers=0,
        ctx=ctx,
        progress=False,
    )
    np.savez(Path(out_dir) / f"pred{rank}.npz", **pred)
    torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_two_process_gloo_training_and_gathering(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD_SIZE, join=True)
    states = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD_SIZE)]
    # 10 instances over 2 ranks, batch 3 per rank: 2 steps per epoch, 2 epochs
    assert states[0]["steps"] == states[1]["steps"] == 4
    for key, value in states[0]["state"].items():
        assert torch.equal(value, states[1]["state"][key]), key  # parameters and BN buffers alike
    # training changed rank 1's own initial weights (it did not just keep them)
    torch.manual_seed(101)
    initial = TinyHeatmapNet().state_dict()
    assert not torch.equal(initial["body.0.weight"], states[1]["state"]["body.0.weight"])

    preds = [dict(np.load(tmp_path / f"pred{r}.npz")) for r in range(WORLD_SIZE)]
    for pred in preds:
        assert pred["instance_index"].tolist() == list(range(NUM_EVAL))  # each instance exactly once, in order
        assert pred["keypoints"].shape == (NUM_EVAL, 4, 2)
        for key in pred:
            np.testing.assert_array_equal(pred[key], preds[0][key])
    # one process sees the same predictions as the two together
    from mamkpd.codecs import build_codec
    from mamkpd.engine import run_inference

    model = TinyHeatmapNet()
    model.load_state_dict(states[0]["state"])
    single = run_inference(
        model,
        SyntheticPoses(NUM_EVAL, augment=False),
        build_codec("msra", INPUT_SIZE),
        batch_size=2,
        workers=0,
        progress=False,
    )
    np.testing.assert_allclose(single["keypoints"], preds[0]["keypoints"], atol=1e-4)
