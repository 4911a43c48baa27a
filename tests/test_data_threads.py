"""Thread policy: the main process's count, and one torch thread and no OpenCV pool in DataLoader workers."""

import cv2
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from mamkpd.data.threads import main_process_threads, set_main_process_threads, worker_init


class _ThreadsSeen(Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, index):
        return torch.tensor([torch.get_num_threads(), cv2.getNumThreads()])


def test_workers_run_one_torch_thread_and_no_opencv_pool():
    loader = DataLoader(_ThreadsSeen(), batch_size=1, num_workers=1, worker_init_fn=worker_init)
    for seen in loader:
        assert seen.tolist() == [[1, 1]]  # setNumThreads(0) leaves OpenCV on the calling thread alone


def test_main_process_policy(monkeypatch):
    previous = torch.get_num_threads()
    try:
        assert main_process_threads(3) == 3  # an explicit count wins
        with pytest.raises(ValueError, match="threads must be at least 1"):
            main_process_threads(0)
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
        monkeypatch.setattr("mamkpd.data.threads._usable_cpus", lambda: 1)
        torch.set_num_threads(4)
        assert main_process_threads() == 1  # capped at the CPUs this process may run on
        monkeypatch.setenv("OMP_NUM_THREADS", "4")
        assert main_process_threads() == 4  # the variable (torch read it at start-up) is respected
        assert set_main_process_threads(2) == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)
