"""Building blocks shared by the zoo, written after their torchvision counterparts.

Each keeps torchvision's submodule names, so the qualified node names of a zoo model read the
same as those of the torchvision model it follows.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


class ConvNormActivation(nn.Sequential):
    """Conv2d, then a norm layer, then an activation: torchvision's ``Conv2dNormActivation``.

    As a Sequential the children are ``0`` (conv), ``1`` (norm), ``2`` (activation); a missing
    norm or activation shifts the later indices down, as in torchvision. The padding is
    ``(kernel_size - 1) // 2 * dilation`` ("same" for odd kernels and stride 1).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        norm_layer: Callable[[int], nn.Module] | None = nn.BatchNorm2d,
        activation_layer: Callable[..., nn.Module] | None = nn.ReLU,
        dilation: int = 1,
        bias: bool | None = None,
        padding: int | None = None,
    ) -> None:
        if padding is None:
            padding = (kernel_size - 1) // 2 * dilation
        if bias is None:
            bias = norm_layer is None
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation=dilation, groups=groups, bias=bias)
        ]
        if norm_layer is not None:
            layers.append(norm_layer(out_channels))
        if activation_layer is not None:
            layers.append(activation_layer(inplace=True))
        super().__init__(*layers)


class SqueezeExcitation(nn.Module):
    """Squeeze-and-excitation gate (Hu et al., 2018): torchvision's ``ops.SqueezeExcitation``.

    Global average pool to one unit, 1x1 conv down to ``squeeze_channels``, activation, 1x1 conv
    back up, sigmoid, and a broadcast multiply with the input: every output unit keeps its local
    field and also depends, through the gate, on the whole input.
    """

    def __init__(
        self,
        input_channels: int,
        squeeze_channels: int,
        activation: Callable[..., nn.Module] = nn.ReLU,
        scale_activation: Callable[..., nn.Module] = nn.Sigmoid,
    ) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(input_channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, input_channels, 1)
        self.activation = activation()
        self.scale_activation = scale_activation()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.avgpool(x)
        scale = self.fc1(scale)
        scale = self.activation(scale)
        scale = self.fc2(scale)
        scale = self.scale_activation(scale)
        return scale * x


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW map (per position): torchvision's ``LayerNorm2d``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class Permute(nn.Module):
    """``torch.permute`` as a module, for use inside ``nn.Sequential`` (torchvision's ``ops.Permute``)."""

    def __init__(self, dims: list[int]) -> None:
        super().__init__()
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.permute(x, self.dims)
