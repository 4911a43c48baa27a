"""Baselines' complexity: fvcore leaves no costly op uncounted; the HRNet repository's counter follows
its convention exactly and reproduces the paper's HRNet/SimpleBaseline GFLOPs; the findings compute."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from worker_groups import MODEL_COUNTS

from mamkpd.harness.findings import baseline_findings as findings
from mamkpd.harness.measure.complexity import (
    measure_complexity,
    measure_complexity_hrnet_repo,
    measure_model_hrnet_repo,
)
from mamkpd.paper import load_table
from mamkpd.paper.tolerances import PRINTED_UNIT


@MODEL_COUNTS
@pytest.mark.parametrize(
    "name", ["sbl_res50", "vitpose_s", "vitpose_s_simple", "rtmo_s", pytest.param("hrnet_w32", marks=pytest.mark.slow)]
)
def test_fvcore_counts_every_costly_op(name):
    c = measure_complexity(name)
    assert c.uncounted_non_free == {}, c.unsupported_ops
    assert c.flops > 0 and c.counter == "fvcore"


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.deconv = nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1, bias=False)
        self.fc = nn.Linear(4, 5)

    def forward(self, x):
        x = self.deconv(torch.relu(self.bn(self.conv(x))))  # (N, 4, 2H, 2W)
        return self.fc(x.flatten(2).transpose(1, 2))  # (N, 4H*W, 5) tokens


def test_hrnet_repo_counter_follows_the_repository_convention():
    c = measure_model_hrnet_repo(Tiny(), (4, 6), name="tiny")
    conv = 8 * 3 * 3 * 3 * (4 * 6)  # weight numel x output H x W
    deconv = 8 * 4 * 4 * 4 * (8 * 12)  # charged on its (2x larger) output: 4x its multiply-adds
    linear = (1 * 96 * 5) * 96  # output numel x input.size(1), the token count for (N, L, C) inputs
    assert c.by_operator == {"Conv2d": conv, "ConvTranspose2d": deconv, "Linear": linear}
    assert c.flops == conv + deconv + linear
    assert c.gflops == pytest.approx(c.flops / 2**30)
    assert c.counter == "hrnet_repo" and "2**30" in c.flops_convention


@pytest.mark.parametrize(
    "row,name",
    [
        ("SBL-Res50", "sbl_res50"),
        ("HRNet-W32", "hrnet_w32"),
        ("TokenPose-S", "tokenpose_s_v1"),  # the printed 2.2 is TokenPose-S-v1's (its 13.5M is TokenPose-B's)
    ],
)
def test_hrnet_repo_counter_reproduces_the_papers_gflops(row, name):
    table = load_table("table2")
    printed = float(table.loc[table["row"] == row, "gflops"].iloc[0])
    measured = measure_complexity_hrnet_repo(name).gflops
    assert abs(measured - printed) < PRINTED_UNIT, (measured, printed)  # printed truncated to 0.1


def test_config_and_param_findings_are_computed():
    s_simple = findings.vitpose_small_simple_config_finding()
    assert s_simple["holds"]
    assert s_simple["measured"]["official_s_simple_config_params"] != s_simple["measured"]["vitpose_s_simple_params"]
    params = findings.vitpose_b_params_finding()
    assert params["holds"] and "simple decoder's" in params["finding"]
    rtmo = findings.rtmo_params_finding()
    assert set(rtmo["measured"]) == {"rtmo_s", "rtmo_m", "rtmo_l"}
    for f in (s_simple, params, rtmo):
        assert {"id", "title", "finding", "holds", "measured", "paper", "protocol"} <= set(f)


@pytest.mark.slow
def test_vitpose_gflops_finding_points_at_the_backbone():
    f = findings.vitpose_b_gflops_finding()
    assert f["holds"], f["finding"]
    assert f["measured"]["backbone_gmacs"] < f["measured"]["simple_gmacs"] < f["measured"]["classic_gmacs"]
