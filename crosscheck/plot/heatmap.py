"""``probe_heatmap`` and ``erf_profile``: what the gradient probe sees of one unit."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from torch import nn

import rfarith
import rfnumeric
from rfarith import Report
from rfarith.report import per_axis_text

from .common import (
    ANALYTIC_COLOUR,
    Progress,
    analyse,
    analysis_at,
    check_node_arg,
    colour_norm,
    measurable_field,
    probe_node,
    span_text,
    tell,
    unit_text,
    wide_range,
)

Span = tuple[int, int]
QUANTILE_STYLES = {0.5: ":", 0.9: "--", 0.99: "-."}


@dataclass(frozen=True)
class Target:
    """Where to probe: the analysis at the user's input (``None`` if rfarith cannot analyse the
    model, ``why_not`` says why), the node's report name, the name the probe knows it by, and
    the input shape to run the probe at."""

    rep: Report | None
    node: str | None
    probe_node: str | None
    shape: tuple[int, ...]
    why_not: str = ""
    bounds_from: str = "analytic"  # what the cyan bounds are: the arithmetic, or the report's probe


def numeric_target(
    model: nn.Module, input_shape: Sequence[int], node: str | None, progress: Progress | None = None
) -> Target:
    """Resolve ``node`` (default: as :func:`~crosscheck.plot.common.default_node`) with rfarith;
    a model rfarith cannot trace or has no rule for is still probed, without analytic bounds.
    Unknown node names raise :class:`rfarith.UnknownNode`. ``progress`` follows the analysis."""
    check_node_arg(node)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    try:
        rep = analyse(model, input_shape, progress)
    except (rfarith.UnsupportedOp, rfarith.TraceError) as e:
        return Target(None, node, node, tuple(input_shape), f"analytic bounds n/a ({type(e).__name__})")
    if node is not None and node in rep.missing:  # the probe can still draw what it measures
        return Target(None, node, probe_node(rep, node), tuple(input_shape), f"analytic bounds n/a ({rep.missing[node]})")
    rf, shape = measurable_field(model, rep, node)
    measured = not rep.traced or rep.row(rf.node).source == "probe"
    bounds_from = "report, measured by the probe" if measured else "analytic"
    return Target(rep, rf.node, probe_node(rep, rf.node), shape, bounds_from=bounds_from)


def analytic_spans(
    model: nn.Module, target: Target, spatial: Sequence[int], unit: Sequence[int], cache: dict[tuple[int, ...], Report]
) -> tuple[tuple[Span | None, ...], tuple[Span, ...] | None] | None:
    """The real and unclipped bounds of ``unit`` of the target's map at an input of spatial
    size ``spatial`` (where the probe ran); ``None`` without an analysis."""
    if target.rep is None or target.node is None:
        return None
    rf = analysis_at(model, tuple(target.rep.input_shape[:2]) + tuple(spatial), cache)[target.node]
    unit = tuple(unit)
    try:
        full = rf.bounds(unit)
    except ValueError:
        full = None
    return rf.real_bounds(unit), full


def depth_slice(heat: np.ndarray, centre: float) -> tuple[np.ndarray, int]:
    """The 2-D slice of a 3-D map through depth ``centre`` (clipped to the map)."""
    index = int(min(max(int(centre), 0), heat.shape[0] - 1))
    return heat[index], index


# ---- heat maps -------------------------------------------------------------------------------
def draw_heat_2d(ax: Axes, heat: np.ndarray, spans: tuple | None, h: int, w: int, names: Sequence[str] = ("h", "w")) -> None:
    """A 2-D heat map (pixel i spans [i, i+1)) with the analytic bounds as rectangles;
    ``names``: the names of its row and column axes, for the axis labels."""
    cmap = plt.get_cmap("magma").with_extremes(bad="0.85")
    shown = np.ma.masked_less_equal(heat, 0.0)  # zero gradient: outside the support
    image = ax.imshow(shown, extent=(0, heat.shape[1], heat.shape[0], 0), cmap=cmap, norm=colour_norm(heat), interpolation="nearest")
    ax.figure.colorbar(image, ax=ax, shrink=0.8, label="|input gradient| (grey: zero)")
    if spans is not None:
        real, full = spans
        for box, style in ((full, {"ls": "--", "lw": 1.2}), (real, {"lw": 2.0})):
            if box is not None and None not in box:
                (top, bottom), (left, right) = box[h], box[w]
                ax.add_patch(Rectangle((left, top), right - left + 1, bottom - top + 1, fill=False, ec=ANALYTIC_COLOUR, **style))
    ax.set_xlim(0, heat.shape[1])
    ax.set_ylim(heat.shape[0], 0)
    ax.set_xlabel(f"{names[1]} (pixel index)")
    ax.set_ylabel(f"{names[0]} (pixel index)")


def draw_heat_1d(ax: Axes, heat: np.ndarray, spans: tuple | None, name: str = "l") -> None:
    """A 1-D heat map as steps over the pixels, the analytic interval shaded."""
    ax.stairs(heat, np.arange(heat.size + 1), color="black", lw=1.2)
    if spans is not None:
        real, full = spans
        if full is not None:
            ax.axvspan(full[0][0], full[0][1] + 1, color=ANALYTIC_COLOUR, alpha=0.12, lw=0)
        if real[0] is not None:
            ax.axvspan(real[0][0], real[0][1] + 1, color=ANALYTIC_COLOUR, alpha=0.3, lw=0)
    if wide_range(heat):
        ax.set_yscale("log")
    ax.set_xlim(0, heat.size)
    ax.set_xlabel(f"{name} (pixel index)")
    ax.set_ylabel("|input gradient|")


def heat_panel(ax: Axes, heat: np.ndarray, spans: tuple | None, depth_at: float, names: Sequence[str] | None = None) -> str:
    """Draw a heat map of any dimension; returns a note on the slice shown (3-D: the slice
    through depth ``depth_at``, which every panel of a figure shares)."""
    names = tuple(names) if names is not None else ("l",) if heat.ndim == 1 else ("d", "h", "w")[-heat.ndim:]
    if heat.ndim == 1:
        draw_heat_1d(ax, heat, spans, names[0])
        return ""
    note, h, w = "", heat.ndim - 2, heat.ndim - 1  # the spans keep every axis
    if heat.ndim == 3:
        heat, index = depth_slice(heat, depth_at)
        note = f"depth slice {names[0]} = {index}"
    draw_heat_2d(ax, heat, spans, h, w, names[-2:])
    return note


def not_measured(ax: Axes, title: str, reason: str) -> None:
    """A panel that says why it holds no measurement."""
    ax.set_axis_off()
    ax.set_title(title, fontsize=9)
    ax.text(0.5, 0.5, textwrap.fill(reason, 60), ha="center", va="center", fontsize=8, wrap=True, transform=ax.transAxes)


def panel_title(
    kind: str, node: str, unit: Sequence[int], shape: Sequence[int], spans: tuple | None, axes: Sequence[str], extra: str,
    bounds_from: str = "analytic",
) -> str:
    size = "×".join(str(s) for s in shape[2:])
    lines = [f"{kind}: '{node}' unit {unit_text(unit)}, input {size}"]
    if spans is not None:
        lines.append(f"{bounds_from} (cyan): {span_text(axes, spans[0])}")
    if extra:
        lines.append(extra)
    return "\n".join(lines)


def probe_heatmap(
    model: nn.Module,
    input_shape: Sequence[int],
    node: str | None = None,
    unit: Sequence[int] | None = None,
    effective: bool = True,
    progress: Progress | None = None,
    memory_budget: int = rfnumeric.EFFECTIVE_BUDGET,
) -> Figure:
    """The probe's structural heat map of one unit, and beside it the effective one (real
    weights, mean over random inputs), each with the analytic bounds of the same unit drawn in
    cyan (solid: what it sees of that input; dashed: unclipped). Colours go logarithmic when
    the gradients span orders of magnitude; grey pixels get no gradient at all.

    The probe may run at a larger input than ``input_shape`` so that the field fits: every
    panel shows the input it ran, and the analytic bounds are computed at that size. ``unit``
    (default: the centre unit) is an index into the map; ``rfnumeric.effective`` measures its
    own centre unit, which its panel names. ``node`` defaults as in :func:`rf_grid`.
    ``effective=False`` draws the structural panel only. A 3-D input shows the depth slice
    through the unit's field; a 1-D input shows curves. ``progress(done, total, what)``
    follows the analysis and the two probes. Where the effective field's real-weights passes
    would pass ``memory_budget`` bytes (see :func:`rfnumeric.effective`), its panel says so
    instead, and the figure's ``rfcheck_incomplete`` list carries the reason.

    >>> import torch.nn as nn
    >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=2))
    >>> fig = probe_heatmap(net, (1, 1, 24, 24), effective=False)
    >>> len(fig.axes)  # the panel and its colour bar
    2
    """
    target = numeric_target(model, input_shape, node, progress)
    if unit is not None and target.rep is not None and target.node is not None:
        target.rep[target.node].real_bounds(tuple(unit))  # an index into the user's map: check it
    steps = 2 if effective else 1
    tell(progress, 0, steps, "structural heat map")
    result = rfnumeric.probe(model, target.shape, node=target.probe_node, unit=unit)
    field, refused = None, None
    if effective:
        tell(progress, 1, steps, "effective heat map")
        try:
            field = rfnumeric.effective(model, input_shape, node=target.probe_node, memory_budget=memory_budget)
        except rfarith.ProbeError as e:
            if e.kind != "memory":
                raise
            refused = e
    shared = field is not None and field.heatmap.shape == result.heatmap.shape  # both ran on one input
    cache = {} if target.rep is None else {tuple(target.rep.input_shape): target.rep}
    panels = 2 if effective else 1
    fig, axes = plt.subplots(1, panels, figsize=(6.2 * panels, 5.6), layout="constrained", squeeze=False)
    spans = analytic_spans(model, target, result.input_shape[2:], result.unit, cache)
    # 3-D: one depth slice for every panel on one input, through the probed unit's field
    depth = (result.bounds[0][0] + result.bounds[0][1]) / 2 if len(result.axes) == 3 else 0.0
    note = heat_panel(axes[0, 0], result.heatmap, spans, depth, result.axes)
    if note and shared:
        note += " (the same in both panels)"
    flags = result.describe_flags()
    extra = ", ".join(x for x in (f"probe: {span_text(result.axes, result.bounds)}", flags, note, target.why_not) if x)
    axes[0, 0].set_title(panel_title("structural", target.node or result.node, result.unit, result.input_shape, spans, result.axes, extra, target.bounds_from), fontsize=9)
    if refused is not None:
        not_measured(axes[0, 1], "effective: not measured", str(refused))
        fig.rfcheck_incomplete = [f"the effective heat map: {refused}"]
    elif field is not None:
        spans = analytic_spans(model, target, field.input_shape[2:], field.unit, cache)
        note = heat_panel(axes[0, 1], field.heatmap, spans, depth if shared else field.centre[0], field.axes)
        if note and shared:
            note += " (the same in both panels)"
        extra = ", ".join(x for x in (f"mean of {field.n_inputs} random inputs", note) if x)
        axes[0, 1].set_title(panel_title("effective", target.node or field.node, field.unit, field.input_shape, spans, field.axes, extra, target.bounds_from), fontsize=9)
    tell(progress, steps, steps, "")
    return fig


# ---- effective field profile -----------------------------------------------------------------
def marginal(heatmap: np.ndarray, axis: int) -> np.ndarray:
    """The heat map's mass projected on one axis (summed over the others).

    >>> marginal(np.ones((2, 3)), 1).tolist()
    [2.0, 2.0, 2.0]
    """
    others = tuple(a for a in range(heatmap.ndim) if a != axis)
    return np.asarray(heatmap, dtype=np.float64).sum(axis=others)


def cumulative_mass(mass: np.ndarray, centre: float) -> tuple[np.ndarray, np.ndarray]:
    """Distances of the pixel centres (``i + 0.5``) from ``centre``, sorted, and the fraction of
    the total mass within each distance.

    >>> d, f = cumulative_mass(np.array([1.0, 2.0, 1.0]), 1.5)
    >>> d.tolist(), f.tolist()
    ([0.0, 1.0, 1.0], [0.5, 0.75, 1.0])
    """
    distance = np.abs(np.arange(mass.size) + 0.5 - centre)
    order = np.argsort(distance, kind="stable")
    total = float(mass.sum())
    if total <= 0:
        raise ValueError("the heat map has no mass (every gradient is zero)")
    return distance[order], np.cumsum(mass[order]) / total


def mass_radius(mass: np.ndarray, centre: float, fraction: float) -> float:
    """The smallest distance from ``centre`` whose pixels hold ``fraction`` of the mass (the
    definition of ``EffectiveField.radii``).

    >>> mass_radius(np.array([1.0, 2.0, 1.0]), 1.5, 0.9)
    1.0
    """
    distance, cumulative = cumulative_mass(mass, centre)
    return float(distance[np.searchsorted(cumulative, fraction - 1e-12)])


def erf_profile(
    model: nn.Module,
    input_shape: Sequence[int],
    node: str | None = None,
    progress: Progress | None = None,
    memory_budget: int = rfnumeric.EFFECTIVE_BUDGET,
) -> Figure:
    """The effective receptive field against the structural one, per axis.

    Left: the effective heat map's mass projected on each axis, against the offset from its
    centre. Right: the fraction of that mass within a distance of the centre. Vertical lines
    mark the radii holding 50 / 90 / 99 % of the mass (dotted, dashed, dash-dotted, from
    ``rfnumeric.effective``) and the structural half-size ``r / 2`` (solid grey): a trained or
    random deep network's effective field is usually much narrower than its structural one.
    ``progress(done, total, what)`` follows the analysis and the probe; ``memory_budget`` is
    :func:`rfnumeric.effective`'s.

    >>> import torch.nn as nn
    >>> net = nn.Sequential(*[nn.Conv2d(2, 2, 3, padding=1) for _ in range(4)])
    >>> fig = erf_profile(net, (1, 2, 32, 32))  # doctest: +SKIP
    """
    target = numeric_target(model, input_shape, node, progress)
    tell(progress, 0, 1, "effective field")
    field = rfnumeric.effective(model, input_shape, node=target.probe_node, memory_budget=memory_budget)
    tell(progress, 1, 1, "")
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8), layout="constrained")
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    handles = []
    for a, name in enumerate(field.axes):
        colour = colours[a % len(colours)]
        mass = marginal(field.heatmap, a)
        edges = np.arange(mass.size + 1) - field.centre[a]
        left.stairs(mass / mass.sum(), edges, color=colour, lw=1.3)
        distance, cumulative = cumulative_mass(mass, field.centre[a])
        right.step(distance, cumulative, where="post", color=colour, lw=1.3)
        half = field.structural_r[a] / 2
        for ax in (left, right):
            for q, style in QUANTILE_STYLES.items():
                radius = field.radii[q][a]
                ax.axvline(radius, color=colour, ls=style, lw=1)
                if ax is left:
                    ax.axvline(-radius, color=colour, ls=style, lw=1)
            ax.axvline(half, color="0.5", lw=2, alpha=0.6)
            if ax is left:
                ax.axvline(-half, color="0.5", lw=2, alpha=0.6)
        handles.append(Line2D([], [], color=colour, lw=1.3, label=f"axis {name}"))
    handles += [Line2D([], [], color="black", ls=s, lw=1, label=f"{round(q * 100)} % radius") for q, s in QUANTILE_STYLES.items()]
    handles.append(Line2D([], [], color="0.5", lw=2, alpha=0.6, label="structural r / 2"))
    for q in QUANTILE_STYLES:
        right.axhline(q, color="0.8", lw=0.8, zorder=0)
    reach = 1.3 * max(max(field.structural_r) / 2, *field.radii[0.99]) + 1
    left.set_xlim(-reach, reach)
    right.set_xlim(0, reach)
    left.set_xlabel("offset from the centre (pixels)")
    left.set_ylabel("fraction of the mass per pixel")
    right.set_xlabel("distance from the centre (pixels)")
    right.set_ylabel("fraction of the mass within")
    right.set_ylim(0, 1.02)
    right.legend(handles=handles, loc="lower right", fontsize=8)
    radii = "; ".join(
        f"{name}: " + "/".join(f"{field.radii[q][a]:.1f}" for q in QUANTILE_STYLES) for a, name in enumerate(field.axes)
    )
    fig.suptitle(
        f"effective RF of '{target.node or field.node}' unit {unit_text(field.unit)} (mean of {field.n_inputs} random inputs)\n"
        f"radii 50/90/99 %: {radii}; structural r {per_axis_text(field.structural_r)}, "
        f"r90 / r {per_axis_text([round(x, 3) for x in field.ratio])}",
        fontsize=10,
    )
    return fig
