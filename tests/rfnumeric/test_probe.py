"""rfnumeric.probe on hand-made nets: exact fields, derived by hand and checked against rfarith.

Each case gives per axis (start, r, j) derived in the net's docstring (tests/rfnumeric/nets.py)
or next to the case. Unit m then sees ``lo(m) = start + m*j - r/2`` .. ``hi(m) = lo(m) + r - 1``:
the centre unit's measured bounds must be exactly that, the corner unit's that clipped to the
input.
"""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import rfarith
import rfnumeric
from tests.rfnumeric import nets


def bounds(start: float, r: int, j: int, m: int) -> tuple[int, int]:
    lo = Fraction(start) + m * j - Fraction(r, 2)
    assert lo.denominator == 1
    return int(lo), int(lo) + r - 1


CASES = {
    # name: (factory, input shape, per-axis starts, sizes, jumps, flags)
    "aligned": (nets.Aligned, (1, 1, 16, 16), (0.5, 0.5), (3, 3), (4, 4), set()),
    # the union of the branches' squares [2m, 2m+4]^2 and [2m-3, 2m+3]^2 fills the 8x8 box but
    # for two corners ((2m-3, 2m+4) and (2m+4, 2m-3)): holes in 2-D, none along either axis
    "misaligned": (nets.Misaligned, (1, 1, 16, 16), (1.0, 1.0), (8, 8), (2, 2), {"holes"}),
    "geometry": (nets.Geometry, (1, 2, 40, 40), (4.5, 3.5), (13, 13), (4, 4), set()),
    "functional": (nets.FunctionalOnly, (1, 3, 64, 64), (1.5, 1.5), (15, 15), (4, 4), set()),
    "data-dependent if": (nets.DataDependent, (1, 3, 32, 32), (3.5, 3.5), (7, 7), (2, 2), set()),
    # conv 3 pad 1 (0.5, 3, 1); max pool 2 (1.0, 4, 2); conv 3 (3.0, 8, 2)
    "relu and max pool": (
        lambda: nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 8, 3)
        ),
        (1, 3, 32, 32),
        (3.0, 3.0),
        (8, 8),
        (2, 2),
        set(),
    ),
    # 1x1 stride 2: unit k sees 2k; 3x3: units m..m+2 -> 2m, 2m+2, 2m+4: (2.5, 5, 2), holes
    "holes": (
        lambda: nn.Sequential(nn.Conv2d(1, 2, 1, stride=2), nn.Conv2d(2, 2, 3)),
        (1, 1, 32, 32),
        (2.5, 2.5),
        (5, 5),
        (2, 2),
        {"holes"},
    ),
    # conv 3 (1.5, 3, 1); max pool 3 s2 p1 dilation 2 ceil (2.5, 7, 2); conv 3 (4.5, 11, 2)
    "dilated max pool": (
        lambda: nn.Sequential(
            nn.Conv2d(1, 2, 3),
            nn.MaxPool2d(3, 2, 1, dilation=2, ceil_mode=True),
            nn.ReLU6(),
            nn.Conv2d(2, 2, 3),
        ),
        (1, 1, 33, 33),
        (4.5, 4.5),
        (11, 11),
        (2, 2),
        set(),
    ),
    # conv 5 s2 (2.5, 5, 2); max pool 2 (3.5, 7, 4); conv 3 dilation 3 (15.5, 31, 4): taps 12 px
    # apart, each 7 wide: holes
    "1-D": (
        lambda: nn.Sequential(
            nn.Conv1d(2, 3, 5, stride=2),
            nn.Sigmoid(),
            nn.MaxPool1d(2),
            nn.Conv1d(3, 3, 3, dilation=3),
        ),
        (1, 2, 100),
        (15.5,),
        (31,),
        (4,),
        {"holes"},
    ),
    # conv 3 s2 (1.5, 3, 2) per axis; then kernel (1, 3, 5): d (1.5, 3, 2), h (3.5, 7, 2), w (5.5, 11, 2)
    "3-D": (
        lambda: nn.Sequential(
            nn.Conv3d(1, 2, 3, stride=2), nn.Hardtanh(), nn.Conv3d(2, 2, (1, 3, 5))
        ),
        (1, 1, 16, 16, 16),
        (1.5, 3.5, 5.5),
        (3, 7, 11),
        (2, 2, 2),
        set(),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_structural_probe_is_exact(name):
    factory, shape, starts, sizes, jumps, flags = CASES[name]
    model = factory().eval()
    p = rfnumeric.probe(model, shape)
    assert p.r == sizes and p.j == jumps and p.start == starts
    assert p.flags == frozenset(flags)
    expected = tuple(bounds(s, r, j, m) for s, r, j, m in zip(starts, sizes, jumps, p.unit))
    assert p.bounds == expected
    assert p.unit == tuple(n // 2 for n in p.n)
    assert all(lo > 0 and hi < size - 1 for (lo, hi), size in zip(p.bounds, p.input_shape[2:]))


@pytest.mark.parametrize("name", list(CASES))
def test_corner_unit_bounds_are_the_field_clipped_to_the_input(name):
    """The corner unit's measured bounds are its analytic bounds clipped to the input, except
    where a pixel is reachable only through padding inside the net: in 'dilated max pool', pool
    unit 0 reads conv units -1, 1, 3 and unit -1 (the only one seeing pixel 0) is padding, so
    the corner unit sees pixels 1..9, not 0..9 (the zero-input check in test_verification.py
    confirms what it sees)."""
    factory, shape, starts, sizes, jumps, _ = CASES[name]
    corner = (0,) * (len(shape) - 2)
    p = rfnumeric.probe(factory().eval(), shape, unit=corner)
    assert p.unit == corner
    assert p.r == sizes and p.j == jumps and p.start == starts  # still from the centre unit
    expected = []
    for s, r, j, size in zip(starts, sizes, jumps, p.input_shape[2:]):
        lo, hi = bounds(s, r, j, 0)
        expected.append((max(lo, 0), min(hi, size - 1)))
    measured = tuple((min(sup), max(sup)) for sup in p.support)
    assert p.bounds == measured
    assert all(e_lo <= lo and hi <= e_hi for (lo, hi), (e_lo, e_hi) in zip(p.bounds, expected))
    if name != "dilated max pool":
        assert p.bounds == tuple(expected)
    if "holes" not in CASES[name][5]:  # without holes, the unit sees its whole (clipped) box
        box = tuple(slice(lo, hi + 1) for lo, hi in p.bounds)
        assert (p.heatmap[box] != 0).all()
    touches = any(lo == 0 or hi == size - 1 for (lo, hi), size in zip(p.bounds, p.input_shape[2:]))
    assert ("clipped" in p.flags) == touches


@pytest.mark.parametrize(
    "name", [n for n in CASES if n != "data-dependent if"]
)  # fx cannot trace it
def test_probe_agrees_with_rfarith(name):
    factory, shape, *_ = CASES[name]
    model = factory().eval()
    p = rfnumeric.probe(model, shape)
    rf = rfarith.analyze(model, shape).output
    assert (p.r, p.j, p.start) == (rf.r, rf.j, rf.start)
    assert p.bounds == rf.bounds(p.unit)
    assert p.support == rf.seen(p.unit)  # exactly the same pixels, holes included
    assert p.flags - {"clipped"} == rf.flags - {"misaligned"}


def test_holes_support_is_exact():
    """1x1 stride 2 then 3x3: the centre unit m sees exactly pixels 2m, 2m+2, 2m+4 per axis."""
    p = rfnumeric.probe(
        nn.Sequential(nn.Conv2d(1, 2, 1, stride=2), nn.Conv2d(2, 2, 3)), (1, 1, 32, 32)
    )
    for m, seen in zip(p.unit, p.support):
        assert seen == (2 * m, 2 * m + 2, 2 * m + 4)
    nonzero = p.heatmap != 0
    assert nonzero.sum() == 9  # the 3x3 grid of seen pixels, nothing else


def test_probe_grows_the_input_until_the_field_fits():
    """20 padded 3x3 convs: r = 41, start = 20.5 - 20 = 0.5; a 24-pixel input is too small."""
    p = rfnumeric.probe(nets.conv_stack(20, padding=1), (1, 1, 24, 24))
    assert p.r == (41, 41) and p.j == (1, 1) and p.start == (0.5, 0.5)
    assert all(size > 41 for size in p.input_shape[2:])
    assert "clipped" not in p.flags


def test_size_hint_starts_large_enough():
    p = rfnumeric.probe(nets.conv_stack(20, padding=1), (1, 1, 24, 24), size_hint=41)
    assert p.r == (41, 41)
    # 41 + max(8, 41 // 4) = 51, rounded up to a multiple of 8 (the largest power of two dividing
    # the user's 24, so models that need divisible sizes accept it): 56; no growth needed
    assert p.input_shape[2:] == (56, 56)


def test_field_wider_than_max_size_is_an_error_that_says_how_to_raise_it():
    with pytest.raises(rfarith.ProbeError, match=r"max_size=64.*max_size=128"):
        rfnumeric.probe(nets.conv_stack(40, padding=1), (1, 1, 24, 24), max_size=64)


def test_nodes_by_fx_name_and_by_module_path():
    model = nets.Residual().eval()
    by_module = rfnumeric.probe(model, (1, 3, 32, 32), node="conv2")
    assert by_module.r == (5, 5)
    by_function = rfnumeric.probe(model, (1, 3, 32, 32), node="add")  # out += x: an fx 'add' node
    assert by_function.r == (5, 5)
    second_relu = rfnumeric.probe(model, (1, 3, 32, 32), node="relu_1")  # the second call of relu
    assert second_relu.r == (5, 5)
    first_relu = rfnumeric.probe(model, (1, 3, 32, 32), node="relu")
    assert first_relu.r == (3, 3)


def test_untraceable_model_is_probed_at_module_paths():
    model = nets.DataDependent().eval()
    assert rfnumeric.probe(model, (1, 3, 32, 32), node="a").r == (3, 3)
    assert rfnumeric.probe(model, (1, 3, 32, 32), node="b").r == (7, 7)


def test_repeated_module_calls_without_fx():
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 3)

        def forward(self, x):
            if x.sum() > 0:  # not traceable
                x = self.conv(x)
            return self.conv(x)

    model = Twice().eval()
    assert rfnumeric.probe(model, (1, 2, 32, 32), node="conv").r == (3, 3)
    assert rfnumeric.probe(model, (1, 2, 32, 32), node="conv_1").r == (5, 5)


def test_squeeze_excite_local_and_full():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nets.SqueezeExcite()).eval()
    local = rfnumeric.probe(model, (1, 3, 32, 32))
    assert local.r == (5, 5) and local.j == (1, 1) and local.start == (1.5, 1.5)
    assert local.flags == {"global"} and local.global_via == ("1.pool",)
    assert local.mode == "local"
    full = rfnumeric.probe(model, (1, 3, 32, 32), mode="full")
    assert full.r == (32, 32) and full.j == (0, 0) and full.start == (16.0, 16.0)
    assert full.flags == {"global"} and full.mode == "full"
    assert (full.heatmap != 0).all()


