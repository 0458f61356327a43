"""rfnumeric: receptive fields measured by a gradient probe.

The numerical half of rfcheck: backpropagate from one unit of a feature map and read which input
pixels receive gradient. It needs no graph (any ``nn.Module`` works) and is exact: the default
*structural* probe makes every weight positive and every nonlinearity an identity, so nothing
cancels, saturates or underflows, and reads the support as exactly non-zero gradient.

>>> import torch.nn as nn, rfnumeric
>>> net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.Conv2d(8, 8, 3))
>>> rfnumeric.probe(net, (1, 3, 32, 32)).r
(7, 7)
"""

from __future__ import annotations

from .effective import effective
from .probe import probe
from .result import EffectiveField, ProbeResult
from .sweep import sweep

__all__ = ["EffectiveField", "ProbeResult", "effective", "probe", "sweep"]
