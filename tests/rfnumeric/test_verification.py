"""The seed's verification recipe, as a test: measured bounds are exactly what a unit sees.

Recipe (simple Numerical Receptive Fields, "Verification"): with the biases zeroed, feed an
input of ones in which every pixel inside the measured bounds is zero. The probed unit's output
is then exactly 0, while units whose fields reach outside the zeroed block are not. With
positive weights and no ReLU nothing else can make an output zero, so the converse holds too:
giving back any single edge row or column of the block makes the unit non-zero, so the bounds
are tight. (The bounds the seed's README prints cannot be reproduced from the code it shows; the
test checks the recipe, not those numbers.)
"""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

import rfnumeric
from tests.rfnumeric import nets


def seed_net() -> nn.Sequential:
    """The seed README's conv block, with fewer channels."""
    return nn.Sequential(
        nn.Conv2d(3, 4, (5, 3), stride=(3, 2)),
        nn.Conv2d(4, 4, (5, 3), stride=2),
        nn.Conv2d(4, 4, 3, stride=2),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.Conv2d(4, 2, 3),
    )


def positive_without_bias(model: nn.Module) -> nn.Module:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
                m.weight.abs_().add_(0.01)
                if m.bias is not None:
                    m.bias.zero_()
    return model.eval().double()


def output_with_block_zeroed(model: nn.Module, shape, block) -> torch.Tensor:
    x = torch.ones(shape, dtype=torch.float64)
    index = (slice(None), slice(None)) + tuple(slice(lo, hi + 1) for lo, hi in block)
    x[index] = 0
    with torch.no_grad():
        return model(x)


def unit_value(out: torch.Tensor, unit) -> float:
    return float(out[(0, slice(None), *unit)].abs().sum())


CASES = {
    "seed block": (seed_net, (1, 3, 130, 130), (4, 8)),
    "seed block, centre": (seed_net, (1, 3, 130, 130), None),
    "misaligned branches": (nets.Misaligned, (1, 1, 16, 16), None),
    "misaligned, corner": (nets.Misaligned, (1, 1, 16, 16), (0, 0)),
    "asymmetric pad, same, ceil": (nets.Geometry, (1, 2, 40, 40), None),
    "corner behind a padded dilated pool": (
        lambda: nn.Sequential(
            nn.Conv2d(1, 2, 3),
            nn.MaxPool2d(3, 2, 1, dilation=2, ceil_mode=True),
            nn.Conv2d(2, 2, 3),
        ),
        (1, 1, 33, 33),
        (0, 0),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_zeroing_the_measured_bounds_zeroes_the_unit_and_nothing_less_does(name):
    factory, shape, unit = CASES[name]
    model = positive_without_bias(factory())
    p = rfnumeric.probe(model, shape, unit=unit)
    assert p.input_shape[2:] == shape[2:] or unit is None
    shape = (1, shape[1], *p.input_shape[2:])
    out = output_with_block_zeroed(model, shape, p.bounds)
    assert unit_value(out, p.unit) == 0.0

    # every unit whose field reaches outside the block stays non-zero: the direct neighbours
    for axis, step in itertools.product(range(len(p.unit)), (-1, 1)):
        other = list(p.unit)
        other[axis] += step
        if 0 <= other[axis] < out.shape[2 + axis]:
            assert unit_value(out, other) > 0.0, f"neighbour {tuple(other)} of {p.unit}"

    # tight: giving back any one edge of the block makes the unit non-zero again
    for axis, side in itertools.product(range(len(p.bounds)), (0, 1)):
        smaller = list(p.bounds)
        lo, hi = smaller[axis]
        if lo == hi:
            continue
        smaller[axis] = (lo + 1, hi) if side == 0 else (lo, hi - 1)
        assert unit_value(output_with_block_zeroed(model, shape, smaller), p.unit) > 0.0, (
            axis,
            side,
        )
