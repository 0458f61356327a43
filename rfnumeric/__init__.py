"""rfnumeric: receptive fields measured by a gradient probe.

The numerical half of rfcheck: backpropagate from one unit of a feature map and read which input
pixels receive gradient. It needs no graph (any ``nn.Module`` works) and is exact: the default
*structural* probe makes every weight positive and every nonlinearity an identity, so nothing
cancels, saturates or underflows, and reads the support as exactly non-zero gradient.

>>> import torch.nn as nn, rfnumeric
>>> net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.Conv2d(8, 8, 3))
>>> rfnumeric.probe(net, (1, 3, 32, 32)).r
(7, 7)

- :func:`probe`: one feature map's field (r, j, start, bounds, flags, heatmap) as a
  :class:`ProbeResult`, growing the input until the field fits;
- :func:`sweep`: every feature map, as a DataFrame with ``rfarith.Report.table``'s columns;
- :func:`effective`: the effective receptive field with the real weights, an
  :class:`EffectiveField`.

How it works, module by module: ``copying`` (the private float64 copy), ``mode`` (the
``TorchFunctionMode`` every op goes through), ``surrogates`` (what each op becomes),
``layout`` (where batch and spatial axes live in each tensor), ``capture`` (finding a node),
``measure`` (one forward, seeds, one backward), ``fitting`` (supports to n / j / r / start),
``search`` (input sizing and periods), ``result`` (the records).
"""

from __future__ import annotations

from .effective import EFFECTIVE_BUDGET, effective
from .probe import GrownInputWarning, probe
from .result import EffectiveField, ProbeResult
from .sweep import sweep

__all__ = ["EFFECTIVE_BUDGET", "EffectiveField", "GrownInputWarning", "ProbeResult", "effective", "probe", "sweep"]
