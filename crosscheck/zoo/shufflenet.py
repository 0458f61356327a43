"""ShuffleNet-v2 (Ma et al., 2018), x1.0, as torchvision builds it.

Module names read as torchvision's: ``conv1``, ``maxpool``, ``stage2`` .. ``stage4`` (one
Sequential of units each), ``conv5`` and ``fc``; in a unit, ``branch1`` (stride-2 units only)
and ``branch2``. A stride-1 unit splits its channels in two (``x.chunk(2, dim=1)``), passes one
half through and transforms the other; a stride-2 unit feeds the whole input to both branches.
Either way the halves are concatenated and the channels shuffled (a 5-D ``view``, a
``transpose`` of the group and channel axes and a ``view`` back), which moves no pixel.
"""

from __future__ import annotations

import torch
from torch import nn

from . import register


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave the channels of ``groups`` groups (torchvision's ``channel_shuffle``)."""
    batchsize, num_channels, height, width = x.size()
    channels_per_group = num_channels // groups
    x = x.view(batchsize, groups, channels_per_group, height, width)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(batchsize, num_channels, height, width)


def depthwise_conv(channels: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(channels, channels, 3, stride, 1, bias=False, groups=channels)


class InvertedResidual(nn.Module):
    """ShuffleNet-v2 unit: ``branch2`` is 1x1, 3x3 depthwise (carrying the stride), 1x1; a
    stride-2 unit adds ``branch1`` (3x3 depthwise with the stride, 1x1) on the whole input."""

    def __init__(self, inp: int, oup: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        branch_features = oup // 2
        if stride == 1 and inp != 2 * branch_features:
            raise ValueError(f"a stride-1 unit keeps its width: got {inp} in, {oup} out")
        if stride > 1:
            self.branch1 = nn.Sequential(
                depthwise_conv(inp, stride),
                nn.BatchNorm2d(inp),
                nn.Conv2d(inp, branch_features, 1, 1, 0, bias=False),
                nn.BatchNorm2d(branch_features),
                nn.ReLU(inplace=True),
            )
        else:
            self.branch1 = nn.Sequential()
        self.branch2 = nn.Sequential(
            nn.Conv2d(inp if stride > 1 else branch_features, branch_features, 1, 1, 0, bias=False),
            nn.BatchNorm2d(branch_features),
            nn.ReLU(inplace=True),
            depthwise_conv(branch_features, stride),
            nn.BatchNorm2d(branch_features),
            nn.Conv2d(branch_features, branch_features, 1, 1, 0, bias=False),
            nn.BatchNorm2d(branch_features),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    """Stem (3x3/2 conv, 3x3/2 max pool), three stages of units (the first of each with stride
    2), a 1x1 ``conv5``, the global mean and ``fc``."""

    def __init__(self, stages_repeats: tuple[int, ...] = (4, 8, 4), stages_out_channels: tuple[int, ...] = (24, 116, 232, 464, 1024), num_classes: int = 1000) -> None:
        super().__init__()
        input_channels = stages_out_channels[0]
        self.conv1 = nn.Sequential(
            nn.Conv2d(3, input_channels, 3, 2, 1, bias=False),
            nn.BatchNorm2d(input_channels),
            nn.ReLU(inplace=True),
        )
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        for i, (repeats, output_channels) in enumerate(zip(stages_repeats, stages_out_channels[1:]), start=2):
            units = [InvertedResidual(input_channels, output_channels, 2)]
            units += [InvertedResidual(output_channels, output_channels, 1) for _ in range(repeats - 1)]
            setattr(self, f"stage{i}", nn.Sequential(*units))
            input_channels = output_channels
        output_channels = stages_out_channels[-1]
        self.conv5 = nn.Sequential(
            nn.Conv2d(input_channels, output_channels, 1, 1, 0, bias=False),
            nn.BatchNorm2d(output_channels),
            nn.ReLU(inplace=True),
        )
        self.fc = nn.Linear(output_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = self.maxpool(x)
        x = self.stage2(x)
        x = self.stage3(x)
        x = self.stage4(x)
        x = self.conv5(x)
        x = x.mean([2, 3])  # global pool
        return self.fc(x)


@register("shufflenet_v2", (1, 3, 224, 224), "ShuffleNet-v2 x1.0 as torchvision (channel split, depthwise 3x3, channel shuffle); conv5: r 527, j 32")
def shufflenet_v2() -> nn.Module:
    return ShuffleNetV2()
