"""Dense-prediction networks: a small U-Net and a feature pyramid network.

Both upsample, so their decoder fields repeat with a period instead of being uniform: after a
2x upsampling, even and odd output units see differently placed input windows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import register
from .layers import ConvNormActivation
from .resnet import BasicBlock, conv1x1


def double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    """Two 3x3 convs with padding 1 (size preserving), each followed by batch norm and ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """A small U-Net (Ronneberger et al., 2015) with "same" padding and widths 16-32-64-128.

    Encoder: ``enc1..enc3`` double convs, each followed by a 2x2 max pool (one ``pool`` module,
    so its calls are ``pool``, ``pool_1``, ``pool_2``), and the ``bottleneck``. Decoder, one
    upsampling kind per level: ``up3`` is a 2x2 transposed conv with stride 2, ``up2`` bilinear
    upsampling (``align_corners=False``) and a 1x1 conv, ``up1`` nearest upsampling and a 3x3
    conv. Each upsampled map is concatenated with the encoder map of the same size (the skip
    connection) before the level's double conv; ``head`` is a 1x1 conv to the class scores.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 2, widths: tuple[int, int, int, int] = (16, 32, 64, 128)) -> None:
        super().__init__()
        w1, w2, w3, w4 = widths
        self.enc1 = double_conv(in_channels, w1)
        self.enc2 = double_conv(w1, w2)
        self.enc3 = double_conv(w2, w3)
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = double_conv(w3, w4)
        self.up3 = nn.ConvTranspose2d(w4, w3, kernel_size=2, stride=2)
        self.dec3 = double_conv(2 * w3, w3)
        self.up2 = nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False), nn.Conv2d(w3, w2, 1))
        self.dec2 = double_conv(2 * w2, w2)
        self.up1 = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(w2, w1, 3, padding=1))
        self.dec1 = double_conv(2 * w1, w1)
        self.head = nn.Conv2d(w1, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool(e1))
        e3 = self.enc3(self.pool(e2))
        b = self.bottleneck(self.pool(e3))
        d3 = self.dec3(torch.cat([self.up3(b), e3], 1))
        d2 = self.dec2(torch.cat([self.up2(d3), e2], 1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], 1))
        return self.head(d1)


@register("unet", (1, 3, 128, 128), "small U-Net (16-32-64-128): transposed conv, bilinear and nearest upsampling, skips by cat; bottleneck: r 68, j 8; output: r 108, j 1, period 8")
def unet() -> nn.Module:
    return UNet()


class ResNetTrunk(nn.Module):
    """A narrow ResNet-18-like trunk, one BasicBlock per stage, returning C2..C5 (strides 4..32)."""

    def __init__(self, widths: tuple[int, int, int, int] = (32, 64, 128, 256)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        stages = []
        inplanes = widths[0]
        for i, planes in enumerate(widths):
            stride = 1 if i == 0 else 2
            downsample = None
            if stride != 1 or inplanes != planes:
                downsample = nn.Sequential(conv1x1(inplanes, planes, stride), nn.BatchNorm2d(planes))
            stages.append(BasicBlock(inplanes, planes, stride, downsample))
            inplanes = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = (nn.Sequential(s) for s in stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c2 = self.layer1(x)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return [c2, c3, c4, c5]


class FeaturePyramidNetwork(nn.Module):
    """FPN top-down pathway (Lin et al., 2017) with torchvision's ``ops.FeaturePyramidNetwork`` names.

    ``inner_blocks.i`` are the lateral 1x1 convs, ``layer_blocks.i`` the 3x3 output convs; the
    coarser merged map is upsampled 2x (nearest) and added to the next lateral.
    """

    def __init__(self, in_channels_list: list[int], out_channels: int) -> None:
        super().__init__()
        self.inner_blocks = nn.ModuleList(
            ConvNormActivation(c, out_channels, kernel_size=1, norm_layer=None, activation_layer=None) for c in in_channels_list
        )
        self.layer_blocks = nn.ModuleList(
            ConvNormActivation(out_channels, out_channels, kernel_size=3, norm_layer=None, activation_layer=None) for _ in in_channels_list
        )

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        last_inner = self.inner_blocks[-1](features[-1])
        results = [self.layer_blocks[-1](last_inner)]
        for idx in range(len(features) - 2, -1, -1):
            inner_lateral = self.inner_blocks[idx](features[idx])
            inner_top_down = F.interpolate(last_inner, scale_factor=2, mode="nearest")
            last_inner = inner_lateral + inner_top_down
            results.insert(0, self.layer_blocks[idx](last_inner))
        return results


class FPN(nn.Module):
    """A ResNet-like ``body`` and an ``fpn`` on its C2..C5, returning the levels ``p2``..``p5``."""

    def __init__(self, widths: tuple[int, int, int, int] = (32, 64, 128, 256), out_channels: int = 64) -> None:
        super().__init__()
        self.body = ResNetTrunk(widths)
        self.fpn = FeaturePyramidNetwork(list(widths), out_channels)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        levels = self.fpn(self.body(x))
        return {f"p{i + 2}": level for i, level in enumerate(levels)}


@register("fpn", (1, 3, 128, 128), "FPN on a narrow ResNet trunk, outputs p2..p5 (strides 4..32); p5: r 259, j 32")
def fpn() -> nn.Module:
    return FPN()
