"""Mobile networks built from depthwise separable convs: MobileNet-v2 and EfficientNet-B0.

Both follow torchvision's module layout, so names such as ``features.2.conv.1.0`` (MobileNet-v2's
depthwise conv) or ``features.1.0.block.1.avgpool`` (EfficientNet's first squeeze-excite pool)
read the same. Depthwise convs have ``groups = channels``.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from . import register
from .layers import ConvNormActivation, SqueezeExcitation


class InvertedResidual(nn.Module):
    """MobileNet-v2 block: 1x1 expand (unless ``expand_ratio == 1``), 3x3 depthwise, linear 1x1 project.

    The residual connection is used when the block keeps resolution and width.
    """

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden_dim = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvNormActivation(inp, hidden_dim, kernel_size=1, activation_layer=nn.ReLU6))
        layers += [
            ConvNormActivation(hidden_dim, hidden_dim, stride=stride, groups=hidden_dim, activation_layer=nn.ReLU6),
            nn.Conv2d(hidden_dim, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


# expansion t, output channels c, repeats n, first stride s (the MobileNet-v2 paper's table 2)
MOBILENET_V2_SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


class MobileNetV2(nn.Module):
    """MobileNet-v2 (Sandler et al., 2018) as torchvision builds it, width multiplier 1."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        input_channel, last_channel = 32, 1280
        features: list[nn.Module] = [ConvNormActivation(3, input_channel, stride=2, activation_layer=nn.ReLU6)]
        for t, c, n, s in MOBILENET_V2_SETTING:
            for i in range(n):
                features.append(InvertedResidual(input_channel, c, s if i == 0 else 1, expand_ratio=t))
                input_channel = c
        features.append(ConvNormActivation(input_channel, last_channel, kernel_size=1, activation_layer=nn.ReLU6))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(last_channel, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = nn.functional.adaptive_avg_pool2d(x, (1, 1))
        x = torch.flatten(x, 1)
        return self.classifier(x)


@register("mobilenet_v2", (1, 3, 224, 224), "MobileNet-v2 as torchvision (depthwise 3x3, inverted residuals, ReLU6); features.18: r 491, j 32")
def mobilenet_v2() -> nn.Module:
    return MobileNetV2()


class MBConv(nn.Module):
    """EfficientNet block: 1x1 expand, kxk depthwise, squeeze-excite, linear 1x1 project, all with SiLU.

    ``block`` is the Sequential of those units (``block.1`` is the squeeze-excite gate when
    ``expand_ratio == 1``, else ``block.2``). Stochastic depth, the identity at inference, is
    left out.
    """

    def __init__(self, expand_ratio: int, kernel: int, stride: int, input_channels: int, out_channels: int) -> None:
        super().__init__()
        self.use_res_connect = stride == 1 and input_channels == out_channels
        expanded = input_channels * expand_ratio
        layers: list[nn.Module] = []
        if expanded != input_channels:
            layers.append(ConvNormActivation(input_channels, expanded, kernel_size=1, activation_layer=nn.SiLU))
        layers += [
            ConvNormActivation(expanded, expanded, kernel_size=kernel, stride=stride, groups=expanded, activation_layer=nn.SiLU),
            SqueezeExcitation(expanded, max(1, input_channels // 4), activation=partial(nn.SiLU, inplace=True)),
            ConvNormActivation(expanded, out_channels, kernel_size=1, activation_layer=None),
        ]
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.block(x)
        if self.use_res_connect:
            result += x
        return result


# expand ratio, kernel, first stride, input channels, output channels, repeats (EfficientNet-B0)
EFFICIENTNET_B0_SETTING = (
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
)


class EfficientNet(nn.Module):
    """EfficientNet (Tan and Le, 2019) in torchvision's layout: stem, one Sequential per stage, 1x1 head."""

    def __init__(self, setting: tuple[tuple[int, ...], ...] = EFFICIENTNET_B0_SETTING, last_channel: int = 1280, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        layers: list[nn.Module] = [ConvNormActivation(3, setting[0][3], stride=2, activation_layer=nn.SiLU)]
        for expand, kernel, stride, cin, cout, repeats in setting:
            stage = [MBConv(expand, kernel, stride if i == 0 else 1, cin if i == 0 else cout, cout) for i in range(repeats)]
            layers.append(nn.Sequential(*stage))
        layers.append(ConvNormActivation(setting[-1][4], last_channel, kernel_size=1, activation_layer=nn.SiLU))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout, inplace=True), nn.Linear(last_channel, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


@register("efficientnet_b0", (1, 3, 224, 224), "EfficientNet-B0 as torchvision (MBConv, squeeze-excite, SiLU); features.8: r 851, j 32, global")
def efficientnet_b0() -> nn.Module:
    return EfficientNet()
