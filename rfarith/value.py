"""What rfarith knows about one tensor of the traced graph.

A :class:`Value` tells which tensor dimensions carry which input axes and, per input axis, the
field (:class:`~rfarith.axisfield.AxisField`) and the number of units. A dimension is a row-major
list of *factors*: ``(axis, size)`` for a spatial axis, ``(None, size)`` for anything else
(batch, channels, heads). ``flatten`` merges factors, ``view`` splits them back, ``permute`` moves
whole dimensions, so channels-last and token layouts keep their spatial meaning.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from . import axisfield as af
from .axisfield import AxisField

Factor = tuple[int | None, int]
Dim = tuple[Factor, ...]


def _dedupe(names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class Value:
    """Abstract value of a tensor that depends on the model input."""

    dims: tuple[Dim, ...]
    fields: tuple[AxisField, ...]
    extent: tuple[int, ...]
    global_via: tuple[str, ...] = ()
    flags: frozenset[str] = frozenset()

    # ---- layout --------------------------------------------------------------------------
    @property
    def n(self) -> tuple[int, ...]:
        """Number of units per input axis (1 for an axis reduced away)."""
        return tuple(f.n for f in self.fields)

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
    def with_fields(self, fields: dict[int, AxisField], via: tuple[str, ...] = ()) -> Value:
        new = list(self.fields)
        for axis, field in fields.items():
            new[axis] = field
        return replace(self, fields=tuple(new), global_via=_dedupe(self.global_via + via))

    def with_global(self, via: tuple[str, ...]) -> Value:
        return replace(self, global_via=_dedupe(self.global_via + via))

    def globalised(self, axes: tuple[int, ...], node: str, units: int | None = None) -> Value:
        """Every unit now sees what all units saw together along ``axes`` (a global mixing).

        ``units``: the number of units left along those axes (default: unchanged).
        """
        fields = {}
        via: tuple[str, ...] = ()
        for a in axes:
            field = self.fields[a]
            if not field.is_global:
                via = (node,)
            fields[a] = af.hull_of_units(field, field.n if units is None else units, self.extent[a])
        return self.with_fields(fields, via)

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
            elif len(axes) == 1 and len(dim) == 1:
                if self.fields[axes[0]].n != size:
                    raise ValueError(f"axis {axes[0]} has {self.fields[axes[0]].n} units but its dim has size {size}")
                new_dims.append(((axes[0], size),))
            else:
                if _dim_size(dim) != size:
                    raise ValueError(f"cannot resize a dimension that carries several factors {dim}")
                new_dims.append(dim)
        return replace(self, dims=tuple(new_dims))


def _dim_size(dim: Dim) -> int:
    size = 1
    for _, s in dim:
        size *= s
    return size


def input_value(shape: tuple[int, ...]) -> Value:
    """The model input: dim 0 batch, dim 1 channels, the rest spatial axes."""
    spatial = shape[2:]
    dims: list[Dim] = [((None, shape[0]),) if shape[0] != 1 else (), ((None, shape[1]),) if shape[1] != 1 else ()]
    dims += [((a, s),) for a, s in enumerate(spatial)]
    return Value(dims=tuple(dims), fields=tuple(af.pixel(s) for s in spatial), extent=tuple(spatial))
