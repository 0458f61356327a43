"""``rfnumeric.effective``: the effective receptive field, with the model's real weights.

Luo et al. (2016), "Understanding the Effective Receptive Field in Deep Convolutional Neural
Networks": the gradient of one unit with respect to the input, averaged in magnitude over random
inputs, concentrates in a Gaussian-like region much smaller than the structural field, whose
radius grows like the square root of depth.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from rfarith.errors import ProbeError, RFError

from . import layout as lay
from .capture import select_output
from .measure import Request, Session, UnitSpec, seed_for
from .mode import Retry
from .probe import probe
from .result import EffectiveField, ProbeResult
from .search import probes_per_forward

FRACTIONS = (0.5, 0.9, 0.99)
EFFECTIVE_BUDGET = 3 * 2**29  # bytes a real-weights pass of one input may take (1.5 GiB)
REAL_BYTES_PER_ELEMENT = 12  # per float64 element a real-weights forward produces (ResNet-50 at 448x448: 11.9 measured)


def effective(
    model: nn.Module,
    input_shape: Sequence[int],
    node: str | None = None,
    n_inputs: int = 16,
    seed: int = 0,
    mode: str = "local",
    output: int | str | None = None,
    max_size: int = 4096,
    memory_budget: int = EFFECTIVE_BUDGET,
) -> EffectiveField:
    """Effective receptive field of the centre unit of ``node`` (the model output by default).

    The structural probe first finds an input large enough for the field and the centre unit;
    the real-weights passes run on the smallest input, from there down in whole jumps of the
    map, whose centre unit still sees its whole structural field (checked by a structural
    measurement of the unit there), never smaller than ``input_shape``. The model runs with its real weights and
    nonlinearities (a float64 copy, in eval mode) on ``n_inputs`` standard-normal inputs drawn
    with ``seed``, and the map is the mean of ``|input gradient|`` (summed over channels) of
    that unit. ``mode`` is as in :func:`probe`.

    A real-weights pass keeps every channel: on an input grown for a wide field it can take
    many gigabytes. Its cost is estimated first from one pass at ``input_shape`` (scaled by the
    area); past ``memory_budget`` bytes the call is refused with the estimate, before any
    large allocation.

    >>> import torch, torch.nn as nn, rfnumeric
    >>> _ = torch.manual_seed(0)
    >>> net = nn.Sequential(*[nn.Conv1d(4, 4, 3) for _ in range(8)])
    >>> erf = rfnumeric.effective(net, (1, 4, 64), n_inputs=8)
    >>> erf.structural_r, 2 * erf.radii[0.9][0] < erf.structural_r[0]
    ((17,), True)
    """
    if n_inputs < 1:
        raise ValueError(f"n_inputs must be at least 1, got {n_inputs}")
    if isinstance(memory_budget, bool) or not isinstance(memory_budget, (int, float)) or not memory_budget > 0:
        raise ValueError(f"memory_budget must be a positive number of bytes, got {memory_budget!r}")
    structural = probe(model, input_shape, node=node, mode=mode, output=output, max_size=max_size)
    # where every path passes a global op, the structural probe followed it (its result is in
    # full mode): the real-weights passes follow it too, or no pixel would get gradient
    local = structural.mode == "local"
    session = Session(model, input_shape, "real")
    target = session.target(node, output)
    sizes, unit = smallest_holding_input(model, structural, session.shape, node, output)
    check_cost(session, target, sizes, local, memory_budget, structural.node)
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(
        (n_inputs, session.channels, *sizes), generator=generator, dtype=torch.float64
    )
    heat = _mean_magnitude(session, target, inputs, unit, local)
    if not np.any(heat):
        raise ProbeError(
            f"no input pixel receives gradient from unit {unit} of '{structural.node}' for any of "
            f"the {n_inputs} random inputs (the real model's nonlinearities block every path)"
        )
    centre = centroid(heat)
    radii = {q: mass_radii(heat, centre, q) for q in FRACTIONS}
    return EffectiveField(
        node=structural.node,
        axes=structural.axes,
        unit=unit,
        heatmap=heat,
        centre=centre,
        radii=radii,
        structural_r=structural.r,
        ratio=tuple(r / s for r, s in zip(radii[0.9], structural.r)),
        input_shape=(n_inputs, session.channels, *sizes),
        n_inputs=n_inputs,
        seed=seed,
    )


def smallest_holding_input(
    model: nn.Module,
    structural: ProbeResult,
    input_shape: tuple[int, ...],
    node: str | None,
    output: int | str | None,
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The input the real-weights passes run on, and the probed unit's index there.

    The structural probe's input, shrunk on both sides of each axis by whole jumps of the map
    while the unit's support stays inside and the input no smaller than the user's: a unit
    ``k`` jumps nearer the origin then sees the same pixels moved by ``k * j``. That holds for
    a convolutional stack, not for every model (ops whose windows follow the input size), so
    the smaller input is kept only where a structural measurement of the unit there finds
    exactly that support, moved; else the structural probe's own input is used."""
    sizes = tuple(structural.input_shape[2:])
    if "clipped" in structural.flags:
        return sizes, structural.unit
    user = tuple(input_shape[2:])
    spare = tuple(
        _jumps_to_spare(span, size, least, j)
        for span, size, least, j in zip(structural.bounds, sizes, user, structural.j)
    )
    if not any(spare):
        return sizes, structural.unit
    steps = tuple(k * int(j) for k, j in zip(spare, structural.j))
    smaller = tuple(size - 2 * step for size, step in zip(sizes, steps))
    unit = tuple(u - k for u, k in zip(structural.unit, spare))
    try:
        session = Session(model, input_shape, "structural")
        request = Request(session.target(node, output), UnitSpec("fixed", unit=unit), keep_support=True)
        found = session.measure(smaller, [request], structural.mode == "local").elements[0]
    except RFError:
        return sizes, structural.unit
    box = tuple(slice(lo, hi + 1) for lo, hi in structural.bounds)
    moved = tuple(lo - step for (lo, _), step in zip(structural.bounds, steps))
    same = (
        found.unit == unit
        and found.support is not None
        and found.support[0] == moved
        and np.array_equal(found.support[1], structural.heatmap[box] != 0)
    )
    return (smaller, unit) if same else (sizes, structural.unit)


