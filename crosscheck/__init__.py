"""crosscheck: analytic and numeric receptive fields side by side.

>>> import torch.nn as nn, crosscheck
>>> net = nn.Sequential(nn.Conv2d(3, 8, 5, stride=2), nn.ReLU(), nn.Conv2d(8, 8, 3))
>>> crosscheck.assert_agree(net, (1, 3, 32, 32))   # raises AssertionError with the table if not
"""

from __future__ import annotations

from . import zoo
from .compare import assert_agree, compare, render, summary
from .hybrid import hybrid

__all__ = ["assert_agree", "compare", "hybrid", "render", "summary", "zoo"]
