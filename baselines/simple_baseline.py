"""SimpleBaseline (Xiao et al., ECCV 2018): ResNet, three 256-wide 4x4 deconvolutions, a 1x1 conv.

Parameter names follow the original ``pose_resnet.py`` (ResNet ``conv1``/``bn1``/``layer1-4``, head
``deconv_layers``/``final_layer``), which MMPose kept, so the released checkpoints load as they are.
"""

from __future__ import annotations

from torch import Tensor, nn

from mamkpd.models.init import hrnet_init
from mamkpd.models.layers.heads import DeconvHead
from mamkpd.models.registry import register_model

from .topdown import BN_MOMENTUM, Bottleneck, TopDownHeatmapModel, check_input_size, make_res_layer, topdown_layouts

RESNET_DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


class ResNet(nn.Module):
    """ResNet without its classifier: (N, 3, H, W) -> (N, 2048, H/32, W/32)."""

    def __init__(self, depth: int):
        super().__init__()
        if depth not in RESNET_DEPTHS:
            raise ValueError(f"ResNet depth must be one of {sorted(RESNET_DEPTHS)}, got {depth}")
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = 64
        for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), RESNET_DEPTHS[depth], strict=True)):
            self.add_module(f"layer{i + 1}", make_res_layer(Bottleneck, inplanes, planes, blocks, 1 if i == 0 else 2))
            inplanes = planes * Bottleneck.expansion
        self.out_channels = inplanes

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def simple_baseline(
    depth: int, name: str, num_keypoints: int = 17, input_size: tuple[int, int] = (256, 192)
) -> TopDownHeatmapModel:
    check_input_size(input_size, 32, name)
    backbone = ResNet(depth)
    head = DeconvHead(backbone.out_channels, width=256, num_deconv=3, num_keypoints=num_keypoints)
    model = TopDownHeatmapModel(
        backbone,
        head,
        # the original release (and HRNet's resnet experiments, COLOR_RGB false) fed cv2's BGR images
        # normalised with the RGB ImageNet statistics
        checkpoint_layouts=topdown_layouts(
            ("deconv_layers", "final_layer"), "original SimpleBaseline (pose_resnet)", original_channels="bgr"
        ),
    )
    return hrnet_init(model)  # pose_resnet's init_weights without pretraining, HRNet's for every conv


@register_model("simple_baseline", tags=("table2",))
def sbl_res50(num_keypoints: int = 17, input_size: tuple[int, int] = (256, 192)) -> TopDownHeatmapModel:
    """SimpleBaseline with ResNet-50 (SBL-Res50 in the paper's Table 2)."""
    return simple_baseline(50, "sbl_res50", num_keypoints, input_size)


@register_model("simple_baseline", tags=("table2",))
def sbl_res152(num_keypoints: int = 17, input_size: tuple[int, int] = (256, 192)) -> TopDownHeatmapModel:
    """SimpleBaseline with ResNet-152 (SBL-Res152 in the paper's Table 2)."""
    return simple_baseline(152, "sbl_res152", num_keypoints, input_size)
