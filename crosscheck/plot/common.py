"""What the plots share: the model and its analysis, the node to draw, images, colours, figures."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from torch import nn

import rfarith
from rfarith import ReceptiveField, Report
from rfarith.report import per_axis_text

from .card import GRID_STEP, test_card

# ColorBrewer Set1: red, blue, green for the top-left, centre and bottom-right units.
UNIT_COLOURS = ("#e41a1c", "#377eb8", "#4daf4a")
ANALYTIC_COLOUR = "#00e5ff"  # analytic bounds over a heat map
LOG_RANGE = 100.0  # a colour or y scale goes logarithmic when max / min positive exceeds this
Progress = Callable[[int, int, str], None]  # progress(done, total, what): total 0 when unknown


def tell(progress: Progress | None, done: int, total: int, what: str) -> None:
    """``progress(done, total, what)``, where there is a progress callback."""
    if progress is not None:
        progress(done, total, what)


def analyse(model: nn.Module, input_shape: Sequence[int], progress: Progress | None = None) -> Report:
    """The model's layer-by-layer report as ``rfcheck report`` makes it (``crosscheck.hybrid``):
    analytic where rules exist, the probe measures untraceable modules and ops without a rule.
    Rows the probe could not measure either have no field (``Report.missing``): picking one
    raises :class:`rfarith.NotComputed` with the reason. ``progress`` follows the probe's
    measurements (as in ``hybrid``)."""
    from ..hybrid import hybrid  # not at import time: crosscheck.hybrid imports the probe

    return hybrid(model, tuple(int(s) for s in input_shape), progress=progress)


def analysed(
    model_or_report: nn.Module | Report, input_shape: Sequence[int] | None, progress: Progress | None = None
) -> tuple[nn.Module | None, Report]:
    """The model (``None`` for a report) and its analysis (:func:`analyse`, ``progress`` following it).

    >>> import torch.nn as nn
    >>> model, rep = analysed(nn.Conv2d(3, 4, 3), (1, 3, 16, 16))
    >>> rep.output.r
    (3, 3)
    """
    if isinstance(model_or_report, Report):
        if input_shape is not None and tuple(input_shape) != tuple(model_or_report.input_shape):
            raise ValueError(
                f"input_shape {tuple(input_shape)} differs from the report's input shape "
                f"{tuple(model_or_report.input_shape)}; leave it out or analyse again"
            )
        return None, model_or_report
    if not isinstance(model_or_report, nn.Module):
        raise TypeError(f"expected a torch.nn.Module or an rfarith.Report, got {type(model_or_report).__name__}")
    if input_shape is None:
        raise ValueError("input_shape is required with a model, e.g. (1, 3, 224, 224)")
    return model_or_report, analyse(model_or_report, input_shape, progress)


def is_spatial_map(rf: ReceptiveField, shape: Sequence[int]) -> bool:
    """Whether a map has more than one unit and its tensor is laid out (batch, channels, *units)."""
    return math.prod(rf.n) > 1 and tuple(shape[-len(rf.n):]) == tuple(rf.n) and len(shape) == len(rf.n) + 2


def default_node(rep: Report) -> str:
    """The map a plot shows when no node is given: the model output if it has several units
    (the first such output of a multi-output model), else the deepest feature map with more than
    one unit (a classifier's last convolutional map).

    >>> import torch.nn as nn, rfarith
    >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1))
    >>> default_node(rfarith.analyze(net, (1, 3, 16, 16)))
    '0'
    """
    shapes = {row.name: row.shape for row in rep.rows}
    for rf in computed_outputs(rep).values():
        if rf.node in shapes and is_spatial_map(rf, shapes[rf.node]):
            return rf.node
    rows = [
        row
        for row in rep.rows
        if row.op not in ("input", "output") and row.field is not None and is_spatial_map(row.field, row.shape)
    ]
    if not rows:
        raise ValueError(
            f"no feature map of {rep.title or 'the model'} has more than one unit at input "
            f"{tuple(rep.input_shape)}: nothing to lay out; use a larger input_shape"
        )
    return rows[-1].name


def computed_outputs(rep: Report) -> dict[str, ReceptiveField]:
    """``rep.outputs`` without the outputs whose field could not be computed."""
    try:
        return rep.outputs
    except rfarith.NotComputed:
        return {key: rep[name] for key, name in rep._outputs.items() if name not in rep.missing}


def node_field(rep: Report, node: str | None) -> ReceptiveField:
    """The field of ``node`` (the default node if ``None``); unknown names raise
    :class:`rfarith.UnknownNode`, a node whose field could not be computed (a map the probe
    could not measure in a model fx cannot trace) :class:`rfarith.NotComputed` with the reason."""
    name = default_node(rep) if node is None else node
    try:
        return rep[name]
    except rfarith.NotComputed as e:
        computed = [row.name for row in rep.rows if row.field is not None and row.op not in ("input", "output")]
        hint = f" ({', '.join(computed[-3:])}, ...)" if computed else ""
        raise rfarith.NotComputed(f"{e}; nothing to draw: pick a node that has a field{hint}") from None


def probe_node(rep: Report, node: str) -> str | None:
    """The name the probe knows a report row by: the model output is probed as ``None`` (the
    probe's default, which also covers a bare layer given as the model), an output's alias row
    of a multi-output model (``output[p2]``) at the node that computes it.

    >>> import torch.nn as nn, rfarith
    >>> rep = rfarith.analyze(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()), (1, 3, 8, 8))
    >>> probe_node(rep, "0"), probe_node(rep, "1")
    ('0', None)
    """
    outputs = computed_outputs(rep)
    if len(outputs) == 1 and next(iter(outputs.values())).node == node:
        return None
    aliases = {f"output[{key}]": rf.node for key, rf in outputs.items()}
    return aliases.get(node, node)


def probe_shape(input_shape: Sequence[int], rf: ReceptiveField) -> tuple[int, ...]:
    """An input shape in which the probe can measure ``rf``'s centre unit and its neighbours
    without growing the input: the user's shape, doubled along an axis until the field, two
    jumps either side and a margin fit. Doubling keeps sizes the model accepts (multiples of
    a stride product).

    >>> import torch.nn as nn, rfarith
    >>> rf = rfarith.analyze(nn.Conv2d(1, 1, 9, stride=4), (1, 1, 16, 16)).output
    >>> probe_shape((1, 1, 16, 16), rf)
    (1, 1, 32, 32)
    """
    sizes = []
    for size, r, j in zip(input_shape[2:], rf.r, rf.j):
        need = r + 4 * float(j) + 2 if j else size
        while size < need:
            size *= 2
        sizes.append(size)
    return tuple(input_shape[:2]) + tuple(sizes)


def fitting_probe_shape(model: nn.Module, rep: Report, rf: ReceptiveField) -> tuple[int, ...]:
    """:func:`probe_shape`, checked: where it is larger than the user's input, the field must
    not change with the input size (adaptive pooling makes it grow with the input, and the
    probe would chase it), else a clear error instead of a long failing search. A model that
    rejects the larger input (a fixed token grid, a size check) is probed at the user's input,
    where the probe reads what fits of the field and flags the rest as cut by the border."""
    shape = probe_shape(rep.input_shape, rf)
    if shape == tuple(rep.input_shape):
        return shape
    try:
        larger = analyse(model, shape)[rf.node]
    except (rfarith.ShapeError, rfarith.TraceError, rfarith.UnknownNode):
        return tuple(rep.input_shape)
    if (larger.r, larger.j, larger.start) != (rf.r, rf.j, rf.start):
        size, bigger = ("×".join(map(str, s[2:])) for s in (rep.input_shape, shape))
        raise ValueError(
            f"the field of '{rf.node}' does not fit the input ({size}) and changes with the input size "
            f"(r {per_axis_text(rf.r)} at {size}, {per_axis_text(larger.r)} at {bigger}; adaptive pooling?), "
            "so the probe cannot measure it on a larger input. Way out: a node before the size-dependent op "
            "(node=NAME; CLI: --node NAME), or the analytic view alone (numeric=False; CLI: --no-numeric, "
            "for --kind grid and growth)."
        )
    return shape


def measurable_field(model: nn.Module, rep: Report, node: str | None) -> tuple[ReceptiveField, tuple[int, ...]]:
    """:func:`node_field` for plots that probe, with the input to probe it at
    (:func:`fitting_probe_shape`). With no node given: the default map, or, where its field
    does not fit the input and changes with the input size (a torchvision VGG's or AlexNet's
    adaptive pooling before the classifier), the deepest map before it whose field the probe
    can measure on a larger input; if none can, the default map's error."""
    rf = node_field(rep, node)
    try:
        return rf, fitting_probe_shape(model, rep, rf)
    except ValueError:
        if node is not None:
            raise
        names = [row.name for row in rep.rows]
        earlier = reversed(names[: names.index(rf.node)] if rf.node in names else [])
        for row in (rep.row(name) for name in earlier):
            if row.op in ("input", "output") or row.field is None or not is_spatial_map(row.field, row.shape):
                continue
            try:
                return row.field, fitting_probe_shape(model, rep, row.field)
            except ValueError:
                continue
        raise


