"""One resolver for where a data set lives: the root given, else its environment variable, and the files
under it (annotations, images, MPII's ground-truth .mat)."""

from __future__ import annotations

import pytest

from mamkpd.data import DATASETS
from mamkpd.data.roots import find_mpii_gt, resolve_data_root, root_or_env


def test_given_root_wins_over_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MAMKPD_COCO_ROOT", str(tmp_path / "env"))
    assert root_or_env("coco", tmp_path / "given") == str(tmp_path / "given")
    assert root_or_env("coco", None) == str(tmp_path / "env")
    monkeypatch.delenv("MAMKPD_COCO_ROOT")
    assert root_or_env(DATASETS["coco"], None) is None


def test_missing_root_names_the_variable_and_the_source(tmp_path, monkeypatch):
    monkeypatch.delenv("MAMKPD_AP10K_ROOT", raising=False)
    with pytest.raises(ValueError, match="--data-root or set MAMKPD_AP10K_ROOT.*AP-10K"):
        resolve_data_root(DATASETS["ap10k"], None)
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        resolve_data_root(DATASETS["ap10k"], str(tmp_path / "nowhere"))


def test_mpii_ground_truth_is_found_under_either_root(tmp_path, monkeypatch):
    monkeypatch.delenv("MAMKPD_MPII_ROOT", raising=False)
    assert find_mpii_gt(tmp_path) is None and find_mpii_gt(None) is None
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "mpii_gt_val.mat").write_bytes(b"")
    assert find_mpii_gt(tmp_path) == str(tmp_path / "annotations" / "mpii_gt_val.mat")
    (tmp_path / "annot").mkdir()
    (tmp_path / "annot" / "gt_valid.mat").write_bytes(b"")  # HRNet's name comes first
    monkeypatch.setenv("MAMKPD_MPII_ROOT", str(tmp_path))
    assert find_mpii_gt(None) == str(tmp_path / "annot" / "gt_valid.mat")
