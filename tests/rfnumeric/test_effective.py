"""rfnumeric.effective: the effective receptive field (Luo et al. 2016) of deep random stacks is
narrower than the structural field, and its radius grows sub-linearly with depth."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import rfnumeric
from rfnumeric.effective import centroid, mass_radii


def random_stack(depth: int, channels: int = 8) -> nn.Sequential:
    """``depth`` padded 3-tap convolutions with ReLU, He-initialised: r = 1 + 2*depth."""
    torch.manual_seed(depth)
    layers: list[nn.Module] = []
    for _ in range(depth):
        conv = nn.Conv1d(channels, channels, 3, padding=1)
        nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
        nn.init.zeros_(conv.bias)
        layers += [conv, nn.ReLU()]
    return nn.Sequential(*layers)


@pytest.fixture(scope="module")
def erfs() -> dict[int, rfnumeric.EffectiveField]:
    return {
        depth: rfnumeric.effective(random_stack(depth), (1, 8, 64), n_inputs=16)
        for depth in (4, 16, 64)
    }


def test_structural_size_is_the_stack_arithmetic(erfs):
    for depth, erf in erfs.items():
        assert erf.structural_r == (1 + 2 * depth,)


def test_effective_field_is_narrower_than_the_structural_one(erfs):
    for erf in erfs.values():
        radius = erf.radii[0.9][0]
        assert 2 * radius < erf.structural_r[0]
        assert erf.ratio == (radius / erf.structural_r[0],)
        assert erf.radii[0.5][0] <= radius <= erf.radii[0.99][0]


def test_radius_grows_sub_linearly_with_depth(erfs):
    """Depth x4 twice: a linear growth would multiply the radius by 4; a square-root growth, as
    Luo et al. find, by about 2."""
    r4, r16, r64 = (erfs[d].radii[0.9][0] for d in (4, 16, 64))
    assert r4 < r16 < r64
    assert r16 / r4 < 3 and r64 / r16 < 3
    assert erfs[64].ratio[0] < erfs[16].ratio[0] < erfs[4].ratio[0]


def test_effective_map_is_centred_on_the_unit(erfs):
    for erf in erfs.values():
        unit_centre = erf.unit[0] + 0.5  # padded stride-1 stack: unit m is centred on pixel m
        assert abs(erf.centre[0] - unit_centre) < 3


def test_same_seed_same_map_other_seed_other_map():
    model = random_stack(4)
    a = rfnumeric.effective(model, (1, 8, 32), n_inputs=4, seed=1)
    b = rfnumeric.effective(model, (1, 8, 32), n_inputs=4, seed=1)
    c = rfnumeric.effective(model, (1, 8, 32), n_inputs=4, seed=2)
    assert np.array_equal(a.heatmap, b.heatmap)
    assert not np.array_equal(a.heatmap, c.heatmap)


def test_two_dimensional_radii_per_axis():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(2, 4, (3, 7), padding=(1, 3)), nn.Tanh(), nn.Conv2d(4, 4, (3, 7), padding=(1, 3))
    )
    erf = rfnumeric.effective(model, (1, 2, 24, 24), n_inputs=4)
    assert erf.structural_r == (5, 13)
    assert erf.radii[0.99][0] < erf.radii[0.99][1]
    assert erf.heatmap.shape == (24, 24)


def test_mass_radius_definition():
    """Mass 1, 2, 1 on pixels 3, 4, 5: the centroid is pixel 4's centre, 4.5; the centre
    pixel alone holds half, the three pixels all of it at distance 1."""
    heat = np.zeros(10)
    heat[3:6] = [1, 2, 1]
    assert centroid(heat) == (4.5,)
    assert mass_radii(heat, (4.5,), 0.5) == (0.0,)
    assert mass_radii(heat, (4.5,), 0.9) == (1.0,)