def field_title(rf: ReceptiveField) -> str:
    """``'pool5: r 195, j 32, start 33.5'`` plus the flags, as rfarith writes them."""
    text = f"{rf.node}: r {per_axis_text(rf.r)}, j {per_axis_text(rf.j)}, start {per_axis_text(rf.start)}"
    flags = rf.describe_flags()
    return f"{text} ({flags})" if flags else text


def unit_text(unit: Sequence[int]) -> str:
    """``'(3, 4)'`` for a 2-D unit, ``'7'`` for a 1-D one."""
    return str(unit[0]) if len(unit) == 1 else str(tuple(unit))


def span_text(axes: Sequence[str], spans: Sequence[tuple[int, int] | None]) -> str:
    """``'h 0–130, w 4–9'`` for per-axis (first, last) pixels; ``'nothing'`` if any is None."""
    if any(s is None for s in spans):
        return "nothing"
    return ", ".join(f"{a} {lo}–{hi}" for a, (lo, hi) in zip(axes, spans))


def as_image(image: Any, sizes: Sequence[int]) -> np.ndarray:
    """``image`` as a float array in [0, 1] of the input's spatial ``sizes``, channels last (or
    none); ``None`` gives the test card (a strip of it for a 1-D input).

    Accepted: spatial-first arrays with an optional trailing channel axis of 1, 3 or 4, a
    channel-first (C, *sizes) array, or a batched (N, C, *sizes) array or tensor (first item).
    Integer images are read as 8-bit; floats outside [0, 1] are rescaled to it.

    >>> as_image(None, (32, 48)).shape
    (32, 48, 3)
    """
    sizes = tuple(int(s) for s in sizes)
    if image is None:
        if len(sizes) == 1:
            return test_card(2 * GRID_STEP, sizes[0])[GRID_STEP // 2]  # a row between grid lines
        return np.broadcast_to(test_card(*sizes[-2:]), (*sizes, 3))  # every depth slice alike
    if hasattr(image, "detach"):  # a torch tensor
        image = image.detach().cpu().numpy()
    array = np.asarray(image)
    if array.ndim == len(sizes) + 2:  # (N, C, *sizes)
        array = np.moveaxis(array[0], 0, -1)
    elif array.ndim == len(sizes) + 1 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
        array = np.moveaxis(array, 0, -1)
    if array.shape[: len(sizes)] != sizes or array.ndim > len(sizes) + 1 or (array.ndim == len(sizes) + 1 and array.shape[-1] not in (1, 3, 4)):
        raise ValueError(
            f"image has shape {array.shape} but the input's spatial size is {sizes}: pass an image of "
            f"that size (optionally with 1, 3 or 4 channels), or None for the test card"
        )
    if array.ndim == len(sizes) + 1 and array.shape[-1] == 1:
        array = array[..., 0]
    integer = np.issubdtype(array.dtype, np.integer)
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        raise ValueError("image has NaN or infinite values")
    if integer:
        return np.clip(array / 255.0, 0.0, 1.0)
    low, high = float(array.min()), float(array.max())
    if low < 0.0 or high > 1.0:
        array = (array - low) / (high - low) if high > low else np.zeros_like(array)
    return array


def wide_range(values: Any, ratio: float = LOG_RANGE) -> bool:
    """Whether the finite positive values span more than ``ratio`` (a log scale reads better).

    >>> wide_range([0.0, 1e-9, 1.0]), wide_range([1, 2, 3])
    (True, False)
    """
    array = np.asarray(values, dtype=np.float64).ravel()
    positive = array[np.isfinite(array) & (array > 0)]
    return bool(positive.size) and float(positive.max()) / float(positive.min()) > ratio


def colour_norm(values: np.ndarray) -> Normalize:
    """A logarithmic colour scale over the positive values when they span more than
    ``LOG_RANGE``, else a linear one from 0; zeros fall outside a log scale (the colour map's
    'bad' colour).

    >>> type(colour_norm(np.array([0.0, 1e-9, 1.0]))).__name__
    'LogNorm'
    """
    if wide_range(values):
        positive = values[values > 0]
        return LogNorm(vmin=float(positive.min()), vmax=float(positive.max()))
    top = float(values.max()) if values.size else 0.0
    return Normalize(vmin=0.0, vmax=top if top > 0 else 1.0)


def new_axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    """``ax`` and its figure, or a new figure with one axes (constrained layout)."""
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize, layout="constrained")
        return fig, ax
    if not isinstance(ax, Axes):
        raise TypeError(f"ax must be a matplotlib Axes, got {type(ax).__name__}")
    return ax.figure, ax


