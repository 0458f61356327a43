"""Factories for the ``rfcheck`` command-line tests: one good model, broken ones, a liar.

Loaded both as ``tests/crosscheck/models/nets.py:NAME`` and ``tests.crosscheck.models.nets:NAME``.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn


def good() -> nn.Module:
    """conv 3x3 (no padding) -> ReLU -> conv 3x3 stride 2.

    On a 3x16x16 input, by the guide's recurrences (input j=1, r=1, start=0.5):
    ``0``: n = 16-2 = 14, j 1, r 3, start 0.5 + 1 = 1.5;
    ``2``: n = (14-3)//2 + 1 = 6, j 2, r 3 + 2*1 = 5, start 1.5 + 1*1 = 2.5.
    """
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=2))


def raises() -> nn.Module:
    raise RuntimeError("weights file is missing")


def not_a_module():
    return [1, 2, 3]


class SneakyConv(nn.Conv2d):
    """Says dilation 1 (its attributes, and ``forward`` is Conv2d's own) but convolves with
    dilation 2: ``_conv_forward`` is replaced, so the analytic rule for Conv2d applies and reads
    the attributes, while the probe sees the real dilated window."""

    def _conv_forward(self, input, weight, bias):
        return F.conv2d(input, weight, bias, self.stride, self.padding, 2, self.groups)


def disagree() -> nn.Module:
    """conv 3x3 padding 2 that really has dilation 2: on 16x16 the output keeps 16 units.

    Analytic (attributes: k 3, d 1, p 2): r = 3, start = 0.5 + (1 - 2) = -0.5.
    Real (k 3, d 2, p 2): r = 1 + 2*2 = 5, start = 0.5 + (2 - 2) = 0.5.
    """
    return nn.Sequential(SneakyConv(3, 4, 3, padding=2))
