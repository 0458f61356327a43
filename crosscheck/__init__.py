"""crosscheck: analytic and numeric receptive fields side by side.

>>> import torch.nn as nn, crosscheck
>>> net = nn.Sequential(nn.Conv2d(3, 8, 5, stride=2), nn.ReLU(), nn.Conv2d(8, 8, 3))
>>> crosscheck.assert_agree(net, (1, 3, 32, 32))   # raises AssertionError with the table if not
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from . import zoo
from .compare import assert_agree, compare, render, summary
from .hybrid import hybrid
from .reasons import Reason

try:
    __version__ = version("rfcheck")
except PackageNotFoundError:  # pragma: no cover - running from a source tree not installed
    __version__ = "0+unknown"

__all__ = ["Reason", "assert_agree", "compare", "hybrid", "render", "summary", "zoo"]
