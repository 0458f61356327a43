"""Plain autograd as the ground truth of what one unit sees, for tests of every package."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn


def seen_by_autograd(
    model: nn.Module,
    shape: Sequence[int],
    unit: Sequence[int],
    pick: Callable[[Any], torch.Tensor] = lambda out: out,
) -> np.ndarray:
    """The input pixels whose gradient reaches ``unit`` of the map ``pick(model(x))`` (summed
    over its channels), as a boolean array over the input's spatial axes: a float64 copy of
    the model with its own random weights, one standard-normal input (seed 0)."""
    net = copy.deepcopy(model).double()
    torch.manual_seed(0)
    x = torch.randn(tuple(shape), dtype=torch.float64, requires_grad=True)
    pick(net(x))[(0, slice(None), *unit)].sum().backward()
    return (x.grad[0].abs().sum(0) > 0).numpy()


def per_axis(seen: np.ndarray) -> tuple[tuple[int, ...], ...]:
    """Per axis, the indices where ``seen`` holds a pixel (the projection of a 2-D mask)."""
    return tuple(tuple(int(i) for i in np.flatnonzero(seen.any(axis=1 - a))) for a in range(2))
