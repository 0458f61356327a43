"""``rfnumeric.effective``: the effective receptive field, with the model's real weights.

Luo et al. (2016), "Understanding the Effective Receptive Field in Deep Convolutional Neural
Networks": the gradient of one unit with respect to the input, averaged in magnitude over random
inputs, concentrates in a Gaussian-like region much smaller than the structural field, whose
radius grows like the square root of depth.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from rfarith.errors import ProbeError

from . import layout as lay
from .capture import select_output
from .measure import Session, seed_for
from .mode import Retry
from .probe import probe
from .result import EffectiveField
from .search import probes_per_forward

FRACTIONS = (0.5, 0.9, 0.99)


def effective(
    model: nn.Module,
    input_shape: Sequence[int],
    node: str | None = None,
    n_inputs: int = 16,
    seed: int = 0,
    mode: str = "local",
    output: int | str | None = None,
    max_size: int = 4096,
) -> EffectiveField:
    """Effective receptive field of the centre unit of ``node`` (the model output by default).

    The structural probe first finds an input large enough for the field and the centre unit;
    then the model runs with its real weights and nonlinearities (a float64 copy, in eval mode)
    on ``n_inputs`` standard-normal inputs drawn with ``seed``, and the map is the mean of
    ``|input gradient|`` (summed over channels) of that unit. ``mode`` is as in :func:`probe`.

    >>> import torch, torch.nn as nn, rfnumeric
    >>> _ = torch.manual_seed(0)
    >>> net = nn.Sequential(*[nn.Conv1d(4, 4, 3) for _ in range(8)])
    >>> erf = rfnumeric.effective(net, (1, 4, 64), n_inputs=8)
    >>> erf.structural_r, 2 * erf.radii[0.9][0] < erf.structural_r[0]
    ((17,), True)
    """
    if n_inputs < 1:
        raise ValueError(f"n_inputs must be at least 1, got {n_inputs}")
    structural = probe(model, input_shape, node=node, mode=mode, output=output, max_size=max_size)
    session = Session(model, input_shape, "real")
    target = session.target(node, output)
    sizes = structural.input_shape[2:]
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(
        (n_inputs, session.channels, *sizes), generator=generator, dtype=torch.float64
    )
    heat = _mean_magnitude(session, target, inputs, structural.unit, mode == "local")
    if not np.any(heat):
        raise ProbeError(
            f"no input pixel receives gradient from unit {structural.unit} of '{structural.node}' for any of "
            f"the {n_inputs} random inputs (the real model's nonlinearities block every path)"
        )
    centre = centroid(heat)
    radii = {q: mass_radii(heat, centre, q) for q in FRACTIONS}
    return EffectiveField(
        node=structural.node,
        axes=structural.axes,
        unit=structural.unit,
        heatmap=heat,
        centre=centre,
        radii=radii,
        structural_r=structural.r,
        ratio=tuple(r / s for r, s in zip(radii[0.9], structural.r)),
        input_shape=(n_inputs, session.channels, *sizes),
        n_inputs=n_inputs,
        seed=seed,
    )


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
