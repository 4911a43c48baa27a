"""Training on a CUDA device. Its own module, importing at collection only what a bare GPU machine has
(torch, pytest): the GPU check collects every module that holds ``gpu`` tests, and test_engine_train's
helpers import the data layer (OpenCV)."""

import pytest
import torch


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (AMP is CUDA-only)")
def test_amp_training_on_cuda_checkpoints_the_grad_scaler(tmp_path):
    pytest.importorskip("cv2", reason="the synthetic training data imports the data layer, which needs OpenCV")
    from test_engine_train import run, small_config

    from mamkpd.engine.checkpoint import load_training_state

    result = run(small_config(tmp_path, device="cuda", amp=True, deterministic=False, epochs=1))
    state = load_training_state(result.checkpoint)
    assert state["scaler"] is not None and state["model"]["body.0.weight"].device.type == "cpu"
