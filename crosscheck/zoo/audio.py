"""Audio: a WaveNet-style stack of dilated causal 1-D convs (van den Oord et al., 2016).

Every conv is causal: it is padded on the left only (``F.pad(x, (left, 0))``, then a ``Conv1d``
with padding 0), so a unit sees samples at or before its own position and its field ends at
the unit itself. The front conv (kernel 2) is followed by two stacks of residual blocks with
dilations 1, 2, 4, .., 512 (kernel 2, each adding its dilation to the field): the gated
activation ``tanh(filter) * sigmoid(gate)``, a 1x1 residual conv added to the block's input and
a 1x1 skip conv. The skips are summed, then ReLU, 1x1, ReLU, 1x1 to the output classes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import register

DILATIONS = tuple(2**i for i in range(10)) * 2  # 1, 2, 4, .., 512, twice


class ResidualBlock(nn.Module):
    """A gated dilated causal conv (kernel 2) with 1x1 residual and skip convs; returns both."""

    def __init__(self, residual_channels: int, skip_channels: int, dilation: int) -> None:
        super().__init__()
        self.dilation = dilation
        self.filter = nn.Conv1d(residual_channels, residual_channels, 2, dilation=dilation)
        self.gate = nn.Conv1d(residual_channels, residual_channels, 2, dilation=dilation)
        self.residual = nn.Conv1d(residual_channels, residual_channels, 1)
        self.skip = nn.Conv1d(residual_channels, skip_channels, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        padded = F.pad(x, (self.dilation, 0))
        z = torch.tanh(self.filter(padded)) * torch.sigmoid(self.gate(padded))
        return x + self.residual(z), self.skip(z)


class WaveNet(nn.Module):
    """``front`` (causal conv, kernel 2), ``blocks.0`` .. ``blocks.19``, then ``head`` on the skip sum."""

    def __init__(self, residual_channels: int = 32, skip_channels: int = 64, classes: int = 256, dilations: tuple[int, ...] = DILATIONS) -> None:
        super().__init__()
        self.front = nn.Conv1d(1, residual_channels, 2)
        self.blocks = nn.ModuleList(ResidualBlock(residual_channels, skip_channels, d) for d in dilations)
        self.head = nn.Sequential(
            nn.ReLU(),
            nn.Conv1d(skip_channels, skip_channels, 1),
            nn.ReLU(),
            nn.Conv1d(skip_channels, classes, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.front(F.pad(x, (1, 0)))
        skips = None
        for block in self.blocks:
            x, skip = block(x)
            skips = skip if skips is None else skips + skip
        return self.head(skips)


@register("wavenet", (1, 1, 16000), "WaveNet-style causal stack: front conv k2, 2 x dilations 1..512 (k2), gated, residual and skip 1x1; output: r 2048, j 1, causal (sees samples m-2047..m)")
def wavenet() -> nn.Module:
    return WaveNet()
