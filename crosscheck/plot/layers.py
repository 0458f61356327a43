"""``growth``: receptive-field size r and jump j layer by layer."""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from torch import nn

import rfnumeric
from rfarith import Report
from rfarith.report import per_axis_text
from rfarith.walk import Row

from .common import Progress, analysed, wide_range

MAX_LABELS = 40  # node names on the x axis at most (every k-th beyond)
QUANTITIES = (("r", "RF size r (pixels)"), ("j", "jump j (pixels)"))


def analytic_values(rep: Report, quantity: str) -> np.ndarray:
    """``quantity`` ('r' or 'j') of every map in graph order, shape (maps, axes), as floats.
    Output alias rows of multi-output models are left out (they repeat a node).

    >>> import torch.nn as nn, rfarith
    >>> rep = rfarith.analyze(nn.Sequential(nn.Conv2d(1, 1, 3, stride=2), nn.Conv2d(1, 1, 3)), (1, 1, 16, 16))
    >>> analytic_values(rep, "r").tolist()
    [[1.0, 1.0], [3.0, 3.0], [7.0, 7.0]]
    """
    rows = map_rows(rep)
    out = np.full((len(rows), len(rep.axes)), np.nan)  # NaN: a row whose field was not computed
    for i, row in enumerate(rows):
        if row.field is not None:
            out[i] = [float(v) for v in getattr(row.field, quantity)]
    return out


def map_rows(rep: Report) -> list[Row]:
    """The report's rows without the output alias rows."""
    return [row for row in rep.rows if row.op != "output"]


def numeric_values(rep: Report, table: pd.DataFrame, quantity: str) -> np.ndarray:
    """The sweep's ``quantity`` for every row of ``rep``, NaN where it has none. The input row
    is matched by its op ('input'), whatever each side names it.

    >>> import torch.nn as nn, rfarith, rfnumeric
    >>> net = nn.Sequential(nn.Conv2d(1, 1, 3, stride=2), nn.Conv2d(1, 1, 3))
    >>> rep = rfarith.analyze(net, (1, 1, 16, 16))
    >>> numeric_values(rep, rfnumeric.sweep(net, (1, 1, 16, 16)), "j").tolist()
    [[1.0, 1.0], [2.0, 2.0], [2.0, 2.0]]
    """
    columns = [f"{quantity}_{a}" for a in rep.axes]
    inputs = table.index[table["op"] == "input"]
    out = np.full((len(map_rows(rep)), len(columns)), np.nan)
    for i, row in enumerate(map_rows(rep)):
        name = inputs[0] if row.op == "input" and len(inputs) else row.name
        if name in table.index:
            out[i] = [float(v) for v in table.loc[name, columns]]
    return out


def same_on_every_axis(*values: np.ndarray) -> bool:
    """Whether every array has equal columns (NaN equal to NaN): one line per quantity suffices."""
    return all(np.array_equal(v, np.repeat(v[:, :1], v.shape[1], axis=1), equal_nan=True) for v in values)


def tick_positions(count: int, most: int = MAX_LABELS, changes: Sequence[int] = ()) -> list[int]:
    """The maps to name on the x axis, at most about ``most``: always the first and the last,
    every stage change (``changes``: maps where the jump changes, thinned evenly if there are too
    many), and evenly spaced maps between them, none closer than the spacing to another label.

    >>> tick_positions(5), tick_positions(11, 4)
    ([0, 1, 2, 3, 4], [0, 4, 8, 10])
    >>> tick_positions(100, 6, changes=[7, 50])
    [0, 7, 23, 50, 69, 99]
    """
    if count <= most:
        return list(range(count))
    must = sorted({0, count - 1, *(c for c in changes if 0 < c < count - 1)})
    if len(must) > most:  # too many stage changes: keep an even selection of them
        inner = must[1:-1]
        keep = np.linspace(0, len(inner) - 1, most - 2).round().astype(int)
        return [0, *(inner[k] for k in sorted(set(keep))), count - 1]
    step = max(1, math.ceil(count / (most - 1)))
    while True:  # the widest filling that keeps to ``most`` labels
        chosen = set(must)
        for i in range(0, count, step):
            if all(abs(i - m) >= step / 2 for m in chosen):
                chosen.add(i)
        if len(chosen) <= most:
            return sorted(chosen)
        step += 1


def stage_changes(j: np.ndarray) -> list[int]:
    """The maps whose jump differs from the map before (a new stage of the network).

    >>> stage_changes(np.array([[1.0], [2.0], [2.0], [4.0]]))
    [1, 3]
    """
    return [i for i in range(1, len(j)) if not np.array_equal(j[i], j[i - 1], equal_nan=True)]