def _jumps_to_spare(span: tuple[int, int], size: int, least: int, j) -> int:
    """How many whole jumps ``j`` an axis of ``size`` pixels can lose on each side with the
    support ``span`` still off the border (the probe's test that a field fits) and the axis at
    least ``least`` long (0 where ``j`` is not a whole number of pixels: a global or periodic
    axis)."""
    if not (isinstance(j, int) or (isinstance(j, float) and j.is_integer())) or j < 1:
        return 0
    j = int(j)
    lo, hi = span
    return max(0, min((lo - 1) // j, (size - 2 - hi) // j, (size - least) // (2 * j)))


def check_cost(
    session: Session, target, sizes: tuple[int, ...], local: bool, budget: int, name: str
) -> None:
    """Refuse, before any large allocation, a real-weights pass at ``sizes`` whose memory,
    estimated from one pass at the user's input scaled by the area, passes ``budget`` bytes."""
    user = tuple(session.shape[2:])
    if math.prod(sizes) <= math.prod(user):
        return  # the user's own input: what their own forward costs
    generator = torch.Generator().manual_seed(0)
    x = torch.randn((1, session.channels, *user), generator=generator, dtype=torch.float64)
    _, mode, _ = session.forward(user, [target], 1, local, x=x.requires_grad_(True))
    per_pixel = mode.records.elements / math.prod(user)
    estimate = per_pixel * math.prod(sizes) * REAL_BYTES_PER_ELEMENT
    if estimate > budget:
        size_text = "×".join(map(str, sizes))
        raise ProbeError(
            f"the effective field of '{name}' needs real-weights passes on a {size_text} input (its "
            f"structural field does not fit a smaller one); one would take about {_bytes_text(estimate)} "
            f"({per_pixel:.0f} float64 tensor elements per input pixel, every channel, measured at "
            f"{'×'.join(map(str, user))}), over the memory budget of {_bytes_text(budget)}. Way out: a "
            "larger budget where the machine has the memory (memory_budget=BYTES; CLI: --max-memory-gb GB), "
            "or a shallower node",
            kind="memory",
        )


def _bytes_text(count: float) -> str:
    return f"{count / 2**30:.1f} GB" if count >= 2**29 else f"{count / 2**20:.1f} MB"


def _mean_magnitude(
    session: Session, target, inputs: torch.Tensor, unit: tuple[int, ...], local: bool
) -> np.ndarray:
    """Mean over the inputs of |d unit / d input|, summed over channels. The first input runs
    alone; the others in batches as large as :data:`~rfnumeric.search.MEMORY_BUDGET` holds at
    what the first one cost (a real-weights forward keeps every channel: at a grown input, all
    inputs in one batch could take many gigabytes). A model that mixes batch elements runs one
    input at a time."""
    heat, elements = _gradient_magnitude(session, target, inputs[:1], unit, local)
    per_batch = probes_per_forward(elements)
    start = 1
    while start < len(inputs):
        chunk = inputs[start : start + per_batch]
        try:
            heat = heat + _gradient_magnitude(session, target, chunk, unit, local)[0]
        except Retry:  # the model mixes batch elements: one input at a time
            per_batch = 1
            continue
        start += len(chunk)
    return heat / len(inputs)


def _gradient_magnitude(
    session: Session, target, inputs: torch.Tensor, unit: tuple[int, ...], local: bool
) -> tuple[np.ndarray, int]:
    """Sum over the inputs of |d unit / d input|, summed over channels, and the tensor elements
    the forward produced per input."""
    batch = inputs.shape[0]
    leaf = inputs.clone().requires_grad_(True)
    captured, mode, _ = session.forward(tuple(inputs.shape[2:]), [target], batch, local, x=leaf)
    where = "the model" if target.locator.kind == "output" else f"node '{target.name}'"
    tensor = select_output(captured[target.name], target.output, where)
    layout = lay.get(tensor) or lay.assumed(tensor.shape, len(session.shape))
    if layout is None or not lay.locatable(layout, offsets=True):
        raise ProbeError(
            f"cannot tell where the units of '{target.name}' (shape {tuple(tensor.shape)}) are"
        )
    if batch > 1 and not any(label == lay.BATCH for dim in layout for label, _, _ in dim):
        raise Retry("batch", target.name)
    root, seed = seed_for(tensor, layout, [(e, unit) for e in range(batch)], batch)
    (gradient,) = torch.autograd.grad([root], [leaf], grad_outputs=[seed], allow_unused=True)
    if gradient is None:
        raise ProbeError(f"'{target.name}' does not depend on the model input")
    return gradient.detach().abs().sum(1).sum(0).numpy(), mode.records.elements // batch


def _profiles(heat: np.ndarray) -> list[np.ndarray]:
    axes = range(heat.ndim)
    return [
        heat.sum(axis=tuple(b for b in axes if b != a)) if heat.ndim > 1 else heat for a in axes
    ]


def centroid(heat: np.ndarray) -> tuple[float, ...]:
    """Per axis, the gradient-mass centroid in input coordinates (pixel i centred at i + 0.5)."""
    return tuple(float(np.sum((np.arange(p.size) + 0.5) * p) / np.sum(p)) for p in _profiles(heat))


def mass_radii(heat: np.ndarray, centre: Sequence[float], fraction: float) -> tuple[float, ...]:
    """Per axis, the smallest distance from ``centre`` within which the pixels' centres hold
    ``fraction`` of the mass projected on that axis."""
    radii = []
    for profile, c in zip(_profiles(heat), centre):
        distance = np.abs(np.arange(profile.size) + 0.5 - c)
        order = np.argsort(distance, kind="stable")
        mass = np.cumsum(profile[order])
        k = int(np.searchsorted(mass, fraction * mass[-1] * (1 - 1e-12)))
        radii.append(float(distance[order][min(k, profile.size - 1)]))
    return tuple(radii)
