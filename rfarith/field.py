"""The public receptive-field record, one per feature map."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property

import numpy as np

from . import axisfield as af
from .axisfield import AxisField

FLAG_ORDER = ("global", "causal", "holes", "misaligned", "nonuniform", "rounding", "clipped", "approximate")


def _pixels(phase: tuple[int, int]) -> tuple[int, ...]:
    lo, mask = phase
    return tuple(lo + i for i in range(mask.bit_length()) if mask >> i & 1)


def _summary_of(field: AxisField) -> tuple[Fraction | int, int, float]:
    return field.j, field.r, field.start


def _has_holes(terms: tuple[tuple[AxisField, ...], ...]) -> bool:
    """Whether some unit leaves a pixel inside its box unseen (exact for unions of products)."""
    if len(terms) == 1:
        return any(f.has_holes for f in terms[0])
    periods = [math.lcm(*(t[a].period for t in terms)) for a in range(len(terms[0]))]
    for unit in itertools.product(*(range(p) for p in periods)):
        boxes = []
        for term in terms:
            phases = [f.unit(m) for f, m in zip(term, unit)]
            if all(mask for _, mask in phases):
                boxes.append(phases)
        if not boxes:
            continue
        lows = [min(b[a][0] for b in boxes) for a in range(len(unit))]
        highs = [max(b[a][0] + b[a][1].bit_length() - 1 for b in boxes) for a in range(len(unit))]
        covered = np.zeros([h - lo + 1 for lo, h in zip(lows, highs)], dtype=bool)
        for phases in boxes:
            masks = [
                np.array([(mask >> i) & 1 for i in range(mask.bit_length())], dtype=bool)
                for _, mask in phases
            ]
            region = tuple(slice(lo - base, lo - base + mask.bit_length()) for (lo, mask), base in zip(phases, lows))
            product = masks[0]
            for m in masks[1:]:
                product = np.multiply.outer(product, m)
            covered[region] |= product
        if not covered.all():
            return True
    return False


def _line(phase: tuple[int, int], size: int) -> np.ndarray:
    """One axis of a phase (lo, mask) as a boolean array over an input of ``size`` pixels."""
    line = np.zeros(size, dtype=bool)
    pixels = [p for p in _pixels(phase) if 0 <= p < size]
    line[pixels] = True
    return line


def _outer(lines: list[np.ndarray]) -> np.ndarray:
    product = lines[0]
    for line in lines[1:]:
        product = np.multiply.outer(product, line)
    return product


def axis_names(count: int) -> tuple[str, ...]:
    """'l' for 1-D, 'h','w' for 2-D, 'd','h','w' for 3-D."""
    return {1: ("l",), 2: ("h", "w"), 3: ("d", "h", "w")}.get(count, tuple(f"a{i}" for i in range(count)))


@dataclass(frozen=True)
class ReceptiveField:
    """What each unit of one feature map sees, per spatial axis of the input.

    >>> import torch.nn as nn, rfarith
    >>> rf = rfarith.analyze(nn.Conv2d(3, 8, 3, stride=2, padding=1), (1, 3, 32, 32)).output
    >>> rf.n, rf.j, rf.r, rf.start
    ((16, 16), (2, 2), (3, 3), (0.5, 0.5))
    >>> rf.bounds((4, 0))
    ((7, 9), (-1, 1))
    """

    node: str
    axes: tuple[str, ...]
    terms: tuple[tuple[AxisField, ...], ...]
    extent: tuple[int, ...]
    global_via: tuple[str, ...] = ()
    extra_flags: frozenset[str] = frozenset()

    @cached_property
    def fields(self) -> tuple[AxisField, ...]:
        """Per axis, the field over all terms (the per-axis hull the table reports; a term
        every unit sees alike along an axis is left out there when others step: ``af.summary``)."""
        if len(self.terms) == 1:
            return self.terms[0]
        causal = "causal" in self.extra_flags
        return tuple(af.summary([t[a] for t in self.terms], causal) for a in range(len(self.axes)))

    @property
    def broadcast_axes(self) -> tuple[str, ...]:
        """Axes along which some path gives every unit (or every unit of a phase) the same
        pixels: a map of one unit, broadcast or resized (local ops made it; a global reduction
        is a side path, not a term). Where other paths step with the map, the summary leaves
        that path out (``af.summary``); where every path passes such a map, the field is
        constant along the axis at this input. ``bounds`` and ``real_seen`` hold it either way. On a larger input
        such a map may have several units, and the field is then another one. With a global
        reduction in the field (``global_via``), an axis constant on every path is left out:
        its cause is not told apart."""
        return tuple(
            name
            for a, name in enumerate(self.axes)
            if any(not t[a].steps for t in self.terms)
            and not (self.global_via and not any(t[a].steps for t in self.terms))
        )

    @property
    def broadcast_reach(self) -> tuple[str, ...]:
        """The broadcast axes, and the other axes whose summary the paths through such a map
        change (the field without them has another j, r or start there): on a larger input,
        where that map has more units, those paths may reach other units, and the summary
        along those axes is another one too."""
        broadcast = [self.axes.index(a) for a in self.broadcast_axes]
        if not broadcast:
            return ()
        stepping = [t for t in self.terms if all(t[b].steps for b in broadcast)]
        return tuple(
            name
            for a, name in enumerate(self.axes)
            if a in broadcast
            or not stepping
            or _summary_of(af.summary([t[a] for t in stepping])) != _summary_of(self.fields[a])
        )

    @property
    def n(self) -> tuple[int, ...]:
        """Number of units of the map per axis."""
        return tuple(f.n for f in self.terms[0])

    @property
    def j(self) -> tuple[int | Fraction, ...]:
        """Jump: input pixels between the fields of adjacent units (0 for a global field)."""
        return tuple(f.j for f in self.fields)

    @property
    def r(self) -> tuple[int, ...]:
        """RF size: pixels from the first to the last one a unit sees (the largest over units)."""
        return tuple(f.r for f in self.fields)

    @property
    def start(self) -> tuple[float, ...]:
        """Centre of unit 0's field in input coordinates (pixel i spans [i, i+1))."""
        return tuple(f.start for f in self.fields)

    @property
    def offset(self) -> tuple[int, ...]:
        """First pixel unit 0 sees (top-left convention of numeric tools)."""
        return tuple(b[0] for b in self.bounds((0,) * len(self.axes)))

    @property
    def centre0(self) -> tuple[float, ...]:
        """0-based centre of unit 0 (the TF receptive_field convention); padding = -offset."""
        return tuple(s - 0.5 for s in self.start)

    @property
    def phases(self) -> tuple[int, ...]:
        """Period of the field per axis: 1 unless after upsampling or transposed convolution."""
        return tuple(f.period for f in self.fields)

    @property
    def flags(self) -> frozenset[str]:
        flags = set(self.extra_flags)
        if self.global_via or any(f.is_global for f in self.fields):
            flags.add("global")
        if _has_holes(self.terms):
            flags.add("holes")
        if any(f.is_nonuniform for f in self.fields):
            flags.add("nonuniform")
        return frozenset(flags)

    def bounds(self, unit: int | tuple[int, ...]) -> tuple[tuple[int, int], ...]:
        """First and last input pixel (inclusive, unclipped) that ``unit`` sees, per axis."""
        unit = (unit,) if isinstance(unit, int) else tuple(unit)
        if len(unit) != len(self.axes):
            raise ValueError(f"unit {unit} needs one index per axis {self.axes}")
        if len(self.terms) == 1:
            boxes = [tuple(f.bounds(m) for f, m in zip(self.terms[0], unit))]
        else:  # the hull of the terms that reach this unit along every axis
            boxes = [
                box
                for box in (tuple(f.bounds(m) for f, m in zip(term, unit)) for term in self.terms)
                if all(b is not None for b in box)
            ]
        result = []
        for a, (axis, m) in enumerate(zip(self.axes, unit)):
            sides = [box[a] for box in boxes if box[a] is not None]
            if not sides:
                raise ValueError(f"unit {m} along axis {axis} of '{self.node}' sees no input pixel")
            result.append((min(lo for lo, _ in sides), max(hi for _, hi in sides)))
        if "causal" in self.extra_flags and all(0 <= m < n for m, n in zip(unit, self.n)):
            result = self._causal_bounds(unit, result)
        return tuple(result)

    def _causal_bounds(self, unit: tuple[int, ...], periodic: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """A unidirectional recurrence's unit sees steps 0..t of its sequence, which has no
        padding to extend into: along an axis some term does not step on (the recurrence's),
        the unit's own field is what it sees of the input, not the hull of every step."""
        real = self.real_bounds(unit)
        return [
            real[a] if real[a] is not None and any(not t[a].steps for t in self.terms) else periodic[a]
            for a in range(len(self.axes))
        ]

    def real_bounds(self, unit: int | tuple[int, ...]) -> tuple[tuple[int, int] | None, ...]:
        """First and last pixel of the actual input that ``unit`` sees, per axis (all None: none).

        Unlike :meth:`bounds` (the guide's unclipped field, where padding units extend the
        pattern), this is what the real unit of this map sees: padding units see nothing, or
        what they copy under reflect / replicate / circular padding. It equals the clipped
        :meth:`bounds` except next to the borders of some maps.
        """
        pixels = self.real_seen(unit)
        return tuple((p[0], p[-1]) if p else None for p in pixels)

    def real_seen(self, unit: int | tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
        """The pixels of the actual input that ``unit`` sees along each axis (holes excluded).

        The unit sees the product of these sets, so if it sees nothing along one axis it sees
        nothing at all, and every axis reports an empty tuple.
        """
        unit = self._unit(unit)
        seen: list[set[int]] = [set() for _ in self.axes]
        for term in self.terms:
            pixels = [_pixels(f.real(m)) for f, m in zip(term, unit)]
            if all(pixels):  # a term that sees nothing along one axis sees nothing at all
                for axis_seen, p in zip(seen, pixels):
                    axis_seen.update(p)
        return tuple(tuple(sorted(p)) for p in seen)

    def mask(self, unit: int | tuple[int, ...]) -> np.ndarray:
        """The exact set of input pixels ``unit`` sees, as a boolean array over the input
        (shape ``extent``): the union, over the paths reaching the unit, of the products of
        what each path sees along each axis. Unlike the per-axis :meth:`real_seen`, corners a
        factorised 1xn / nx1 pair of branches leaves unseen stay False.

        >>> import torch.nn as nn, rfarith
        >>> rf = rfarith.analyze(nn.Conv2d(1, 1, 3, padding=1), (1, 1, 5, 5)).output
        >>> rf.mask((0, 0)).astype(int)[:3, :3].tolist()
        [[1, 1, 0], [1, 1, 0], [0, 0, 0]]
        """
        unit = self._unit(unit)
        seen = np.zeros(self.extent, dtype=bool)
        for term in self.terms:
            lines = [_line(f.real(m), size) for f, m, size in zip(term, unit, self.extent)]
            if all(line.any() for line in lines):
                seen |= _outer(lines)
        return seen

    def _unit(self, unit: int | tuple[int, ...]) -> tuple[int, ...]:
        unit = (unit,) if isinstance(unit, int) else tuple(unit)
        if len(unit) != len(self.axes):
            raise ValueError(f"unit {unit} needs one index per axis {self.axes}")
        for axis, n, m in zip(self.axes, self.n, unit):
            if not 0 <= m < n:
                raise IndexError(f"unit {m} along axis {axis} is outside the map of {n} units of '{self.node}'")
        return unit

    def seen(self, unit: int | tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
        """The pixels ``unit`` sees along each axis (holes excluded), unclipped."""
        unit = (unit,) if isinstance(unit, int) else tuple(unit)
        return tuple(_pixels(f.unit(m)) for f, m in zip(self.fields, unit))

    def describe_flags(self) -> str:
        """Flags as text, e.g. ``global (via se.pool), holes``."""
        parts = []
        for flag in FLAG_ORDER:
            if flag not in self.flags:
                continue
            if flag == "global" and self.global_via:
                more = f", +{len(self.global_via) - 1} more" if len(self.global_via) > 1 else ""
                parts.append(f"global (via {self.global_via[0]}{more})")
            else:
                parts.append(flag)
        return ", ".join(parts)
