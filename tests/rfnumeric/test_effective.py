"""rfnumeric.effective: the effective receptive field (Luo et al. 2016) of deep random stacks is
narrower than the structural field, and its radius grows sub-linearly with depth."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import rfarith
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


# ---- the input the real-weights passes run on, and their memory ------------------------------
def strided_stack() -> nn.Sequential:
    """Eight padded 3x3 convolutions, every second with stride 2: r 61, j 16. From a 32x32
    input the structural probe grows far past the field (to 160x160)."""
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for i in range(8):
        layers += [nn.Conv2d(3 if i == 0 else 8, 8, 3, stride=2 if i % 2 else 1, padding=1), nn.ReLU()]
    return nn.Sequential(*layers)


def plain_heat(model: nn.Module, shape: tuple[int, ...], unit: tuple[int, ...], n_inputs: int, seed: int) -> np.ndarray:
    """The effective map by plain autograd on a float64 copy: the mean of |d unit / d input|."""
    copy = nn.Sequential(*[m for m in model]).double().eval()
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn((n_inputs, *shape[1:]), generator=generator, dtype=torch.float64)
    heat = np.zeros(shape[2:])
    for x in inputs:
        x = x[None].clone().requires_grad_(True)
        out = copy(x)
        (gradient,) = torch.autograd.grad(out[(0, slice(None), *unit)].sum(), [x])
        heat += gradient.abs().sum(1)[0].numpy()
    return heat / n_inputs


def test_real_passes_run_on_the_smallest_input_that_holds_the_field():
    model = strided_stack()
    structural = rfnumeric.probe(model, (1, 3, 32, 32))
    erf = rfnumeric.effective(model, (1, 3, 32, 32), n_inputs=3)
    sizes = erf.input_shape[2:]
    assert structural.input_shape[2:] == (160, 160) and structural.r == (61, 61)
    assert sizes == (64, 64) and erf.unit == (2, 2)  # 3 jumps of 16 off each side
    # the unit sees its whole structural field there: support moved by 3 jumps, off the border
    moved = tuple((lo - 48, hi - 48) for lo, hi in structural.bounds)
    assert all(0 < lo and hi < size - 1 for (lo, hi), size in zip(moved, sizes))
    # and the map is what plain autograd gives for that unit on the same random inputs
    expected = plain_heat(model, (1, 3, *sizes), erf.unit, 3, 0)
    np.testing.assert_allclose(erf.heatmap, expected, rtol=1e-12, atol=0)
    box = tuple(slice(lo, hi + 1) for lo, hi in moved)
    outside = erf.heatmap.copy()
    outside[box] = 0
    assert not outside.any() and erf.heatmap[box].any()


def test_a_field_that_follows_the_input_size_keeps_the_probe_input():
    """Adaptive pooling to 8x8 after the stack: its windows follow the input size, so a smaller
    input changes the unit's field, and the structural check keeps the probe's input."""
    model = nn.Sequential(*strided_stack(), nn.AdaptiveAvgPool2d(8))
    with pytest.warns(rfnumeric.GrownInputWarning):
        structural = rfnumeric.probe(model, (1, 3, 32, 32))
        erf = rfnumeric.effective(model, (1, 3, 32, 32), n_inputs=2)
    assert structural.input_shape[2:] != (32, 32)
    assert erf.input_shape[2:] == structural.input_shape[2:] and erf.unit == structural.unit


def test_a_pass_over_the_memory_budget_is_refused_with_the_estimate():
    model = strided_stack()
    with pytest.raises(rfarith.ProbeError) as refused:
        rfnumeric.effective(model, (1, 3, 32, 32), n_inputs=2, memory_budget=2**20)
    message = str(refused.value)
    assert refused.value.kind == "memory"
    assert "64×64" in message and "1.0 MB" in message and "measured at 32×32" in message
    assert "memory_budget=" in message and "--max-memory-gb" in message
    # at the user's own input there is nothing to estimate: its pass is what the user's costs
    small = rfnumeric.effective(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1)), (1, 3, 16, 16), n_inputs=2, memory_budget=1)
    assert small.input_shape[2:] == (16, 16)


def test_a_map_every_path_of_which_is_global_follows_the_global_op():
    """A classifier's logits: the structural probe follows the pooling (no local path); the
    real-weights passes do too, instead of finding no gradient."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    erf = rfnumeric.effective(model, (1, 3, 16, 16), n_inputs=2)
    assert erf.heatmap.shape == (16, 16) and (erf.heatmap > 0).all()


@pytest.mark.parametrize("budget", [0, -1, "2GB", None, True])
def test_memory_budget_must_be_a_positive_number_of_bytes(budget):
    with pytest.raises(ValueError, match="memory_budget must be a positive number of bytes"):
        rfnumeric.effective(nn.Conv2d(1, 1, 3), (1, 1, 8, 8), memory_budget=budget)
