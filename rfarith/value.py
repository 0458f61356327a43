"""What rfarith knows about one tensor of the traced graph.

A :class:`Value` tells which tensor dimensions carry which input axes and, per input axis, the
field (:class:`~rfarith.axisfield.AxisField`) and the number of units. A dimension is a row-major
list of *factors*: ``(axis, size)`` for a spatial axis, ``(None, size)`` for anything else
(batch, channels, heads). ``flatten`` merges factors, ``view`` splits them back, ``permute`` moves
whole dimensions, so channels-last and token layouts keep their spatial meaning.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cached_property

from . import axisfield as af
from .axisfield import AxisField

Factor = tuple[int | None, int]
Dim = tuple[Factor, ...]
Term = tuple[AxisField, ...]
FieldMap = Callable[[AxisField], AxisField]

MAX_TERMS = 1024  # InceptionNeXt's square + band kernels reach 93 exact terms
APPROXIMATE = "approximate"  # flag: past MAX_TERMS the support's shape is the per-axis union


def _dedupe(names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(names))


def prune(terms: tuple[Term, ...] | list[Term]) -> tuple[Term, ...]:
    """Drop terms that see nothing, repeats, and terms inside another term.

    Past ``MAX_TERMS`` the terms are replaced by one term, the per-axis union: the bounds per
    axis stay exact, the exact shape of the support (its cut corners) is then given up, which
    :func:`pruned` says with the flag :data:`APPROXIMATE`.
    """
    return pruned(terms)[0]


def pruned(terms: tuple[Term, ...] | list[Term]) -> tuple[tuple[Term, ...], frozenset[str]]:
    """:func:`prune`, and ``{APPROXIMATE}`` when the terms were replaced by their union."""
    kept: list[Term] = []
    for term in dict.fromkeys(terms):
        if any(af.sees_nothing(f) for f in term):
            continue
        if any(_term_within(term, other) for other in kept):
            continue
        kept = [other for other in kept if not _term_within(other, term)]
        kept.append(term)
    if not kept:  # nothing is seen at all: keep one empty term so every axis still has a field
        kept = [next(iter(terms))]
    if len(kept) > MAX_TERMS:
        try:
            return (tuple(af.union([t[a] for t in kept]) for a in range(len(kept[0]))),), frozenset({APPROXIMATE})
        except ValueError:  # terms that step differently (a broadcast constant): kept apart, exact
            pass
    return tuple(kept), frozenset()


def _term_within(small: Term, big: Term) -> bool:
    return all(af.contains(b, s) for s, b in zip(small, big))


@dataclass(frozen=True)
class Value:
    """Abstract value of a tensor that depends on the model input.

    The support of a unit is a union of products: ``terms`` holds, per term, one field per
    input axis, and unit m sees the union over terms of the product of what each axis field's
    unit ``m[a]`` sees. Merging branches unions their terms, so supports shaped like a cross
    (parallel 1xn and nx1 branches) or branches that see nothing at a border stay exact.
    """

    dims: tuple[Dim, ...]
    terms: tuple[Term, ...]
    extent: tuple[int, ...]
    global_via: tuple[str, ...] = ()
    flags: frozenset[str] = frozenset()

    @cached_property
    def fields(self) -> tuple[AxisField, ...]:
        """Per input axis, the union over terms (what the per-axis tables report)."""
        if len(self.terms) == 1:
            return self.terms[0]
        causal = "causal" in self.flags
        return tuple(af.summary([t[a] for t in self.terms], causal) for a in range(len(self.extent)))

    # ---- layout --------------------------------------------------------------------------
    @property
    def n(self) -> tuple[int, ...]:
        """Number of units per input axis (1 for an axis reduced away)."""
        return tuple(f.n for f in self.terms[0])

    @property
    def rank(self) -> int:
        return len(self.dims)

    def axes_of(self, dim: int) -> tuple[int, ...]:
        """Input axes carried by tensor dimension ``dim``."""
        return tuple(a for a, _ in self.dims[dim] if a is not None)

    def spatial_dims(self) -> tuple[int, ...]:
        return tuple(d for d in range(self.rank) if self.axes_of(d))

    def dim_of_axis(self, axis: int) -> int | None:
        for d in range(self.rank):
            if axis in self.axes_of(d):
                return d
        return None

    # ---- derived values ------------------------------------------------------------------
    def map_fields(self, maps: dict[int, FieldMap], via: tuple[str, ...] = ()) -> Value:
        """Apply ``maps[axis]`` to that axis' field in every term."""
        if not maps:
            return self.with_global(via) if via else self
        terms, flags = pruned([tuple(maps[a](f) if a in maps else f for a, f in enumerate(term)) for term in self.terms])
        return replace(self, terms=terms, global_via=_dedupe(self.global_via + via), flags=self.flags | flags)

    def with_global(self, via: tuple[str, ...]) -> Value:
        return replace(self, global_via=_dedupe(self.global_via + via))

    def globalised(self, axes: tuple[int, ...], node: str, units: int | None = None) -> Value:
        """Every unit now sees what all units saw together along ``axes`` (a global mixing).

        ``units``: the number of units left along those axes (default: unchanged).
        """
        via = (node,) if any(not self.fields[a].is_global for a in axes) else ()
        maps = {
            a: (lambda f, e=self.extent[a]: af.hull_of_units(f, f.n if units is None else units, e))
            for a in axes
        }
        return self.map_fields(maps, via)

    def causal(self, axes: tuple[int, ...], node: str) -> Value:
        """Step t of a unidirectional recurrence over a sequence that holds ``axes`` (outermost
        first: raster order) now sees what steps 0..t saw together: a global mixing whose real
        units stay exact, flagged ``causal``. A step before t equals t along the axes before
        some level, comes before it along that level's axis and is anything along the axes
        after it, or is t itself: one term per level (the last level's prefix holds t)."""
        extent = self.extent
        terms = []
        for term in self.terms:
            for level, a in enumerate(axes):
                last = level == len(axes) - 1
                fields = list(term)
                fields[a] = af.prefix_of_units(term[a], extent[a], strict=not last)
                for b in axes[level + 1 :]:
                    fields[b] = af.hull_of_units(term[b], term[b].n, extent[b])
                terms.append(tuple(fields))
        kept, approximate = pruned(terms)
        return replace(
            self,
            terms=kept,
            global_via=_dedupe(self.global_via + (node,)),
            flags=self.flags | approximate | {"causal"},
        )

    def relaid(self, shape: tuple[int, ...]) -> Value:
        """Same meaning per dimension, sizes from ``shape`` (after a rule has mapped the fields).

        Checks that each spatial dimension's size matches its field's number of units.
        """
        if len(self.dims) != len(shape):
            raise ValueError(f"layout of rank {len(self.dims)} for a shape of rank {len(shape)}")
        new_dims = []
        for dim, size in zip(self.dims, shape):
            axes = [a for a, _ in dim if a is not None]
            if not axes:
                new_dims.append(((None, size),) if size != 1 else ())
            elif prefix_of(dim):
                if _dim_size(dim) != size:
                    raise ValueError(f"cannot resize a token dimension {dim}")
                new_dims.append(dim)
            elif len(axes) == 1 and len(dim) == 1 and not isinstance(dim[0][0], Part):
                if self.n[axes[0]] != size:
                    raise ValueError(f"axis {axes[0]} has {self.n[axes[0]]} units but its dim has size {size}")
                new_dims.append(((axes[0], size),))
            else:
                if _dim_size(dim) != size:
                    raise ValueError(f"cannot resize a dimension that carries several factors {dim}")
                new_dims.append(dim)
        return replace(self, dims=tuple(new_dims))


