"""The scan's roofline: the larger of its memory traffic and its exponentials on the special function units."""

from __future__ import annotations

import pytest

from mamkpd.harness.measure.scan_bench import (
    SCAN_SHAPES,
    scan_cell_exponentials,
    scan_roofline,
    sfu_exp_rate,
)


def test_exponentials_at_mamkpd_bs_stage_1():
    # batch 64, 4 directions x 192 channels, 64 x 48 positions, 8 states: the 1.2e9 a forward pass
    assert scan_cell_exponentials(SCAN_SHAPES["stage1"], 64, backward=False) == 1_207_959_552
    assert scan_cell_exponentials(SCAN_SHAPES["stage1"], 64, backward=True) == 2 * 1_207_959_552


def test_exp_rate_of_an_h200_and_an_unknown_device():
    # 132 SMs x 16 a clock x 1.98 GHz
    assert sfu_exp_rate("NVIDIA H200", 132) == pytest.approx(4.18176e12)
    assert sfu_exp_rate("NVIDIA GeForce RTX 4090", 128) == pytest.approx(16 * 128 * 2.52e9)
    assert sfu_exp_rate("CPU", 0) is None


def test_roofline_is_the_larger_limit():
    # 480 MB at 4.8 TB/s: 100 us; 1.2e9 exponentials at 4e12/s: 300 us
    assert scan_roofline(480_000_000, 1_200_000_000, 4.8e12, 4e12) == pytest.approx(300e-6)
    assert scan_roofline(4_800_000_000, 1_200_000_000, 4.8e12, 4e12) == pytest.approx(1e-3)
    assert scan_roofline(480_000_000, 1_200_000_000, 4.8e12, None) == pytest.approx(100e-6)  # rate not known
