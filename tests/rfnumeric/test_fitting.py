"""From supports to n / j / r / start: the pure arithmetic of rfnumeric.fitting."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from rfnumeric.fitting import (
    AxisFit,
    Span,
    contradiction,
    find_period,
    fit_axis,
    global_axis,
    predicted,
    same_pattern,
    shift_between,
    unfitted,
)

Layer = tuple[int, int, int, int]  # kernel, stride, dilation, left padding


def supports(layers: list[Layer], size: int) -> list[set[int]]:
    """Brute force: the input pixels each output unit of a 1-D conv/pool chain reads."""
    units = [{i} for i in range(size)]
    for kernel, stride, dilation, pad in layers:
        n = (len(units) + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1
        units = [
            set().union(
                *(
                    units[m * stride - pad + dilation * t]
                    for t in range(kernel)
                    if 0 <= m * stride - pad + dilation * t < len(units)
                )
            )
            for m in range(n)
        ]
    return units


def analytic(layers: list[Layer]) -> tuple[int, int, float]:
    """The guide's recurrences: j' = j*s, r' = r + d*(k-1)*j, start' = start + (d*(k-1)/2 - p)*j."""
    j, r, start = 1, 1, 0.5
    for kernel, stride, dilation, pad in layers:
        r += dilation * (kernel - 1) * j
        start += (dilation * (kernel - 1) / 2 - pad) * j
        j *= stride
    return j, r, start


def span(pixels: set[int], size: int) -> Span:
    seen = np.zeros(size, dtype=bool)
    seen[sorted(pixels)] = True
    return Span.of(seen).within(size - 1)


layer = st.tuples(st.integers(1, 5), st.integers(1, 3), st.integers(1, 3), st.integers(0, 2))


@settings(max_examples=60, deadline=None)
@given(st.lists(layer, min_size=1, max_size=4))
def test_fit_recovers_the_guide_arithmetic(layers):
    j, r, start = analytic(layers)
    size = 4 * r + 8 * j + 64
    units = supports(layers, size)
    n = len(units)
    centre = n // 2
    if n < 3 or not units[centre] or any(not units[centre + i] for i in (1, 2)):
        return
    spans = {
        m: span(units[m], size) for m in range(max(0, centre - 8), min(n, centre + 9)) if units[m]
    }
    fit = fit_axis(spans, centre, n, window_measured=True)
    assert (fit.j, fit.r, fit.start) == (j, r, start)
    assert fit.holes == (len(units[centre]) != r)
    assert not fit.nonuniform
    visible = (min(min(u) for u in units if u), max(max(u) for u in units if u))
    assert contradiction(fit, spans, visible) is None  # it reproduces every unit it read


def test_span_reads_first_last_and_holes():
    seen = np.zeros(12, dtype=bool)
    seen[[3, 5, 6]] = True
    s = Span.of(seen)
    assert (s.lo, s.hi, s.size, s.holes, s.pixels()) == (3, 6, 4, True, (3, 5, 6))
    assert Span.of(np.zeros(4, dtype=bool)) is None


def test_cut_edges_allow_for_holes():
    """A span 2 pixels from the border with a 2-pixel hole could continue past the border."""
    seen = np.zeros(10, dtype=bool)
    seen[[2, 5]] = True
    s = Span.of(seen).within(9)
    assert s.cut_low and not s.cut_high and s.usable and not s.whole


def test_shifts_and_patterns_compare_what_both_spans_show():
    whole = Span(10, 14, b"\x01\x01\x00\x01\x01")
    shifted = Span(14, 18, b"\x01\x01\x00\x01\x01")
    cut = Span(18, 19, b"\x01\x01", cut_high=True)  # the field of unit + 2, cut at pixel 19
    assert shift_between(whole, shifted) == 4
    assert shift_between(shifted, cut) == 4  # read on the low edges
    assert same_pattern(whole, shifted) and same_pattern(shifted, cut)
    assert not same_pattern(whole, Span(14, 18, b"\x01\x00\x01\x01\x01"))


def test_nearest_upsampling_has_period_two():
    """Units 2q and 2q+1 read the same unit q of a stride-4 map: period 2, jump 4, j = 2."""
    spans = {m: Span(4 * (m // 2), 4 * (m // 2) + 6, b"\x01" * 7) for m in range(8, 25)}
    assert find_period(spans) == (2, 4)
    fit = fit_axis(spans, 16, 40, window_measured=True)
    assert fit.j == 2 and fit.r == 7 and fit.start == 3.5 and not fit.nonuniform


def test_a_fractional_jump_is_a_fraction():
    """Upsampling a stride-2 map by 3: period 3, jump 2, j = 2/3."""
    spans = {m: Span(2 * (m // 3), 2 * (m // 3) + 2, b"\x01" * 3) for m in range(12, 29)}
    fit = fit_axis(spans, 20, 60, window_measured=True)
    assert fit.j == Fraction(2, 3) and fit.r == 3


def test_three_adjacent_units_ask_for_a_window_when_they_disagree():
    spans = {
        10: Span(20, 26, b"\x01" * 7),
        11: Span(20, 26, b"\x01" * 7),
        12: Span(24, 30, b"\x01" * 7),
    }
    assert fit_axis(spans, 10, 40, window_measured=False).needs_window


def test_one_unit_has_no_jump():
    fit = fit_axis({0: Span(5, 7, b"\x01\x01\x01")}, 0, 1, window_measured=False)
    assert math.isnan(fit.j) and fit.r == 3 and fit.start == 6.5


def test_global_axis_spans_what_the_map_sees():
    fit = global_axis(0, 30)
    assert (fit.j, fit.r, fit.start) == (0, 31, 15.5)


def test_units_that_see_nothing_make_a_blind_phase():
    """A transposed conv with kernel 1 < stride 2: unit 2q sees pixel 3q, unit 2q+1 nothing.
    Period 2, jump 3 (j = 3/2); sizes 1 and 0 differ (nonuniform); unit 0 sees pixel 0."""
    spans = {m: (Span(3 * (m // 2), 3 * (m // 2), b"\x01") if m % 2 == 0 else None) for m in range(8, 25)}
    fit = fit_axis(spans, 16, 40, window_measured=True)
    assert fit.j == Fraction(3, 2) and fit.r == 1 and fit.start == 0.5 and fit.nonuniform


def test_a_blind_unit_zero_has_no_start():
    """The same with the phases swapped: unit 0 sees nothing, so there is no centre to report."""
    spans = {m: (Span(3 * (m // 2), 3 * (m // 2), b"\x01") if m % 2 == 1 else None) for m in range(8, 25)}
    fit = fit_axis(spans, 17, 40, window_measured=True)
    assert fit.j == Fraction(3, 2) and math.isnan(fit.start) and fit.nonuniform


def test_a_blind_neighbour_is_not_period_one():
    """Units 10 and 12 see shifted copies of one pattern, unit 11 nothing: not a jump of 3."""
    spans = {10: Span(15, 15, b"\x01"), 11: None, 12: Span(18, 18, b"\x01")}
    assert fit_axis(spans, 10, 40, window_measured=False).needs_window


def test_a_blind_phase_between_units_reading_one_pixel_breaks_period_one():
    """A transposed conv with kernel 2 and stride 3: units 3q and 3q+1 read pixel q, unit 3q+2
    nothing. Units one apart that read one pixel are not period 1, j 0: period 3, jump 1."""
    spans = {m: (Span(m // 3, m // 3, b"\x01") if m % 3 != 2 else None) for m in range(7, 24)}
    assert find_period(spans) == (3, 1)
    fit = fit_axis(spans, 15, 29, window_measured=True)
    assert fit.j == Fraction(1, 3) and fit.start == 0.5 and fit.nonuniform and fit.period == 3


def test_the_period_ignores_units_cut_at_a_border():
    """Period 3, jump 3 (j = 1); units 0..2 are cut at pixel 0 and show truncated patterns."""
    patterns = [b"\x01\x00\x01\x01", b"\x01\x01\x00\x01\x01", b"\x01\x00\x00\x01"]

    def pixels(m: int) -> set[int]:  # what unit m sees of a 60-pixel input (nothing below 0)
        lo = 3 * (m // 3) - 2
        return {lo + i for i, seen in enumerate(patterns[m % 3]) if seen and lo + i >= 0}

    spans = {m: span(pixels(m), 60) for m in range(0, 17)}
    assert not spans[0].whole  # cut at pixel 0
    assert find_period(spans) == (3, 3)
    fit = fit_axis(spans, 8, 40, window_measured=True)
    assert fit.j == 1 and fit.r == 5 and fit.start == 0.0 and fit.nonuniform  # unit 0: -2..1


def test_two_whole_units_reading_one_pixel_leave_the_jump_unmeasured():
    """Nearest x2 of a stride-3 map at a 7-pixel input: units 0..5 see 0, 0, 3, 3, 6, 6. The
    four touching the border are cut, and the two whole ones (2, 3) cannot tell period 1 with
    j 0 from period 2: the fit is unresolved, not j = 0."""
    spans = {m: span({3 * (m // 2)}, 7) for m in range(6)}
    assert [m for m, s in spans.items() if s.whole] == [2, 3]
    fit = fit_axis(spans, 3, 6, window_measured=True, periodic=True)
    assert fit.unresolved and math.isnan(fit.j) and math.isnan(fit.start)


def test_a_period_needs_two_repeats_covering_every_phase():
    """The same field on a 13-pixel input: whole units 2..9 show period 2 (jump 3) twice per
    phase, which is enough."""
    spans = {m: span({3 * (m // 2)}, 13) for m in range(10)}
    fit = fit_axis(spans, 5, 10, window_measured=True, periodic=True)
    assert not fit.unresolved and fit.j == Fraction(3, 2) and fit.start == 0.5


def test_a_window_no_period_explains_is_aperiodic():
    """Units 4..8 see a period-1 field, units 9..11 one pixel each (a pad inside the model cut
    them): no period; j is the mean jump, flagged so the search measures again larger."""
    spans = {m: span(set(range(m, m + 4)) if m < 9 else {m}, 30) for m in range(4, 12)}
    fit = fit_axis(spans, 7, 12, window_measured=True, periodic=True)
    assert fit.aperiodic and fit.nonuniform


# ---- the check that a fit reproduces every unit it was fitted on ---------------------------
def test_a_fit_predicts_each_unit_from_its_phases():
    """Period 1: unit m sees the one pattern shifted by m*j. Period 2 (nearest x2 of a
    stride-4 map): units 2q and 2q+1 see 4q .. 4q+6."""
    fit = AxisFit(2, 3, 0.5, True, False, phases=((-1, b"\x01\x00\x01"),))
    assert predicted(fit, 5) == (9, 11)
    spans = {m: Span(4 * (m // 2), 4 * (m // 2) + 6, b"\x01" * 7) for m in range(8, 25)}
    fit = fit_axis(spans, 16, 40, window_measured=True)
    assert predicted(fit, 9) == tuple(range(16, 23)) and predicted(fit, 10) == tuple(range(20, 27))
    assert contradiction(fit, spans) is None


def test_a_consistent_set_of_spans_passes():
    """j 2, r 5, start 2.5: unit m sees 2m .. 2m+4. With j 2, r 7, start 1.5 unit m sees
    2m-2 .. 2m+4: unit 0, cut at pixel 0, shows 0..4 of its -2..4, which agrees."""
    fit = AxisFit(2, 5, 2.5, False, False, phases=((0, b"\x01" * 5),))
    spans = {m: Span(2 * m, 2 * m + 4, b"\x01" * 5) for m in range(1, 6)}
    assert contradiction(fit, spans) is None
    wider = AxisFit(2, 7, 1.5, False, False, phases=((-2, b"\x01" * 7),))
    cut = {0: Span(0, 4, b"\x01" * 5, cut_low=True), 1: Span(0, 6, b"\x01" * 7), 2: Span(2, 8, b"\x01" * 7)}
    assert contradiction(wider, cut) is None


def test_a_unit_off_by_one_pixel_fails():
    fit = AxisFit(2, 5, 2.5, False, False, phases=((0, b"\x01" * 5),))
    spans = {m: Span(2 * m, 2 * m + 4, b"\x01" * 5) for m in range(1, 6)}
    for off in (Span(7, 11, b"\x01" * 5), Span(6, 9, b"\x01" * 4), Span(6, 11, b"\x01" * 6)):
        reason = contradiction(fit, {**spans, 3: off})
        assert reason is not None and reason.startswith(f"unit 3 sees {off.lo}..{off.hi}"), reason
        assert "put it at 6..10" in reason
    # the same bounds with another pattern (a hole where the fit has none)
    holed = Span(6, 10, b"\x01\x01\x00\x01\x01")
    assert "unit 3 sees 6..10 (4 of 5 pixels)" in contradiction(fit, {**spans, 3: holed})


def test_a_cut_unit_is_compared_on_what_it_shows():
    """The issue's merge at an 8-pixel input: units 0, 1, 2 see 0..4, 0..5, 2..6 (the first
    two touch pixel 0). The units 2, 1, 0 shift by one on their last pixel, so three adjacent
    units passed for j 1, r 5, start 2.5; that puts unit 1 at 1..5, but it sees pixel 0."""
    spans = {
        2: Span(2, 6, b"\x01" * 5),
        1: Span(0, 5, b"\x01" * 6, cut_low=True),
        0: Span(0, 4, b"\x01" * 5, cut_low=True),
    }
    fit = fit_axis(spans, 2, 4, window_measured=False)
    assert (fit.j, fit.r, fit.start) == (1, 5, 2.5)  # what the probe reported
    reason = contradiction(fit, spans)
    assert reason == (
        "unit 1 sees 0..5 (cut at the border), but j 1, r 5, start 2.5 put it at 1..5"
    )
    # a uniform field (unit m sees m .. m+4) whose unit 0 touches pixel 0: consistent
    uniform = {**spans, 1: Span(1, 5, b"\x01" * 5), 0: Span(0, 4, b"\x01" * 5, cut_low=True)}
    assert contradiction(fit, uniform) is None


def test_the_fits_own_numbers_must_match_its_patterns():
    phases = ((0, b"\x01" * 5),)
    spans = {m: Span(2 * m, 2 * m + 4, b"\x01" * 5) for m in range(1, 6)}
    assert "start 3.5" in contradiction(AxisFit(2, 5, 3.5, False, False, phases=phases), spans)
    assert "r 6" in contradiction(AxisFit(2, 6, 2.5, False, False, phases=phases), spans)
    fraction = AxisFit(Fraction(1, 2), 5, 2.5, False, False, phases=phases)
    assert "not a whole number" in contradiction(fraction, spans)


def test_blind_phases_must_see_nothing():
    """A transposed conv with kernel 1 < stride 2: unit 2q sees pixel 3q, unit 2q+1 nothing."""
    spans = {m: (Span(3 * (m // 2), 3 * (m // 2), b"\x01") if m % 2 == 0 else None) for m in range(8, 25)}
    fit = fit_axis(spans, 16, 40, window_measured=True)
    assert fit.phases == ((0, b"\x01"), None) and contradiction(fit, spans) is None
    assert "unit 9 sees 7..7" in contradiction(fit, {**spans, 9: Span(7, 7, b"\x01")})
    assert "unit 10 sees nothing" in contradiction(fit, {**spans, 10: None})


def test_no_period_and_no_jump():
    """An aperiodic fit (mean jump) predicts no unit; an axis whose j was not measured claims
    nothing; an unfitted axis has NaN j, r, start and keeps the reason."""
    spans = {m: span(set(range(m, m + 4)) if m < 9 else {m}, 30) for m in range(4, 12)}
    fit = fit_axis(spans, 7, 12, window_measured=True, periodic=True)
    assert contradiction(fit, spans) == "no period of up to 8 units explains what units 4..11 see"
    one = fit_axis({0: Span(5, 7, b"\x01\x01\x01")}, 0, 1, window_measured=False)
    assert contradiction(one, {0: Span(5, 7, b"\x01\x01\x01")}) is None
    gone = unfitted(fit, "why")
    assert all(math.isnan(v) for v in (gone.j, gone.r, gone.start)) and gone.nonuniform
    assert gone.reason == "why" and contradiction(gone, spans) is None
