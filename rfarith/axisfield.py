"""The receptive field along one input axis, exact for periodic patterns and at the borders.

Private to rfarith: rules build these through the few operations below, and the public
:class:`rfarith.ReceptiveField` reads them. Everything here is pure arithmetic on integers.

The periodic part: a period ``P``, a jump ``J`` (input pixels per period) and, per phase ``p``,
the pixels unit ``p`` sees; unit ``m = q*P + p`` sees ``q*J + lo[p] .. q*J + hi[p]``. The pixels
actually seen inside that hull are a bit mask (bit ``i`` set: pixel ``lo + i`` is seen), so
holes are exact too. ``P = 1`` is the guide's n / j / r / start; ``J = 0`` is a global field
(every unit sees the same pixels). Units outside the map (the padding units of the guide's
arithmetic) extend the pattern periodically: this is the unclipped field the guide reports.

The real part: the map has ``n`` units; the exact field of a real unit differs from the periodic
one only near the borders, where a padding unit sees nothing (or, with reflect / replicate /
circular padding, what the unit it copies sees). ``head`` holds the exact fields of units
``0 .. len(head)-1`` and ``tail`` those of the last ``len(tail)`` units; every unit between them
sees exactly its periodic field.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction

# A phase: (lo, mask) with bit 0 of mask set, or EMPTY for a unit that sees nothing.
Phase = tuple[int, int]
EMPTY: Phase = (0, 0)

BORDERS = ("zeros", "reflect", "replicate", "circular")


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


def _bounds(phase: Phase) -> tuple[int, int] | None:
    lo, mask = phase
    return (lo, lo + mask.bit_length() - 1) if mask else None


@dataclass(frozen=True)
class AxisField:
    """Exact receptive field along one axis (see the module docstring)."""

    period: int
    jump: int
    phases: tuple[Phase, ...]
    n: int = 1
    head: tuple[Phase, ...] = ()
    tail: tuple[Phase, ...] = ()

    # ---- the periodic extension (the guide's unclipped field) ------------------------------
    def unit(self, m: int) -> Phase:
        """(lo, mask) of unit ``m`` in the periodic extension (any integer m)."""
        q, p = divmod(m, self.period)
        lo, mask = self.phases[p]
        return (lo + q * self.jump, mask) if mask else EMPTY

    def bounds(self, m: int) -> tuple[int, int] | None:
        """First and last input pixel unit ``m`` sees, unclipped; ``None`` if it sees nothing."""
        return _bounds(self.unit(m))

    # ---- the real units -----------------------------------------------------------------
    def is_regular(self, m: int) -> bool:
        """Whether real unit ``m`` sees exactly its periodic field."""
        return len(self.head) <= m < self.n - len(self.tail)

    def real(self, m: int) -> Phase:
        """(lo, mask) of what real unit ``m`` (0 <= m < n) sees of the actual input."""
        if not 0 <= m < self.n:
            raise IndexError(f"unit {m} is outside the map of {self.n} units")
        if m < len(self.head):
            return self.head[m]
        if m >= self.n - len(self.tail):
            return self.tail[m - (self.n - len(self.tail))]
        return self.unit(m)

    def real_bounds(self, m: int) -> tuple[int, int] | None:
        return _bounds(self.real(m))

    # ---- summaries ----------------------------------------------------------------------
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
        """Centre of unit 0's (periodic) field, the guide's ``start``; NaN if it sees nothing."""
        b = self.bounds(0)
        return math.nan if b is None else (b[0] + b[1] + 1) / 2

    @property
    def steps(self) -> bool:
        """Whether the field moves with the units (a non-zero jump). A field every unit sees
        alike (global), or every unit of one phase alike (a map of one unit broadcast, then
        upsampled with blind phases), does not."""
        return self.jump != 0

    @property
    def is_global(self) -> bool:
        """Every unit sees the same pixels (a tiled map, with jump 0 but several phases, is not)."""
        return self.jump == 0 and self.period == 1

    @property
    def has_holes(self) -> bool:
        return any(mask & (mask + 1) for _, mask in self.phases if mask)

    @property
    def is_nonuniform(self) -> bool:
        return len(set(self.sizes)) > 1

    @property
    def is_empty(self) -> bool:
        return all(mask == 0 for _, mask in self.phases)


def pixel(extent: int) -> AxisField:
    """The input itself: unit m sees pixel m, for m in 0 .. extent-1."""
    return AxisField(1, 1, ((0, 1),), n=extent)


def constant(phase: Phase, n: int) -> AxisField:
    """Every one of ``n`` units sees the same pixels (a broadcast or global field)."""
    return AxisField(1, 0, (phase,), n=n)


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _canonical_period(period: int, jump: int, phases: tuple[Phase, ...]) -> tuple[int, int, tuple[Phase, ...]]:
    """The same periodic pattern with its smallest period."""
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
            return d, shift, phases[:d]
    return period, jump, phases


def border_source(u: int, n: int, border: str) -> int | None:
    """The real unit a source index ``u`` outside ``0 .. n-1`` copies, or None (zero padding)."""
    if 0 <= u < n:
        return u
    if border == "zeros" or n == 0:
        return None
    if border == "replicate":
        return min(max(u, 0), n - 1)
    if border == "circular":
        return u % n
    if border == "reflect":
        if n == 1:
            return 0
        period = 2 * (n - 1)
        u %= period
        return u if u < n else period - u
    raise ValueError(f"unknown border mode {border!r}; expected one of {BORDERS}")


def _band(
    field: AxisField,
    out_period: int,
    in_shift: int,
    sources: tuple[tuple[int, ...], ...],
    n_out: int,
    border: str,
) -> tuple[tuple[Phase, ...], tuple[Phase, ...]]:
    """Exact fields of the output's border units (those reading padding or border units)."""

    def source_indices(m: int) -> list[int]:
        q, r = divmod(m, out_period)
        return [q * in_shift + o for o in sources[r]]

    def regular(m: int) -> bool:
        return all(field.is_regular(u) for u in source_indices(m))

    def real_unit(m: int) -> Phase:
        acc = EMPTY
        for u in source_indices(m):
            v = border_source(u, field.n, border)
            if v is not None:
                acc = _union(acc, field.real(v))
        return acc

    if in_shift == 0:  # tiling: every tile repeats the input's border units
        irregular = [m for m in range(n_out) if not regular(m)]
    else:
        irregular = _irregular_units(field, out_period, in_shift, sources, n_out)
    if not irregular:
        return (), ()
    left = [m for m in irregular if m < n_out / 2]
    right = [m for m in irregular if m >= n_out / 2]
    head_len = max(left) + 1 if left else 0
    tail_start = min(right) if right else n_out
    if head_len >= tail_start:
        return tuple(real_unit(m) for m in range(n_out)), ()
    head = tuple(real_unit(m) for m in range(head_len))
    tail = tuple(real_unit(m) for m in range(tail_start, n_out))
    return head, tail


