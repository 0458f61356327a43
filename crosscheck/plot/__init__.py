"""Pictures of receptive fields. Every function returns a matplotlib Figure and never shows it.

- :func:`rf_grid`: three units' fields as rectangles on the input image, analytic and probed;
- :func:`probe_heatmap`: the probe's structural and effective gradient maps of one unit, with
  the analytic bounds;
- :func:`growth`: r and j feature map by feature map, analytic lines and numeric markers;
- :func:`erf_profile`: the effective field's mass profile against the structural size;
- :func:`support`: the exact set of pixels a unit sees (``ReceptiveField.mask``), with its box;
- :func:`read_image`: a PNG (or, with Pillow, JPEG ...) file resized to the input, for ``rf_grid``;
- :func:`test_card`: the synthetic default image.

>>> import io, torch.nn as nn
>>> from crosscheck import plot
>>> fig = plot.rf_grid(nn.Conv2d(3, 8, 5, stride=2), (1, 3, 32, 32), numeric=False)
>>> fig.savefig(io.BytesIO(), format="png", dpi=50)
"""

from __future__ import annotations

from .card import test_card
from .common import read_image
from .grid import rf_grid
from .heatmap import erf_profile, probe_heatmap
from .layers import growth
from .support import support

test_card.__test__ = False  # type: ignore[attr-defined]  # a picture, not a pytest test

__all__ = ["erf_profile", "growth", "probe_heatmap", "read_image", "rf_grid", "support", "test_card"]