def test_global_pooling_head_is_global():
    """The features see pixels 0..30 of 32 (the stride-2 conv never reaches pixel 31); after
    global pooling every unit sees all of that: r = 31, j = 0, start = 15.5."""
    p = rfnumeric.probe(nets.Classifier().eval(), (1, 3, 32, 32))
    assert p.r == (31, 31) and p.j == (0, 0) and p.start == (15.5, 15.5)
    assert "global" in p.flags and p.global_via == ("pool",)
    assert p.n == (1, 1) and p.unit == (0, 0)


def test_one_unit_map_has_no_jump():
    """Cropping one unit: n = 1 at every input size. Unit 0 is conv unit 5 (pixels 5..7):
    r = 3, start = 6.5; with a single unit there is no neighbour, so j is NaN."""

    class Crop(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 3)

        def forward(self, x):
            return self.conv(x)[:, :, 5:6, 5:6]

    p = rfnumeric.probe(Crop().eval(), (1, 1, 16, 16))
    assert p.n == (1, 1) and p.r == (3, 3) and p.start == (6.5, 6.5)
    assert all(math.isnan(j) for j in p.j)
    assert p.bounds == ((5, 7), (5, 7))


def test_bounds_of_neighbours():
    p = rfnumeric.probe(nn.Conv2d(1, 1, 3, stride=2), (1, 1, 32, 32))
    m = p.unit
    assert p.bounds_of(m) == p.bounds
    right = (m[0], m[1] + 1)
    assert p.bounds_of(right) == (p.bounds[0], (p.bounds[1][0] + 2, p.bounds[1][1] + 2))
    with pytest.raises(KeyError, match="was not measured"):
        p.bounds_of((0, 0))


