"""A small model to try rfcheck on: a strided stem, a residual block, a dilated head."""

import torch.nn as nn


class SmallNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 16, kernel_size=5, stride=2, padding=2), nn.BatchNorm2d(16), nn.ReLU()
        )
        self.block = nn.Sequential(
            nn.Conv2d(16, 16, kernel_size=3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 16, kernel_size=3, padding=1),
        )
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Conv2d(16, 8, kernel_size=3, dilation=2, padding=2)

    def forward(self, x):
        x = self.stem(x)
        x = x + self.block(x)  # a residual add: rfcheck merges the two branches' fields
        return self.head(self.pool(x))


def build():
    return SmallNet()
