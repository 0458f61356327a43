"""Residual networks in torchvision's layout: ResNet-18/50/152 and an SE-ResNet-50.

Names follow torchvision (``conv1``, ``maxpool``, ``layer1.0.conv2``, ``layer2.0.downsample.0``,
``avgpool``, ``fc``). Bottlenecks stride on their 3x3 conv (ResNet v1.5, as torchvision does);
a block that changes resolution or width gets a ``downsample`` shortcut: 1x1 conv with the
block's stride, then batch norm.
"""

from __future__ import annotations

import torch
from torch import nn

from . import register
from .layers import SqueezeExcitation


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs and an identity (or ``downsample``) shortcut: ResNet-18/34."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None, se: bool = False) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.se = SqueezeExcitation(planes, max(1, planes // 16)) if se else None
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.se is not None:
            out = self.se(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand by 4, and a shortcut: ResNet-50/101/152.

    With ``se=True`` a squeeze-excite gate (reduction 16) scales the residual branch before
    the addition, as in SE-ResNet (Hu et al., 2018).
    """

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None, se: bool = False) -> None:
        super().__init__()
        width = planes
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.se = SqueezeExcitation(planes * self.expansion, planes * self.expansion // 16) if se else None
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.se is not None:
            out = self.se(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    """ResNet (He et al., 2016) as torchvision builds it: 7x7/2 stem, 3x3/2 max pool, four stages."""

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: tuple[int, int, int, int],
        num_classes: int = 1000,
        se: bool = False,
    ) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0], se=se)
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2, se=se)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2, se=se)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2, se=se)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)

    def _make_layer(self, block: type[BasicBlock] | type[Bottleneck], planes: int, blocks: int, stride: int = 1, se: bool = False) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample, se=se)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, se=se) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.maxpool(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.fc(x)


@register("resnet18", (1, 3, 224, 224), "ResNet-18 (BasicBlock, [2, 2, 2, 2]) as torchvision; layer4: r 435, j 32")
def resnet18() -> nn.Module:
    return ResNet(BasicBlock, (2, 2, 2, 2))


@register("resnet50", (1, 3, 224, 224), "ResNet-50 (Bottleneck v1.5, [3, 4, 6, 3]) as torchvision; layer4: r 427, j 32")
def resnet50() -> nn.Module:
    return ResNet(Bottleneck, (3, 4, 6, 3))


@register("resnet152", (1, 3, 224, 224), "ResNet-152 (Bottleneck v1.5, [3, 8, 36, 3]), a deep net for benchmarks; layer4: r 1451, j 32")
def resnet152() -> nn.Module:
    return ResNet(Bottleneck, (3, 8, 36, 3))


@register("se_resnet", (1, 3, 224, 224), "SE-ResNet-50: ResNet-50 with a squeeze-excite gate in every block; layer4: r 427, j 32, global")
def se_resnet() -> nn.Module:
    return ResNet(Bottleneck, (3, 4, 6, 3), se=True)
