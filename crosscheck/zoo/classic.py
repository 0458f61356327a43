"""Plain chains: the guide's AlexNet, AlexNet as common libraries define it, VGG-16."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from . import register


@register("alexnet", (1, 3, 227, 227), "AlexNet as in the receptive-field guide: fc6 as a 6x6 conv, fc7 as a 1x1 conv")
def guide_alexnet() -> nn.Module:
    """The guide's AlexNet table: conv 11/4/0, pool 3/2, conv 5/1/2, pool 3/2, conv 3/1/1 x3, pool 3/2."""
    return nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(3, 96, 11, stride=4),
            relu1=nn.ReLU(inplace=True),
            pool1=nn.MaxPool2d(3, stride=2),
            conv2=nn.Conv2d(96, 256, 5, padding=2),
            relu2=nn.ReLU(inplace=True),
            pool2=nn.MaxPool2d(3, stride=2),
            conv3=nn.Conv2d(256, 384, 3, padding=1),
            relu3=nn.ReLU(inplace=True),
            conv4=nn.Conv2d(384, 384, 3, padding=1),
            relu4=nn.ReLU(inplace=True),
            conv5=nn.Conv2d(384, 256, 3, padding=1),
            relu5=nn.ReLU(inplace=True),
            pool5=nn.MaxPool2d(3, stride=2),
            fc6=nn.Conv2d(256, 4096, 6),
            relu6=nn.ReLU(inplace=True),
            fc7=nn.Conv2d(4096, 4096, 1),
        )
    )
