"""After an op that can make a field repeat only every few units, the probe measures a window.

Three adjacent units can show one shifted pattern by chance inside a longer period: a nearest
resize by 0.75 reads input units 0, 1, 2, 4, 5, 6, 8, ... (output m reads floor(4m/3)), so the
jump is 4/3 with period 3, yet units 3, 4, 5 read 4, 5, 6: two equal steps of 1. Before, the
probe trusted those three units (j 1) unless crosscheck told it the axis was periodic.
"""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch.nn as nn

import rfarith
import rfnumeric
from tests.crosscheck.test_properties import REGRESSIONS
from tests.generators import build


def resized(scale: float, mode: str = "nearest") -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.Upsample(scale_factor=scale, mode=mode), nn.Conv2d(1, 1, 3, padding=1))


@pytest.mark.parametrize("size", [8, 9, 10, 11, 12])
def test_a_nearest_resize_by_three_quarters_has_jump_four_thirds(size):
    """Input sizes put the centre unit at every phase of the period (n = 6 .. 9 units)."""
    model, shape = resized(0.75), (1, 1, size, size)
    expected = rfarith.analyze(model, shape).output
    assert expected.j == (Fraction(4, 3), Fraction(4, 3))
    probe = rfnumeric.probe(model, shape)
    assert (probe.j, probe.r, probe.start) == (expected.j, expected.r, expected.start)


def test_the_banded_steps_net_without_a_hint():
    """The slow profile's net whose centre units step evenly by chance (see the module doc)."""
    net = REGRESSIONS["banded_steps_are_not_holes"]
    model = build(net)
    expected = rfarith.analyze(model, net.input_shape).output
    probe = rfnumeric.probe(model, net.input_shape)
    assert (probe.j, probe.r, probe.start) == (expected.j, expected.r, expected.start)


def test_plain_convolutions_still_measure_three_units():
    """No such op on the path: no window (the probe's cost stays that of three units an axis)."""
    model = nn.Sequential(nn.Conv2d(1, 1, 3, stride=2), nn.MaxPool2d(2), nn.Conv2d(1, 1, 3))
    probe = rfnumeric.probe(model, (1, 1, 32, 32))
    assert len(probe.measured) <= 6 and probe.j == (4, 4)  # the centre, the map, two a side
