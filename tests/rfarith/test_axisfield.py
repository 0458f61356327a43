"""The per-axis algebra (rfarith.axisfield): window, resample, union, canonical period, hull.

Two readings of a field are tested:

- the periodic extension (``unit`` / ``bounds``), the guide's unclipped field, against the
  guide's recurrences from the input field (j = 1, r = 1, start = 0.5):
      j' = j*s,   r' = r + d*(k-1)*j,   start' = start + (d*(k-1)/2 - p)*j
- the real units (``real``), against a brute-force model written here: a map is a list of
  pixel sets, one per unit; a window's unit m is the union of the sets of units
  ``m*s - p + d*t`` that exist (zero padding), or of the unit the padding copies
  (reflect: -1 -> 1, replicate: clamp, circular: modulo), as PyTorch pads.
"""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rfarith import axisfield as af

from .expect import formula_bounds

# ---- helpers ------------------------------------------------------------------------------------
layers = st.tuples(
    st.integers(1, 6),  # kernel
    st.integers(1, 4),  # stride
    st.integers(1, 3),  # dilation
    st.integers(-2, 4),  # left padding (negative: a crop)
)


def n_out(n: int, k: int, s: int, d: int, p_left: int, p_right: int) -> int:
    """PyTorch's output size: floor((n + p_l + p_r - d*(k-1) - 1) / s) + 1."""
    return (n + p_left + p_right - d * (k - 1) - 1) // s + 1


def chain(layer_list, extent: int = 64, border: str = "zeros") -> af.AxisField:
    """Windows on ``extent`` pixels, right padding equal to the left one."""
    field = af.pixel(extent)
    for k, s, d, p in layer_list:
        field = af.window(field, k, s, d, p, max(n_out(field.n, k, s, d, p, p), 1), border)
    return field


def guide(layer_list) -> tuple[int, int, Fraction]:
    """j, r, start by the guide's recurrences (dilation as an effective kernel d*(k-1)+1)."""
    j, r, start = 1, 1, Fraction(1, 2)
    for k, s, d, p in layer_list:
        r = r + d * (k - 1) * j
        start = start + (Fraction(d * (k - 1), 2) - p) * j
        j = j * s
    return j, r, start


def pixels(phase: af.Phase) -> set[int]:
    lo, mask = phase
    return {lo + i for i in range(mask.bit_length()) if mask >> i & 1}


def copied(u: int, n: int, border: str) -> int | None:
    """The unit a padding index copies, as torch.nn.functional.pad does (one reflection)."""
    if 0 <= u < n:
        return u
    if border == "zeros":
        return None
    if border == "replicate":
        return min(max(u, 0), n - 1)
    if border == "circular":
        return u % n
    return -u if u < 0 else 2 * (n - 1) - u  # reflect, pad < n


def brute_window(sets: list[set[int]], k: int, s: int, d: int, p_left: int, p_right: int, border: str):
    n = len(sets)
    out = []
    for m in range(n_out(n, k, s, d, p_left, p_right)):
        seen: set[int] = set()
        for t in range(k):
            v = copied(m * s - p_left + d * t, n, border)
            if v is not None:
                seen |= sets[v]
        out.append(seen)
    return out


# ---- hand-made cases ----------------------------------------------------------------------------
def test_pixel_is_the_input():
    """Unit m sees pixel m: the guide's input row, n = extent, j = 1, r = 1, start = 0.5."""
    f = af.pixel(5)
    assert (f.n, f.period, f.j, f.r, f.start) == (5, 1, 1, 1, 0.5)
    assert [f.bounds(m) for m in (-1, 0, 4, 5)] == [(-1, -1), (0, 0), (4, 4), (5, 5)]
    assert [f.real_bounds(m) for m in range(5)] == [(m, m) for m in range(5)]
    assert not (f.is_global or f.has_holes or f.is_nonuniform or f.is_empty)


