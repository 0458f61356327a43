"""Helpers shared by the rules: the one place where an index map meets a Value's layout."""

from __future__ import annotations

from collections.abc import Callable

from .. import axisfield as af
from ..axisfield import AxisField
from ..errors import ShapeError, UnsupportedOp
from ..value import Value
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
    maps = {}
    for i, axis_map in enumerate(axis_maps):
        dim = x.rank - nd + i
        axes = x.axes_of(dim)
        if not axes:
            continue
        if len(x.dims[dim]) != 1:
            raise UnsupportedOp(
                call.node,
                call.op,
                f"it acts along tensor dim {dim}, which holds several flattened factors "
                f"{x.dims[dim]}; unflatten the spatial axes first",
            )
        axis = axes[0]
        n_in, n_out, extent = x.n[axis], out_shape[dim], x.extent[axis]
        maps[axis] = lambda f, m=axis_map, n_in=n_in, n_out=n_out, e=extent: m(f, n_in, n_out, e)
    result = x.map_fields(maps)
    if marks_global and any(result.fields[a].is_global and not x.fields[a].is_global for a in maps):
        result = result.with_global((call.node,))
    result = result.relaid(out_shape)
    channel_dim = x.rank - nd - 1
    if mixes_front and channel_dim >= 0 and x.axes_of(channel_dim):
        result = result.globalised(x.axes_of(channel_dim), call.node)
    return result


def windowed(kernel, stride, dilation, pad_left, border: str = "zeros") -> list[AxisMap]:
    """One sliding-window map per axis; ``border`` is what padding units copy."""
    return [
        (lambda f, _n, n_out, _e, k=k, s=s, d=d, p=p: af.window(f, k, s, d, p, n_out, border))
        for k, s, d, p in zip(kernel, stride, dilation, pad_left)
    ]