class Part(int):
    """The axis index of a factor that holds one part of an input axis split into blocks (a
    window partition): the factor's index ``i`` stands for the axis' units ``i*stride ..``, so
    ``(Part(a, 7), 8)`` is the window and ``(Part(a, 1), 7)`` the position inside it of an axis
    of 56 units. It is the axis index for everything that reads one (fields, maps), and equal to
    it; two parts of one axis differ by their stride."""

    stride: int

    def __new__(cls, axis: int, stride: int):
        obj = super().__new__(cls, int(axis))
        obj.stride = int(stride)
        return obj

    def __eq__(self, other):
        if isinstance(other, Part):
            return int(self) == int(other) and self.stride == other.stride
        return int.__eq__(self, other)

    def __ne__(self, other):
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    def __hash__(self):
        return int.__hash__(self)

    def __repr__(self):
        return f"Part({int(self)}, stride={self.stride})"

    def __reduce__(self):
        return (Part, (int(self), self.stride))


def stride_of(axis) -> int:
    """The step inside its axis of a factor with this axis index (1 for a whole axis)."""
    return getattr(axis, "stride", 1)


def is_part(axis) -> bool:
    return isinstance(axis, Part)


def axis_units(dims, n_axes: int) -> list[int | None]:
    """Per input axis, the units the dims carry (the product of its factors: a window
    partition splits an axis over two dims), None for an axis no dim carries."""
    n: list[int | None] = [None] * n_axes
    for dim in dims:
        for a, s in dim:
            if a is not None:
                n[a] = s if n[a] is None else n[a] * s
    return n


