"""The two Keras examples of the ``receptivefield`` README, translated to PyTorch.

Keras' ``AvgPool2D()`` is a 2x2 pool with stride 2 and 'valid' padding, ``Conv2D`` defaults to
'valid' padding and stride 1; activations are linear in the originals.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from . import register


@register("keras_minimal", (1, 3, 64, 64), "receptivefield's minimal Keras example (size 20, stride 2, offset 10)")
def keras_minimal() -> nn.Module:
    return nn.Sequential(
        OrderedDict(
            conv2d_1=nn.Conv2d(3, 32, 7),
            conv2d_2=nn.Conv2d(32, 32, 5),
            average_pooling2d_1=nn.AvgPool2d(2),
            feature_grid=nn.Conv2d(32, 64, 5),
            average_pooling2d_2=nn.AvgPool2d(2),
        )
    )


@register("keras_detailed", (1, 3, 96, 96), "receptivefield's detailed Keras example (size 34, stride 4, offset 17)")
def keras_detailed() -> nn.Module:
    return nn.Sequential(
        OrderedDict(
            conv2d_1=nn.Conv2d(3, 32, 5),
            conv2d_2=nn.Conv2d(32, 32, 3),
            average_pooling2d_1=nn.AvgPool2d(2),
            conv2d_3=nn.Conv2d(32, 64, 3),
            conv2d_4=nn.Conv2d(64, 64, 3),
            average_pooling2d_2=nn.AvgPool2d(2),
            conv2d_5=nn.Conv2d(64, 128, 3),
            feature_grid=nn.Conv2d(128, 128, 3),
        )
    )
