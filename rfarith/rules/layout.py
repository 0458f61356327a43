"""Ops that move, merge or split tensor dimensions without looking at values.

They change which tensor dimension carries which input axis, never a field, except where they
select or tile units (slicing, ``repeat``) or lose the grid (``cat`` along a spatial axis).
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from .. import axisfield as af
from ..errors import UnsupportedOp
from ..value import Dim, Part, TokenDim, Value, _dim_size, is_part, prefix_of, stride_of
from .common import require_value
from .pointwise import merge
from .registry import Call, Named, rule


def _opaque(size: int) -> Dim:
    return ((None, size),) if size != 1 else ()


def regroup(call: Call, x: Value, out_shape: tuple[int, ...]) -> Value:
    """Row-major reshape: merge and split the factors of ``x`` into ``out_shape``.

    A token dim with extra tokens in front of its grid (:class:`~rfarith.value.TokenDim`) is
    one block: it must reach one output dim of its own size (a reshape that only adds or drops
    size-1 dims, or splits the features beside it)."""
    pending: list = []
    for dim in x.dims:
        if prefix_of(dim):
            pending.append(dim)
        else:
            pending.extend(f for f in dim if f[1] != 1)
    dims: list[Dim] = []
    for size in out_shape:
        if pending and prefix_of(pending[0]):
            if size == 1:
                dims.append(())
                continue
            if size != _dim_size(pending[0]):
                raise UnsupportedOp(
                    call.node, call.op,
                    f"the reshape to {out_shape} splits or merges a token dim with {prefix_of(pending[0])} "
                    "extra token(s) in front of the grid (a class token); slice them off first (x[:, 1:])",
                )
            dims.append(pending.pop(0))
            continue
        dim: list = []
        prod = 1
        while prod < size:
            if not pending or size % prod or prefix_of(pending[0]):
                raise UnsupportedOp(call.node, call.op, f"cannot follow the reshape of {x.dims} into {out_shape}")
            axis, factor = pending[0]
            if size % (prod * factor) == 0:
                dim.append(pending.pop(0))
                prod *= factor
                continue
            need = size // prod
            if factor % need:
                raise UnsupportedOp(call.node, call.op, f"cannot follow the reshape of {x.dims} into {out_shape}")
            if axis is None:
                dim.append((None, need))
                pending[0] = (None, factor // need)
            else:  # a spatial axis split into blocks (window partition): the parts keep their steps
                stride = stride_of(axis)
                dim.append((Part(axis, stride * (factor // need)), need))
                pending[0] = (Part(axis, stride), factor // need)
            prod *= need
        dims.append(_fused(tuple(dim), x.n))
    if pending:
        raise UnsupportedOp(call.node, call.op, f"cannot follow the reshape of {x.dims} into {out_shape}")
    return replace(x, dims=tuple(dims))


def _fused(dim: Dim, n: tuple[int, ...]) -> Dim:
    """Adjacent parts of one split axis that follow each other (window, then the position in it)
    become one factor again; a part that covers its whole axis is the plain axis (window
    reverse)."""
    out: list = []
    for axis, size in dim:
        if out and is_part(axis) and is_part(out[-1][0]) and int(out[-1][0]) == int(axis):
            prev, prev_size = out[-1]
            if prev.stride == stride_of(axis) * size:
                out[-1] = (Part(axis, stride_of(axis)), prev_size * size)
                continue
        out.append((axis, size))
    return tuple(
        (int(a), s) if is_part(a) and a.stride == 1 and s == n[int(a)] else (a, s) for a, s in out
    )


@rule(
    "view", "reshape", "flatten", "unflatten", "squeeze", "unsqueeze", "view_as", "reshape_as",
    "squeeze_", "unsqueeze_",
    torch.reshape, torch.flatten, torch.squeeze, torch.unsqueeze, torch.unflatten,
    nn.Flatten, nn.Unflatten,
)
def reshape(call: Call):
    return regroup(call, require_value(call), call.out_shape)


def _permuted(x: Value, order: list[int]) -> Value:
    return replace(x, dims=tuple(x.dims[d] for d in order))


@rule("permute", torch.permute)
def permute(call: Call):
    x = require_value(call)
    order = call.args[1:] if call.kind == "call_method" else call.arg(1, "dims")
    if call.kind == "call_method" and "dims" in call.kwargs:
        order = call.kwargs["dims"]
    if len(order) == 1 and isinstance(order[0], (list, tuple)):
        order = order[0]
    return _permuted(x, [d % x.rank for d in order])


@rule("transpose", "transpose_", "swapaxes", "swapdims", torch.transpose, torch.swapaxes, torch.swapdims)
def transpose(call: Call):
    x = require_value(call)
    a, b = call.arg(1, "dim0") % x.rank, call.arg(2, "dim1") % x.rank
    order = list(range(x.rank))
    order[a], order[b] = order[b], order[a]
    return _permuted(x, order)


@rule("t", torch.t)
def matrix_transpose(call: Call):
    """``t()``: dims 0 and 1 swapped for a 2-D tensor, nothing for fewer."""
    x = require_value(call)
    return _permuted(x, [1, 0] if x.rank == 2 else list(range(x.rank)))


_ATTRIBUTE_ORDERS = {
    "T": lambda rank: list(reversed(range(rank))),
    "mT": lambda rank: [*range(rank - 2), rank - 1, rank - 2],
    "H": lambda rank: list(reversed(range(rank))),
    "mH": lambda rank: [*range(rank - 2), rank - 1, rank - 2],
    "data": lambda rank: list(range(rank)),
}


@rule(getattr)
def attribute(call: Call):
    """``x.T`` (all dims reversed), ``x.mT`` / ``x.mH`` (last two swapped), ``x.data`` (the
    tensor itself); traced by fx as ``getattr(x, name)``. Other tensor attributes have no rule."""
    name = call.args[1]
    if name not in _ATTRIBUTE_ORDERS:
        raise UnsupportedOp(call.node, f"Tensor.{name}", "a tensor attribute rfarith does not follow")
    x = require_value(call)
    return _permuted(x, _ATTRIBUTE_ORDERS[name](x.rank))


@rule("movedim", "moveaxis", torch.movedim, torch.moveaxis)
def movedim(call: Call):
    x = require_value(call)
    src, dst = call.arg(1, "source"), call.arg(2, "destination")
    src = [src] if isinstance(src, int) else list(src)
    dst = [dst] if isinstance(dst, int) else list(dst)
    src = [s % x.rank for s in src]
    dst = [d % x.rank for d in dst]
    order = [None] * x.rank
    for s, d in zip(src, dst):
        order[d] = s
    rest = iter(d for d in range(x.rank) if d not in src)
    order = [o if o is not None else next(rest) for o in order]
    return _permuted(x, order)


# ---- broadcasting and tiling ----------------------------------------------------------------
def _broadcast_to(call: Call, x: Value, out_shape: tuple[int, ...]) -> Value:
    """``x`` expanded to ``out_shape``: every unit of a 1-unit axis stretched over n units sees
    what the one unit saw (exact and local; global only if a global reduction made it)."""
    lead = len(out_shape) - x.rank
    dims: list[Dim] = [_opaque(s) for s in out_shape[:lead]]
    maps = {}
    for d, dim in enumerate(x.dims):
        size = out_shape[lead + d]
        axes = [a for a, _ in dim if a is not None]
        if any(is_part(a) for a in axes) and size != _dim_size(dim):
            raise UnsupportedOp(call.node, call.op, f"it broadcasts a dim {dim} that holds part of a split axis (windows)")
        if not axes or size == x.n[axes[0]] or len(dim) != 1 or is_part(axes[0]):
            dims.append(dim if axes else _opaque(size))
            continue
        axis = axes[0]
        maps[axis] = lambda f, size=size: af.constant(f.real(0), size)
        dims.append(((axis, size),))
    return replace(x.map_fields(maps), dims=tuple(dims))


@rule("expand", "expand_as", "broadcast_to", torch.broadcast_to)
def expand(call: Call):
    return _broadcast_to(call, require_value(call), call.out_shape)


@rule("repeat", "tile", torch.tile)
def repeat(call: Call):
    x = require_value(call)
    out_shape = call.out_shape
    lead = len(out_shape) - x.rank
    maps = {}
    dims: list[Dim] = [_opaque(s) for s in out_shape[:lead]]
    for d, dim in enumerate(x.dims):
        size = out_shape[lead + d]
        axes = [a for a, _ in dim if a is not None]
        if not axes:
            dims.append(_opaque(size))
            continue
        if len(dim) != 1 or (is_part(axes[0]) and size != _dim_size(dim)):
            raise UnsupportedOp(call.node, call.op, "it tiles a dimension that holds flattened or split axes")
        if is_part(axes[0]):
            dims.append(dim)
            continue
        axis = axes[0]
        units = x.n[axis]
        if size != units:  # unit m of the tiled map is unit m mod n of the original
            tiles = tuple((p,) for p in range(units))
            maps[axis] = lambda f, units=units, tiles=tiles, size=size: af.resample(f, units, 0, tiles, size)
        dims.append(((axis, size),))
    return replace(x.map_fields(maps), dims=tuple(dims))


@rule("repeat_interleave", torch.repeat_interleave)
def repeat_interleave(call: Call):
    """Each element repeated ``repeats`` times in a row along ``dim``: along a dim without a
    spatial axis (GCViT's global query repeated for every window in the batch) nothing any unit
    sees changes; along a dim holding one whole axis it is a nearest upsampling by ``repeats``
    (unit m is unit m // repeats). Per-element repeat counts, no ``dim`` (the tensor flattened),
    or a dim of flattened or split axes are refused."""
    x = require_value(call)
    repeats, dim = call.arg(1, "repeats"), call.arg(2, "dim", None)
    if isinstance(repeats, torch.Tensor):
        counts = repeats.flatten().tolist() if not repeats.is_meta and repeats.numel() > 0 else None
        repeats = counts[0] if counts is not None and len(set(counts)) == 1 else None
    if not isinstance(repeats, int) or dim is None:
        raise UnsupportedOp(call.node, call.op, "a repeat_interleave without dim or with per-element repeat counts")
    d = dim % x.rank
    size = call.out_shape[d]
    axes = x.axes_of(d)
    if not axes:
        return replace(x, dims=x.dims[:d] + (_opaque(size),) + x.dims[d + 1 :])
    if len(x.dims[d]) != 1 or is_part(axes[0]):
        raise UnsupportedOp(call.node, call.op, f"a repeat_interleave along tensor dim {d}, which holds flattened or split axes")
    axis = axes[0]
    upsampled = x.map_fields({axis: lambda f: af.resample(f, repeats, 1, [(0,)] * repeats, size)})
    return replace(upsampled, dims=x.dims[:d] + (((axis, size),),) + x.dims[d + 1 :])


# ---- selecting units ------------------------------------------------------------------------
def _pick_unit(x: Value, dim: int, index: int, maps: dict) -> None:
    """Select flat index ``index`` of dim ``dim``: each carried axis keeps one unit."""
    rest = index
    for axis, size in reversed(x.dims[dim]):
        rest, position = divmod(rest, size)
        if axis is not None:
            maps[axis] = lambda f, position=position: af.window(f, 1, 1, 1, -position, 1)


def index_value(call: Call, x: Value, index, in_shape: tuple[int, ...]) -> Value:
    items = index if isinstance(index, tuple) else (index,)
    explicit = sum(1 for i in items if i is not None and i is not Ellipsis)
    expanded: list = []
    for item in items:
        if item is Ellipsis:
            expanded.extend([slice(None)] * (x.rank - explicit))
        else:
            expanded.append(item)
    expanded.extend([slice(None)] * (x.rank - sum(1 for i in expanded if i is not None)))
    dims: list[Dim] = []
    maps: dict = {}
    reads_prefix: tuple[int, ...] = ()  # axes of token dims whose extra tokens are read
    d = 0
    for item in expanded:
        if item is None:
            dims.append(())
            continue
        dim, size = x.dims[d], in_shape[d]
        axes = [a for a, _ in dim if a is not None]
        if prefix_of(dim) and not (isinstance(item, slice) and item.indices(size) == (0, size, 1)):
            kept, read = _token_index(call, x, dim, item, size)
            reads_prefix = reads_prefix or read
            if kept is not None:
                dims.append(kept)
            d += 1
            continue
        if any(is_part(a) for a in axes) and not (isinstance(item, slice) and item.indices(size) == (0, size, 1)):
            raise UnsupportedOp(
                call.node, call.op,
                f"an index {item!r} into tensor dim {d}, which holds part of a spatial axis split into windows",
            )
        if isinstance(item, int):
            if axes:
                _pick_unit(x, d, item % size, maps)
        elif isinstance(item, slice):
            start, stop, step = item.indices(size)
            length = len(range(start, stop, step))
            if not axes or (start, step, length) == (0, 1, size):
                dims.append(dim if axes else _opaque(length))
            elif len(dim) == 1:
                maps[axes[0]] = lambda f, step=step, start=start, length=length: af.window(f, 1, step, 1, -start, length)
                dims.append(((axes[0], length),))
            else:
                raise UnsupportedOp(call.node, call.op, f"a slice {item} of tensor dim {d}, which holds flattened axes")
        else:
            if axes:
                raise UnsupportedOp(call.node, call.op, f"indexing spatial dim {d} with a tensor or list")
            dims.append(None)  # size filled in below
        d += 1
    out_shape = call.out_shape
    # advanced indexing may move dims; fill unknown sizes from the output shape when ranks agree
    if len(dims) != len(out_shape):
        raise UnsupportedOp(call.node, call.op, f"an index {index!r} that rearranges dimensions")
    dims = [_opaque(s) if dim is None else dim for dim, s in zip(dims, out_shape)]
    if reads_prefix:
        return _read_prefix(x, maps, reads_prefix, tuple(dims))
    return replace(x.map_fields(maps), dims=tuple(dims))


def _token_index(call: Call, x: Value, dim: TokenDim, item, size: int) -> tuple[Dim | None, tuple[int, ...]]:
    """Index ``item`` into a token dim: ``(dim kept or None, axes whose extra tokens it reads)``.

    ``x[:, 0]`` (an int inside the prefix) reads a class token, ``x[:, :k]`` the prefix tokens:
    they are no unit of the grid and see what every token saw together once a global mixing op
    (attention) has let them read the tokens. ``x[:, k:]`` (the prefix skipped, the grid
    whole) gives the grid back. Anything else (an int or a slice inside the grid of a flattened
    2-D grid) is refused."""
    axes = tuple(a for a, _ in dim if a is not None)
    prefix = prefix_of(dim)
    if isinstance(item, int):
        if item % size < prefix:
            return None, axes
    elif isinstance(item, slice):
        start, stop, step = item.indices(size)
        if step == 1 and start == prefix and stop == size:
            return tuple(dim), ()
        if step == 1 and stop <= prefix and stop > start:
            return _opaque(stop - start), axes
    raise UnsupportedOp(
        call.node, call.op,
        f"an index {item!r} into a token dim of {prefix} extra token(s) and a grid {tuple(dim)}; "
        f"rfarith follows x[:, i] with i < {prefix} (a class token), x[:, :{prefix}] and x[:, {prefix}:] (the grid)",
    )


def _read_prefix(x: Value, maps: dict, axes: tuple[int, ...], dims: tuple[Dim, ...]) -> Value | None:
    """The extra tokens in front of a grid: constants (None) until a global mixing op has mixed
    them with the grid (``x.global_via``), then each sees what all the grid's units see
    together, flagged global via that op (this read is no mixing of its own)."""
    if not x.global_via:
        return None
    hull = {a: (lambda f, e=x.extent[a]: af.hull_of_units(f, 1, e)) for a in axes}
    return replace(x.map_fields({**maps, **hull}), dims=dims)


def select(call: Call):
    """``operator.getitem`` on a tensor (tuples are handled by the walk)."""
    x = require_value(call)
    return index_value(call, x, call.args[1], tuple(call.input.shape))


@rule("select", torch.select)
def select_method(call: Call):
    x = require_value(call)
    dim = call.arg(1, "dim") % x.rank
    index = [slice(None)] * x.rank
    index[dim] = int(call.arg(2, "index"))
    return index_value(call, x, tuple(index), tuple(call.input.shape))


@rule("chunk", "split", "tensor_split", "unbind", torch.chunk, torch.split, torch.tensor_split, torch.unbind)
def split(call: Call):
    x = require_value(call)
    if call.op in ("unbind",):
        dim = call.arg(1, "dim", 0) % x.rank
    else:
        dim = call.arg(2, "dim", 0) % x.rank
    pieces = []
    offset = 0
    for piece in call.out:
        index = [slice(None)] * x.rank
        if call.op == "unbind":
            index[dim] = offset
            offset += 1
        else:
            index[dim] = slice(offset, offset + piece.shape[dim])
            offset += piece.shape[dim]
        sub = Call(call.node, call.op, call.kind, call.target, None, call.args, call.kwargs, piece, call.values)
        pieces.append(index_value(sub, x, tuple(index), tuple(call.input.shape)))
    return tuple(pieces)


# ---- concatenation --------------------------------------------------------------------------
@rule(torch.cat, torch.concat, torch.concatenate, torch.stack)
def concatenate(call: Call):
    tensors = list(call.arg(0, "tensors"))
    dim = call.kwargs["axis"] if "axis" in call.kwargs else call.arg(1, "dim", 0)  # concatenate's is axis
    stacking = call.target is torch.stack
    if not stacking:  # empty pieces add nothing (rotary embedding of no prefix tokens: x[:, :, :0])
        tensors = [t for t in tensors if not (isinstance(t, torch.Tensor) and t.numel() == 0)]
        if len(tensors) == 1 and call.value(tensors[0]) is not None:
            return call.value(tensors[0])
    inputs = []
    lost: set[int] = set()
    for t in tensors:
        v = call.value(t)
        if v is None:
            continue
        rank = t.dim()
        d = dim % (rank + 1 if stacking else rank)
        shape = tuple(t.shape)
        if stacking:
            v = replace(v, dims=v.dims[:d] + ((),) + v.dims[d:])
            shape = shape[:d] + (1,) + shape[d:]
        elif v.axes_of(d):
            lost.update(v.axes_of(d))
        inputs.append((shape, v))
    if lost:
        prefixed = _prepend_tokens(call, tensors, dim)
        if prefixed is not None:
            return prefixed
        # the grid along these axes is gone (e.g. tokens of two grids concatenated)
        inputs = [(s, replace(v.globalised(tuple(lost), call.node, units=1), dims=_strip(v.dims, lost))) for s, v in inputs]
    return merge(call, inputs, call.out_shape)


def _prepend_tokens(call: Call, tensors: list, dim: int) -> Value | None:
    """``cat([class_token, tokens], dim)``: tokens that do not depend on the input (parameters:
    class, distillation, register tokens), or that a global op computed from it (CaiT's class
    attention; the result is then flagged global via that op), in front of the one input that
    carries the grid give a token dim with that many extra tokens (:class:`TokenDim`); the grid
    keeps its axes. None for any other concatenation along a spatial dim."""
    prefix = 0
    grid = None
    via: tuple[str, ...] = ()
    for t in tensors:
        v = call.value(t)
        d = dim % t.dim()
        if grid is not None:
            return None  # tokens after the grid
        if v is None:
            prefix += t.shape[d]
            continue
        if not v.axes_of(d):
            if not v.global_via:
                return None  # input-dependent extra tokens that no global op produced
            prefix += t.shape[d]  # a class token computed by class attention (CaiT): global
            via += v.global_via
            continue
        grid = (v, d)
    if grid is None or prefix == 0:
        return None
    v, d = grid
    old = v.dims[d]
    dims = list(v.dims)
    dims[d] = TokenDim(tuple(old), prefix + prefix_of(old))
    return replace(v, dims=tuple(dims)).with_global(via)


# torchvision's MViT wraps two helpers with torch.fx.wrap (matched by name, registry.Named):
# _unsqueeze(x, ...) -> (x with a size-1 dim added if x has one dim too few, x.dim()) and
# _squeeze(x, ...) -> x with that dim removed again. Adding or removing a size-1 dim is a
# reshape; the int is read from the shape.
@rule(Named("torchvision.models.video.mvit._unsqueeze"))
def mvit_unsqueeze(call: Call):
    tensor, _ = call.out
    return regroup(call, require_value(call), tuple(tensor.shape)), None


@rule(Named("torchvision.models.video.mvit._squeeze"))
def mvit_squeeze(call: Call):
    return regroup(call, require_value(call), call.out_shape)


def _strip(dims: tuple[Dim, ...], axes: set[int]) -> tuple[Dim, ...]:
    return tuple(tuple((None, s) if a in axes else (a, s) for a, s in dim) for dim in dims)


rule(__import__("operator").getitem)(select)


@rule(
    torch.zeros_like, torch.ones_like, torch.empty_like, torch.full_like, torch.rand_like,
    torch.randn_like, "new_zeros", "new_ones", "new_empty", "new_full", "new_tensor", "size",
    "dim", "numel",
)
def constant(call: Call):
    """Ops whose output depends on the input's shape only, never on its values."""
    return None


@rule(torch.roll, "roll")
def roll(call: Call):
    """``torch.roll(x, shifts, dims)``: along a dim that holds exactly one spatial axis (whole),
    output unit m is input unit ``(m - shift) mod n``: a circular resample, exact (the units
    that wrap around see the other border). A roll of the flattened tensor, or along a dim that
    holds several factors (flattened tokens, windows), is refused."""
    x = require_value(call)
    shifts = call.arg(1, "shifts")
    dims = call.arg(2, "dims", None)
    if dims is None:
        if any(x.axes_of(d) for d in range(x.rank)):
            raise UnsupportedOp(call.node, call.op, "a roll of the flattened tensor (no dims) moves units across spatial axes")
        return x
    shifts = (shifts,) if isinstance(shifts, int) else tuple(shifts)
    dims = (dims,) if isinstance(dims, int) else tuple(dims)
    if len(shifts) != len(dims):
        raise UnsupportedOp(call.node, call.op, f"shifts {shifts} and dims {dims} of different lengths")
    maps: dict = {}
    total: dict[int, int] = {}
    for shift, d in zip(shifts, dims):
        d = int(d) % x.rank
        dim = x.dims[d]
        axes = [a for a, _ in dim if a is not None]
        if not axes:
            continue
        if len(dim) != 1 or is_part(axes[0]) or prefix_of(dim):
            raise UnsupportedOp(
                call.node, call.op,
                f"a roll along tensor dim {d}, which holds {dim} (rfarith follows a roll along a dim "
                "that holds exactly one whole spatial axis); roll before flattening, or measure it with crosscheck.hybrid",
            )
        total[int(axes[0])] = total.get(int(axes[0]), 0) + int(shift)
    for axis, shift in total.items():
        n = x.n[axis]
        maps[axis] = lambda f, shift=shift, n=n: af.resample(f, 1, 1, [(-shift,)], n, border="circular")
    return x.map_fields(maps)


# ---- unfold and fold: blocks of pixels moved into the channels and back -------------------------
def _pair(value, name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(int(v) for v in value)
    if len(pair) != 2:
        raise ValueError(f"{name} {value!r} needs one or two values")
    return pair  # type: ignore[return-value]


def _block_params(call: Call, first: int) -> tuple[tuple[int, int], ...]:
    """(kernel, dilation, padding, stride) of an Unfold / Fold, per axis pair; ``first`` is the
    position of ``kernel_size`` among the functional arguments."""
    if call.module is not None:
        m = call.module
        values = (m.kernel_size, m.dilation, m.padding, m.stride)
    else:
        values = (
            call.arg(first, "kernel_size"), call.arg(first + 1, "dilation", 1),
            call.arg(first + 2, "padding", 0), call.arg(first + 3, "stride", 1),
        )
    names = ("kernel_size", "dilation", "padding", "stride")
    return tuple(_pair(v, n) for v, n in zip(values, names))


@rule(nn.Unfold, torch.nn.functional.unfold)
def unfold(call: Call):
    """``Unfold`` (im2col): ``(N, C, H, W)`` to ``(N, C*kh*kw, Lh*Lw)``, element ``(c, i, j, l)``
    the pixel ``lh*s - pad + i*d`` (and along w alike) of block ``l``. Along each axis the units
    are the pairs (block q, tap t), ``q*k + t``, split as a window partition is: the blocks in
    the last dim (``Part(h, k)``), the taps behind the channels (``Part(h, 1)``). Unit ``q*k + t``
    sees what input unit ``q*s - pad + t*d`` saw (nothing in the padding): exact, overlapping
    blocks included. An op that sums over the taps then sees each block's window; ``F.fold``
    puts taps back where they came from."""
    x = require_value(call)
    kernel, dilation, padding, stride = _block_params(call, 1)
    shape = tuple(call.input.shape)
    if len(shape) != 4 or x.rank != 4 or not all(len(x.dims[d]) == 1 and x.axes_of(d) and not is_part(x.dims[d][0][0]) for d in (2, 3)):
        raise UnsupportedOp(call.node, call.op, "an unfold of a tensor that is not (batch, channels, h, w) with one whole spatial axis in each of the last two dims")
    blocks = tuple((size + 2 * p - d * (k - 1) - 1) // s + 1 for size, k, d, p, s in zip(shape[2:], kernel, dilation, padding, stride))
    axes = (x.axes_of(2)[0], x.axes_of(3)[0])
    maps = {
        a: (lambda f, k=k, d=d, p=p, s=s, n=n: af.resample(f, k, s, [(t * d - p,) for t in range(k)], n * k))
        for a, k, d, p, s, n in zip(axes, kernel, dilation, padding, stride, blocks)
    }
    taps = tuple((Part(a, 1), k) for a, k in zip(axes, kernel) if k > 1)
    grid = tuple((Part(a, k), n) for a, k, n in zip(axes, kernel, blocks) if n > 1)
    value = x.map_fields(maps)
    n_units = value.n
    dims = (x.dims[0], _fused(tuple(x.dims[1]) + taps, n_units), _fused(grid, n_units))
    return replace(value, dims=dims)


@rule(nn.Fold, torch.nn.functional.fold)
def fold(call: Call):
    """``Fold`` (col2im), the inverse placement of :func:`unfold`: output pixel ``y`` sums the
    entries ``(tap t, block q)`` with ``q*s - pad + t*d = y``. Exact in two layouts: the taps
    as ``Unfold`` left them (each entry sees what its tap saw), or blocks whose taps all see
    alike (the taps plain channels, as after VOLO's outlook attention summed over them): a
    transposed convolution over the blocks."""
    x = require_value(call)
    kernel, dilation, padding, stride = _block_params(call, 2)
    size = _pair(call.module.output_size if call.module is not None else call.arg(1, "output_size"), "output_size")
    if x.rank != 3 or len(call.out_shape) != 4:
        raise UnsupportedOp(call.node, call.op, "a fold of a tensor that is not (batch, channels*taps, blocks)")
    grid = [f for f in x.dims[2] if f[0] is not None]
    axes = tuple(dict.fromkeys(int(a) for a, _ in grid))
    taps = [f for f in x.dims[1] if f[0] is not None]
    if len(axes) != 2 or any(int(a) not in axes for a, _ in taps):
        raise UnsupportedOp(call.node, call.op, "a fold whose blocks do not carry the two spatial axes in its last dim")
    maps = {}
    for a, k, d, p, s, n_out in zip(axes, kernel, dilation, padding, stride, size):
        own_taps = [f for f in taps if int(f[0]) == a]
        blocks = [f for f in grid if int(f[0]) == a]
        if not own_taps and len(blocks) == 1 and not is_part(blocks[0][0]):  # blocks alike across taps
            width = 1
        elif own_taps == [(Part(a, 1), k)] and blocks == [(Part(a, k), blocks[0][1])]:  # taps as unfold left them
            width = k
        else:
            raise UnsupportedOp(call.node, call.op, f"a fold whose taps or blocks along axis {a} are laid out as {own_taps} and {blocks}")
        sources = [
            tuple(((r + p - t * d) // s) * width + (t if width > 1 else 0) for t in range(k) if (r + p - t * d) % s == 0)
            for r in range(s)
        ]
        maps[a] = lambda f, s=s, width=width, sources=sources, n_out=n_out: af.resample(f, s, width, sources, n_out)
    value = x.map_fields(maps)
    channels = tuple(f for f in x.dims[1] if f[0] is None)
    out_c = call.out_shape[1]
    dims = (x.dims[0], _opaque(out_c) if channels or out_c != 1 else (), ((axes[0], size[0]),), ((axes[1], size[1]),))
    return replace(value, dims=dims)


@rule("unfold")
def unfold_dim(call: Call):
    """``x.unfold(dim, size, step)``: the windows of ``size`` units every ``step`` along ``dim``,
    the position in the window as a new last dim (HaloNet's blocks with their halo). As
    :func:`unfold` along one axis: unit ``q*size + t`` (window q, position t) sees what input
    unit ``q*step + t`` saw; the windows stay in ``dim`` (``Part(a, size)``), the positions go
    last (``Part(a, 1)``). A dim that is not one whole axis is refused."""
    x = require_value(call)
    d = call.arg(1, "dimension") % x.rank
    size, step = int(call.arg(2, "size")), int(call.arg(3, "step"))
    axes = x.axes_of(d)
    if not axes:
        return replace(x, dims=x.dims[:d] + (_opaque(call.out_shape[d]),) + x.dims[d + 1 :] + (_opaque(size),))
    if len(x.dims[d]) != 1 or is_part(axes[0]):
        raise UnsupportedOp(call.node, call.op, f"an unfold along tensor dim {d}, which holds flattened or split axes")
    a = axes[0]
    windows = call.out_shape[d]
    value = x.map_fields({a: lambda f: af.resample(f, size, step, [(t,) for t in range(size)], windows * size)})
    outer = _fused(((Part(a, size), windows),), value.n) if windows > 1 else ()
    inner = _fused(((Part(a, 1), size),), value.n) if size > 1 else ()
    return replace(value, dims=x.dims[:d] + (outer,) + x.dims[d + 1 :] + (inner,))