def _irregular_units(
    field: AxisField, out_period: int, in_shift: int, sources: tuple[tuple[int, ...], ...], n_out: int
) -> list[int]:
    """Output units that read a padding unit or a border unit of the input."""
    first_regular = len(field.head)
    last_regular = field.n - len(field.tail) - 1
    units: set[int] = set()
    for r, offsets in enumerate(sources):
        if not offsets:
            continue
        low, high = min(offsets), max(offsets)
        # unit q*P + r reads q*A + low .. q*A + high: irregular while that leaves the regular range
        q_left = -((low - first_regular) // in_shift)  # smallest q with q*A + low >= first_regular
        q_right = (last_regular - high) // in_shift  # largest q with q*A + high <= last_regular
        for q in range(0, min(q_left, -(-(n_out - r) // out_period))):
            units.add(q * out_period + r)
        for q in range(max(q_right + 1, 0), -(-(n_out - r) // out_period)):
            units.add(q * out_period + r)
    return sorted(m for m in units if 0 <= m < n_out)


def resample(
    field: AxisField,
    out_period: int,
    in_shift: int,
    sources: Sequence[Sequence[int]],
    n_out: int,
    border: str = "zeros",
) -> AxisField:
    """Compose ``field`` with an index map from output units to input units.

    Output unit ``m = q*out_period + p`` reads the input units ``q*in_shift + o`` for ``o`` in
    ``sources[p]`` and sees the union of what they see. Every local op is one of these: a
    convolution is ``(1, stride, (-pad + d*t for t))``, a transposed convolution or an
    upsampling has ``out_period > 1``. Source units outside the input map are padding:
    ``border`` says what they copy ('zeros': nothing).
    """
    sources = tuple(tuple(s) for s in sources)
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
    period, jump, canonical_phases = _canonical_period(period, jump, tuple(phases))
    head, tail = _band(field, out_period, in_shift, sources, n_out, border)
    return AxisField(period, jump, canonical_phases, n_out, head, tail)


def window(
    field: AxisField,
    kernel: int,
    stride: int,
    dilation: int,
    pad_left: int,
    n_out: int,
    border: str = "zeros",
) -> AxisField:
    """Convolution or pooling: unit m reads units ``m*stride - pad_left + dilation*t``."""
    offsets = tuple(-pad_left + dilation * t for t in range(kernel))
    return resample(field, 1, stride, (offsets,), n_out, border)


def union(fields: list[AxisField]) -> AxisField:
    """Unit m sees what unit m of every field sees. All fields share ``j = J/P`` and ``n``."""
    steps = {Fraction(f.jump, f.period) for f in fields}
    if len(steps) != 1:
        raise ValueError("fields with different jumps: " + ", ".join(str(s) for s in sorted(steps)))
    sizes = {f.n for f in fields}
    if len(sizes) != 1:
        raise ValueError("fields of maps with different sizes: " + ", ".join(str(s) for s in sorted(sizes)))
    n = sizes.pop()
    step = steps.pop()
    period = math.lcm(*(f.period for f in fields))
    jump = int(step * period)
    phases = [_union_all(f.unit(p) for f in fields) for p in range(period)]
    period, jump, canonical_phases = _canonical_period(period, jump, tuple(phases))
    head_len = max(len(f.head) for f in fields)
    tail_len = max(len(f.tail) for f in fields)

    def real_union(m: int) -> Phase:
        acc = EMPTY
        for f in fields:
            acc = _union(acc, f.real(m))
        return acc

    if head_len + tail_len >= n:
        return AxisField(period, jump, canonical_phases, n, tuple(real_union(m) for m in range(n)), ())
    head = tuple(real_union(m) for m in range(head_len))
    tail = tuple(real_union(m) for m in range(n - tail_len, n))
    return AxisField(period, jump, canonical_phases, n, head, tail)


def summary(fields: list[AxisField], causal: bool = False) -> AxisField:
    """The per-axis field a table reports for a union of terms: the union of the terms that
    step with the map, leaving out those that do not (a map of one unit broadcast or resized: a
    constant set added to every unit, or to every unit of a phase; no lattice) unless no other
    term is left. ``causal`` (a unidirectional recurrence on the way, :func:`prefix_of_units`),
    beside a term that does not step but whose real units differ (over a flattened grid: row
    i sees rows 0..i-1 whole and itself): no lattice, the per-unit union of all terms."""
    lattice = [f for f in fields if f.steps]
    if causal and lattice and any(not f.steps and f.head for f in fields):
        return _units_union(fields)
    return union(lattice or fields)


def _units_union(fields: list[AxisField]) -> AxisField:
    """The global field whose real unit m sees what unit m of every field sees (its periodic
    part the hull of them all)."""
    n = fields[0].n
    seen = tuple(_union_all(f.real(m) for f in fields) for m in range(n))
    return AxisField(1, 0, (_union_all(seen),), n, seen, ())


def _union_all(phases: Iterable[Phase]) -> Phase:
    acc = EMPTY
    for phase in phases:
        acc = _union(acc, phase)
    return acc


def _phase_within(small: Phase, big: Phase) -> bool:
    if small[1] == 0:
        return True
    if big[1] == 0 or small[0] < big[0]:
        return False
    return (small[1] << (small[0] - big[0])) & ~big[1] == 0


def contains(big: AxisField, small: AxisField) -> bool:
    """Whether every unit of ``small`` sees a subset of what the same unit of ``big`` sees."""
    if big.n != small.n or Fraction(big.jump, big.period) != Fraction(small.jump, small.period):
        return False
    period = math.lcm(big.period, small.period)
    if not all(_phase_within(small.unit(p), big.unit(p)) for p in range(period)):
        return False
    border = set(range(max(len(big.head), len(small.head))))
    border |= set(range(big.n - max(len(big.tail), len(small.tail)), big.n))
    return all(_phase_within(small.real(m), big.real(m)) for m in border if 0 <= m < big.n)


def sees_nothing(field: AxisField) -> bool:
    """No unit, periodic or real, sees any pixel."""
    return field.is_empty and all(mask == 0 for _, mask in field.head + field.tail)


def same_centres(fields: list[AxisField]) -> bool:
    """Whether every unit is centred alike in all fields (``lo + hi`` equal), over a common period."""
    period = math.lcm(*(f.period for f in fields))
    for m in range(period):
        centres = {b[0] + b[1] for b in (f.bounds(m) for f in fields) if b is not None}
        if len(centres) > 1:
            return False
    return True


def hull_of_units(field: AxisField, n_out: int, extent: int) -> AxisField:
    """Global field of ``n_out`` units: each sees what all real units saw together, clipped."""
    if field.jump == 0 and not field.head and not field.tail:
        acc = field.unit(0)
    else:
        acc = EMPTY
        for m in range(field.n):
            acc = _union(acc, field.real(m))
    return constant(_clip(acc, extent), n_out)


def prefix_of_units(field: AxisField, extent: int, strict: bool = False) -> AxisField:
    """Causal field: real unit ``t`` sees what real units ``0 .. t`` saw together (``strict``:
    ``0 .. t-1``, so unit 0 sees nothing), clipped: a unidirectional recurrence along the axis,
    whose state after step t is computed from steps 0..t. The periodic part is the hull of
    every unit (``j = 0``, as a global field's); every real unit's own field is exact in
    ``head``."""
    acc = EMPTY
    seen = []
    for m in range(field.n):
        before = acc
        acc = _union(acc, field.real(m))
        seen.append(_clip(before if strict else acc, extent))
    return AxisField(1, 0, (_clip(acc, extent),), field.n, tuple(seen), ())


def with_units(field: AxisField, n: int) -> AxisField:
    """A global field stretched or shrunk to ``n`` units (every unit sees the same)."""
    if not field.is_global:
        raise ValueError("only a global field can change its number of units without an index map")
    return constant(field.real(0) if field.n else field.unit(0), n)
