"""Answers to the questions users ask of a model's receptive fields, from rfarith's fields.

Each function computes one answer as a small record with ``lines()`` (the words ``rfcheck``
prints) and ``as_dict()`` (its ``--format json`` document); ``found`` says whether the answer
is complete and true (exit 0):

- :func:`unit_bounds`: the pixels one unit sees (``rfcheck bounds``);
- :func:`units_seeing`: which units of a map see one input pixel (``rfcheck sees``), exact;
- :func:`first_reaching`: the first map whose field reaches a size (``rfcheck reach``);
- :func:`smallest_holding_input`: the smallest input whose centre unit's field is unclipped
  (``rfcheck fits``);
- :func:`module_outputs` (rfarith's) / :func:`resolve_node`: module paths as names of the node their
  module outputs, as torchvision's ``create_feature_extractor`` takes them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np

from rfarith import ReceptiveField, Report, ShapeError
from rfarith.report import per_axis_text
from rfarith.tracing import module_outputs

if TYPE_CHECKING:
    from rfnumeric import EffectiveField


# ---- names ----------------------------------------------------------------------------------------
def resolve_node(name: str, node_names: Sequence[str], module_paths: Iterable[str]) -> str:
    """``name`` if it is a node, else the output node of the module at that path, else ``name``
    (so that looking it up raises rfarith's UnknownNode with close names)."""
    if name in node_names:
        return name
    return module_outputs(node_names, [name] if name in set(module_paths) else []).get(name, name)


def parse_index(text: str, option: str, what: str) -> tuple[int, ...]:
    """'3,5' -> (3, 5): one whole number per axis, for ``--unit`` and ``--pixel``."""
    parts = [p.strip() for p in text.replace("x", ",").split(",")]
    if not parts or not all(p.isdigit() for p in parts):
        raise ValueError(f"bad {option} '{text}': give the {what} as whole numbers from 0, one per axis, joined by commas, e.g. {option} 3,5")
    return tuple(int(p) for p in parts)


def check_index(index: tuple[int, ...], sizes: Sequence[int], axes: Sequence[str], option: str, what: str) -> None:
    """Refuse an index with the wrong number of axes or outside ``0 .. size-1``."""
    if len(index) != len(sizes):
        example = ",".join(str(s // 2) for s in sizes)
        raise ValueError(
            f"{option} {','.join(map(str, index))} has {len(index)} indices, but the {what} has "
            f"{len(sizes)} axes ({', '.join(axes)}): give {option} {example}"
        )
    for axis, size, i in zip(axes, sizes, index):
        if not 0 <= i < size:
            raise ValueError(f"{option}: index {i} along {axis} is outside the {what} (0..{size - 1} along {axis})")


# ---- text helpers ---------------------------------------------------------------------------------
def span(bounds: tuple[int, int] | None) -> str:
    return "nothing" if bounds is None else f"{bounds[0]}..{bounds[1]}"


def spans_text(axes: Sequence[str], spans: Sequence[tuple[int, int] | None]) -> str:
    """'h -16..34, w -16..34'."""
    return ", ".join(f"{a} {span(s)}" for a, s in zip(axes, spans))


def sizes_text(sizes: Sequence[int]) -> str:
    return "×".join(str(s) for s in sizes)


def runs_text(indices: Sequence[int]) -> str:
    """[1, 2, 3, 5, 7, 8] -> '1..3, 5, 7..8'."""
    runs: list[list[int]] = []
    for i in indices:
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ", ".join(str(a) if a == b else f"{a}..{b}" for a, b in runs)


def json_number(value):
    """Fractions as 'p/q' strings, integral floats as ints, NaN as None (JSON has no NaN)."""
    if isinstance(value, Fraction):
        return value.numerator if value.denominator == 1 else f"{value.numerator}/{value.denominator}"
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return int(value) if value.is_integer() else value
    return value


def field_summary(rf: ReceptiveField) -> str:
    """'r 51, j 8, start 9.5' (+ flags)."""
    flags = rf.describe_flags()
    return f"r {per_axis_text(rf.r)}, j {per_axis_text(rf.j)}, start {per_axis_text(rf.start)}" + (f", {flags}" if flags else "")


def node_label(node: str, asked: str | None) -> str:
    """'block.2 (the output of block)' when the user named the node by its module's path."""
    return node if asked is None or asked == node else f"{node} (the output of {asked})"


def centre_unit(rf: ReceptiveField) -> tuple[int, ...]:
    """The centre unit, as the probe picks it: ``n // 2`` per axis."""
    return tuple(n // 2 for n in rf.n)


# ---- bounds ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class UnitBounds:
    """What one unit sees: its unclipped field (the guide's) and the pixels of the actual input."""

    rf: ReceptiveField
    unit: tuple[int, ...]
    field: tuple[tuple[int, int], ...]
    seen: tuple[tuple[int, int] | None, ...]
    seen_pixels: int  # pixels it sees exactly (holes and cut corners excluded)
    asked: str | None = None  # the name the user gave (a module path), if not the node's
    found: bool = True

    @property
    def box_pixels(self) -> int:
        return math.prod(0 if s is None else s[1] - s[0] + 1 for s in self.seen)

    def lines(self) -> list[str]:
        rf = self.rf
        field_sizes = [hi - lo + 1 for lo, hi in self.field]
        lines = [
            f"{node_label(rf.node, self.asked)}, unit {self.unit} of {sizes_text(rf.n)} units ({field_summary(rf)})",
            f"field, unclipped:   {spans_text(rf.axes, self.field)}  ({sizes_text(field_sizes)} pixels)",
        ]
        if all(s is None for s in self.seen):
            lines.append("sees of the input:  nothing (its field lies in the padding)")
            return lines
        seen_sizes = [hi - lo + 1 for lo, hi in self.seen]
        exact = "" if self.seen_pixels == self.box_pixels else f"; it sees {self.seen_pixels} of them"
        lines.append(f"sees of the input:  {spans_text(rf.axes, self.seen)}  ({sizes_text(seen_sizes)} pixels{exact})")
        return lines

    def as_dict(self) -> dict:
        return {
            "node": self.rf.node,
            "axes": list(self.rf.axes),
            "n": list(self.rf.n),
            "unit": list(self.unit),
            "field": [list(b) for b in self.field],
            "seen": [None if s is None else list(s) for s in self.seen],
            "seen_pixels": self.seen_pixels,
            "flags": sorted(self.rf.flags),
        }


def unit_bounds(rf: ReceptiveField, unit: tuple[int, ...] | None = None, asked: str | None = None) -> UnitBounds:
    """The pixels ``unit`` (default: the centre unit) of ``rf``'s map sees."""
    unit = centre_unit(rf) if unit is None else unit
    check_index(unit, rf.n, rf.axes, "--unit", f"map '{rf.node}'")
    return UnitBounds(rf, unit, rf.bounds(unit), rf.real_bounds(unit), int(rf.mask(unit).sum()), asked)


# ---- sees -----------------------------------------------------------------------------------------
def _sees(phase: tuple[int, int], pixel: int) -> bool:
    lo, mask = phase
    return 0 <= pixel - lo < mask.bit_length() and bool(mask >> (pixel - lo) & 1)


@dataclass(frozen=True)
class UnitsSeeing:
    """The units of one map that see one input pixel: a union of boxes of units."""

    rf: ReceptiveField
    pixel: tuple[int, ...]
    boxes: tuple[tuple[tuple[int, ...], ...], ...]  # per box, the units along each axis
    count: int
    asked: str | None = None  # the name the user gave (a module path), if not the node's
    found: bool = True

    def lines(self) -> list[str]:
        rf = self.rf
        head = (
            f"input pixel {self.pixel} is seen by {self.count} of the {math.prod(rf.n)} units of "
            f"{node_label(rf.node, self.asked)} ({sizes_text(rf.n)})"
        )
        if not self.boxes:
            return [head]
        boxes = [" × ".join(f"{a} {runs_text(units)}" for a, units in zip(rf.axes, box)) for box in self.boxes]
        if len(boxes) == 1:
            return [f"{head}: {boxes[0]}"]
        return [f"{head}, the union of:", *(f"  {b}" for b in boxes)]

    def as_dict(self) -> dict:
        return {
            "node": self.rf.node,
            "axes": list(self.rf.axes),
            "n": list(self.rf.n),
            "pixel": list(self.pixel),
            "count": self.count,
            "boxes": [[list(units) for units in box] for box in self.boxes],
        }


def units_seeing(rf: ReceptiveField, pixel: tuple[int, ...], asked: str | None = None) -> UnitsSeeing:
    """Every unit of ``rf``'s map whose real field contains input ``pixel``, exactly: a unit
    sees the union over the field's paths of a product of per-axis pixel sets, so the units
    seeing a pixel are the union over paths of products of per-axis unit sets."""
    check_index(pixel, rf.extent, rf.axes, "--pixel", "input")
    boxes: list[tuple[tuple[int, ...], ...]] = []
    for term in rf.terms:
        box = tuple(tuple(m for m in range(field.n) if _sees(field.real(m), p)) for field, p in zip(term, pixel))
        if all(box) and box not in boxes:
            boxes.append(box)
    seen = np.zeros(rf.n, dtype=bool)
    for box in boxes:
        seen[np.ix_(*box)] = True
    merged = _as_one_box(seen)
    return UnitsSeeing(rf, pixel, (merged,) if merged is not None else tuple(boxes), int(seen.sum()), asked)


def _as_one_box(seen: np.ndarray) -> tuple[tuple[int, ...], ...] | None:
    """The units as one product of per-axis sets, if they are one (None otherwise)."""
    if not seen.any():
        return None
    axes = range(seen.ndim)
    projections = [np.flatnonzero(seen.any(axis=tuple(b for b in axes if b != a))) for a in axes]
    box = np.zeros_like(seen)
    box[np.ix_(*projections)] = True
    return tuple(tuple(int(i) for i in p) for p in projections) if np.array_equal(box, seen) else None


# ---- reach ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Reach:
    """The first map (graph order) whose field reaches ``size`` pixels on every axis."""

    size: int
    rf: ReceptiveField | None
    position: int  # row number in the report, from 1
    rows: int
    largest: ReceptiveField | None
    missing_before: tuple[str, ...] = ()

    @property
    def found(self) -> bool:
        return self.rf is not None and not self.missing_before

    def lines(self) -> list[str]:
        if self.rf is None:
            largest = f"; the largest is {self.largest.node} ({field_summary(self.largest)})" if self.largest else ""
            lines = [f"no feature map's field reaches {self.size} pixels on every axis{largest}"]
        else:
            lines = [
                f"{self.rf.node} is the first feature map whose field reaches {self.size} pixels on every axis: "
                f"{field_summary(self.rf)} (row {self.position} of {self.rows})"
            ]
        if self.missing_before:
            lines.append(f"INCOMPLETE: rows not computed before it, which might reach it first: {', '.join(self.missing_before)}")
        return lines

    def as_dict(self) -> dict:
        rf = self.rf
        return {
            "size": self.size,
            "node": None if rf is None else rf.node,
            "r": None if rf is None else list(rf.r),
            "j": None if rf is None else [json_number(j) for j in rf.j],
            "start": None if rf is None else [json_number(s) for s in rf.start],
            "flags": [] if rf is None else sorted(rf.flags),
            "row": self.position if rf is not None else None,
            "rows": self.rows,
            "not_computed_before": list(self.missing_before),
        }


def first_reaching(report: Report, size: int) -> Reach:
    missing: list[str] = []
    largest: ReceptiveField | None = None
    for position, row in enumerate(report.rows, start=1):
        if row.field is None:
            missing.append(row.name)
            continue
        if largest is None or min(row.field.r) > min(largest.r):
            largest = row.field
        if all(r >= size for r in row.field.r):
            return Reach(size, row.field, position, len(report.rows), largest, tuple(missing))
    return Reach(size, None, 0, len(report.rows), largest, tuple(missing))


# ---- fits -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Fit:
    """The smallest input on which the centre unit of ``node`` sees its whole field."""

    node: str
    input_shape: tuple[int, ...] | None  # None: none up to max_size
    bounds: UnitBounds | None
    max_size: int
    tried: int
    asked: str | None = None  # the name the user gave (a module path), if not the node's
    follows: tuple[str, ...] = ()  # axes along which the field follows the input (j = 0): not scanned

    @property
    def found(self) -> bool:
        return self.input_shape is not None

    def lines(self) -> list[str]:
        node = node_label(self.node, self.asked)
        if self.input_shape is None or self.bounds is None:
            return [f"no input up to {self.max_size} pixels a side holds the field of the centre unit of {node} unclipped; try a larger --max-size"]
        sizes = "x".join(str(s) for s in self.input_shape[1:])
        if not self.follows:
            return [
                f"--input {sizes} is the smallest input whose centre unit of {node} sees its whole field, unclipped:",
                *self.bounds.lines(),
            ]
        axes = self.bounds.rf.axes
        kept = ", ".join(f"{a} {s}" for a, s in zip(axes, self.input_shape[2:]) if a in self.follows)
        scanned = [a for a in axes if a not in self.follows]
        where = (
            f"--input {sizes} is the smallest input whose centre unit of {node} sees its whole field, unclipped, along {', '.join(scanned)}; along "
            if scanned
            else f"no input is the smallest for {node}: along "
        )
        return [
            where + f"{', '.join(self.follows)} its field follows the input (j 0: global, or causal), so every size holds it (kept: {kept}):",
            *self.bounds.lines(),
        ]

    def as_dict(self) -> dict:
        return {
            "node": self.node,
            "input_shape": None if self.input_shape is None else list(self.input_shape),
            "centre": None if self.bounds is None else self.bounds.as_dict(),
            "max_size": self.max_size,
            "inputs_tried": self.tried,
            "follows_input": list(self.follows),
        }


def _inside(bounds: Sequence[tuple[int, int]], sizes: Sequence[int]) -> list[bool]:
    return [lo >= 0 and hi <= size - 1 for (lo, hi), size in zip(bounds, sizes)]


def smallest_holding_input(
    analyse: Callable[[tuple[int, ...]], Report],
    input_shape: tuple[int, ...],
    node: str,
    max_size: int,
    smallest_valid: Callable[[tuple[int, ...]], tuple[int, ...] | None] = lambda shape: None,
    asked: str | None = None,
) -> Fit:
    """Scan input sizes upwards, axis by axis, from the centre unit's field size (no smaller
    input can hold it) until the centre unit (``n // 2``) of ``node`` sees all of its unclipped
    field: the first size that does, on each axis, is the smallest. An axis along which the
    field does not step (``j = 0``: global, or a recurrence's causal field) follows the input:
    every size holds it, so it keeps the user's size and the answer says so (``follows``). An
    input the model rejects as too small is skipped to ``smallest_valid(shape)`` where that is
    known.

    ``analyse(shape)`` is the report at an input shape.
    """
    rf = analyse(input_shape)[node]
    follows = tuple(a for a, j in zip(rf.axes, rf.j) if j == 0)  # the field grows with the input there
    sizes = [
        user if axis in follows else hi - lo + 1
        for axis, user, (lo, hi) in zip(rf.axes, input_shape[2:], rf.bounds(centre_unit(rf)))
    ]
    tried = 0
    while max(sizes) <= max_size:
        shape = (*input_shape[:2], *sizes)
        tried += 1
        try:
            rf = analyse(shape)[node]
        except ShapeError as e:
            if e.kind != "too_small":
                raise
            valid = smallest_valid(shape)
            sizes = [max(s + 1, v) for s, v in zip(sizes, valid[2:] if valid else sizes)]
            continue
        inside = _inside(rf.bounds(centre_unit(rf)), sizes)
        if all(inside):
            return Fit(node, shape, unit_bounds(rf), max_size, tried, asked, follows)
        sizes = [s if ok else s + 1 for s, ok in zip(sizes, inside)]
    return Fit(node, None, None, max_size, tried, asked, follows)


# ---- erf ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EffectiveRadii:
    """The effective receptive field's radii, as ``rfcheck erf`` prints them."""

    erf: EffectiveField
    found: bool = True

    def lines(self) -> list[str]:
        erf = self.erf
        axes = erf.axes
        sizes = "×".join(str(s) for s in erf.input_shape[2:])
        lines = [
            f"{erf.node}, unit {erf.unit} at input {sizes}: effective receptive field "
            f"(real weights, mean |gradient| over {erf.n_inputs} random inputs, seed {erf.seed})",
            f"{'centre of the gradient mass:':<30}{_per_axis(axes, erf.centre)}",
        ]
        for fraction, radii in sorted(erf.radii.items()):
            lines.append(f"{f'radius holding {round(fraction * 100)} % of it:':<30}{_per_axis(axes, radii)}")
        lines.append(
            f"structural field r {sizes_text(erf.structural_r)}; 90 % radius / r: {_per_axis(axes, erf.ratio, 3)}"
        )
        return lines

    def as_dict(self) -> dict:
        erf = self.erf
        return {
            "node": erf.node,
            "axes": list(erf.axes),
            "unit": list(erf.unit),
            "input_shape": list(erf.input_shape[1:]),
            "samples": erf.n_inputs,
            "seed": erf.seed,
            "centre": list(erf.centre),
            "radii": {f"{q:g}": list(r) for q, r in _sorted(erf.radii)},
            "structural_r": list(erf.structural_r),
            "ratio_90": list(erf.ratio),
        }


def _per_axis(axes: Sequence[str], values: Sequence[float], digits: int = 1) -> str:
    return ", ".join(f"{a} {v:.{digits}f}" for a, v in zip(axes, values))


def _sorted(mapping: Mapping[float, Sequence[float]]) -> list[tuple[float, Sequence[float]]]:
    return sorted(mapping.items())