def draw_quantity(ax: Axes, analytic: np.ndarray, numeric: np.ndarray | None, axes: Sequence[str]) -> None:
    """Analytic values as a marker per map and a step line of the largest value so far (a line
    through every map in graph order would drop whenever the order moves to a shorter parallel
    branch), numeric markers over them; one set per axis (one in all when they agree). Numeric
    marks that differ from the analytic value are drawn red."""
    per_axis = not same_on_every_axis(*([analytic] if numeric is None else [analytic, numeric]))
    columns = range(len(axes)) if per_axis else range(1)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    x = np.arange(len(analytic))
    for c in columns:
        colour = colours[c % len(colours)]
        label = f" {axes[c]}" if per_axis else ""
        values = np.where(analytic[:, c] > 0, analytic[:, c], np.nan)  # j = 0 (global) has no place on a log axis
        ax.plot(x, values, ls="", marker=".", color=colour, ms=5, label=f"analytic{label} (each map)")
        running = np.fmax.accumulate(values)
        ax.step(x, running, where="mid", color=colour, lw=1.2, alpha=0.7, label=f"largest so far{label} (graph order)")
        if numeric is not None:
            ok = np.isclose(numeric[:, c], analytic[:, c])
            ax.plot(x[ok], numeric[ok, c], ls="", marker="o", mfc="none", mec=colour, ms=5, label=f"numeric{label}")
            bad = ~ok & np.isfinite(numeric[:, c])
            if bad.any():
                ax.plot(x[bad], numeric[bad, c], ls="", marker="X", color="#e41a1c", ms=7, label=f"numeric{label}, differs")
    if wide_range(analytic, 20.0):
        ax.set_yscale("log")


def shade_global(ax: Axes, j: np.ndarray) -> bool:
    """Shade the maps whose field is global (j = 0 on some axis); whether any was."""
    spans = np.flatnonzero((j == 0).any(axis=1))
    for i in spans:
        ax.axvspan(i - 0.5, i + 0.5, color="0.9", lw=0, zorder=0)
    return bool(spans.size)


def growth(
    model: nn.Module | Report,
    input_shape: Sequence[int] | None = None,
    numeric: bool | None = None,
    progress: Progress | None = None,
) -> Figure:
    """How the receptive-field size r and the jump j grow with depth: one panel each, one
    point per feature map in graph order (node names as tick labels: the first, the last, every
    stage change where j changes, and evenly spaced others, at most about ``MAX_LABELS``),
    analytic values as dots with a step line of the largest value so far (parallel branches
    interleave in graph order, so a line through every map would dip), and, with ``numeric``,
    the probe's sweep (``rfnumeric.sweep``) as circles (red crosses where they differ). Log y scales where the
    values span more than a decade or so; grey columns are maps with a global field (j = 0).
    Axes are drawn separately when their values differ.

    ``model`` is a model with ``input_shape`` or an :class:`rfarith.Report` (analytic only).
    ``numeric`` defaults to true for a model. ``progress(done, total, what)`` follows the
    analysis and the sweep.

    >>> import torch.nn as nn
    >>> net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2))
    >>> fig = growth(net, (1, 3, 32, 32), numeric=False)
    >>> [ax.get_ylabel() for ax in fig.axes]
    ['RF size r (pixels)', 'jump j (pixels)']
    """
    module, rep = analysed(model, input_shape, progress)
    if numeric is None:
        numeric = module is not None
    if numeric and module is None:
        raise ValueError("numeric=True needs the model (the probe runs it); a Report is analytic only")
    rows = map_rows(rep)
    table = rfnumeric.sweep(module, rep.input_shape, progress=progress) if numeric else None
    width = min(16.0, max(7.0, 0.22 * min(len(rows), MAX_LABELS) + 3))
    fig, panels = plt.subplots(2, 1, figsize=(width, 7.5), sharex=True, layout="constrained")
    any_global = False
    problems = []
    for ax, (quantity, label) in zip(panels, QUANTITIES):
        analytic = analytic_values(rep, quantity)
        any_global = shade_global(ax, analytic_values(rep, "j")) or any_global
        measured = None if table is None else numeric_values(rep, table, quantity)
        draw_quantity(ax, analytic, measured, rep.axes)
        if measured is not None:
            differs = np.isfinite(measured) & ~np.isclose(measured, analytic)
            problems += [
                f"'{rows[i].name}': {quantity} analytic {per_axis_text(analytic[i].tolist())}, numeric {per_axis_text(measured[i].tolist())}"
                for i in np.flatnonzero(differs.any(axis=1))
            ]
        ax.set_ylabel(label)
        ax.grid(True, which="major", alpha=0.3)
    handles, _ = panels[0].get_legend_handles_labels()
    if any_global:
        handles.append(Patch(color="0.9", label="global field (j = 0)"))
    panels[0].legend(handles=handles, fontsize=8, loc="upper left")
    ticks = tick_positions(len(rows), changes=stage_changes(analytic_values(rep, "j")))
    panels[1].set_xticks(ticks, [rows[i].name for i in ticks], rotation=90, fontsize=7)
    panels[1].set_xticks(np.arange(len(rows)), minor=True)  # every map has its tick
    panels[1].set_xlim(-0.5, len(rows) - 0.5)
    panels[1].set_xlabel("feature map (graph order)")
    size = "×".join(str(s) for s in rep.input_shape[2:])
    title = f"receptive-field growth: {rep.title or 'model'}, input {size}"
    if rep.missing:
        title += f"\n{len(rep.missing)} map(s) not computed (gaps): {', '.join(rep.missing)}"
    panels[0].set_title(title, fontsize=10)
    fig.rfcheck_problems = problems  # read by `rfcheck plot` for its exit status
    fig.rfcheck_incomplete = [f"'{name}' not computed: {why}" for name, why in rep.missing.items()]
    return fig