def factors_of(dims, axis: int) -> list:
    """The factors of input axis ``axis`` (its parts included) in ``dims``, in order."""
    return [f for dim in dims for f in dim if f[0] is not None and int(f[0]) == axis]


def inside_and_outside(x: Value, dims, axis: int) -> tuple[list, list]:
    """The factors of ``axis`` in the tensor dims ``dims`` of ``x``, and those in its other dims."""
    return factors_of([x.dims[d] for d in dims], axis), factors_of([dim for d, dim in enumerate(x.dims) if d not in dims], axis)


def window_mixing(mixed: list, kept: list, n: int):
    """How a mixing op acts along one axis: ``mixed`` are the factors of that axis the op mixes
    over, ``kept`` the factors of that axis the result still carries (by their position).

    Returns ``("global", None)`` when the op mixes the whole axis, ``("window", w)`` when it
    mixes only the position inside windows of ``w`` units that the result keeps apart (a window
    partition: every unit sees its whole window, exactly), and raises ValueError otherwise."""
    if not any(is_part(a) for a, _ in mixed):
        return "global", None
    # the same positions may be summed in two operands (attn @ v over a window's keys)
    inner = sorted(dict.fromkeys(mixed), key=lambda f: stride_of(f[0]))
    step = 1
    for a, s in inner:
        if stride_of(a) != step:
            raise ValueError(f"it mixes parts {mixed} of a split axis that are not the innermost positions")
        step *= s
    w = step
    if w >= n:  # the window is the whole axis
        return "global", None
    if n % w:
        raise ValueError(f"it mixes windows of {w} units of an axis of {n} units")
    outer = [f for f in kept if f not in mixed]
    if not outer or min(stride_of(a) for a, _ in outer) < w:
        raise ValueError(f"it mixes the positions {mixed} inside windows of a split axis whose windows it does not keep apart")
    return "window", w


def reduced_inside_windows(x: Value, reduced: tuple[int, ...], keepdim: bool) -> Value | None:
    """A reduction over the positions inside the windows of split axes, the windows kept apart
    (Swin's patch merging: ``reshape(B, H/2, 2, W/2, 2, C)``, the two 2s moved last, flattened
    and a linear layer): each window becomes one unit that sees what the window's units saw,
    as a convolution with kernel and stride the window (exact per term, so exact). None for
    anything else (a reduction over a whole axis or over outer parts)."""
    maps, widths, left = {}, {}, {}
    for a in {int(a) for d in reduced for a in x.axes_of(d)}:
        mixed, kept = inside_and_outside(x, reduced, a)
        if not all(is_part(f[0]) for f in mixed) or not kept:
            return None
        try:
            kind, w = window_mixing(mixed, kept, x.fields[a].n)
        except ValueError:
            return None
        if kind != "window":
            return None
        widths[a], left[a] = w, len(kept)
        maps[a] = lambda f, w=w: window_unit(f, w)
    dims: list[Dim] = []
    for d, dim in enumerate(x.dims):
        if d in reduced:
            if keepdim:
                dims.append(tuple(f for f in dim if f[0] is None or int(f[0]) not in widths))
            continue
        dims.append(tuple(coarser(f, widths, left) for f in dim))
    return replace(x.map_fields(maps), dims=tuple(dims))


