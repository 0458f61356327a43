"""Plain chains: the guide's AlexNet, AlexNet as common libraries define it, VGG-16."""

from __future__ import annotations

from collections import OrderedDict

import torch
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


class AlexNet(nn.Module):
    """AlexNet as torchvision defines it (the one-GPU variant of Krizhevsky's "one weird trick").

    ``features`` / ``avgpool`` / ``classifier`` with torchvision's indices, so ``features.3`` is
    the second convolution and ``features.12`` the last max pool.
    """

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(256 * 6 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


@register(
    "alexnet_torchvision",
    (1, 3, 224, 224),
    "AlexNet as torchvision defines it (64-192-384-256-256 channels); features.12 (pool5): r 195, j 32",
)
def alexnet_torchvision() -> nn.Module:
    return AlexNet()


# torchvision's configuration "D": channel widths, "M" for a 2x2 max pool.
VGG16_CONFIG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
)


class VGG(nn.Module):
    """VGG (Simonyan and Zisserman, 2014) in torchvision's layout, without batch norm.

    ``features`` holds conv 3x3 / ReLU pairs and 2x2 max pools in one flat ``nn.Sequential``
    (for VGG-16, ``features.28`` is conv5_3 and ``features.30`` is pool5), then a 7x7 adaptive
    average pool and the three fully connected layers.
    """

    def __init__(self, config: tuple[int | str, ...] = VGG16_CONFIG, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for v in config:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(channels, int(v), kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                channels = int(v)
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


@register("vgg16", (1, 3, 224, 224), "VGG-16 (configuration D) in torchvision's layout; conv5_3 (features.28): r 196, j 16; pool5: r 212, j 32")
def vgg16() -> nn.Module:
    return VGG(VGG16_CONFIG)
