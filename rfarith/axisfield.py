"""The receptive field along one input axis, exact for periodic patterns.

Private to rfarith: rules build these through the few operations below, and the public
:class:`rfarith.ReceptiveField` reads them. Everything here is pure arithmetic on integers.

A field has a period ``P``, a jump ``J`` (input pixels per period) and, per phase ``p``, the
pixels unit ``p`` sees: unit ``m = q*P + p`` sees ``q*J + lo[p] .. q*J + hi[p]``. The set of
pixels actually seen inside that hull is kept as a bit mask (bit ``i`` set: pixel ``lo + i`` is
seen), so holes are exact too. ``P = 1`` is the guide's n / j / r / start; ``J = 0`` is a global
field (every unit sees the same pixels). Units with negative or out-of-range indices are the
periodic extension of the map (the padding units of the guide's arithmetic), so fields are
unclipped unless a rule clips them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

# A phase: (lo, mask) with bit 0 of mask set, or EMPTY for a unit that sees nothing.
Phase = tuple[int, int]
EMPTY: Phase = (0, 0)


def _normalise(lo: int, mask: int) -> Phase:
    """Shift ``lo`` to the first seen pixel so that bit 0 of the mask is set."""
    if mask == 0:
        return EMPTY
    low_bit = (mask & -mask).bit_length() - 1
    return (lo + low_bit, mask >> low_bit)


def _union(a: Phase, b: Phase) -> Phase:
    if a[1] == 0:
        return b
    if b[1] == 0:
        return a
    lo = min(a[0], b[0])
    return (lo, (a[1] << (a[0] - lo)) | (b[1] << (b[0] - lo)))


def _clip(phase: Phase, extent: int) -> Phase:
    """Keep only pixels ``0 .. extent-1``."""
    lo, mask = phase
    if mask == 0:
        return EMPTY
    if lo < 0:
        mask >>= -lo
        lo = 0
    if lo >= extent:
        return EMPTY
    mask &= (1 << (extent - lo)) - 1
    return _normalise(lo, mask)


@dataclass(frozen=True)
class AxisField:
    """Exact periodic receptive field along one axis (see the module docstring)."""

    period: int
    jump: int
    phases: tuple[Phase, ...]

    # ---- reading -------------------------------------------------------------------------
    def unit(self, m: int) -> Phase:
        """(lo, mask) of unit ``m`` (any integer: the map extends periodically)."""
        q, p = divmod(m, self.period)
        lo, mask = self.phases[p]
        return (lo + q * self.jump, mask) if mask else EMPTY

    def bounds(self, m: int) -> tuple[int, int] | None:
        """First and last input pixel unit ``m`` sees, unclipped; ``None`` if it sees nothing."""
        lo, mask = self.unit(m)
        return (lo, lo + mask.bit_length() - 1) if mask else None

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(mask.bit_length() for _, mask in self.phases)

    @property
    def j(self) -> Fraction | int:
        step = Fraction(self.jump, self.period)
        return step.numerator if step.denominator == 1 else step

    @property
    def r(self) -> int:
        return max(self.sizes)

    @property
    def start(self) -> float:
        """Centre of unit 0's field (the guide's ``start``); NaN if unit 0 sees nothing."""
        b = self.bounds(0)
        return math.nan if b is None else (b[0] + b[1] + 1) / 2

    @property
    def is_global(self) -> bool:
        return self.jump == 0

    @property
    def has_holes(self) -> bool:
        return any(mask & (mask + 1) for _, mask in self.phases if mask)

    @property
    def is_nonuniform(self) -> bool:
        return len(set(self.sizes)) > 1

    @property
    def is_empty(self) -> bool:
        return all(mask == 0 for _, mask in self.phases)


def pixel() -> AxisField:
    """The input itself: unit m sees pixel m."""
    return AxisField(1, 1, ((0, 1),))


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def canonical(period: int, jump: int, phases: tuple[Phase, ...]) -> AxisField:
    """The same field with its smallest period."""
    for d in _divisors(period):
        if d == period:
            break
        if (jump * d) % period:
            continue
        shift = jump * d // period
        if all(
            phases[p + d] == ((phases[p][0] + shift, phases[p][1]) if phases[p][1] else EMPTY)
            for p in range(period - d)
        ):
            return AxisField(d, shift, phases[:d])
    return AxisField(period, jump, phases)


def resample(
    field: AxisField,
    out_period: int,
    in_shift: int,
    sources: tuple[tuple[int, ...], ...],
) -> AxisField:
    """Compose ``field`` with an index map from output units to input units.

    Output unit ``m = q*out_period + p`` reads the input units ``q*in_shift + o`` for ``o`` in
    ``sources[p]``; it sees the union of what they see. Every local op is one of these:
    a convolution is ``(1, stride, (-pad + d*t for t))``, a transposed convolution or an
    upsampling has ``out_period > 1``.
    """
    if len(sources) != out_period:
        raise ValueError(f"need one source tuple per output phase, got {len(sources)} for {out_period}")
    common = math.gcd(in_shift, field.period)
    cycles = field.period // common
    period = out_period * cycles
    jump = field.jump * in_shift // common
    phases = []
    for p in range(period):
        q, phase = divmod(p, out_period)
        acc = EMPTY
        for offset in sources[phase]:
            acc = _union(acc, field.unit(q * in_shift + offset))
        phases.append(acc)
    return canonical(period, jump, tuple(phases))


def window(field: AxisField, kernel: int, stride: int, dilation: int, pad_left: int) -> AxisField:
    """Convolution or pooling: unit m reads units ``m*stride - pad_left + dilation*t``."""
    offsets = tuple(-pad_left + dilation * t for t in range(kernel))
    return resample(field, 1, stride, (offsets,))


def union(fields: list[AxisField]) -> AxisField:
    """Unit m sees what unit m of every field sees. All fields must share ``j = J/P``."""
    steps = {Fraction(f.jump, f.period) for f in fields}
    if len(steps) != 1:
        raise ValueError("fields with different jumps: " + ", ".join(str(s) for s in sorted(steps)))
    step = steps.pop()
    period = math.lcm(*(f.period for f in fields))
    jump = int(step * period)
    phases = []
    for p in range(period):
        acc = EMPTY
        for f in fields:
            acc = _union(acc, f.unit(p))
        phases.append(acc)
    return canonical(period, jump, tuple(phases))


def same_centres(fields: list[AxisField]) -> bool:
    """Whether every unit is centred alike in all fields (``lo + hi`` equal), over a common period."""
    period = math.lcm(*(f.period for f in fields))
    for m in range(period):
        centres = {b[0] + b[1] for b in (f.bounds(m) for f in fields) if b is not None}
        if len(centres) > 1:
            return False
    return True


def hull_of_units(field: AxisField, n: int, extent: int) -> AxisField:
    """Global field: every unit sees what units ``0 .. n-1`` see together, clipped to the input."""
    acc = EMPTY
    if field.jump == 0:
        acc = field.unit(0)
    else:
        for m in range(n):
            acc = _union(acc, field.unit(m))
    return AxisField(1, 0, (_clip(acc, extent),))
