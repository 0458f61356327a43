"""The per-axis algebra (rfarith.axisfield): window, resample, union, canonical, hull.

Hand-made cases first, then hypothesis properties against the guide's recurrences:

    j' = j*s,   r' = r + d*(k-1)*j,   start' = start + (d*(k-1)/2 - p)*j

from the input field (one pixel per unit: j = 1, r = 1, start = 0.5).
"""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rfarith import axisfield as af

from .expect import formula_bounds

# ---- strategies ---------------------------------------------------------------------------------
layers = st.tuples(
    st.integers(1, 6),  # kernel
    st.integers(1, 4),  # stride
    st.integers(1, 3),  # dilation
    st.integers(-2, 4),  # left padding (negative: a crop)
)


def chain(layer_list) -> af.AxisField:
    field = af.pixel()
    for k, s, d, p in layer_list:
        field = af.window(field, k, s, d, p)
    return field


def guide(layer_list) -> tuple[int, int, Fraction]:
    """j, r, start by the guide's recurrences (dilation as an effective kernel d*(k-1)+1)."""
    j, r, start = 1, 1, Fraction(1, 2)
    for k, s, d, p in layer_list:
        r = r + d * (k - 1) * j
        start = start + (Fraction(d * (k - 1), 2) - p) * j
        j = j * s
    return j, r, start


phases = st.one_of(
    st.just(af.EMPTY),
    st.tuples(st.integers(-20, 20), st.integers(1, 2**12 - 1).map(lambda m: m | 1)),
)


@st.composite
def periodic_fields(draw):
    """Any field: a period, a jump and one (lo, mask) per phase, not necessarily canonical."""
    period = draw(st.integers(1, 6))
    jump = draw(st.integers(0, 12))
    return period, jump, tuple(draw(phases) for _ in range(period))


# ---- hand-made cases ----------------------------------------------------------------------------
def test_pixel_is_the_input():
    """Unit m sees pixel m: n/j/r/start of the guide's input row (start = 0.5)."""
    f = af.pixel()
    assert (f.period, f.j, f.r, f.start) == (1, 1, 1, 0.5)
    assert [f.bounds(m) for m in (-1, 0, 5)] == [(-1, -1), (0, 0), (5, 5)]
    assert not (f.is_global or f.has_holes or f.is_nonuniform or f.is_empty)


def test_window_conv3_stride2_pad1():
    """k=3, s=2, p=1: unit m reads pixels 2m-1 .. 2m+1, so j=2, r=3, start=0.5+(1-1)*1=0.5."""
    f = af.window(af.pixel(), 3, 2, 1, 1)
    assert (f.j, f.r, f.start) == (2, 3, 0.5)
    assert [f.bounds(m) for m in range(3)] == [(-1, 1), (1, 3), (3, 5)]


def test_stride_larger_than_kernel_then_conv_leaves_holes():
    """1x1 stride 2 reads pixel 2m; a 3-tap conv after it reads units m-1..m+1 = pixels
    2m-2, 2m, 2m+2: hull r = 5 with holes at 2m-1 and 2m+1."""
    f = af.window(af.window(af.pixel(), 1, 2, 1, 0), 3, 1, 1, 1)
    assert (f.j, f.r, f.start) == (2, 5, 0.5)
    assert f.unit(0) == (-2, 0b10101)
    assert f.has_holes


def test_dilation_leaves_holes():
    """k=3, d=2: pixels m, m+2, m+4: r = 1 + 2*2 = 5, mask 10101."""
    f = af.window(af.pixel(), 3, 1, 2, 0)
    assert (f.r, f.start, f.has_holes) == (5, 2.5, True)


def test_resample_nearest_upsampling_by_two():
    """Output unit m reads input unit floor(m/2): period 2, one input pixel per two units."""
    f = af.resample(af.pixel(), 2, 1, ((0,), (0,)))
    assert (f.period, f.jump, f.j, f.r) == (2, 1, Fraction(1, 2), 1)
    assert [f.bounds(m) for m in range(5)] == [(0, 0), (0, 0), (1, 1), (1, 1), (2, 2)]