def check_node_arg(node: Any) -> None:
    """A node is a name (``str``) or ``None``."""
    if node is not None and not isinstance(node, str):
        raise TypeError(f"node must be a node name (str) or None, got {type(node).__name__}")


def analysis_at(model: nn.Module, input_shape: Sequence[int], cache: dict[tuple[int, ...], Report]) -> Report:
    """:func:`analyse` at ``input_shape``, once per shape."""
    key = tuple(int(s) for s in input_shape)
    if key not in cache:
        cache[key] = analyse(model, key)
    return cache[key]


def read_image(path: Any, input_shape: Sequence[int]) -> np.ndarray:
    """The picture in file ``path``, resized (nearest pixel) to the input's height × width, as
    :func:`as_image` takes it: for ``rf_grid(..., image=read_image(path, shape))``. PNG is read
    by matplotlib itself; JPEG and the other formats need Pillow. A 3-D input repeats the
    picture along depth; a 1-D input has no picture to draw on."""
    from pathlib import Path

    import matplotlib.image as mpimg

    path = Path(path)
    sizes = tuple(int(s) for s in input_shape[2:])
    if len(sizes) < 2:
        raise ValueError(f"a 1-D input ({'×'.join(map(str, sizes))}) has no picture to draw on; leave out --image / image")
    if not path.is_file():
        raise FileNotFoundError(f"image '{path}' does not exist")
    if path.suffix.lower() != ".png":
        try:
            import PIL  # noqa: F401  (matplotlib reads every format but PNG through Pillow)
        except ImportError:
            raise ValueError(f"image '{path}': only PNG can be read without Pillow; convert it to PNG or install Pillow") from None
    try:
        picture = mpimg.imread(path)
    except Exception as e:  # Pillow's and matplotlib's errors: not an image, a truncated file
        raise ValueError(f"image '{path}' cannot be read ({type(e).__name__}: {e}); use a PNG or JPEG file") from None
    picture = resized(np.asarray(picture), sizes[-2:])
    if np.issubdtype(picture.dtype, np.integer):
        picture = picture.astype(np.float64) / 255.0
    if picture.ndim == 3 and picture.shape[-1] == 4:
        picture = picture[..., :3]  # the alpha channel is not drawn
    if len(sizes) == 3:
        picture = np.broadcast_to(picture, (sizes[0], *picture.shape))
    return picture


def resized(picture: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """``picture`` (height, width, ...) resized to ``size`` by nearest pixel: output pixel ``i``
    takes the input pixel under its centre.

    >>> resized(np.arange(4).reshape(2, 2), (4, 2)).tolist()
    [[0, 1], [0, 1], [2, 3], [2, 3]]
    """
    rows = ((np.arange(size[0]) + 0.5) * picture.shape[0] / size[0]).astype(int)
    columns = ((np.arange(size[1]) + 0.5) * picture.shape[1] / size[1]).astype(int)
    return picture[rows][:, columns]