def test_real_weights_relu_can_only_shrink_the_field():
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.ReLU(), nn.Conv2d(4, 1, 3)
    ).eval()
    structural = rfnumeric.probe(model, (1, 1, 24, 24))
    real = rfnumeric.probe(model, (1, 1, 24, 24), weights="real")
    assert real.weights == "real"
    assert set(zip(*real.support)) <= set(zip(*structural.support)) or all(
        set(a) <= set(b) for a, b in zip(real.support, structural.support)
    )
    assert all(r <= s for r, s in zip(real.r, structural.r))


def test_arguments_are_checked():
    model = nn.Conv2d(1, 1, 3)
    with pytest.raises(ValueError, match="mode must be"):
        rfnumeric.probe(model, (1, 1, 8, 8), mode="global")
    with pytest.raises(ValueError, match="weights must be"):
        rfnumeric.probe(model, (1, 1, 8, 8), weights="random")
    with pytest.raises(ValueError, match="one index per spatial axis"):
        rfnumeric.probe(model, (1, 1, 8, 8), unit=(1,))
    with pytest.raises(rfarith.ShapeError, match="rank"):
        rfnumeric.probe(model, (1, 8))
    with pytest.raises(ValueError, match="outside the map"):
        rfnumeric.probe(model, (1, 1, 8, 8), unit=(9, 9))


