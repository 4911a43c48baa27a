"""Keypoint data sets (COCO, MPII, AP-10K), top-down transforms and batching."""

from mamkpd.data.dataset import TopDownDataset, build_dataset, collate, data_files
from mamkpd.data.infos import DATASETS, AugmentConfig, DatasetInfo, get_info
from mamkpd.data.roots import SPLITS
from mamkpd.data.threads import main_process_threads, set_main_process_threads, worker_init

__all__ = [
    "DATASETS",
    "SPLITS",
    "AugmentConfig",
    "DatasetInfo",
    "TopDownDataset",
    "build_dataset",
    "collate",
    "data_files",
    "get_info",
    "main_process_threads",
    "set_main_process_threads",
    "worker_init",
]