def coarser(factor, widths: dict[int, int], left: dict[int, int]) -> tuple:
    """A factor of an axis whose windows of ``widths[axis]`` units became one unit each: its
    stride in the new units (the whole axis again where it is the axis' only factor left)."""
    a, size = factor
    if a is None or int(a) not in widths:
        return factor
    if left[int(a)] == 1:
        return (int(a), size)
    return (Part(int(a), stride_of(a) // widths[int(a)]), size)


def window_unit(field: AxisField, w: int) -> AxisField:
    """Each window of ``w`` units is one unit now, seeing what the window's units saw (a window
    reduced away: kernel and stride ``w``)."""
    return af.resample(field, 1, w, [tuple(range(w))], field.n // w)


def window_field(field: AxisField, w: int) -> AxisField:
    """Every unit sees what all units of its window of ``w`` units see (units ``q*w .. q*w+w-1``)."""
    return af.resample(field, w, w, [tuple(range(w))] * w, field.n)


class TokenDim(tuple):
    """A token dimension: ``prefix`` extra tokens that are no unit of the grid (a class token,
    distillation or register tokens), then the grid, whose row-major factors the tuple holds.

    Rules that take a dimension whole (``permute``, a merge that picks an input's dim, a linear
    layer over the last dim) carry it along unchanged; rules that know token dims read
    ``prefix``. A slice of its factors, or factors added to it, keep the prefix, so a rule that
    rebuilds the dim from its factors without knowing about the prefix gets a layout whose size
    is off by the prefix, which the walk refuses (:func:`layout_matches`) instead of misplacing
    every token by one.
    """

    prefix: int

    def __new__(cls, factors, prefix: int):
        obj = super().__new__(cls, factors)
        obj.prefix = int(prefix)
        return obj

    def __getitem__(self, index):
        got = super().__getitem__(index)
        return TokenDim(got, self.prefix) if isinstance(index, slice) else got

    def __add__(self, other):
        return TokenDim(tuple(self) + tuple(other), self.prefix)

    def __radd__(self, other):
        return TokenDim(tuple(other) + tuple(self), self.prefix)

    def __eq__(self, other):
        return tuple.__eq__(self, other) and getattr(other, "prefix", 0) == self.prefix

    def __ne__(self, other):
        return not self == other

    def __hash__(self):
        return hash((tuple(self), self.prefix))

    def __repr__(self):
        return f"TokenDim(prefix={self.prefix}, {tuple.__repr__(self)})"

    def __reduce__(self):
        return (TokenDim, (tuple(self), self.prefix))


def prefix_of(dim: Dim) -> int:
    """Extra non-grid tokens in front of the grid in ``dim`` (0 for an ordinary dim)."""
    return getattr(dim, "prefix", 0)


def _dim_size(dim: Dim) -> int:
    size = 1
    for _, s in dim:
        size *= s
    return size + prefix_of(dim)


def layout_matches(value: Value, shape: tuple[int, ...]) -> bool:
    """Whether ``value``'s dims have ``shape``'s rank and sizes."""
    return len(value.dims) == len(shape) and all(_dim_size(d) == s for d, s in zip(value.dims, shape))


def has_token_dims(value: Value) -> bool:
    return any(prefix_of(d) for d in value.dims)


def input_value(shape: tuple[int, ...]) -> Value:
    """The model input: dim 0 batch, dim 1 channels, the rest spatial axes."""
    spatial = shape[2:]
    dims: list[Dim] = [((None, shape[0]),) if shape[0] != 1 else (), ((None, shape[1]),) if shape[1] != 1 else ()]
    dims += [((a, s),) for a, s in enumerate(spatial)]
    return Value(dims=tuple(dims), terms=(tuple(af.pixel(s) for s in spatial),), extent=tuple(spatial))
