"""The verdict of the cross-check: exact pixel sets, unit by unit, at one input.

For a feature map, a fixed set of units (:func:`window`: the corners, the centre, and ``2P``
consecutive units through the centre along each axis, ``P`` the analytic period there) is
compared as exact sets of input pixels: what rfarith says each unit sees of that input
(:meth:`rfarith.ReceptiveField.mask`, clipped to it) against the probe's support (the pixels
whose gradient is exactly non-zero). The row agrees iff every set is equal. This is the one
oracle: ``crosscheck.compare`` and the property tests both call :func:`mismatches`.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from rfarith.field import ReceptiveField
from rfarith.value import APPROXIMATE

# A support cut to its box: the first pixel per axis and the boolean pattern of the box.
Support = tuple[tuple[int, ...], np.ndarray]


def window(rf: ReceptiveField, corners: bool = True) -> list[tuple[int, ...]]:
    """The units compared on ``rf``'s map: every corner, the centre, and ``2P`` consecutive
    units through the centre along each axis (``P``: the field's period along it). Without
    ``corners`` only the units through the centre (on the larger input the probe grew to, where
    the corners lie at the border again, as they did at the user's input where they were
    compared).

    >>> import torch.nn as nn, rfarith
    >>> window(rfarith.analyze(nn.Conv1d(1, 1, 3), (1, 1, 10)).output)
    [(0,), (3,), (4,), (7,)]
    """
    n, centre = rf.n, tuple(size // 2 for size in rf.n)
    units = {centre}
    if corners:
        units |= set(itertools.product(*[sorted({0, size - 1}) for size in n]))
    for a, period in enumerate(rf.phases):
        low = max(0, centre[a] - period)
        for m in range(low, min(n[a], low + 2 * period)):
            units.add(centre[:a] + (m,) + centre[a + 1 :])
    return sorted(units)


def boxed(seen: np.ndarray) -> Support:
    """A boolean array over the input, cut to the box of its True pixels."""
    if not seen.any():
        return (0,) * seen.ndim, np.zeros((0,) * seen.ndim, dtype=bool)
    lows, highs = [], []
    for axis in range(seen.ndim):
        others = tuple(a for a in range(seen.ndim) if a != axis)
        line = np.flatnonzero(seen.any(axis=others) if others else seen)
        lows.append(int(line[0]))
        highs.append(int(line[-1]))
    box = tuple(slice(lo, hi + 1) for lo, hi in zip(lows, highs))
    return tuple(lows), seen[box]


def bounds_of(support: Support | None) -> tuple[tuple[int, int] | None, ...] | None:
    """First and last pixel per axis of a support (None per axis when it is empty)."""
    if support is None:
        return None
    origin, pattern = support
    if pattern.size == 0:
        return (None,) * len(origin)
    return tuple((lo, lo + size - 1) for lo, size in zip(origin, pattern.shape))


def same(a: Support, b: Support) -> bool:
    return a[0] == b[0] and a[1].shape == b[1].shape and bool(np.array_equal(a[1], b[1]))


@dataclass(frozen=True)
class Mismatch:
    """One compared unit whose pixel sets differ, at input ``sizes`` (``numeric`` None: the
    probe's map has no such unit)."""

    unit: tuple[int, ...]
    sizes: tuple[int, ...]
    analytic: tuple[tuple[int, int] | None, ...]
    numeric: tuple[tuple[int, int] | None, ...] | None
    pixels_differ: int  # pixels seen by one side only

    def text(self) -> str:
        where = f"unit {_unit_text(self.unit)} at input {'×'.join(map(str, self.sizes))}"
        theirs = "no such unit" if self.numeric is None else _bounds_text(self.numeric)
        return (
            f"{where}: analytic {_bounds_text(self.analytic)} vs numeric {theirs} "
            f"({self.pixels_differ} pixels seen by one side only)"
        )


def mismatches(
    rf: ReceptiveField, measured: Mapping[tuple[int, ...], Support | None], whole: bool = False
) -> list[Mismatch]:
    """Every unit of ``measured`` whose exact pixel set differs from what ``rf`` says it sees
    (``rf`` analysed at the very input the probe ran; ``None``: the probe's map lacks the unit).
    With ``whole`` every unit sees the whole input (a global path followed: mode 'full')."""
    found = []
    approximate = APPROXIMATE in rf.flags and not whole
    for unit, support in measured.items():
        mine = boxed(np.ones(rf.extent, dtype=bool) if whole else rf.mask(unit))
        if support is not None and same(mine, support):
            continue
        if approximate and support is not None and _inside_same_bounds(support, mine, rf.extent):
            continue  # the analytic shape is a superset by construction: bounds are what is exact
        found.append(
            Mismatch(
                tuple(unit),
                rf.extent,
                bounds_of(mine),
                bounds_of(support),
                _pixels_differ(mine, support, rf.extent),
            )
        )
    return found


def _inside_same_bounds(theirs: Support, mine: Support, extent: tuple[int, ...]) -> bool:
    """``theirs`` has ``mine``'s bounds and every pixel of it lies in ``mine``."""
    if bounds_of(theirs) != bounds_of(mine):
        return False
    return not bool((_painted(theirs, extent) & ~_painted(mine, extent)).any())


def _pixels_differ(mine: Support, theirs: Support | None, extent: tuple[int, ...]) -> int:
    return int((_painted(mine, extent) ^ _painted(theirs, extent)).sum())


def _painted(support: Support | None, extent: tuple[int, ...]) -> np.ndarray:
    """A support as a mask over the whole input (all False for None)."""
    full = np.zeros(extent, dtype=bool)
    if support is not None and support[1].size:
        origin, pattern = support
        full[tuple(slice(o, o + s) for o, s in zip(origin, pattern.shape))] = pattern
    return full


def _unit_text(unit: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, unit)) + ")"


def _bounds_text(bounds: tuple[tuple[int, int] | None, ...]) -> str:
    if any(b is None for b in bounds):
        return "nothing"
    return "×".join(f"{lo}..{hi}" for lo, hi in bounds)  # type: ignore[misc]
