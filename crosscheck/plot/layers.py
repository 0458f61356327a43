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
from rfarith.walk import Row

from .common import analysed, wide_range

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
    return np.array([[float(v) for v in getattr(row.field, quantity)] for row in map_rows(rep)], dtype=np.float64)


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


def tick_positions(count: int, most: int = MAX_LABELS) -> list[int]:
    """Every k-th index so that at most about ``most`` labels show, the last one included.

    >>> tick_positions(5), tick_positions(11, 4)
    ([0, 1, 2, 3, 4], [0, 3, 6, 9, 10])
    """
    step = max(1, math.ceil(count / most))
    ticks = list(range(0, count, step))
    if ticks[-1] != count - 1:
        ticks.append(count - 1)
    return ticks


def draw_quantity(ax: Axes, analytic: np.ndarray, numeric: np.ndarray | None, axes: Sequence[str]) -> None:
    """Analytic lines and numeric markers, one pair per axis (one in all when they agree);
    numeric marks that differ from the analytic value are drawn red."""
    per_axis = not same_on_every_axis(*([analytic] if numeric is None else [analytic, numeric]))
    columns = range(len(axes)) if per_axis else range(1)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    x = np.arange(len(analytic))
    for c in columns:
        colour = colours[c % len(colours)]
        label = f" {axes[c]}" if per_axis else ""
        values = np.where(analytic[:, c] > 0, analytic[:, c], np.nan)  # j = 0 (global) has no place on a log axis
        ax.plot(x, values, color=colour, lw=1.5, label=f"analytic{label}")
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


def growth(model: nn.Module | Report, input_shape: Sequence[int] | None = None, numeric: bool | None = None) -> Figure:
    """How the receptive-field size r and the jump j grow with depth: one panel each, one
    point per feature map in graph order (node names as tick labels, every k-th on deep
    models), analytic values as lines and, with ``numeric``, the probe's sweep
    (``rfnumeric.sweep``) as markers (red crosses where they differ). Log y scales where the
    values span more than a decade or so; grey columns are maps with a global field (j = 0).
    Axes are drawn separately when their values differ.

    ``model`` is a model with ``input_shape`` or an :class:`rfarith.Report` (analytic only).
    ``numeric`` defaults to true for a model.

    >>> import torch.nn as nn
    >>> net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2))
    >>> fig = growth(net, (1, 3, 32, 32), numeric=False)
    >>> [ax.get_ylabel() for ax in fig.axes]
    ['RF size r (pixels)', 'jump j (pixels)']
    """
    module, rep = analysed(model, input_shape)
    if numeric is None:
        numeric = module is not None
    if numeric and module is None:
        raise ValueError("numeric=True needs the model (the probe runs it); a Report is analytic only")
    rows = map_rows(rep)
    table = rfnumeric.sweep(module, rep.input_shape) if numeric else None
    width = min(16.0, max(7.0, 0.22 * min(len(rows), MAX_LABELS) + 3))
    fig, panels = plt.subplots(2, 1, figsize=(width, 7.5), sharex=True, layout="constrained")
    any_global = False
    for ax, (quantity, label) in zip(panels, QUANTITIES):
        analytic = analytic_values(rep, quantity)
        any_global = shade_global(ax, analytic_values(rep, "j")) or any_global
        draw_quantity(ax, analytic, None if table is None else numeric_values(rep, table, quantity), rep.axes)
        ax.set_ylabel(label)
        ax.grid(True, which="major", alpha=0.3)
    handles, _ = panels[0].get_legend_handles_labels()
    if any_global:
        handles.append(Patch(color="0.9", label="global field (j = 0)"))
    panels[0].legend(handles=handles, fontsize=8, loc="upper left")
    ticks = tick_positions(len(rows))
    panels[1].set_xticks(ticks, [rows[i].name for i in ticks], rotation=90, fontsize=7)
    panels[1].set_xlim(-0.5, len(rows) - 0.5)
    panels[1].set_xlabel("feature map (graph order)")
    size = "×".join(str(s) for s in rep.input_shape[2:])
    panels[0].set_title(f"receptive-field growth: {rep.title or 'model'}, input {size}", fontsize=10)
    return fig

