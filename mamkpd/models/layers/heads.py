"""The deconvolution heatmap head of SimpleBaseline, ViTPose (classic) and MamKPD."""

from torch import Tensor, nn


class DeconvHead(nn.Module):
    """``num_deconv`` x (ConvTranspose 4x4 stride 2, BN, ReLU) then a 1x1 conv to keypoint heatmaps.

    Submodule names (``deconv_layers``, ``final_layer``) are those of the SimpleBaseline/MMPose heads so
    that their checkpoints load without renaming.
    """

    def __init__(self, in_channels: int, width: int, num_deconv: int, num_keypoints: int):
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(num_deconv):
            layers += [
                nn.ConvTranspose2d(in_channels if i == 0 else width, width, 4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
        self.deconv_layers = nn.Sequential(*layers)
        self.final_layer = nn.Conv2d(width if num_deconv else in_channels, num_keypoints, 1)
        for m in self.deconv_layers.modules():
            if isinstance(m, nn.ConvTranspose2d):
                nn.init.normal_(m.weight, std=0.001)
        nn.init.normal_(self.final_layer.weight, std=0.001)
        nn.init.zeros_(self.final_layer.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.final_layer(self.deconv_layers(x))