def test_resample_that_reduces_to_period_one_is_canonical():
    """Written with period 2 (unit 2q+p reads input unit 2q+p), the identity map comes back in
    its canonical form: period 1, the pixel field itself."""
    f = af.resample(af.pixel(), 2, 2, ((0,), (1,)))
    assert f == af.pixel()


def test_union_of_differently_centred_fields():
    """Pixels m..m+4 (k=5, p=0) and m-3..m+3 (k=7, p=3): hull m-3 .. m+4, r = 8."""
    a = af.window(af.pixel(), 5, 1, 1, 0)
    b = af.window(af.pixel(), 7, 1, 1, 3)
    u = af.union([a, b])
    assert (u.r, u.start, u.j) == (8, 1.0, 1)
    assert u.bounds(0) == (-3, 4)
    assert not af.same_centres([a, b])
    assert af.same_centres([b, af.window(af.pixel(), 3, 1, 1, 1)])


def test_union_refuses_different_jumps():
    with pytest.raises(ValueError, match="different jumps"):
        af.union([af.pixel(), af.window(af.pixel(), 1, 2, 1, 0)])


def test_union_of_non_overlapping_fields_has_holes():
    """Pixel m-2 and pixel m+2 (1-tap shifts by +-2): hull m-2 .. m+2 with a gap of 3."""
    left = af.window(af.pixel(), 1, 1, 1, 2)
    right = af.window(af.pixel(), 1, 1, 1, -2)
    u = af.union([left, right])
    assert u.unit(0) == (-2, 0b10001)
    assert (u.r, u.has_holes) == (5, True)


def test_hull_of_units_is_global_and_clipped():
    """A 3-tap padded conv over 8 pixels: units 0..7 see -1 .. 8 together; clipped to the
    input 0..7: every unit of the global field sees pixels 0..7, r = 8, start = 4.0, j = 0."""
    conv = af.window(af.pixel(), 3, 1, 1, 1)
    g = af.hull_of_units(conv, 8, 8)
    assert g.is_global and g.j == 0
    assert (g.r, g.start) == (8, 4.0)
    assert g.bounds(0) == g.bounds(5) == (0, 7)
    assert af.hull_of_units(g, 1, 8) == g  # already global: unchanged


def test_canonical_reduces_a_repeated_pattern():
    """Phases (0,1),(1,1),(2,1),(3,1) with jump 4: the pixel field written with period 4."""
    f = af.canonical(4, 4, ((0, 1), (1, 1), (2, 1), (3, 1)))
    assert f == af.pixel()


def test_nonuniform_sizes():
    """A transposed conv k=3 s=2 p=1: even units see one pixel, odd units two."""
    f = af.resample(af.pixel(), 2, 1, ((0,), (0, 1)))
    assert f.sizes == (1, 2) and f.is_nonuniform and f.r == 2


def test_empty_unit_has_no_bounds_and_nan_start():
    f = af.AxisField(2, 1, (af.EMPTY, (0, 1)))
    assert f.bounds(0) is None and f.bounds(1) == (0, 0)
    assert f.start != f.start  # NaN
    assert af.AxisField(1, 1, (af.EMPTY,)).is_empty


# ---- properties ---------------------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(st.lists(layers, min_size=1, max_size=4))
def test_composed_windows_follow_the_guide(layer_list):
    f = chain(layer_list)
    j, r, start = guide(layer_list)
    assert f.period == 1
    assert (f.j, f.r, Fraction(f.start)) == (j, r, start)


@settings(max_examples=200, deadline=None)
@given(st.lists(layers, min_size=0, max_size=4), st.integers(-50, 50))
def test_bounds_match_the_formula_for_period_one(layer_list, m):
    """bounds(m) == (start + m*j - r/2, start + m*j + r/2 - 1), exact integers."""
    f = chain(layer_list)
    assert f.bounds(m) == formula_bounds(f.start, f.j, f.r, m)


@settings(max_examples=200, deadline=None)
@given(layers, layers)
def test_two_windows_compose_as_one_effective_window(first, second):
    """Two windows have the hull of one window (the guide's collapsing of layers): unit m reads
    pixels from (m*s2 - p2)*s1 - p1 to (m*s2 - p2 + d2*(k2-1))*s1 - p1 + d1*(k1-1), i.e.
    extent d2*(k2-1)*s1 + d1*(k1-1) + 1, stride s1*s2, left padding p1 + p2*s1."""
    k1, s1, d1, p1 = first
    k2, s2, d2, p2 = second
    two = af.window(af.window(af.pixel(), k1, s1, d1, p1), k2, s2, d2, p2)
    extent = d2 * (k2 - 1) * s1 + d1 * (k1 - 1) + 1
    one = af.window(af.pixel(), extent, s1 * s2, 1, p1 + p2 * s1)
    assert (two.j, two.r, two.start) == (one.j, one.r, one.start)


