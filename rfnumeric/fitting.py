"""From measured supports to n / j / r / start, one axis at a time. Pure functions on numpy.

A *span* is what one unit sees along one axis: the projection of its N-D support (the input
pixels with non-zero gradient), as first and last pixel plus the exact pattern in between.
Adjacent units of a uniform feature map see the same pattern shifted by ``j`` pixels. After
upsampling the pattern repeats only every ``P`` units (shifted by ``J``): then ``j = J/P``.

>>> import numpy as np
>>> spans = {m: Span.of(np.isin(np.arange(20), range(2 * m - 1, 2 * m + 2))) for m in (5, 6, 7)}
>>> fit_axis(spans, centre=5, n=10, window_measured=False)
AxisFit(j=2, r=3, start=0.5, holes=False, nonuniform=False, needs_window=False, unresolved=False,
        aperiodic=False, period=1, cut=False)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from fractions import Fraction

import numpy as np

NAN = math.nan
WINDOW = 8  # units on each side of the centre probed when looking for a period
MAX_PERIOD = 8


@dataclass(frozen=True)
class Span:
    """First and last pixel one unit sees along an axis, which pixels in between, and whether
    the field may continue past the input border on either side (``cut_low``, ``cut_high``):
    a seen pixel could lie one gap beyond the first or last one and fall outside the input."""

    lo: int
    hi: int
    pattern: bytes  # one byte per pixel lo..hi: 1 seen, 0 a hole
    cut_low: bool = False
    cut_high: bool = False

    @classmethod
    def of(cls, seen: np.ndarray) -> Span | None:
        """The span of a boolean projection over the whole input axis (None: nothing seen)."""
        idx = np.flatnonzero(seen)
        if idx.size == 0:
            return None
        lo, hi = int(idx[0]), int(idx[-1])
        pattern = np.asarray(seen[lo : hi + 1], dtype=np.uint8).tobytes()
        gap = _longest_gap(pattern)
        return cls(lo, hi, pattern, lo <= gap, len(seen) - 1 - hi <= gap)

    @property
    def size(self) -> int:
        return self.hi - self.lo + 1

    @property
    def holes(self) -> bool:
        return 0 in self.pattern

    @property
    def whole(self) -> bool:
        """Nothing of the field can lie outside the input."""
        return not (self.cut_low or self.cut_high)

    @property
    def usable(self) -> bool:
        """At least one edge is inside the input, so shifts can be measured on it."""
        return not (self.cut_low and self.cut_high)

    def pixels(self) -> tuple[int, ...]:
        return tuple(self.lo + i for i, b in enumerate(self.pattern) if b)

    def within(self, last: int) -> Span:
        """The same span, cut where it reaches pixel 0 or ``last``: the input's last pixel, or
        the last one any unit of its map sees when that moves with the input size (a strided
        valid convolution never sees the input's last few pixels, and a field reaching the
        last one it sees may go on beyond the input)."""
        gap = _longest_gap(self.pattern)
        return replace(self, cut_low=self.lo <= gap, cut_high=last - self.hi <= gap)

    def covers(self, first: int, last: int) -> bool:
        return self.lo <= first and self.hi >= last


def _longest_gap(pattern: bytes) -> int:
    longest = run = 0
    for b in pattern:
        run = run + 1 if b == 0 else 0
        longest = max(longest, run)
    return longest


def shift_between(a: Span, b: Span) -> int | None:
    """How far ``b``'s field lies from ``a``'s, read on an edge neither has cut off."""
    if not (a.cut_low or b.cut_low):
        return b.lo - a.lo
    if not (a.cut_high or b.cut_high):
        return b.hi - a.hi
    return None


def same_pattern(a: Span, b: Span) -> bool:
    """Whether ``a`` and ``b`` see the same pattern, compared on what both show: whole spans
    entirely, a span cut at one border from the edge it keeps."""
    if a.whole and b.whole:
        return a.pattern == b.pattern
    k = min(len(a.pattern), len(b.pattern))
    if not (a.cut_low or b.cut_low):
        return a.pattern[:k] == b.pattern[:k]
    if not (a.cut_high or b.cut_high):
        return a.pattern[-k:] == b.pattern[-k:]
    return False


@dataclass(frozen=True)
class AxisFit:
    """The field along one axis. ``j`` is NaN when it cannot be measured: a one-unit map, or
    (``unresolved``, start NaN too) too few units whole inside the input to fit it."""

    j: int | Fraction | float
    r: int
    start: float
    holes: bool
    nonuniform: bool
    needs_window: bool = False
    unresolved: bool = False
    aperiodic: bool = False  # no period explains the window: j is the window's mean jump
    period: int = 1  # units after which the field repeats, shifted by j * period (MAX_PERIOD if none)
    # per phase p (unit m = q*period + p): (first pixel unit p sees, its pattern), None for a
    # phase that sees nothing; unit m sees that pattern shifted by q * j * period. () when the
    # fit predicts no unit (no period, or j not measured)
    phases: tuple[tuple[int, bytes] | None, ...] = field(default=(), repr=False)
    reason: str = field(default="", repr=False)  # why j, r, start are NaN (see ``unfitted``, ``cut_axis``)
    cut: bool = False  # the field runs past an input that may not grow (see ``cut_axis``)


def _exact(value: Fraction) -> int | Fraction:
    return value.numerator if value.denominator == 1 else value


def _centre_of(lo: Fraction | int, hi: Fraction | int) -> float:
    return float(Fraction(lo) + Fraction(hi) + 1) / 2


def _direction(spans: dict[int, Span | None], centre: int) -> int:
    return 1 if spans.get(centre + 1) is not None else -1


def _period_one(spans: dict[int, Span | None], centre: int) -> int | None:
    """The shift if the centre and up to two units on one side repeat one pattern with a
    constant non-zero shift; None otherwise."""
    d = _direction(spans, centre)
    chain = []
    for i in range(3):
        m = centre + i * d
        if m not in spans:  # not measured (beyond the map)
            break
        if spans[m] is None:  # a unit that sees nothing: the field is not one pattern shifted
            return None
        chain.append(spans[m])
    if len(chain) < 2 or not all(same_pattern(chain[0], s) for s in chain[1:]):
        return None
    shifts = {shift_between(a, b) for a, b in zip(chain, chain[1:])}
    if len(shifts) != 1 or None in shifts:
        return None
    shift = shifts.pop()
    return shift * d if shift else None


def find_period(spans: dict[int, Span | None]) -> tuple[int, int] | None:
    """Smallest ``P`` (up to MAX_PERIOD) with unit ``m+P`` seeing unit ``m``'s pattern shifted by a
    constant ``J``, over every measured pair: ``(P, J)``; ``J = 0`` means every unit sees the
    same pixels. None if no period explains the measurements. Spans cut at a border are left
    out of the patterns (they are truncated), but a unit that sees nothing (``None``: a blind
    phase) one period from a unit that sees something breaks the period."""
    whole = {m: s for m, s in spans.items() if s is not None and s.whole}
    for period in range(1, MAX_PERIOD + 1):
        shifts: set[int | None] = set()
        consistent = True
        for m in sorted(spans):
            if m + period not in spans:
                continue
            if (spans[m] is None) != (spans[m + period] is None):
                consistent = False
                break
            if m not in whole or m + period not in whole:
                continue
            if not same_pattern(whole[m], whole[m + period]):
                consistent = False
                break
            shifts.add(shift_between(whole[m], whole[m + period]))
        shifts.discard(None)
        if consistent and len(shifts) == 1:
            return period, shifts.pop()
    return None


def _confirmed(spans: dict[int, Span | None], period: int) -> bool:
    """Whether the measured units show a period's repeat at least twice and for every phase
    (one pair of units can repeat by chance: two units reading one pixel look like period 1,
    j 0). A pair is two whole units, or two that see nothing (a blind phase)."""

    def kind(m: int) -> str:
        if m not in spans:
            return "unmeasured"
        span = spans[m]
        return "blind" if span is None else "whole" if span.whole else "cut"

    pairs = [m for m in spans if kind(m) in ("whole", "blind") and kind(m + period) == kind(m)]
    return len(pairs) >= 2 and {m % period for m in pairs} == set(range(period))


def _reference(candidates: list[int], whole: dict[int, Span], period: int, centre: int) -> int:
    """The unit to read a phase's pattern from: the candidate nearest the centre among those
    whose pattern a unit one period away repeats (a unit near a border can look whole and
    still be cut: with holes, its first pixel inside the input says nothing of the rest)."""
    confirmed = [
        m for m in candidates
        if any(
            o in whole and same_pattern(whole[m], whole[o]) for o in (m - period, m + period)
        )
    ]  # fmt: skip
    return min(confirmed or candidates, key=lambda m: abs(m - centre))


def fit_axis(
    spans: dict[int, Span | None], centre: int, n: int, window_measured: bool, periodic: bool = False
) -> AxisFit:
    """Fit j, r and start along one axis from the spans of the centre unit and its neighbours
    along that axis (keys: unit index along the axis). The centre's span must be whole;
    neighbours may be cut at one border. Asks for a window of units around the centre
    (``needs_window``) when three adjacent units do not settle the period. ``periodic``: the axis
    is known to be periodic (a window was measured for it): three adjacent units are not trusted."""
    own = spans[centre]
    assert own is not None and own.whole, "the centre unit's field must lie inside the input"
    measured = {m: s for m, s in spans.items() if s is not None}
    whole = {m: s for m, s in measured.items() if s.whole}
    holes = any(s.holes for s in whole.values())
    if n == 1:
        return AxisFit(
            NAN, own.size, _centre_of(own.lo, own.hi), holes, False, phases=((own.lo, own.pattern),)
        )
    # three adjacent units can repeat one shifted pattern by chance (a nearest resize 6 -> 9
    # reads 2, 3, 4 at units 4, 5, 6): along an axis known to be periodic, the window decides
    shift = None if periodic else _period_one(spans, centre)
    if shift is not None:
        lo0, hi0 = own.lo - centre * shift, own.hi - centre * shift
        phases = ((lo0, own.pattern),)
        return AxisFit(shift, own.size, _centre_of(lo0, hi0), holes, False, phases=phases)
    window = set(range(max(0, centre - WINDOW), min(n, centre + WINDOW + 1)))
    if not window_measured and not window <= set(spans):
        return AxisFit(NAN, own.size, NAN, holes, False, needs_window=True)
    sizes = {m: s.size for m, s in whole.items()}
    found = find_period(spans)
    if found is not None and not _confirmed(spans, found[0]) or found is None and len(whole) < 3:
        # too few whole units (the others cut by the border, at an input that cannot grow):
        # two units one step apart cannot tell a shared pixel from a period's repeat
        return AxisFit(NAN, max(sizes.values()), NAN, holes, False, unresolved=True)
    if found is not None and found[1] == 0 and found[0] == 1:  # every unit sees the same pixels
        return AxisFit(
            0, own.size, _centre_of(own.lo, own.hi), holes, False, phases=((own.lo, own.pattern),)
        )
    if found is not None and found[1] != 0:
        period, jump = found
        j = _exact(Fraction(jump, period))
        phase_zero = sorted(m for m in whole if m % period == 0)
        # units measured that see nothing (a transposed convolution with kernel < stride)
        blind = {m % period for m, span in spans.items() if span is None}
        if 0 in blind:  # unit 0's phase sees nothing: it has no centre (start undefined)
            lo0 = hi0 = None
            one_period = list(sizes.values())
        elif phase_zero:  # unit 0 has the phase of every multiple of the period
            ref = _reference(phase_zero, whole, period, centre)
            lo0, hi0 = (
                whole[ref].lo - (ref // period) * jump,
                whole[ref].hi - (ref // period) * jump,
            )
            one_period = [sizes[m] for m in whole if ref <= m < ref + period]
        else:
            lo0, hi0 = own.lo - centre * Fraction(j), own.hi - centre * Fraction(j)
            one_period = list(sizes.values())
        if blind:  # a phase that sees nothing has size 0
            one_period = [*one_period, 0]
        start = NAN if lo0 is None else _centre_of(lo0, hi0)
        return AxisFit(
            j,
            max(sizes.values()),
            start,
            holes,
            len(set(one_period)) > 1,
            period=period,
            phases=_phases(spans, whole, period, jump, centre),
        )
    # no period: report the mean jump over the window and flag the field nonuniform
    first_unit, last_unit = min(whole), max(whole)
    mean_jump = Fraction(whole[last_unit].lo - whole[first_unit].lo, max(last_unit - first_unit, 1))
    lo0 = Fraction(own.lo) - centre * mean_jump
    hi0 = Fraction(own.hi) - centre * mean_jump
    return AxisFit(
        _exact(mean_jump), max(sizes.values()), _centre_of(lo0, hi0), holes, True, aperiodic=True, period=MAX_PERIOD
    )


def _phases(
    spans: dict[int, Span | None], whole: dict[int, Span], period: int, jump: int, centre: int
) -> tuple[tuple[int, bytes] | None, ...]:
    """Per phase of a period fit, where unit ``p`` (its first unit) sees and the pattern, read
    from the phase's reference unit (:func:`_reference`); None for a blind phase. () if some
    phase has no whole unit to read it from (the fit then predicts nothing)."""
    phases: list[tuple[int, bytes] | None] = []
    for p in range(period):
        candidates = [m for m in whole if m % period == p]
        if not candidates:
            if any(m % period == p and span is None for m, span in spans.items()):
                phases.append(None)
                continue
            return ()
        ref = _reference(candidates, whole, period, centre)
        phases.append((whole[ref].lo - (ref - p) // period * jump, whole[ref].pattern))
    return tuple(phases)


def predicted(fit: AxisFit, unit: int) -> tuple[int, ...] | None:
    """The pixels ``fit`` says ``unit`` sees (() for a unit of a blind phase); None when the fit
    predicts no unit (j not measured, or no period explains the field)."""
    if not fit.phases or not _measured(fit.j):
        return None
    jump = Fraction(fit.j) * fit.period
    if jump.denominator != 1:
        return None
    q, p = divmod(unit, fit.period)
    phase = fit.phases[p]
    if phase is None:
        return ()
    lo, pattern = phase
    first = lo + q * jump.numerator
    return tuple(first + i for i, b in enumerate(pattern) if b)


def _measured(value: object) -> bool:
    return not (isinstance(value, float) and math.isnan(value))


def _bounds_text(pixels: tuple[int, ...], span: Span | None = None) -> str:
    if not pixels:
        return "nothing"
    text = f"{pixels[0]}..{pixels[-1]}"
    if len(pixels) != pixels[-1] - pixels[0] + 1:
        text += f" ({len(pixels)} of {pixels[-1] - pixels[0] + 1} pixels)"
    if span is not None and not span.whole:
        text += " (cut at the border)"
    return text


def contradiction(
    fit: AxisFit, spans: dict[int, Span | None], visible: tuple[int, int] | None = None
) -> str | None:
    """Whether ``fit`` reproduces every unit it was fitted on: None if it does, else the first
    disagreement in words. Pure.

    The fit predicts unit ``m = q*P + p`` from its per-phase patterns (``fit.phases``): phase
    ``p``'s pattern shifted by ``q * j * P`` pixels. Its j, r and start must agree with those
    patterns (r the largest size, start the centre of unit 0's field, j * P a whole number of
    pixels, flags nonuniform / holes where the patterns say so). Each measured span is then
    compared with its prediction within ``visible`` (the first and last pixel any unit of the
    map sees: no measurement looks past them; unbounded if None):

    - a unit whose predicted field lies inside ``visible`` and whose span is not cut at a
      border must see exactly the predicted pixels: first, last and every one between;
    - a unit that reaches a border (its span is cut there, or its prediction goes past
      ``visible``) may miss predicted pixels (the border, or zero padding inside the model
      next to it, removes some), but it may see no pixel the fit does not predict, and on a
      side it does not reach its first (last) pixel must be the predicted one;
    - a unit that sees nothing must be predicted to see nothing, unless it reaches a border.

    An axis whose j was not measured (NaN: one unit, too few whole units) claims nothing about
    other units and always passes."""
    if not _measured(fit.j):
        return None
    measured = sorted(m for m in spans)
    if not fit.phases:
        return (
            f"no period of up to {MAX_PERIOD} units explains what units {measured[0]}..{measured[-1]} "
            "see"
        )
    period = fit.period
    jump = Fraction(fit.j) * period
    if jump.denominator != 1:
        return f"j {fit.j} over a period of {period} units is not a whole number of pixels"
    sizes = [0 if phase is None else len(phase[1]) for phase in fit.phases]
    if fit.r != max(sizes):
        return f"r {fit.r} is not the largest field size {max(sizes)}"
    zero = fit.phases[0]
    start = NAN if zero is None else _centre_of(zero[0], zero[0] + len(zero[1]) - 1)
    if not (start == fit.start or math.isnan(start) and math.isnan(fit.start)):
        return f"start {fit.start} is not the centre of unit 0's field ({start})"
    if len(set(sizes)) > 1 and not fit.nonuniform:
        return f"field sizes {sizes} differ from phase to phase, not flagged nonuniform"
    if any(phase is not None and 0 in phase[1] for phase in fit.phases) and not fit.holes:
        return "a phase's field has holes, not flagged holes"
    summary = f"j {fit.j}, r {fit.r}, start {fit.start}"
    if period > 1:
        summary += f", period {period}"
    first, last = visible if visible is not None else (-math.inf, math.inf)
    for m in measured:
        span = spans[m]
        expected = predicted(fit, m)
        assert expected is not None
        if not _reproduces(span, expected, first, last):
            seen = () if span is None else span.pixels()
            return (
                f"unit {m} sees {_bounds_text(seen, span)}, but {summary} put it at "
                f"{_bounds_text(expected)}"
            )
    return None


def _reproduces(
    span: Span | None, expected: tuple[int, ...], first: float, last: float
) -> bool:
    """Whether a measured span is what the predicted pixels look like inside the pixels
    ``first .. last`` the map sees (see :func:`contradiction`)."""
    inside = tuple(i for i in expected if first <= i <= last)
    low = bool(expected) and expected[0] < first or span is not None and span.cut_low
    high = bool(expected) and expected[-1] > last or span is not None and span.cut_high
    if span is None:
        return not inside or low or high
    seen = span.pixels()
    if not (low or high):
        return seen == inside
    return (
        set(seen) <= set(inside)
        and (low or seen[0] == inside[0])
        and (high or seen[-1] == inside[-1])
    )


def unfitted(fit: AxisFit, reason: str) -> AxisFit:
    """The field along an axis whose fit does not reproduce the units it was fitted on: no
    single jump, so j, r and start are NaN (flagged nonuniform, with the reason)."""
    return AxisFit(NAN, NAN, NAN, fit.holes, True, reason=reason)  # type: ignore[arg-type]


def cut_axis(reason: str) -> AxisFit:
    """The field along an axis where it does not fit the largest input the model accepts: its
    extent is unknown past the border, so j, r and start are NaN (flagged ``clipped``, with the
    reason); what each unit sees of that input is still measured exactly."""
    return AxisFit(NAN, NAN, NAN, False, False, cut=True, reason=reason)  # type: ignore[arg-type]


def global_axis(first: int, last: int) -> AxisFit:
    """An axis along which every unit sees everything the map sees, pixels ``first .. last``:
    j = 0, r and start of that hull (as rfarith reports a global field)."""
    return AxisFit(0, last - first + 1, (first + last + 1) / 2, False, False)


def projections(seen: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per axis, which pixels along it are seen by a boolean N-D support."""
    axes = range(seen.ndim)
    return tuple(
        seen.any(axis=tuple(b for b in axes if b != a)) if seen.ndim > 1 else seen for a in axes
    )
