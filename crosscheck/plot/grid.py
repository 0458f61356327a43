"""``rf_grid``: three units' receptive fields as rectangles on the input image."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from torch import nn

import rfnumeric
from rfarith import ReceptiveField, Report

from .common import (
    UNIT_COLOURS,
    Progress,
    analysed,
    as_image,
    check_node_arg,
    field_title,
    measurable_field,
    new_axes,
    node_field,
    probe_node,
    span_text,
    tell,
    unit_text,
)

Span = tuple[int, int]
MAX_ANCHORS = 24  # anchors drawn per axis at most (every k-th unit beyond)
VIEW_BEYOND = 1.5  # how far past each border (in input sizes) the view may reach to show whole fields


@dataclass(frozen=True)
class UnitBox:
    """One unit's field per axis: what it really sees of the input (``real``; ``None`` on an axis
    where it sees nothing), its unclipped periodic field (``full``; ``None`` if it has none), and
    the probe's measured bounds clipped to the input (``probe``; ``None`` if not probed or it
    saw nothing of this input)."""

    label: str
    unit: tuple[int, ...]
    colour: str
    real: tuple[Span | None, ...]
    full: tuple[Span, ...] | None
    probe: tuple[Span, ...] | None = None
    probed: bool = False


def grid_units(n: Sequence[int]) -> list[tuple[str, tuple[int, ...]]]:
    """The three units a grid shows: first, centre (``n // 2``, as the probe picks it) and last;
    for a 3-D map all three at the central depth index.

    >>> grid_units((6, 6))
    [('top-left', (0, 0)), ('centre', (3, 3)), ('bottom-right', (5, 5))]
    """
    n = tuple(n)
    first, centre, last = tuple(0 for _ in n), tuple(k // 2 for k in n), tuple(k - 1 for k in n)
    if len(n) == 3:
        first, last = (centre[0], *first[1:]), (centre[0], *last[1:])
    labels = ("first", "centre", "last") if len(n) == 1 else ("top-left", "centre", "bottom-right")
    return list(zip(labels, (first, centre, last)))


def unclipped(rf: ReceptiveField, unit: tuple[int, ...]) -> tuple[Span, ...] | None:
    """``rf.bounds(unit)``, or ``None`` for a unit whose periodic field sees nothing."""
    try:
        return rf.bounds(unit)
    except ValueError:
        return None


def clip(spans: Sequence[Span], sizes: Sequence[int]) -> tuple[Span, ...] | None:
    """Per-axis spans cut to pixels ``0 .. size-1``; ``None`` if nothing is left on some axis.

    >>> clip(((-3, 4), (10, 40)), (32, 32))
    ((0, 4), (10, 31))
    """
    out = []
    for (lo, hi), size in zip(spans, sizes):
        lo, hi = max(lo, 0), min(hi, size - 1)
        if lo > hi:
            return None
        out.append((lo, hi))
    return tuple(out)


def anchor_centres(rf: ReceptiveField, axis: int, most: int = MAX_ANCHORS) -> list[float]:
    """Centres of the (unclipped) fields of every k-th unit along ``axis``, at most ``most``.

    >>> import torch.nn as nn, rfarith
    >>> rf = rfarith.analyze(nn.Conv2d(1, 1, 3, stride=2), (1, 1, 9, 9)).output
    >>> anchor_centres(rf, 0)
    [1.5, 3.5, 5.5, 7.5]
    """
    step = math.ceil(rf.n[axis] / most)
    base = [k // 2 for k in rf.n]
    centres = []
    for m in range(0, rf.n[axis], step):
        spans = unclipped(rf, tuple(m if a == axis else b for a, b in enumerate(base)))
        if spans is not None:
            lo, hi = spans[axis]
            centres.append((lo + hi + 1) / 2)
    return centres


def analytic_boxes(rf: ReceptiveField) -> list[UnitBox]:
    """The three units' real and unclipped fields."""
    return [
        UnitBox(label, unit, colour, rf.real_bounds(unit), unclipped(rf, unit))
        for (label, unit), colour in zip(grid_units(rf.n), UNIT_COLOURS)
    ]


def with_probe(
    model: nn.Module,
    rep: Report,
    rf: ReceptiveField,
    boxes: list[UnitBox],
    shape: tuple[int, ...],
    progress: Progress | None = None,
) -> tuple[list[UnitBox], str]:
    """Probe each box's unit and add its measured bounds, clipped to the input.

    The probe runs at ``shape``, :func:`~crosscheck.plot.common.measurable_field`'s (the input
    itself when the field fits in it). A larger input keeps pixel 0 where it was, so a unit index names the same
    field there, and its bounds cut to the input compare with the real field. Returns the
    boxes and a note naming the probe's input size when it differs. ``progress(done, total,
    what)`` follows the units probed."""
    name = probe_node(rep, rf.node)
    sizes = tuple(rep.input_shape[2:])
    out, ran = [], set()
    for done, box in enumerate(boxes):
        tell(progress, done, len(boxes), f"unit {box.label} {unit_text(box.unit)}")
        result = rfnumeric.probe(model, shape, node=name, unit=box.unit)
        ran.add(tuple(result.input_shape[2:]))
        out.append(replace(box, probe=clip(result.bounds, sizes), probed=True))
    tell(progress, len(boxes), len(boxes), "")
    grown = sorted(s for s in ran if s != sizes)
    note = f"probe ran at {', '.join('×'.join(map(str, s)) for s in grown)} (cut to the input)" if grown else ""
    return out, note


def disagreements(boxes: list[UnitBox], axes: Sequence[str]) -> list[str]:
    """One line per drawn unit whose probed bounds differ from the analytic ones."""
    found = []
    for box in boxes:
        real = None if any(s is None for s in box.real) else tuple(box.real)
        if box.probed and box.probe != real:
            seen = span_text(axes, box.probe) if box.probe else "nothing of this input"
            found.append(f"{box.label} {unit_text(box.unit)}: analytic {span_text(axes, box.real)}, probe {seen}")
    return found


def unit_label(box: UnitBox, axes: Sequence[str]) -> str:
    """Legend text: the unit, what it sees, and what the probe saw if that differs."""
    text = f"{box.label} {unit_text(box.unit)}: {span_text(axes, box.real)}"
    if not box.probed:
        return text
    real = None if any(s is None for s in box.real) else tuple(box.real)
    if box.probe == real:
        return text + "; probe: same"
    return text + f"; probe: {span_text(axes, box.probe) if box.probe else 'nothing of this input'}"


def view_limits(size: int, spans: Sequence[Span | None]) -> tuple[float, float]:
    """The axis range shown: the input and the whole of every drawn (unclipped) field, so that
    no box is cut by the axes, but at most ``VIEW_BEYOND`` input sizes past each border (a
    field far larger than the input would shrink the input to a dot; :func:`view_capped` tells
    when that happens), with a small margin.

    >>> view_limits(100, [(-10, 40), None])
    (-12.5, 102.5)
    >>> view_limits(100, [(-1000, 40)])  # capped
    (-152.5, 102.5)
    """
    drawn = [s for s in spans if s is not None]
    low = max(min([0, *(lo for lo, _ in drawn)]), -VIEW_BEYOND * size)
    high = min(max([size, *(hi + 1 for _, hi in drawn)]), (1 + VIEW_BEYOND) * size)
    margin = 0.5 + 0.02 * size
    return low - margin, high + margin


def view_capped(size: int, spans: Sequence[Span | None]) -> bool:
    """Whether :func:`view_limits` cuts some drawn field (it reaches more than ``VIEW_BEYOND``
    input sizes past the border).

    >>> view_capped(100, [(-10, 40)]), view_capped(100, [(-1000, 40)])
    (False, True)
    """
    drawn = [s for s in spans if s is not None]
    return any(lo < -VIEW_BEYOND * size or hi + 1 > (1 + VIEW_BEYOND) * size for lo, hi in drawn)


def legend_handles(boxes: list[UnitBox], axes: Sequence[str], anchors_every: tuple[int, ...]) -> list[Any]:
    """One legend entry per unit (with what it sees), then the line styles, dots and border."""
    handles: list[Any] = [Line2D([], [], color=b.colour, lw=2.2, label=unit_label(b, axes)) for b in boxes]
    handles.append(Line2D([], [], color="0.3", lw=1.2, ls="--", label="field beyond the input (unclipped)"))
    if any(b.probed for b in boxes):
        handles.append(Patch(facecolor="none", edgecolor="0.3", hatch="///", ls=":", label="numeric probe's support"))
    every = "every unit" if all(k == 1 for k in anchors_every) else f"every {'×'.join(map(str, anchors_every))} units"
    handles.append(Line2D([], [], ls="", marker="o", mfc="white", mec="black", ms=4, label=f"field centres ({every})"))
    handles.append(Line2D([], [], color="black", lw=1.5, label="input border"))
    return handles


# ---- drawing ---------------------------------------------------------------------------------
def draw_boxes_2d(ax: Axes, boxes: list[UnitBox], h: int, w: int) -> None:
    """Rectangles over axes ``h`` (rows, y) and ``w`` (columns, x) of each box's spans."""

    def rect(spans: Sequence[Span], **style: Any) -> Rectangle:
        (top, bottom), (left, right) = spans[h], spans[w]
        return Rectangle((left, top), right - left + 1, bottom - top + 1, **style)

    for box in boxes:
        if box.full is not None:
            ax.add_patch(rect(box.full, fill=False, ec=box.colour, lw=1.2, ls="--", alpha=0.9, zorder=4))
        if box.probe is not None:
            ax.add_patch(rect(box.probe, fc=to_rgba(box.colour, 0.12), ec=box.colour, hatch="///", lw=1.5, ls=":", zorder=4.5))
        if all(s is not None for s in box.real):
            ax.add_patch(rect(box.real, fill=False, ec=box.colour, lw=2.2, zorder=5))


def draw_2d(ax: Axes, rf: ReceptiveField, boxes: list[UnitBox], image: np.ndarray, h: int, w: int) -> bool:
    """The image, border, anchors and boxes for a 2-D (or a slice of a 3-D) input; whether the
    view had to cut some dashed box (:func:`view_capped`)."""
    height, width = rf.extent[h], rf.extent[w]
    ax.imshow(image, extent=(0, width, height, 0), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest", zorder=0)
    ax.add_patch(Rectangle((0, 0), width, height, fill=False, ec="black", lw=1.5, zorder=3.5))  # under the fields
    ys, xs = np.meshgrid(anchor_centres(rf, h), anchor_centres(rf, w), indexing="ij")
    ax.scatter(xs.ravel(), ys.ravel(), s=12, c="white", edgecolors="black", linewidths=0.4, zorder=3)
    draw_boxes_2d(ax, boxes, h, w)
    spans = [s for b in boxes for s in (b.full, b.probe, b.real) if s is not None and None not in s]
    ax.set_xlim(*view_limits(width, [s[w] for s in spans]))
    bottom, top = view_limits(height, [s[h] for s in spans])
    ax.set_ylim(top, bottom)  # row 0 at the top, as images are shown
    capped = view_capped(width, [s[w] for s in spans]) or view_capped(height, [s[h] for s in spans])
    ax.set_aspect("equal")
    ax.set_xlabel(f"{rf.axes[w]} (pixels)")
    ax.set_ylabel(f"{rf.axes[h]} (pixels)")
    return capped


def draw_strip(ax: Axes, rf: ReceptiveField, boxes: list[UnitBox], image: np.ndarray) -> bool:
    """A 1-D input as a strip, the units' intervals on lanes below it; whether the view had to
    cut some dashed interval."""
    length = rf.extent[0]
    strip = image[None] if image.ndim == 2 else image[None, :, None].repeat(3, axis=2)
    ax.imshow(strip, extent=(0, length, 0, 1), aspect="auto", interpolation="nearest", zorder=0)
    ax.add_patch(Rectangle((0, 0), length, 1, fill=False, ec="black", lw=1.5, zorder=6))
    lanes = [-0.6 - 0.9 * k for k in range(len(boxes))]
    ax.vlines([0, length], lanes[-1] - 0.4, 1, colors="black", lw=0.8, ls=":", zorder=1)
    centres = anchor_centres(rf, 0)
    ax.scatter(centres, [0.5] * len(centres), s=12, c="white", edgecolors="black", linewidths=0.4, zorder=3)
    for box, y in zip(boxes, lanes):
        if box.full is not None:
            ax.hlines(y, box.full[0][0], box.full[0][1] + 1, colors=box.colour, lw=1.2, ls="--", zorder=4)
        if box.real[0] is not None:
            ax.hlines(y, box.real[0][0], box.real[0][1] + 1, colors=box.colour, lw=4, zorder=5)
        if box.probe is not None:
            (lo, hi), = box.probe
            ax.add_patch(Rectangle((lo, y - 0.38), hi - lo + 1, 0.2, fc=to_rgba(box.colour, 0.12), ec=box.colour, hatch="///", lw=1.2, ls=":", zorder=4))
    spans = [s[0] for b in boxes for s in (b.full, b.probe, b.real) if s is not None and None not in s]
    ax.set_xlim(*view_limits(length, spans))
    ax.set_ylim(lanes[-1] - 0.5, 1.15)
    ax.set_yticks([0.5, *lanes], ["input", *(b.label for b in boxes)])
    ax.set_xlabel(f"{rf.axes[0]} (pixels)")
    return view_capped(length, spans)


def rf_grid(
    model_or_report: nn.Module | Report,
    input_shape: Sequence[int] | None = None,
    node: str | None = None,
    image: Any = None,
    numeric: bool | None = None,
    ax: Axes | None = None,
    progress: Progress | None = None,
) -> Figure:
    """The receptive fields of one feature map drawn on the input, like the ``receptivefield``
    package's grid plot.

    Three units (top-left, centre ``n // 2`` and bottom-right; for 1-D inputs first, centre,
    last) get a colour each: a solid rectangle is what the unit really sees of this input
    (``rf.real_bounds``), a dashed one its unclipped field where that reaches past the border.
    White dots mark the field centres of the map's units (every k-th unit on big maps), the
    black frame the input border. With ``numeric`` the gradient probe measures the same three
    units and their support is drawn hatched in the same colour, so a disagreement shows; the
    legend says whether each agrees.

    ``model_or_report`` is a model (with ``input_shape``) or an :class:`rfarith.Report`
    (analytic only: ``numeric`` must not be true). ``numeric`` defaults to true for a model.
    ``node`` defaults to the model output if it has several units, else the deepest map that
    does. ``image`` is drawn under the fields (its spatial size must be the input's); ``None``
    uses the test card. A 1-D input is a strip with the units on lanes below; a 3-D input shows
    its central depth slice. ``ax``: draw into this axes instead of a new figure.
    ``progress(done, total, what)`` follows the analysis and the units probed.

    >>> import torch.nn as nn
    >>> fig = rf_grid(nn.Conv2d(3, 8, 5, stride=2), (1, 3, 32, 32), numeric=False)
    >>> fig.axes[0].get_title()
    'conv2d: r 5, j 2, start 2.5'
    """
    check_node_arg(node)
    model, rep = analysed(model_or_report, input_shape, progress)
    if numeric is None:
        numeric = model is not None
    if numeric and model is None:
        raise ValueError("numeric=True needs the model (the probe runs it); a Report is analytic only")
    rf, shape = measurable_field(model, rep, node) if numeric else (node_field(rep, node), None)
    if math.prod(rf.n) == 1:
        raise ValueError(
            f"'{rf.node}' has a single unit ({rf.describe_flags() or 'one field'}): a grid needs a map "
            "with several units. Leave node=None for the deepest map that has them."
        )
    sizes = tuple(rep.input_shape[2:])
    picture = as_image(image, sizes)
    boxes, note = analytic_boxes(rf), ""
    if numeric:
        assert model is not None
        assert shape is not None
        boxes, note = with_probe(model, rep, rf, boxes, shape, progress)
    fig, ax = new_axes(ax, (8.0, 8.5) if len(sizes) > 1 else (10.0, 4.2))
    title = [field_title(rf)]
    if len(sizes) == 1:
        capped = draw_strip(ax, rf, boxes, picture)
    else:
        h, w = len(sizes) - 2, len(sizes) - 1
        if len(sizes) == 3:
            depth = sizes[0] // 2
            picture = picture[depth]
            seen = span_text(rf.axes[:1], [boxes[1].real[0]])
            title.append(f"depth slice {rf.axes[0]} = {depth}; units at depth index {boxes[1].unit[0]} (seeing {seen})")
        capped = draw_2d(ax, rf, boxes, picture, h, w)
    if note:
        title.append(note)
    if capped:
        title.append(f"view capped at {VIEW_BEYOND:g} input sizes past the border: the dashed fields reach further")
    ax.set_title("\n".join(title), fontsize=10)
    fig.rfcheck_problems = disagreements(boxes, rf.axes)  # read by `rfcheck plot` for its exit status
    every = tuple(math.ceil(k / MAX_ANCHORS) for k in rf.n[-2:])
    ax.legend(handles=legend_handles(boxes, rf.axes, every), loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, fontsize=8, frameon=False)
    return fig
