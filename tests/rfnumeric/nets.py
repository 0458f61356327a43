"""Small hand-made networks shared by the rfnumeric tests; answers are derived in each test."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Aligned(nn.Module):
    """Branch A: 1x1 conv stride 4. Branch B: 3x3 conv stride 2 padding 1, then 1x1 stride 2.

    A's unit m sees pixel 4m; B's first conv unit k sees 2k-1..2k+1, its second conv unit m is
    that unit 2m: 4m-1..4m+1. The sum sees 4m-1..4m+1: r = 3, j = 4, start = (-1+1+1)/2 = 0.5.
    """

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 2, 1, stride=4)
        self.b1 = nn.Conv2d(1, 2, 3, stride=2, padding=1)
        self.b2 = nn.Conv2d(2, 2, 1, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a(x) + self.b2(self.b1(x))


class Misaligned(nn.Module):
    """Branch A: F.pad(x, (0, 3, 0, 3)), then 5x5 conv stride 2: unit m sees 2m..2m+4.
    Branch B: 3x3 conv stride 2 padding 1 (unit k sees 2k-1..2k+1), then 3x3 conv padding 1
    (units m-1..m+1): 2m-3..2m+3. The sum sees 2m-3..2m+4: r = 8, j = 2, start = 1.0. In 2-D
    the two squares leave two corners of the 8x8 box unseen: holes.
    """

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 2, 5, stride=2)
        self.b1 = nn.Conv2d(1, 2, 3, stride=2, padding=1)
        self.b2 = nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a(F.pad(x, (0, 3, 0, 3))) + self.b2(self.b1(x))


class Geometry(nn.Module):
    """Asymmetric F.pad, stride, an even kernel with padding='same', ceil-mode max pooling.

    Per axis (start, r, j) through ``start' = start + (d(k-1)/2 - p_left) j``,
    ``r' = r + d(k-1) j``, ``j' = j s``:

    - w: F.pad left 1 -> (-0.5, 1, 1); conv 3 s2 -> (0.5, 3, 2); conv 4 'same' (left pad 1)
      -> (1.5, 9, 2); max pool 3 s2 ceil -> (3.5, 13, 4).
    - h: no pad -> (0.5, 1, 1); conv 3 s2 -> (1.5, 3, 2); conv 4 'same' -> (2.5, 9, 2);
      max pool 3 s2 ceil -> (4.5, 13, 4).
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 3, 3, stride=2)
        self.conv2 = nn.Conv2d(3, 3, 4, padding="same")
        self.pool = nn.MaxPool2d(3, stride=2, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(F.relu(self.conv2(F.relu(self.conv1(F.pad(x, (1, 2)))))))


class FunctionalOnly(nn.Module):
    """Only functional calls: conv 3x3 s2 (1.5, 3, 2); max_pool2d(3, 2, 1) (1.5, 7, 4); relu6 of
    conv 3x3 padding 1 (1.5, 15, 4), minus the pooled map (same units, a smaller field)."""

    def __init__(self) -> None:
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(4, 3, 3, 3))
        self.w2 = nn.Parameter(torch.randn(4, 4, 3, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(F.conv2d(x, self.w1, stride=2))
        x = F.max_pool2d(x, 3, 2, 1)
        return F.relu6(F.conv2d(x, self.w2, padding=1)) - x


class DataDependent(nn.Module):
    """A data-dependent ``if`` (torch.fx cannot trace it). On a positive input the branch with
    the 5x5 stride-2 conv runs: 3x3 conv (1.5, 3, 1), then (3.5, 7, 2)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3)
        self.b = nn.Conv2d(4, 4, 5, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.a(x)
        if y.sum() > 0:
            return self.b(y)
        return y * 2


class SqueezeExcite(nn.Module):
    """3x3 conv, then a squeeze-excite gate: global average pooling, 1x1 convs, sigmoid."""

    def __init__(self, channels: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y * torch.sigmoid(self.fc(self.pool(y)))


class Residual(nn.Module):
    """A ResNet basic block with ``out += identity`` and in-place ReLUs."""

    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += x
        return self.relu(out)


class Classifier(nn.Module):
    """Conv features, global average pooling, a linear head: the output field is global."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


class BatchMean(nn.Module):
    """Mixes batch elements (multiplies by the batch mean): probes cannot share a batch."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y * y.mean(dim=0, keepdim=True)


def conv_stack(
    depth: int, kernel: int = 3, channels: int = 1, dims: int = 2, padding: int = 0
) -> nn.Sequential:
    """``depth`` stride-1 convolutions: r = 1 + depth*(kernel-1), start = r/2 - depth*padding."""
    conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dims]
    return nn.Sequential(*[conv(channels, channels, kernel, padding=padding) for _ in range(depth)])
