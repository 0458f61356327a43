"""Shared checks for the rfarith tests.

Every expected value is derived by hand in the calling test; these helpers only compare, and
check on every field they see that ``bounds`` agrees with DESIGN.md's formula

    lo(m) = start + m*j - r/2,    hi(m) = start + m*j + r/2 - 1

along every axis whose field has period 1 (the guide's n / j / r / start). Fields with a period
(after upsampling or a transposed convolution) are checked unit by unit in their own tests.
"""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction

from torch import nn

import rfarith


def formula_bounds(start: float, j: int | Fraction, r: int, m: int) -> tuple[Fraction, Fraction]:
    """The guide's bounds of unit ``m``, exactly."""
    centre = Fraction(start) + m * Fraction(j)
    return centre - Fraction(r, 2), centre + Fraction(r, 2) - 1


def sample_units(n: int) -> list[int]:
    """A few units of a map of ``n`` units: both ends, the middle, one past each end."""
    return sorted({0, 1 % n, n // 2, n - 1, -1, n})


def check_bounds_formula(rf: rfarith.ReceptiveField) -> None:
    """``rf.bounds`` agrees with the formula on sampled units of every period-1 axis."""
    for a, axis in enumerate(rf.axes):
        if rf.phases[a] != 1:
            continue
        for m in sample_units(rf.n[a]):
            unit = tuple(m if b == a else 0 for b in range(len(rf.axes)))
            got = rf.bounds(unit)[a]
            want = formula_bounds(rf.start[a], rf.j[a], rf.r[a], m)
            assert got == want, (
                f"{rf.node} axis {axis} unit {m}: bounds {got} but the formula gives {want} "
                f"(start {rf.start[a]}, j {rf.j[a]}, r {rf.r[a]})"
            )
            assert isinstance(got[0], int) and isinstance(got[1], int)


def assert_field(
    rf: rfarith.ReceptiveField,
    *,
    n: Iterable[int],
    j: Iterable[int | Fraction],
    r: Iterable[int],
    start: Iterable[float],
    flags: Iterable[str] = (),
) -> None:
    """Compare one field with hand-derived values (one entry per axis) and its flags."""
    got = {"n": rf.n, "j": rf.j, "r": rf.r, "start": rf.start, "flags": rf.flags}
    want = {
        "n": tuple(n),
        "j": tuple(j),
        "r": tuple(r),
        "start": tuple(float(s) for s in start),
        "flags": frozenset(flags),
    }
    assert got == want, f"{rf.node}: got {got}, expected {want}"
    check_bounds_formula(rf)


def square(value, axes: int = 2) -> tuple:
    """The same value on every axis."""
    return (value,) * axes


class Lambda(nn.Module):
    """A model whose forward is ``fn(self, stem(x))``, or ``self.op(stem(x))`` without ``fn``;
    without ``stem`` the input goes straight in. ``modules`` become named submodules."""

    def __init__(self, fn=None, stem: nn.Module | None = None, **modules: nn.Module) -> None:
        super().__init__()
        self.fn = fn
        self.stem = stem
        for name, m in modules.items():
            self.add_module(name, m)

    def forward(self, x):
        if self.stem is not None:
            x = self.stem(x)
        return self.fn(self, x) if self.fn is not None else self.op(x)