@st.composite
def same_jump_pair(draw):
    """Two chains with the same product of strides (so the same j)."""
    strides = draw(st.lists(st.integers(1, 3), min_size=1, max_size=3))
    a = [(draw(st.integers(1, 5)), s, draw(st.integers(1, 2)), draw(st.integers(-1, 3))) for s in strides]
    b = [(draw(st.integers(1, 5)), s, draw(st.integers(1, 2)), draw(st.integers(-1, 3))) for s in strides]
    return chain(a), chain(b)


@settings(max_examples=200, deadline=None)
@given(same_jump_pair(), st.integers(-10, 10))
def test_union_is_commutative_idempotent_and_a_hull(pair, m):
    a, b = pair
    assert af.union([a, b]) == af.union([b, a])
    assert af.union([a, a]) == a
    assert af.union([af.union([a, b]), b]) == af.union([a, b])
    (lo_a, hi_a), (lo_b, hi_b) = a.bounds(m), b.bounds(m)
    assert af.union([a, b]).bounds(m) == (min(lo_a, lo_b), max(hi_a, hi_b))


@settings(max_examples=300, deadline=None)
@given(periodic_fields())
def test_canonical_never_changes_any_unit(raw):
    period, jump, phase_list = raw
    before = af.AxisField(period, jump, phase_list)
    after = af.canonical(period, jump, phase_list)
    assert period % after.period == 0
    for m in range(-2 * period, 3 * period):
        assert after.unit(m) == before.unit(m)


@settings(max_examples=200, deadline=None)
@given(periodic_fields(), st.integers(1, 4))
def test_canonical_finds_the_smallest_period_of_a_tiled_pattern(raw, copies):
    """A pattern of period d written out over d*copies phases comes back with period <= d."""
    d, jump, base = raw
    base_field = af.AxisField(d, jump, base)
    tiled = tuple(base_field.unit(m) for m in range(d * copies))
    f = af.canonical(d * copies, jump * copies, tiled)
    assert f.period <= d
    assert all(f.unit(m) == base_field.unit(m) for m in range(-d, 3 * d * copies))


@settings(max_examples=200, deadline=None)
@given(st.lists(layers, max_size=3), st.integers(1, 12), st.integers(1, 16))
def test_hull_of_units_sees_what_all_units_see_clipped(layer_list, n, extent):
    """Every unit of the global field sees the pixels seen by some unit 0..n-1, inside the input."""
    f = chain(layer_list)
    g = af.hull_of_units(f, n, extent)
    seen = set()
    for m in range(n):
        lo, mask = f.unit(m)
        seen |= {lo + i for i in range(mask.bit_length()) if mask >> i & 1}
    inside = sorted(p for p in seen if 0 <= p < extent)
    expected = (inside[0], inside[-1]) if inside else None
    assert g.is_global
    assert g.bounds(0) == g.bounds(7) == expected


@settings(max_examples=100, deadline=None)
@given(st.lists(layers, max_size=3))
def test_resample_with_identity_map_changes_nothing(layer_list):
    f = chain(layer_list)
    assert af.resample(f, 1, 1, ((0,),)) == f
    assert af.window(f, 1, 1, 1, 0) == f


@settings(max_examples=100, deadline=None)
@given(st.lists(layers, max_size=3), st.integers(2, 4))
def test_nearest_upsampling_repeats_each_unit(layer_list, factor):
    """Upsampling by ``factor``: output unit m sees what input unit floor(m/factor) sees, and
    j becomes j/factor exactly."""
    f = chain(layer_list)
    up = af.resample(f, factor, 1, ((0,),) * factor)
    assert up.j == Fraction(f.j, factor)
    for m in range(-factor, 4 * factor):
        assert up.bounds(m) == f.bounds(m // factor)