def test_window_conv3_stride2_pad1():
    """k=3, s=2, p=1 on 8 pixels: n = 4; unit m reads pixels 2m-1 .. 2m+1: j 2, r 3, start 0.5.
    Unit 0's padding pixel -1 is in the unclipped field only; the real unit 0 sees 0 .. 1."""
    f = af.window(af.pixel(8), 3, 2, 1, 1, 4)
    assert (f.n, f.j, f.r, f.start) == (4, 2, 3, 0.5)
    assert [f.bounds(m) for m in range(4)] == [(-1, 1), (1, 3), (3, 5), (5, 7)]
    assert [f.real_bounds(m) for m in range(4)] == [(0, 1), (1, 3), (3, 5), (5, 7)]


@pytest.mark.parametrize(
    "border, unit0, unit7",
    [
        ("zeros", {0, 1}, {6, 7}),
        ("reflect", {0, 1}, {6, 7}),  # -1 copies 1, 8 copies 6
        ("replicate", {0, 1}, {6, 7}),  # -1 copies 0, 8 copies 7
        ("circular", {7, 0, 1}, {6, 7, 0}),  # -1 copies 7, 8 copies 0
    ],
)
def test_padding_modes_change_only_the_real_border_units(border, unit0, unit7):
    """k3 p1 on 8 pixels: the unclipped field is the same for every mode (unit 0: -1 .. 1);
    the real border units see what the padding copies."""
    f = af.window(af.pixel(8), 3, 1, 1, 1, 8, border)
    assert (f.j, f.r, f.start) == (1, 3, 0.5)
    assert f.bounds(0) == (-1, 1)
    assert pixels(f.real(0)) == unit0 and pixels(f.real(7)) == unit7
    assert pixels(f.real(3)) == {2, 3, 4}


def test_stride_larger_than_kernel_then_conv_leaves_holes():
    """1-tap stride 2 reads pixel 2m; a 3-tap p1 window after it reads units m-1..m+1 =
    pixels 2m-2, 2m, 2m+2: hull r = 5 with holes at 2m-1 and 2m+1."""
    f = chain([(1, 2, 1, 0), (3, 1, 1, 1)], extent=16)
    assert (f.j, f.r, f.start) == (2, 5, 0.5)
    assert f.unit(0) == (-2, 0b10101)
    assert f.has_holes


def test_dilation_leaves_holes():
    """k=3, d=2: pixels m, m+2, m+4: r = 1 + 2*2 = 5, mask 10101, start 0.5 + 2 = 2.5."""
    f = chain([(3, 1, 2, 0)], extent=10)
    assert (f.r, f.start, f.has_holes) == (5, 2.5, True)


