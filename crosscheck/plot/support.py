"""``support``: the exact set of input pixels a unit sees, with its box."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import MaxNLocator
from torch import nn

from rfarith import ReceptiveField, Report

from .common import (
    UNIT_COLOURS,
    Progress,
    analysed,
    check_node_arg,
    field_title,
    new_axes,
    node_field,
    span_text,
    unit_text,
)
from .grid import grid_units, unclipped, view_capped, view_limits

Span = tuple[int, int]


@dataclass(frozen=True)
class Support:
    """One unit's exact support (``mask``, over the input), its box on the input (``box``: the
    hull of the mask, ``None`` if it sees nothing), its unclipped box and the pixels inside the
    box that it does not see."""

    label: str
    unit: tuple[int, ...]
    colour: str
    mask: np.ndarray
    box: tuple[Span, ...] | None
    full: tuple[Span, ...] | None

    @property
    def unseen(self) -> int:
        if self.box is None:
            return 0
        inside = self.mask[tuple(slice(lo, hi + 1) for lo, hi in self.box)]
        return int(inside.size - inside.sum())

    @property
    def box_size(self) -> int:
        return 0 if self.box is None else math.prod(hi - lo + 1 for lo, hi in self.box)


def unit_support(rf: ReceptiveField, label: str, unit: tuple[int, ...], colour: str) -> Support:
    """``rf.mask(unit)`` and its boxes.

    >>> import torch.nn as nn, rfarith
    >>> rf = rfarith.analyze(nn.Conv2d(1, 1, 3, dilation=2), (1, 1, 9, 9)).output
    >>> s = unit_support(rf, "centre", (2, 2), "red")
    >>> s.box, s.unseen, s.box_size
    (((2, 6), (2, 6)), 16, 25)
    """
    mask = rf.mask(unit)
    box = None
    if mask.any():
        box = tuple(
            (int(seen.min()), int(seen.max()))
            for seen in (np.flatnonzero(mask.any(axis=tuple(b for b in range(mask.ndim) if b != a))) for a in range(mask.ndim))
        )
    return Support(label, tuple(unit), colour, mask, box, unclipped(rf, unit))


def support_text(s: Support, axes: Sequence[str]) -> str:
    """``'centre (3, 3): 9 pixels seen, 16 of the 25 in its box h 1–5, w 1–5 unseen'``."""
    if s.box is None:
        return f"{s.label} {unit_text(s.unit)}: sees no pixel of this input"
    seen = int(s.mask.sum())
    return f"{s.label} {unit_text(s.unit)}: {seen:,} pixels seen, {s.unseen:,} of the {s.box_size:,} in its box {span_text(axes, s.box)} unseen"


def support(
    model_or_report: nn.Module | Report,
    input_shape: Sequence[int] | None = None,
    node: str | None = None,
    corners: bool = False,
    ax: Axes | None = None,
    progress: Progress | None = None,
) -> Figure:
    """The exact support of one unit (``ReceptiveField.mask``): every input pixel it sees,
    filled, on the input grid, with its box (what its field's hull covers of the input, solid)
    and the unclipped box (dashed) where that reaches past the border. Fields are not always
    rectangles: holes (dilation, strides larger than kernels) and factorised 1xn / nx1 branches
    leave pixels inside the box unseen; the title counts them.

    The centre unit (``n // 2``) is drawn; ``corners`` adds the first and last units. ``node``
    defaults as in :func:`rf_grid`. ``model_or_report``: a model with ``input_shape`` (analysed
    as ``rfcheck report`` does, ``crosscheck.hybrid``) or a report. A 3-D input shows the depth
    slice through the centre unit's field (the count covers every slice); a 1-D input a strip.
    ``progress(done, total, what)`` follows the analysis (as in ``crosscheck.hybrid``).

    >>> import torch, torch.nn as nn
    >>> class Plus(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.a, self.b = nn.Conv2d(1, 1, (1, 5), padding=(0, 2)), nn.Conv2d(1, 1, (5, 1), padding=(2, 0))
    ...     def forward(self, x):
    ...         return self.a(x) + self.b(x)
    >>> fig = support(Plus(), (1, 1, 16, 16))
    >>> fig.axes[0].get_title().splitlines()[1]
    'centre (8, 8): 9 pixels seen, 16 of the 25 in its box h 6–10, w 6–10 unseen'
    """
    check_node_arg(node)
    _, rep = analysed(model_or_report, input_shape, progress)
    rf = node_field(rep, node)
    units = grid_units(rf.n)
    if not corners:
        units = [units[1]]
    colours = [UNIT_COLOURS[1]] if not corners else list(UNIT_COLOURS)
    supports = [unit_support(rf, label, unit, colour) for (label, unit), colour in zip(units, colours)]
    sizes = tuple(rep.input_shape[2:])
    fig, ax = new_axes(ax, (8.0, 8.5) if len(sizes) > 1 else (10.0, 4.0))
    title = [field_title(rf), *(support_text(s, rf.axes) for s in supports)]
    if len(sizes) == 1:
        capped = draw_support_1d(ax, rf, supports)
    else:
        depth = None
        if len(sizes) == 3:
            centre = supports[0].full
            depth = min(max(int((centre[0][0] + centre[0][1]) // 2), 0), sizes[0] - 1) if centre else sizes[0] // 2
            title.append(f"depth slice {rf.axes[0]} = {depth} (the counts cover every slice)")
        capped = draw_support_2d(ax, rf, supports, depth)
    if capped:
        title.append(capped)
    ax.set_title("\n".join(title), fontsize=9)
    handles = [Patch(fc=to_rgba(s.colour, 0.55), ec="none", label=f"{s.label} {unit_text(s.unit)}: pixels it sees") for s in supports]
    handles.append(Line2D([], [], color="0.2", lw=2, label="its box on the input (hull)"))
    if any(s.full is not None and s.full != s.box for s in supports):
        handles.append(Line2D([], [], color="0.2", lw=1.2, ls="--", label="box unclipped (beyond the input)"))
    handles.append(Line2D([], [], color="black", lw=1.5, label="input border"))
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, fontsize=8, frameon=False)
    fig.rfcheck_problems = []
    return fig


def _limits(size: int, spans: list[Span]) -> tuple[float, float, bool]:
    low, high = view_limits(size, spans)
    return low, high, view_capped(size, spans)


def draw_support_2d(ax: Axes, rf: ReceptiveField, supports: list[Support], depth: int | None) -> str:
    """The masks as coloured pixels over a light input grid, boxes on top; a note if the view
    does not show the whole unclipped boxes."""
    h, w = len(rf.extent) - 2, len(rf.extent) - 1
    height, width = rf.extent[h], rf.extent[w]
    layer = np.ones((height, width, 4))
    layer[..., :3] = 0.96
    for s in supports:
        mask = s.mask if depth is None else s.mask[depth]
        layer[mask] = to_rgba(s.colour, 0.55 if len(supports) > 1 else 0.8)
    ax.imshow(layer, extent=(0, width, height, 0), interpolation="nearest", zorder=0)
    if max(height, width) <= 96:  # the pixel grid, while its lines stay apart
        ax.set_xticks(np.arange(width + 1), minor=True)
        ax.set_yticks(np.arange(height + 1), minor=True)
        ax.grid(True, which="minor", color="0.8", lw=0.4)
    ax.add_patch(Rectangle((0, 0), width, height, fill=False, ec="black", lw=1.5, zorder=3))
    for s in supports:
        for spans, style in ((s.full, {"lw": 1.2, "ls": "--"}), (s.box, {"lw": 2.0})):
            if spans is not None:
                (top, bottom), (left, right) = spans[h], spans[w]
                ax.add_patch(Rectangle((left, top), right - left + 1, bottom - top + 1, fill=False, ec=s.colour, zorder=4, **style))
    full = [s.full for s in supports if s.full is not None]
    x_low, x_high, x_cut = _limits(width, [f[w] for f in full])
    y_low, y_high, y_cut = _limits(height, [f[h] for f in full])
    ax.set_xlim(x_low, x_high)
    ax.set_ylim(y_high, y_low)
    ax.set_aspect("equal")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(f"{rf.axes[w]} (pixel index)")
    ax.set_ylabel(f"{rf.axes[h]} (pixel index)")
    return "view capped: the dashed boxes reach further" if x_cut or y_cut else ""


def draw_support_1d(ax: Axes, rf: ReceptiveField, supports: list[Support]) -> str:
    """Each unit's support as filled pixels on a lane of its own."""
    length = rf.extent[0]
    for k, s in enumerate(supports):
        y = -k
        seen = np.flatnonzero(s.mask)
        ax.bar(seen + 0.5, 0.6, width=1.0, bottom=y - 0.3, color=to_rgba(s.colour, 0.8), lw=0)
        if s.box is not None:
            (lo, hi), = s.box
            ax.add_patch(Rectangle((lo, y - 0.35), hi - lo + 1, 0.7, fill=False, ec=s.colour, lw=2.0))
        if s.full is not None:
            (lo, hi), = s.full
            ax.hlines(y, lo, hi + 1, colors=s.colour, lw=1.2, ls="--", zorder=0)
    ax.vlines([0, length], -len(supports) + 0.5, 0.5, colors="black", lw=1.5)
    full = [s.full[0] for s in supports if s.full is not None]
    low, high, cut = _limits(length, full)
    ax.set_xlim(low, high)
    ax.set_ylim(-len(supports) + 0.4, 0.6)
    ax.set_yticks([-k for k in range(len(supports))], [s.label for s in supports])
    ax.set_xlabel(f"{rf.axes[0]} (pixel index)")
    return "view capped: the dashed boxes reach further" if cut else ""