def test_growing_through_input_size_dependent_ops_is_said():
    """11 padded 3x3 convs (r = 23) then adaptive pooling to 24: the identity on a 24-pixel
    input, where the centre unit sees pixels 1..23 (touching the border). On the grown input
    the pooling averages 2-pixel windows: the field measured there is not the one at 24."""
    model = nn.Sequential(nets.conv_stack(11, padding=1), nn.AdaptiveAvgPool2d(24))
    with pytest.warns(
        rfnumeric.GrownInputWarning,
        match=r"'output' does not fit input size \(24, 24\).*where 1 \(whose",
    ):
        p = rfnumeric.probe(model, (1, 1, 24, 24))
    assert p.input_shape[2:] != (24, 24)


def test_a_field_that_grows_with_the_input_is_an_error():
    """Adaptive pooling to 2x2: every unit sees about half the input at any input size."""
    model = nn.Sequential(nn.Conv2d(1, 2, 7, stride=4), nn.AdaptiveAvgPool2d(2), nn.Conv2d(2, 2, 1))
    with pytest.raises(rfarith.ProbeError, match=r"grows with the input: 1 scales its windows"):
        rfnumeric.probe(model, (1, 1, 24, 24))
    assert rfnumeric.probe(model, (1, 1, 24, 24), node="0").r == (7, 7)  # before it: fine


def test_growing_through_size_independent_ops_is_silent(recwarn):
    rfnumeric.probe(nets.conv_stack(20, padding=1), (1, 1, 24, 24))
    assert not [w for w in recwarn if issubclass(w.category, rfnumeric.GrownInputWarning)]


class ResizedToTheInput(nn.Module):
    """A segmentation head: stride 4 (two 3x3 s2 convs), eight 3x3 convs at j 4 (r 7 + 8*8 =
    71), nearest resize to the input's size (ratio 4 at any multiple of 4)."""

    def __init__(self) -> None:
        super().__init__()
        self.down = nn.Sequential(nn.Conv2d(1, 2, 3, stride=2, padding=1), nn.Conv2d(2, 2, 3, stride=2, padding=1))
        self.body = nn.Sequential(*[nn.Conv2d(2, 2, 3, padding=1) for _ in range(8)])

    def forward(self, x):
        assert bool(torch.isfinite(x).all()), "non-finite input"  # fx cannot trace it: no analytic start
        return F.interpolate(self.body(self.down(x)), size=x.shape[-2:], mode="nearest")


def test_a_resize_to_the_input_size_that_keeps_its_ratio_is_measured_on_a_larger_input():
    """The field (71) needs the input to grow twice past the asked 32 through a resize to a
    given size (it was refused after one growth); that resize keeps its ratio, so the field
    fits: r 71, j 1 (nearest x4 after j 4), as the hand derivation says."""
    model = ResizedToTheInput()
    with pytest.warns(rfnumeric.GrownInputWarning, match="interpolate"):
        p = rfnumeric.probe(model, (1, 1, 32, 32))
    assert p.r == (71, 71) and p.input_shape[2:] != (32, 32)