def test_resample_nearest_upsampling_by_two():
    """Output unit m reads input unit floor(m/2): period 2, one input pixel per two units."""
    f = af.resample(af.pixel(4), 2, 1, ((0,), (0,)), 8)
    assert (f.period, f.jump, f.j, f.r) == (2, 1, Fraction(1, 2), 1)
    assert [f.bounds(m) for m in range(5)] == [(0, 0), (0, 0), (1, 1), (1, 1), (2, 2)]
    assert [f.real_bounds(m) for m in range(8)] == [(m // 2, m // 2) for m in range(8)]


def test_resample_that_reduces_to_period_one_is_canonical():
    """Written with period 2 (unit 2q+p reads input unit 2q+p), the identity map comes back in
    its canonical form: period 1, the pixel field itself."""
    f = af.resample(af.pixel(6), 2, 2, ((0,), (1,)), 6)
    assert (f.period, f.jump, f.phases) == (1, 1, ((0, 1),))
    assert [f.real_bounds(m) for m in range(6)] == [(m, m) for m in range(6)]


def test_union_of_differently_centred_fields():
    """Pixels m..m+4 (k=5, p=0) and m-3..m+3 (k=7, p=3) on maps of 8 units: hull m-3 .. m+4,
    r = 8, start = (-3+4+1)/2 = 1.0."""
    a = af.window(af.pixel(12), 5, 1, 1, 0, 8)
    b = af.window(af.pixel(12), 7, 1, 1, 3, 8)
    u = af.union([a, b])
    assert (u.r, u.start, u.j) == (8, 1.0, 1)
    assert u.bounds(0) == (-3, 4)
    assert not af.same_centres([a, b])
    assert af.same_centres([b, af.window(af.pixel(12), 3, 1, 1, 1, 8)])


def test_union_refuses_different_jumps():
    with pytest.raises(ValueError, match="different jumps"):
        af.union([af.pixel(4), af.window(af.pixel(8), 1, 2, 1, 0, 4)])


def test_a_field_every_unit_of_a_phase_sees_alike_stays_out_of_the_summary():
    """A map of 2 units every unit of which sees pixels 0..3 (a broadcast), upsampled by a
    transposed conv with kernel 1 < stride 3: units 0 and 3 see pixels 0..3, the others nothing.
    Jump 0 with three phases: not global, and it does not step; beside a field that steps, the
    summary leaves it out (their union has no single jump)."""
    tiled = af.resample(af.constant((0, 0b1111), 2), 3, 1, ((0,), (), ()), 4)
    assert not tiled.steps and not tiled.is_global and tiled.period == 3
    stepping = af.resample(af.pixel(2), 3, 1, ((0,), (), ()), 4)
    assert stepping.steps
    assert af.summary([tiled, stepping]) == af.summary([stepping])
    with pytest.raises(ValueError, match="different jumps"):
        af.union([tiled, stepping])


def test_union_of_non_overlapping_fields_has_holes():
    """Pixel m-2 and pixel m+2 (1-tap shifts by +-2): hull m-2 .. m+2 with a gap of 3."""
    left = af.window(af.pixel(8), 1, 1, 1, 2, 8)
    right = af.window(af.pixel(8), 1, 1, 1, -2, 8)
    u = af.union([left, right])
    assert u.unit(0) == (-2, 0b10001)
    assert (u.r, u.has_holes) == (5, True)


def test_hull_of_units_is_global_and_clipped():
    """A 3-tap padded window over 8 pixels: units 0..7 see 0 .. 7 together (padding is not
    the input): every unit of the global field sees 0 .. 7, r = 8, start = 4.0, j = 0."""
    conv = af.window(af.pixel(8), 3, 1, 1, 1, 8)
    g = af.hull_of_units(conv, 1, 8)
    assert g.is_global and g.j == 0 and g.n == 1
    assert (g.r, g.start) == (8, 4.0)
    assert g.bounds(0) == g.bounds(5) == (0, 7)


def test_canonical_period_reduces_a_repeated_pattern():
    """Phases (0,1),(1,1),(2,1),(3,1) with jump 4: the pixel field written with period 4."""
    assert af._canonical_period(4, 4, ((0, 1), (1, 1), (2, 1), (3, 1))) == (1, 1, ((0, 1),))


def test_nonuniform_sizes():
    """A transposed conv k=3 s=2 p=1: even units see one pixel, odd units two."""
    f = af.resample(af.pixel(4), 2, 1, ((0,), (0, 1)), 7)
    assert f.sizes == (1, 2) and f.is_nonuniform and f.r == 2


def test_empty_unit_has_no_bounds_and_nan_start():
    f = af.AxisField(2, 1, (af.EMPTY, (0, 1)), n=4)
    assert f.bounds(0) is None and f.bounds(1) == (0, 0)
    assert f.start != f.start  # NaN
    assert af.AxisField(1, 1, (af.EMPTY,), n=3).is_empty


# ---- properties: the periodic extension -------------------------------------------------------
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
    two = chain([first, second])
    extent = d2 * (k2 - 1) * s1 + d1 * (k1 - 1) + 1
    one = chain([(extent, s1 * s2, 1, p1 + p2 * s1)])
    assert (two.j, two.r, two.start) == (one.j, one.r, one.start)


@st.composite
def same_jump_pair(draw):
    """Two chains with the same strides (so the same j) and the same number of units."""
    strides = draw(st.lists(st.integers(1, 3), min_size=1, max_size=3))
    a = [(draw(st.integers(1, 5)), s, draw(st.integers(1, 2)), draw(st.integers(-1, 3))) for s in strides]
    b = [(draw(st.integers(1, 5)), s, draw(st.integers(1, 2)), draw(st.integers(-1, 3))) for s in strides]
    fa, fb = chain(a), chain(b)
    n = min(fa.n, fb.n)
    # the same map size: a final 1-tap window keeps the first n units of each
    return af.window(fa, 1, 1, 1, 0, n), af.window(fb, 1, 1, 1, 0, n)


@settings(max_examples=200, deadline=None)
@given(same_jump_pair(), st.integers(-10, 10))
def test_union_is_commutative_idempotent_and_a_hull(pair, m):
    a, b = pair
    assert af.union([a, b]) == af.union([b, a])
    assert af.union([a, a]) == a
    assert af.union([af.union([a, b]), b]) == af.union([a, b])
    (lo_a, hi_a), (lo_b, hi_b) = a.bounds(m), b.bounds(m)
    assert af.union([a, b]).bounds(m) == (min(lo_a, lo_b), max(hi_a, hi_b))
    for unit in range(a.n):
        assert pixels(af.union([a, b]).real(unit)) == pixels(a.real(unit)) | pixels(b.real(unit))


phases = st.one_of(
    st.just(af.EMPTY),
    st.tuples(st.integers(-20, 20), st.integers(1, 2**12 - 1).map(lambda m: m | 1)),
)


@st.composite
def periodic_patterns(draw):
    """Any periodic pattern: a period, a jump and one (lo, mask) per phase, not canonical."""
    period = draw(st.integers(1, 6))
    jump = draw(st.integers(0, 12))
    return period, jump, tuple(draw(phases) for _ in range(period))


def unit_of(period: int, jump: int, phase_list, m: int) -> af.Phase:
    q, p = divmod(m, period)
    lo, mask = phase_list[p]
    return (lo + q * jump, mask) if mask else af.EMPTY


@settings(max_examples=300, deadline=None)
@given(periodic_patterns())
def test_canonical_period_never_changes_any_unit(raw):
    period, jump, phase_list = raw
    small, small_jump, small_phases = af._canonical_period(period, jump, phase_list)
    assert period % small == 0
    for m in range(-2 * period, 3 * period):
        assert unit_of(small, small_jump, small_phases, m) == unit_of(period, jump, phase_list, m)


@settings(max_examples=200, deadline=None)
@given(periodic_patterns(), st.integers(1, 4))
def test_canonical_period_finds_the_period_of_a_tiled_pattern(raw, copies):
    """A pattern of period d written out over d*copies phases comes back with period <= d."""
    d, jump, base = raw
    tiled = tuple(unit_of(d, jump, base, m) for m in range(d * copies))
    small, small_jump, small_phases = af._canonical_period(d * copies, jump * copies, tiled)
    assert small <= d
    assert all(unit_of(small, small_jump, small_phases, m) == unit_of(d, jump, base, m) for m in range(-d, 3 * d * copies))


@settings(max_examples=100, deadline=None)
@given(st.lists(layers, max_size=3))
def test_identity_maps_change_nothing(layer_list):
    f = chain(layer_list)
    assert af.resample(f, 1, 1, ((0,),), f.n) == f
    assert af.window(f, 1, 1, 1, 0, f.n) == f


@settings(max_examples=100, deadline=None)
@given(st.lists(layers, max_size=3), st.integers(2, 4))
def test_nearest_upsampling_repeats_each_unit(layer_list, factor):
    """Upsampling by ``factor``: output unit m sees what input unit floor(m/factor) sees, and
    j becomes j/factor exactly."""
    f = chain(layer_list)
    up = af.resample(f, factor, 1, ((0,),) * factor, f.n * factor)
    assert up.j == Fraction(f.j, factor)
    for m in range(-factor, 4 * factor):
        assert up.bounds(m) == f.bounds(m // factor)
    for m in range(up.n):
        assert up.real(m) == f.real(m // factor)


# ---- properties: the real units against the brute-force model ---------------------------------
small_layers = st.tuples(st.integers(1, 4), st.integers(1, 3), st.integers(1, 2), st.integers(0, 2), st.integers(0, 2))


@settings(max_examples=150, deadline=None)
@given(
    st.integers(3, 14),
    st.lists(small_layers, min_size=1, max_size=3),
    st.sampled_from(["zeros", "reflect", "replicate", "circular"]),
)
def test_real_units_match_brute_force(extent, layer_list, border):
    """Every real unit of a chain of windows (asymmetric padding, any border mode) sees exactly
    the pixels the brute-force model finds."""
    field = af.pixel(extent)
    sets = [{i} for i in range(extent)]
    for k, s, d, p_left, p_right in layer_list:
        if border == "reflect" and max(p_left, p_right) >= len(sets):
            return  # PyTorch refuses reflect padding as large as the input
        n = n_out(len(sets), k, s, d, p_left, p_right)
        if n < 1:
            return
        field = af.window(field, k, s, d, p_left, n, border)
        sets = brute_window(sets, k, s, d, p_left, p_right, border)
    assert field.n == len(sets)
    for m in range(field.n):
        assert pixels(field.real(m)) == sets[m], f"unit {m}"


@settings(max_examples=150, deadline=None)
@given(st.integers(3, 14), st.lists(small_layers, min_size=1, max_size=3))
def test_zero_padded_real_units_lie_inside_the_clipped_unclipped_field(extent, layer_list):
    """With zero padding a real unit sees a subset of its unclipped field inside the input."""
    field = af.pixel(extent)
    for k, s, d, p_left, p_right in layer_list:
        n = n_out(field.n, k, s, d, p_left, p_right)
        if n < 1:
            return
        field = af.window(field, k, s, d, p_left, n)
    for m in range(field.n):
        assert pixels(field.real(m)) <= {p for p in pixels(field.unit(m)) if 0 <= p < extent}


@settings(max_examples=150, deadline=None)
@given(st.lists(layers, max_size=3), st.integers(1, 5), st.integers(1, 64))
def test_hull_of_units_sees_what_all_real_units_see_clipped(layer_list, count, extent):
    f = chain(layer_list, extent=extent)
    g = af.hull_of_units(f, count, extent)
    seen = set().union(*(pixels(f.real(m)) for m in range(f.n)))
    inside = sorted(p for p in seen if 0 <= p < extent)
    assert g.is_global and g.n == count
    assert g.bounds(0) == g.bounds(3) == ((inside[0], inside[-1]) if inside else None)


# ---- causal fields (a unidirectional recurrence) ----------------------------------------------
def test_prefix_of_units_gives_unit_t_what_units_0_to_t_saw():
    """A 3-tap padded window over 8 pixels: unit m sees m-1 .. m+1 clipped. After a forward
    recurrence unit t sees 0 .. t+1 (unit 7: 0 .. 7), the strict prefix 0 .. t (unit 0
    nothing). Periodic part: the hull 0 .. 7 (r 8, j 0, start 4), what the last unit sees."""
    conv = af.window(af.pixel(8), 3, 1, 1, 1, 8)
    causal = af.prefix_of_units(conv, 8)
    assert [causal.real_bounds(t) for t in range(8)] == [(0, min(t + 1, 7)) for t in range(8)]
    assert (causal.r, causal.j, causal.start) == (8, 0, 4.0)
    assert causal.is_global
    strict = af.prefix_of_units(conv, 8, strict=True)
    assert strict.real_bounds(0) is None
    assert [strict.real_bounds(t) for t in range(1, 8)] == [(0, t) for t in range(1, 8)]


def test_summary_beside_a_causal_term_is_what_each_unit_sees():
    """Terms (strict prefix, identity) along one axis, as a recurrence over a flattened grid
    leaves along its outer axis: unit i sees units 0 .. i-1 of the one and unit i of the
    other, 0 .. i+1 for a 3-tap window; a lattice alone would say r 3, j 1."""
    conv = af.window(af.pixel(8), 3, 1, 1, 1, 8)
    terms = [af.prefix_of_units(conv, 8, strict=True), conv]
    s = af.summary(terms, causal=True)
    assert [s.real_bounds(i) for i in range(8)] == [(0, min(i + 1, 7)) for i in range(8)]
    assert (s.r, s.j) == (8, 0)
    assert af.summary(terms) == conv  # without a recurrence: a term that does not step stays out
    # a global term whose border units see nothing (a broadcast map, cropped) is no recurrence
    cropped = af.window(af.hull_of_units(conv, 8, 8), 1, 1, 1, 1, 8)
    assert af.summary([conv, cropped]) == conv
