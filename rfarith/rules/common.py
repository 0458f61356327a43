"""Helpers shared by the rules: the one place where an index map meets a Value's layout."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from .. import axisfield as af
from ..axisfield import AxisField
from ..errors import ShapeError, UnsupportedOp
from ..field import axis_names
from ..value import (
    Dim,
    FieldMap,
    Part,
    Value,
    _dim_size,
    inside_and_outside,
    is_part,
    reduced_inside_windows,
    stride_of,
)
from .registry import Call

AxisMap = Callable[[AxisField, int, int, int], AxisField]


def require_value(call: Call, obj=None) -> Value:
    value = call.value(call.input if obj is None else obj)
    if value is None:  # pragma: no cover - the walk only calls rules on input-dependent ops
        raise UnsupportedOp(call.node, call.op, "its main input does not depend on the model input")
    return value


def map_trailing_axes(
    call: Call, x: Value, nd: int, axis_maps: list[AxisMap], mixes_front: bool = True, marks_global: bool = True
) -> Value:
    """Apply one index map per trailing tensor dimension (the ``nd`` dims a layer slides over).

    ``axis_maps[i](field, n_in, n_out, extent)`` maps the field of the axis carried by dim
    ``-nd+i`` (``extent``: the input size along that axis). Dimensions that carry no input axis
    are left alone. With ``mixes_front`` (convolutions, pooling over channels-first maps) the
    dim in front, the channels, is mixed too. A map that turns a local field global records
    this node as the cause (a global reduction: adaptive pooling to one unit) unless
    ``marks_global`` is False (a resize of a one-unit map: every unit sees what that unit saw,
    a local path the probe follows too).
    """
    if mixes_front and x.rank < nd + 2:
        raise ShapeError(
            f"layer '{call.node}' ({call.op}) got a tensor of rank {x.rank}, an unbatched input; "
            f"input_shape must be (batch, channels, *spatial), e.g. (1, {', '.join(map(str, (call.input.shape)))})",
            node=call.node,
            kind="rank",
        )
    out_shape = call.out_shape
    if len(out_shape) != x.rank:
        raise UnsupportedOp(call.node, call.op, f"output rank {len(out_shape)} differs from input rank {x.rank}")
    channel_dim = x.rank - nd - 1
    if mixes_front and channel_dim >= 0 and any(is_part(a) for a in x.axes_of(channel_dim)):
        # the channels hold the positions inside windows (a space-to-depth): mixing them makes
        # each window one unit first (exact), then the layer slides over the windows
        x = reduced_inside_windows(x, (channel_dim,), keepdim=True) or x
    maps: dict[int, FieldMap] = {}
    regrid: dict[int, tuple[int, int]] = {}  # axis: window width before and after, for a layer inside windows
    flattened: dict[int, Dim] = {}  # new layout of dims that hold several factors
    reduced: tuple[int, ...] = ()  # axes a window over a flattened dim takes whole
    for i, axis_map in enumerate(axis_maps):
        dim = x.rank - nd + i
        axes = x.axes_of(dim)
        if not axes:
            continue
        if len(x.dims[dim]) != 1:
            flattened[dim], more, whole = _flattened(call, x, dim, axis_map, out_shape[dim])
            maps.update(more)
            reduced += whole
            continue
        axis = axes[0]
        if is_part(x.dims[dim][0][0]):
            maps[axis], regrid[axis] = _inside_windows(call, x, dim, axis_map, out_shape[dim])
            continue
        n_in, n_out, extent = x.n[axis], out_shape[dim], x.extent[axis]
        maps[axis] = lambda f, m=axis_map, n_in=n_in, n_out=n_out, e=extent: m(f, n_in, n_out, e)
    result = x.map_fields(maps)
    if marks_global and any(result.fields[a].is_global and not x.fields[a].is_global for a in maps):
        result = result.with_global((call.node,))
    if reduced:
        result = result.globalised(reduced, call.node, units=1)
    if flattened:
        result = replace(result, dims=tuple(flattened.get(d, dim) for d, dim in enumerate(result.dims)))
    if regrid:
        result = replace(result, dims=tuple(tuple(_regridded(f, regrid) for f in dim) for dim in result.dims))
    result = result.relaid(out_shape)
    if mixes_front and channel_dim >= 0 and x.axes_of(channel_dim):
        result = result.globalised(x.axes_of(channel_dim), call.node)
    return result


@dataclass(frozen=True)
class WindowMap:
    """The index map of a sliding window along one tensor dim (an :data:`AxisMap`): unit m reads
    units ``m*stride - pad_left + dilation*t``, t = 0..kernel-1; ``border`` is what padding
    units copy. Convolutions, pooling, pads and crops use it; it also says which windows are
    exact along a dim that holds several flattened factors (see :func:`_flattened`)."""

    kernel: int
    stride: int
    dilation: int
    pad_left: int
    border: str = "zeros"

    def __call__(self, field: AxisField, _n_in: int, n_out: int, _extent: int) -> AxisField:
        return af.window(field, self.kernel, self.stride, self.dilation, self.pad_left, n_out, self.border)

    def taps(self, m: int) -> range:
        start = m * self.stride - self.pad_left
        return range(start, start + self.dilation * (self.kernel - 1) + 1, self.dilation)

    def is_identity(self, n_in: int, n_out: int) -> bool:
        """Unit m reads unit m and nothing else."""
        return self.kernel == 1 and self.stride == 1 and self.pad_left == 0 and n_in == n_out

    def covers_all(self, n_in: int, n_out: int) -> bool:
        """One output unit that reads every input unit (a pooling over the whole dim)."""
        taps = self.taps(0)
        return n_out == 1 and all(u in taps for u in range(n_in))

    def blocks(self) -> int | None:
        """The block size of windows that tile the dim without overlap or gaps (kernel =
        stride, no padding), else None."""
        if self.pad_left == 0 and self.kernel == self.stride and (self.dilation == 1 or self.kernel == 1):
            return self.kernel
        return None


def windowed(kernel, stride, dilation, pad_left, border: str = "zeros") -> list[AxisMap]:
    """One sliding-window map per axis; ``border`` is what padding units copy."""
    return [WindowMap(k, s, d, p, border) for k, s, d, p in zip(kernel, stride, dilation, pad_left)]


def _inside_windows(call: Call, x: Value, dim: int, axis_map: AxisMap, n_out: int) -> tuple[FieldMap, tuple[int, int]]:
    """A sliding window along a dim that holds the positions inside the windows of a split
    axis, the windows kept apart by other dims (SAM2-Hiera pools each 8x8 window to 4x4): the
    layer runs inside every window on its own, its padding at the window's edges. Exact, as a
    periodic field: unit ``q*w_out + p`` of the axis reads the units ``q*w_in + o`` of the
    window's positions ``o`` that position ``p`` of the layer reads (``border`` for those
    outside the window). Returns the field map and ``(w_in, w_out)``; refuses a layer along
    the windows' own index or one whose windows are not kept apart."""
    (part, w_in), = x.dims[dim]
    axis = int(part)
    others = inside_and_outside(x, (dim,), axis)[1]
    if not isinstance(axis_map, WindowMap) or stride_of(part) != 1 or not others or any(stride_of(a) % w_in for a, _ in others):
        raise UnsupportedOp(
            call.node, call.op,
            f"it slides along tensor dim {dim}, which holds one part {x.dims[dim]} of a spatial axis split into "
            "windows, and only a sliding window over the positions inside windows kept apart has a rule",
        )
    sources = []
    for p in range(n_out):
        taps = (af.border_source(u, w_in, axis_map.border) for u in axis_map.taps(p))
        sources.append(tuple(u for u in taps if u is not None))
    return (lambda f: af.resample(f, n_out, w_in, sources, f.n // w_in * n_out)), (w_in, n_out)


def _regridded(factor, regrid: dict[int, tuple[int, int]]):
    """A factor of an axis whose windows of ``w_in`` units now hold ``w_out`` units each."""
    a, size = factor
    if a is None or int(a) not in regrid:
        return factor
    w_in, w_out = regrid[int(a)]
    return (Part(int(a), 1), w_out) if stride_of(a) == 1 else (Part(int(a), stride_of(a) // w_in * w_out), size)


def _flattened(call: Call, x: Value, dim: int, axis_map: AxisMap, n_out: int) -> tuple[Dim, dict[int, FieldMap], tuple[int, ...]]:
    """A 1-D op along tensor dim ``dim`` that holds several row-major factors (``(B, C, H*W)``
    tokens, a conv1d over them): ``(new dim, field maps per axis, axes taken whole)``.

    Exact cases, flat index f = (... * H + h) * W + w:
    - unit m reads unit m (a 1x1 conv, a pad or crop that leaves this dim alone): no change;
    - one output unit reading every unit (``AvgPool1d(H*W)``, adaptive pooling to 1): every
      axis of the dim is reduced to one unit that sees all of it, a global reduction;
    - windows of b units with stride b, no padding, b dividing the innermost factor's size W:
      window m reads f = m*b .. m*b + b-1, which never crosses a row, so it is the window
      ``(b, b)`` along the innermost axis (w) with every other factor untouched.
    Any other window crosses from one row into the next (unit (h, W-1) would read (h+1, 0)),
    which no per-axis field describes: refused.
    """
    factors = x.dims[dim]
    n_in = _dim_size(factors)
    axes = tuple(a for a, _ in factors if a is not None)
    is_identity = getattr(axis_map, "is_identity", None)
    if is_identity is not None and is_identity(n_in, n_out):
        return factors, {}, ()
    covers_all = getattr(axis_map, "covers_all", None)
    if covers_all is not None and covers_all(n_in, n_out):
        return tuple((a, 1) for a in axes), {}, axes
    blocks = getattr(axis_map, "blocks", None)
    block = blocks() if blocks is not None else None
    label, size = factors[-1]
    if block is not None and size % block == 0:
        inner = ((label, size // block),) if label is not None or size // block != 1 else ()
        maps: dict[int, FieldMap] = {}
        if label is not None:
            maps[label] = lambda f, b=block, n=size // block: af.window(f, b, b, 1, 0, n)
        return factors[:-1] + inner, maps, ()
    names = axis_names(len(x.extent))
    raise UnsupportedOp(
        call.node,
        call.op,
        f"it slides along tensor dim {dim}, which holds the spatial axes {', '.join(names[a] for a in axes)} "
        f"flattened into one ({' x '.join(str(s) for _, s in factors)} = {n_in} units); its windows cross "
        "from one row into the next, which no per-axis field describes",
        way_out=(
            "reshape so that the axis it slides along stands alone in its dim (e.g. (B, C, H, W) -> "
            "(B*H, C, W) for a 1-D op along w), or measure the whole model with rfnumeric.probe"
        ),
    )
