"""Which tensor dimensions carry the batch and which carry the input's spatial axes.

The probe seeds one unit of a feature map and must know where that unit lives in the tensor;
in ``mode="local"`` it must also know whether a reduction mixes spatial positions. So every
tensor the probe's forward produces carries a *layout*: per dimension, a row-major tuple of
*factors* ``(label, size, stride)``:

- ``label`` is :data:`BATCH`, an input axis index (0 for the first spatial axis), ``None``
  (channels, heads, features), :data:`MIXED` (spatial positions in an arrangement the rules
  cannot follow, such as tokens of two grids concatenated: reductions over it are still
  global, but its units cannot be located), or :data:`PREFIX`: ``(PREFIX, k, 0)``, only as
  the first factor of a dim, stands for ``k`` extra tokens (a class token, register tokens)
  in front of the grid the other factors describe: the dim's size is ``k`` plus their
  product, and the grid's position ``f`` is at index ``k + f`` (:func:`seed_positions`);
- ``size`` is the factor's extent (factors of size 1 are dropped, so a size-1 dimension has no
  factor);
- ``stride`` is the factor's step inside its axis: a flattened ``(h, w)`` dim holds
  ``(0, H, 1), (1, W, 1)``; a window partition of ``h`` holds ``(0, H//7, 7)`` and ``(0, 7, 1)``.

Layouts are propagated op by op by :func:`propagate`; the rules are small and conservative: a
dimension they cannot explain becomes ``None`` (not spatial), never a guess.

>>> layout = input_layout((2, 3, 8, 8))
>>> flatten_layout(layout, 2, 3)[2]   # h and w in one dim
((0, 8, 1), (1, 8, 1))
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

BATCH = "batch"
MIXED = "mixed"  # a dim that carries spatial positions in an arrangement the rules cannot follow
PREFIX = "prefix"  # (PREFIX, k, 0) first in a dim: k extra tokens in front of the grid


@dataclass(frozen=True)
class Keys:
    """Label of the keys of an all-pairs product (``q @ k^T`` over a grid): the positions of
    input axis ``axis`` once more, all of them read by every unit (a unit of the scores is a
    query): mixing over them is global, but they locate no unit."""

    axis: int


@dataclass(frozen=True)
class _Block:
    """A dim with extra tokens in front of its grid, kept whole by a reshape."""

    dim: tuple

Label = Any  # BATCH, an axis index, or None
Factor = tuple[Label, int, int]
Dim = tuple[Factor, ...]
Layout = tuple[Dim, ...]

_ATTRIBUTE = "_rfnumeric_layout"


# ---- reading and writing --------------------------------------------------------------------
def input_layout(shape: Sequence[int]) -> Layout:
    """Layout of the model input ``(batch, channels, *spatial)``."""
    labels: list[Label] = [BATCH, None, *range(len(shape) - 2)]
    return tuple(_single(label, size) for label, size in zip(labels, shape))


def _single(label: Label, size: int) -> Dim:
    return ((label, int(size), 1),) if size != 1 else ()


def _plain(size: int) -> Dim:
    return _single(None, size)


def get(t: torch.Tensor) -> Layout | None:
    """The layout attached to ``t`` if it is still consistent with ``t``'s shape."""
    layout = getattr(t, _ATTRIBUTE, None)
    if layout is None or not matches(layout, t.shape):
        return None
    return layout


def attach(t: torch.Tensor, layout: Layout | None) -> None:
    if layout is not None and matches(layout, t.shape):
        setattr(t, _ATTRIBUTE, layout)


def matches(layout: Layout, shape: Sequence[int]) -> bool:
    return len(layout) == len(shape) and all(dim_size(d) == s for d, s in zip(layout, shape))


def dim_size(dim: Dim) -> int:
    """The size of a tensor dimension with these factors (extra tokens in front added)."""
    k = prefix_of(dim)
    return k + math.prod(size for label, size, _ in dim if label != PREFIX)


def prefix_of(dim: Dim) -> int:
    """Number of extra tokens in front of the grid in ``dim`` (0 for an ordinary dim)."""
    return dim[0][1] if dim and dim[0][0] == PREFIX else 0


def grid_of(dim: Dim) -> Dim:
    """The factors of ``dim`` without its extra tokens."""
    return dim[1:] if prefix_of(dim) else dim


def seed_positions(dim: Dim, unit: Sequence[int] | None, element: int | None) -> list[int]:
    """Indices along a tensor dim with factors ``dim`` that hold ``unit`` (all positions of the
    other factors) of batch element ``element``; with ``unit`` empty or None, every unit, and
    then the extra tokens in front of a grid too. The one place that knows where the grid of a
    dim with extra tokens starts: the probe's seed must use it (a plain row-major product would
    place every token one prefix too early)."""
    choices = []
    for label, size, stride in grid_of(dim):
        if label == BATCH and element is not None:
            choices.append([(element // stride) % size])
        elif is_spatial(label) and unit:
            choices.append([(unit[label] // stride) % size])
        else:
            choices.append(list(range(size)))
    flat = [0]
    for (_, size, _), chosen in zip(grid_of(dim), choices):
        flat = [f * size + c for f in flat for c in chosen]
    k = prefix_of(dim)
    if k:
        flat = ([] if unit else list(range(k))) + [k + f for f in flat]
    return flat


def assumed(shape: Sequence[int], input_rank: int) -> Layout | None:
    """Layout of a tensor nothing is known about: ``(batch, channels, *spatial)`` if it has the
    input's rank, ``(batch, features)`` for rank 2, otherwise unknown."""
    if len(shape) == input_rank:
        return input_layout(shape)
    if len(shape) == 2:
        return (_single(BATCH, shape[0]), _plain(shape[1]))
    return None


def standard(layout: Layout, rank: int) -> bool:
    """Whether ``layout`` is the input's arrangement ``(batch, channels, *spatial)`` of ``rank``
    dims, each dim one plain factor (or none): the layout :func:`assumed` would give."""
    if len(layout) != rank:
        return False
    labels: list[Label] = [BATCH, None, *range(rank - 2)]
    return all(
        len(dim) <= 1 and all(f[0] == label and f[2] == 1 for f in dim)
        for dim, label in zip(layout, labels)
    )


def batch_dim(layout: Layout, size: int) -> int | None:
    """The dim that holds the whole batch of ``size`` elements and nothing else, if any."""
    for d, dim in enumerate(layout):
        if dim == ((BATCH, size, 1),):
            return d
    return None


def has_space(layout: Layout) -> bool:
    """Whether a tensor of this layout carries any input axis (or mixed positions)."""
    return any(is_spatial(label) for dim in layout for label, _, _ in dim)


class WindowsOf(int):
    """What :func:`spatial_labels` gives for a factor that steps over blocks of an axis (the
    windows of a window partition, stride > 1): the axis index, but not equal to the axis
    itself, whose positions inside the windows another dim holds. So a product whose output
    holds the windows in one dim and the positions inside them in another is no all-pairs
    product (queries x keys): the same label in two dims is."""

    def __eq__(self, other):
        return isinstance(other, WindowsOf) and int(self) == int(other)

    def __ne__(self, other):
        return not self == other

    def __hash__(self):
        return int.__hash__(self)

    def __repr__(self):
        return f"WindowsOf({int(self)})"


def spatial_labels(dim: Dim) -> set[int]:
    """The input axes whose positions ``dim`` holds (the keys of an all-pairs product too); the
    windows of a split axis (a factor with a stride above 1) as :class:`WindowsOf` the axis."""
    return {
        label.axis if isinstance(label, Keys) else (WindowsOf(label) if stride > 1 else label)
        for label, _, stride in dim
        if isinstance(label, Keys) or (isinstance(label, int) and not isinstance(label, bool))
    }


def is_spatial(label: Label) -> bool:
    return label == MIXED or (isinstance(label, int) and not isinstance(label, bool))


def carries(layout: Layout | None, dims: Sequence[int], label: Label) -> bool:
    """Whether any of ``dims`` holds a factor with ``label`` ('spatial' matches any axis)."""
    if layout is None:
        return False
    for d in dims:
        for lab, _, _ in layout[d]:
            if lab == label or (label == "spatial" and is_spatial(lab)):
                return True
    return False


def axes_in(layout: Layout | None, dims: Sequence[int], n_axes: int) -> frozenset[int]:
    """The input axes carried by ``dims`` (all of them if a dim mixes positions)."""
    if layout is None:
        return frozenset()
    found: set[int] = set()
    inside: dict[int, list[Factor]] = {}
    for d in dims:
        for factor in grid_of(layout[d]):
            label = factor[0]
            if label == MIXED:
                return frozenset(range(n_axes))
            if is_spatial(label):
                inside.setdefault(label, []).append(factor)
            elif isinstance(label, Keys):
                found.add(label.axis)
    for axis, factors in inside.items():
        if not _inside_windows(layout, dims, axis, factors):
            found.add(axis)
    return frozenset(found)


def _inside_windows(layout: Layout, dims: Sequence[int], axis: int, factors: list[Factor]) -> bool:
    """Whether ``factors`` (of ``axis``, in the mixed ``dims``) are the positions inside windows
    of a window partition whose windows another dim keeps apart: the innermost parts of the axis
    (steps 1, then their product), with every part outside ``dims`` stepping at least a window.
    A sum over them is local (each unit its window), not global."""
    window = 1
    for _, size, stride in sorted(factors, key=lambda f: f[2]):
        if stride != window:
            return False
        window *= size
    outside = [
        f for d, dim in enumerate(layout) if d not in dims for f in grid_of(dim) if f[0] == axis and f[1] > 1
    ]
    return bool(outside) and all(stride >= window for _, _, stride in outside)


def locatable(layout: Layout, offsets: bool = False) -> bool:
    """Whether units can be located in a tensor of this layout (no mixed dims). A dim with
    extra tokens in front of its grid counts only for a caller that places seeds with
    :func:`seed_positions` (``offsets=True``)."""
    if any(label == MIXED for dim in layout for label, _, _ in dim):
        return False
    return offsets or not any(prefix_of(dim) for dim in layout)


def map_sizes(layout: Layout, n_axes: int) -> tuple[int, ...]:
    """Units per input axis in a tensor of this layout (1 for an axis it does not carry)."""
    n = [1] * n_axes
    for dim in layout:
        for label, size, _ in dim:
            if isinstance(label, int) and not isinstance(label, bool) and label < n_axes:
                n[label] *= size
    return tuple(n)


def factor_index(
    layout: Layout, unit: Sequence[int], batch_index: int | None
) -> tuple[list[int], list[Any]]:
    """Shape of the tensor seen factor by factor, and the index selecting ``unit`` of batch
    element ``batch_index`` (all channels). Used to place the probe's seed."""
    shape: list[int] = []
    index: list[Any] = []
    if any(prefix_of(dim) for dim in layout):
        raise ValueError("a dim with extra tokens in front of its grid has no row-major factors: use seed_positions")
    for dim in layout:
        for label, size, stride in dim:
            shape.append(size)
            if label == BATCH:
                index.append(slice(None) if batch_index is None else (batch_index // stride) % size)
            elif isinstance(label, int) and not isinstance(label, bool):
                index.append((unit[label] // stride) % size)
            else:
                index.append(slice(None))
    return shape, index


# ---- generic rules --------------------------------------------------------------------------
def tensors_in(values: Any) -> list[torch.Tensor]:
    """Every tensor in ``values``, looking into lists and tuples (``torch.cat``'s argument)."""
    found: list[torch.Tensor] = []

    def visit(v: Any) -> None:
        if isinstance(v, torch.Tensor):
            found.append(v)
        elif isinstance(v, (list, tuple)):
            for item in v:
                visit(item)

    visit(values)
    return found


def elementwise_layout(inputs: Sequence[torch.Tensor], shape: Sequence[int]) -> Layout:
    """Per output dim: the dim of an input that lines up with it (broadcasting from the right)
    and has the same size; else, for an input of the same rank whose dim holds one factor, that
    factor resized (convolution, pooling, padding, interpolation change sizes, not meaning)."""
    known = [(tuple(t.shape), lay) for t in inputs if (lay := get(t)) is not None]
    return _lined_up(known, shape)


def _lined_up(known: Sequence[tuple[tuple[int, ...], Layout]], shape: Sequence[int]) -> Layout:
    """:func:`elementwise_layout` from the inputs' shapes and layouts."""
    rank = len(shape)
    out: list[Dim] = []
    regrid: dict[Label, tuple[int, int]] = {}  # label: window width before and after
    for d, size in enumerate(shape):
        chosen: Dim | None = None
        for in_shape, lay in known:
            k = d - (rank - len(in_shape))
            if k >= 0 and in_shape[k] == size and lay[k]:
                chosen = lay[k]
                break
        if chosen is None:
            for in_shape, lay in known:
                if len(in_shape) == rank and len(lay[d]) == 1:  # a map cut to 1 unit keeps its axis
                    label, before, stride = lay[d][0]
                    chosen = ((label, int(size), stride),)
                    if stride == 1 and _split(lay, label):  # resized inside the windows of a split axis
                        regrid[label] = (before, int(size))
                    break
        if (
            chosen is None
            and size != 1
            and any(
                len(in_shape) == rank and any(is_spatial(label) for label, _, _ in lay[d])
                for in_shape, lay in known
            )
        ):
            chosen = ((MIXED, int(size), 1),)  # resized, and it held several axes
        out.append(chosen if chosen is not None else _plain(size))
    if regrid:  # the windows' own factors step by the new width
        out = [
            tuple((lb, n, st // regrid[lb][0] * regrid[lb][1]) if lb in regrid and st > 1 else (lb, n, st) for lb, n, st in dim)
            for dim in out
        ]
    return tuple(out)


def _split(layout: Layout, label: Label) -> bool:
    """Whether ``label`` is a spatial axis split into several factors (a window partition)."""
    return is_spatial(label) and sum(lb == label for dim in layout for lb, _, _ in dim) > 1


def normalise_dims(dims: Any, rank: int) -> tuple[int, ...]:
    if dims is None:
        return tuple(range(rank))
    if isinstance(dims, int):
        return (dims % rank,) if rank else ()
    dims = tuple(dims)
    if not dims:
        return tuple(range(rank))
    return tuple(int(d) % rank for d in dims)


def reduced_layout(layout: Layout, dims: Sequence[int], keepdim: bool) -> Layout:
    """Layout after a reduction over ``dims``; one over the positions inside windows whose
    windows stay apart makes each window one unit (:func:`coarsened`)."""
    reduced = tuple(f for d in dims for f in layout[d])
    kept = coarsened(tuple(dim for d, dim in enumerate(layout) if d not in dims), reduced)
    out: list[Dim] = []
    rest = iter(kept)
    for d in range(len(layout)):
        if d in dims:
            if keepdim:
                out.append(())
        else:
            out.append(next(rest))
    return tuple(out)


def reshape_layout(layout: Layout, shape: Sequence[int]) -> Layout | None:
    """Layout after ``view`` / ``reshape``: factors are consumed in row-major order, split when an
    output dim takes part of one; ``None`` when the sizes do not line up with the factors."""
    factors: list[Any] = []
    for dim in layout:
        if prefix_of(dim):
            factors.append(_Block(dim))  # a token dim with extra tokens in front: one block
        else:
            factors.extend(dim)
    out: list[Dim] = []
    i = 0
    pending: Factor | None = None
    for size in shape:
        need = int(size)
        dim: list[Factor] = []
        if pending is None and i < len(factors) and isinstance(factors[i], _Block):
            if need == 1:
                out.append(())
                continue
            if need != dim_size(factors[i].dim):
                return None
            out.append(factors[i].dim)
            i += 1
            continue
        while need > 1:
            if pending is None:
                if i >= len(factors):
                    return None
                pending = factors[i]
                i += 1
            if isinstance(pending, _Block):  # a token dim cannot be split or merged
                return None
            label, fsize, stride = pending
            if fsize <= need:
                if need % fsize:
                    return None
                dim.append(pending)
                need //= fsize
                pending = None
            else:
                if fsize % need:
                    return None
                dim.append((label, need, stride * (fsize // need)))
                pending = (label, fsize // need, stride)
                need = 1
        out.append(_fused(tuple(dim)))
    if pending is not None or i < len(factors):
        return None
    return tuple(out)


def _fused(dim: Dim) -> Dim:
    """Adjacent factors of one axis that follow each other (the window, then the position in
    it: NesT's blocks put back) become one factor again, so ops that resize the dim (a pooling
    after the window reverse) can follow it."""
    out: list[Factor] = []
    for label, size, stride in dim:
        if out and is_spatial(label) and out[-1][0] == label and out[-1][2] == stride * size:
            out[-1] = (label, out[-1][1] * size, stride)
            continue
        out.append((label, size, stride))
    return tuple(out)


def flatten_layout(layout: Layout, start: int, end: int) -> Layout:
    rank = len(layout)
    if rank == 0:
        return ((),)
    start, end = start % rank, end % rank
    merged = tuple(f for dim in layout[start : end + 1] for f in dim)
    return layout[:start] + (merged,) + layout[end + 1 :]


def permuted_layout(layout: Layout, order: Sequence[int]) -> Layout:
    rank = len(layout)
    return tuple(layout[int(d) % rank] for d in order)


def _swap(layout: Layout, a: int, b: int) -> Layout:
    rank = len(layout)
    order = list(range(rank))
    a, b = a % rank, b % rank
    order[a], order[b] = order[b], order[a]
    return permuted_layout(layout, order)


# ---- per-op rules ---------------------------------------------------------------------------
Rule = Callable[[Any, Sequence[Any], dict, Any], Any]
_RULES: dict[Any, Rule] = {}


def _rule(*targets: Any) -> Callable[[Rule], Rule]:
    def register(fn: Rule) -> Rule:
        for target in dict.fromkeys(targets):  # aliases (torch.norm twice) count once
            if target in _RULES:
                raise ValueError(f"a layout rule for {target!r} is already registered")
            _RULES[target] = fn
        return fn

    return register


def _arg(args: Sequence[Any], kwargs: dict, index: int, name: str, default: Any = None) -> Any:
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


def _first_layout(args: Sequence[Any]) -> tuple[torch.Tensor, Layout] | None:
    for t in tensors_in(args):
        lay = get(t)
        if lay is not None:
            return t, lay
    return None


def _getattr(name: str) -> list[Any]:
    found = []
    for owner in (torch, torch.Tensor, F):
        fn = getattr(owner, name, None)
        if fn is not None and fn not in found:
            found.append(fn)
    return found


def _names(*names: str) -> list[Any]:
    return [fn for name in names for fn in _getattr(name)]


FLOAT_REDUCTIONS = (
    "mean", "sum", "amax", "amin", "std", "var", "logsumexp", "prod", "nansum", "nanmean",
    "median", "nanmedian", "max", "min", "std_mean", "var_mean", "aminmax", "mode", "kthvalue",
)  # fmt: skip
TUPLE_REDUCTIONS = (
    "max",
    "min",
    "median",
    "nanmedian",
    "mode",
    "kthvalue",
    "aminmax",
    "std_mean",
    "var_mean",
)
INDEX_REDUCTIONS = ("any", "all", "count_nonzero", "argmax", "argmin")


def reduction_dims(
    func: Any, args: Sequence[Any], kwargs: dict
) -> tuple[tuple[int, ...], bool] | None:
    """(reduced dims, keepdim) of a reduction call, or None if it is not a reduction over one
    tensor (``torch.max(a, b)`` is elementwise)."""
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    x = args[0] if args and isinstance(args[0], torch.Tensor) else None
    if x is None or len(tensors) > 1 or isinstance(kwargs.get("other"), torch.Tensor):
        return None
    name = getattr(func, "__name__", "")
    if name == "vector_norm":
        dim, keepdim = _arg(args, kwargs, 2, "dim"), bool(_arg(args, kwargs, 3, "keepdim", False))
        return normalise_dims(dim, x.dim()), keepdim
    if name == "norm" or func is torch.norm:
        dim = _arg(args, kwargs, 2, "dim")
    elif name == "kthvalue":
        dim = _arg(args, kwargs, 2, "dim", -1)
    elif name in ("mode",):
        dim = _arg(args, kwargs, 1, "dim", -1)
    else:
        dim = _arg(args, kwargs, 1, "dim", kwargs.get("axis"))
    if isinstance(dim, (str, torch.dtype)):  # sum(dtype=...) passed positionally is rare
        dim = None
    keepdim = bool(kwargs.get("keepdim", False))
    if len(args) > 2 and isinstance(args[2], bool) and name not in ("norm", "kthvalue"):
        keepdim = args[2]
    return normalise_dims(dim, x.dim()), keepdim


@_rule(
    *_names(*FLOAT_REDUCTIONS, *INDEX_REDUCTIONS),
    torch.norm,
    *_getattr("norm"),
    torch.linalg.vector_norm,
)
def _reduction(func, args, kwargs, out):
    first = _first_layout(args[:1])
    found = reduction_dims(func, args, kwargs)
    if first is None or found is None:
        return _default(func, args, kwargs, out)
    _, lay = first
    dims, keepdim = found
    reduced = reduced_layout(lay, dims, keepdim)
    return _each(out, lambda t: reduced if matches(reduced, t.shape) else None)


def _each(out: Any, fn: Callable[[torch.Tensor], Layout | None]) -> Any:
    if isinstance(out, torch.Tensor):
        return fn(out)
    if isinstance(out, (tuple, list)):
        return tuple(fn(t) if isinstance(t, torch.Tensor) else None for t in out)
    return None


@_rule(*_names("view", "reshape", "view_as", "reshape_as", "unflatten"))
def _reshape(func, args, kwargs, out):
    first = _first_layout(args[:1])
    if first is None or not isinstance(out, torch.Tensor):
        return None
    return reshape_layout(first[1], out.shape) or mixed_layout(first[1], out.shape)


def mixed_layout(layout: Layout, shape: Sequence[int]) -> Layout:
    """A layout for a reshape the factors cannot follow: the batch stays if it leads, every other
    dim is MIXED if the input carried any spatial axis (else plain)."""
    spatial = any(is_spatial(label) for dim in layout for label, _, _ in dim)
    out: list[Dim] = []
    for d, size in enumerate(shape):
        if (
            d == 0
            and layout
            and len(layout[0]) == 1
            and layout[0][0][0] == BATCH
            and layout[0][0][1] == size
        ):
            out.append(layout[0])
        elif size == 1:
            out.append(())
        else:
            out.append(((MIXED if spatial else None, int(size), 1),))
    return tuple(out)


@_rule(*_names("flatten", "ravel"))
def _flatten(func, args, kwargs, out):
    first = _first_layout(args[:1])
    if first is None:
        return None
    t, lay = first
    if t.dim() == 0:
        return reshape_layout(lay, out.shape)
    start = _arg(args, kwargs, 1, "start_dim", 0)
    end = _arg(args, kwargs, 2, "end_dim", -1)
    if not isinstance(start, int) or not isinstance(end, int):  # named dims
        return reshape_layout(lay, out.shape)
    return flatten_layout(lay, start, end)


@_rule(*_names("permute"))
def _permute(func, args, kwargs, out):
    first = _first_layout(args[:1])
    if first is None:
        return None
    order = args[1:] if len(args) > 2 else _arg(args, kwargs, 1, "dims")
    if isinstance(order, int):
        order = (order,)
    return permuted_layout(first[1], order)


@_rule(*_names("transpose", "swapaxes", "swapdims"))
def _transpose(func, args, kwargs, out):
    first = _first_layout(args[:1])
    if first is None:
        return None
    return _swap(first[1], int(_arg(args, kwargs, 1, "dim0")), int(_arg(args, kwargs, 2, "dim1")))


@_rule(*_names("t"), torch.Tensor.T.__get__, torch.Tensor.mT.__get__)
def _t(func, args, kwargs, out):
    first = _first_layout(args[:1])
    if first is None or len(first[1]) < 2:
        return first[1] if first else None
    lay = first[1]
    if len(lay) == 2 or func is torch.Tensor.mT.__get__:
        return _swap(lay, -1, -2)
    return tuple(reversed(lay))


@_rule(*_names("movedim", "moveaxis"))
def _movedim(func, args, kwargs, out):
    first = _first_layout(args[:1])
    if first is None:
        return None
    lay = first[1]
    rank = len(lay)
    src = _arg(args, kwargs, 1, "source")
    dst = _arg(args, kwargs, 2, "destination")
    src = [src] if isinstance(src, int) else list(src)
    dst = [dst] if isinstance(dst, int) else list(dst)
    src = [s % rank for s in src]
    dst = [d % rank for d in dst]
    order: list[int | None] = [None] * rank
    for s, d in zip(src, dst):
        order[d] = s
    rest = iter(d for d in range(rank) if d not in src)
    order = [o if o is not None else next(rest) for o in order]
    return permuted_layout(lay, order)


@_rule(*_names("unsqueeze"))
def _unsqueeze(func, args, kwargs, out):
    first = _first_layout(args[:1])
    if first is None:
        return None
    lay = first[1]
    d = int(_arg(args, kwargs, 1, "dim")) % (len(lay) + 1)
    return lay[:d] + ((),) + lay[d:]


@_rule(*_names("squeeze"))
def _squeeze(func, args, kwargs, out):
    first = _first_layout(args[:1])
    if first is None or not isinstance(out, torch.Tensor):
        return None
    t, lay = first
    dims = _arg(args, kwargs, 1, "dim")
    targets = normalise_dims(dims, t.dim()) if dims is not None else tuple(range(t.dim()))
    return tuple(dim for d, dim in enumerate(lay) if not (d in targets and t.shape[d] == 1))


@_rule(*_names("select", "unbind"))
def _select(func, args, kwargs, out):
    first = _first_layout(args[:1])
    if first is None:
        return None
    lay = first[1]
    d = int(_arg(args, kwargs, 1, "dim", 0)) % len(lay)
    reduced = lay[:d] + lay[d + 1 :]
    return _each(out, lambda t: reduced if matches(reduced, t.shape) else None)


@_rule(*_names("stack"))
def _stack(func, args, kwargs, out):
    tensors = tensors_in(_arg(args, kwargs, 0, "tensors"))
    lay = _first_layout([tensors])
    if lay is None or not isinstance(out, torch.Tensor):
        return None
    base = lay[1]
    d = int(_arg(args, kwargs, 1, "dim", 0)) % (len(base) + 1)
    return base[:d] + (_plain(out.shape[d]),) + base[d:]


@_rule(torch.Tensor.__getitem__)
def _getitem(func, args, kwargs, out):
    first = _first_layout(args[:1])
    if first is None or not isinstance(out, torch.Tensor):
        return None
    t, lay = first
    index = args[1] if isinstance(args[1], tuple) else (args[1],)
    if any(isinstance(i, (torch.Tensor, list)) for i in index):
        return _default(func, args[:1], kwargs, out)
    count = sum(1 for i in index if i is not None and i is not Ellipsis)
    expanded: list[Any] = []
    for i in index:
        if i is Ellipsis:
            expanded.extend([slice(None)] * (t.dim() - count))
        else:
            expanded.append(i)
    result: list[Dim] = []
    d = 0
    for i in expanded:
        if i is None:
            result.append(())
        elif isinstance(i, int) or (hasattr(i, "__index__") and not isinstance(i, slice)):
            d += 1
        elif prefix_of(lay[d]) and isinstance(i, slice):
            result.append(_token_slice(lay[d], i, t.shape[d]))
            d += 1
        else:
            result.append(lay[d])
            d += 1
    result.extend(lay[d:])
    if len(result) != out.dim():
        return None
    return tuple(
        dim
        if dim_size(dim) == size
        else (((dim[0][0], size, dim[0][2]),) if len(dim) == 1 and size > 1 else _plain(size))
        for dim, size in zip(result, out.shape)
    )


def _token_slice(dim: Dim, item: slice, size: int) -> Dim:
    """A slice of a dim with extra tokens in front of its grid: ``[k:]`` is the grid, a slice
    of the extra tokens is plain, the whole dim stays; anything else mixes positions."""
    start, stop, step = item.indices(size)
    k = prefix_of(dim)
    if (start, stop, step) == (0, size, 1):
        return dim
    if (start, stop, step) == (k, size, 1):
        return grid_of(dim)
    if step == 1 and stop <= k:
        return _plain(max(stop - start, 0))
    return ((MIXED, len(range(start, stop, step)), 1),)


@_rule(*_names("cat", "concat", "concatenate"))
def _cat(func, args, kwargs, out):
    """Tokens without a grid along the concatenated dim (a class token: learned, or computed from
    the tokens by class attention) in front of the one input that carries the grid there: a dim
    with that many extra tokens (:data:`PREFIX`). Anything else as before
    (:func:`elementwise_layout`)."""
    if not isinstance(out, torch.Tensor):
        return None
    tensors = tensors_in(_arg(args, kwargs, 0, "tensors"))
    dim = _arg(args, kwargs, 1, "dim", kwargs.get("axis", 0))
    if not isinstance(dim, int) or not tensors:
        return _default(func, args, kwargs, out)
    d = dim % out.dim()
    prefix = 0
    grid: Dim | None = None
    base: Layout | None = None
    for t in tensors:
        found = get(t)
        if grid is not None:
            grid = None  # something after the grid
            break
        if not t.requires_grad or found is None or not spatial_labels(grid_of(found[d])):
            # no grid along dim: a class token, learned (no path from the input) or computed
            # from the tokens (CaiT's class attention): extra tokens in front of the grid
            prefix += t.shape[d]
            continue
        grid, base = found[d], found
    if grid is not None and base is not None and prefix:
        k = prefix + prefix_of(grid)
        merged = ((PREFIX, k, 0),) + tuple(grid_of(grid))
        result = base[:d] + (merged,) + base[d + 1 :]
        if matches(result, out.shape):
            return result
    return _default(func, args, kwargs, out)


@_rule(*_names("conv1d", "conv2d", "conv3d"))
def _conv(func, args, kwargs, out):
    """A convolution mixes its input's channels: where they hold the positions inside windows (a
    space-to-depth: every 4x4 block of pixels moved into the channels) each window becomes one
    unit (:func:`coarsened`), then the layer slides over the windows. Anything else as before
    (:func:`elementwise_layout`)."""
    first = _first_layout(args[:1])
    if first is None or not isinstance(out, torch.Tensor) or first[0].dim() != out.dim():
        return _default(func, args, kwargs, out)
    x, layout = first
    channel = 1 if x.dim() >= 3 else 0
    others = tuple(dim for d, dim in enumerate(layout) if d != channel)
    kept = coarsened(others, layout[channel])
    if kept == others:
        return _default(func, args, kwargs, out)
    coarse = kept[:channel] + (_plain(x.shape[channel]),) + kept[channel:]
    return _lined_up([(tuple(x.shape), coarse)], out.shape)


@_rule(F.unfold)
def _unfold(func, args, kwargs, out):
    """``F.unfold`` (im2col) as rfarith lays it out: along each axis the units are the pairs
    (block q, tap t), ``q*k + t``: the taps behind the channels (step 1), the blocks in the last
    dim (step k). Where the input's last two dims are not one whole axis each: mixed."""
    first = _first_layout(args[:1])
    if first is None or not isinstance(out, torch.Tensor):
        return None
    x, layout = first

    def pair(index: int, name: str, default: int) -> tuple[int, ...]:
        value = _arg(args, kwargs, index, name, default)
        return (value, value) if isinstance(value, int) else tuple(value)

    kernel, dilation, padding, stride = pair(1, "kernel_size", 1), pair(2, "dilation", 1), pair(3, "padding", 0), pair(4, "stride", 1)
    whole = x.dim() == 4 and all(len(layout[d]) == 1 and is_spatial(layout[d][0][0]) and layout[d][0][2] == 1 for d in (2, 3))
    if whole:
        labels = (layout[2][0][0], layout[3][0][0])
        blocks = [(size + 2 * p - d * (k - 1) - 1) // s + 1 for size, k, d, p, s in zip(x.shape[2:], kernel, dilation, padding, stride)]
        taps = tuple((label, k, 1) for label, k in zip(labels, kernel) if k > 1)
        grid = tuple((label, n, k) for label, n, k in zip(labels, blocks, kernel) if n > 1)
        result = (layout[0], _fused(tuple(layout[1]) + taps), _fused(grid))
        if matches(result, out.shape):
            return result
    return tuple(((MIXED, int(size), 1),) if d else layout[0] for d, size in enumerate(out.shape))


@_rule(torch.Tensor.unfold)
def _unfold_dim(func, args, kwargs, out):
    """``x.unfold(dim, size, step)`` as rfarith lays it out: along the axis the units are the
    pairs (window q, position t), ``q*size + t``: the windows stay in ``dim`` (step ``size``),
    the positions go last (step 1). Anything but one whole axis in ``dim``: as before."""
    first = _first_layout(args[:1])
    if first is None or not isinstance(out, torch.Tensor):
        return None
    x, layout = first
    d = int(_arg(args, kwargs, 1, "dimension")) % x.dim()
    size = int(_arg(args, kwargs, 2, "size"))
    dim = layout[d]
    if not (len(dim) == 1 and is_spatial(dim[0][0]) and dim[0][2] == 1):
        return _default(func, args, kwargs, out)
    label = dim[0][0]
    windows = int(out.shape[d])
    result = layout[:d] + (_fused(((label, windows, size),) if windows > 1 else ()),) + layout[d + 1 :] + (((label, size, 1),) if size > 1 else (),)
    return result if matches(result, out.shape) else _default(func, args, kwargs, out)


@_rule(F.fold)
def _fold(func, args, kwargs, out):
    """``F.fold`` (col2im): a ``(batch, channels, h, w)`` map again, its axes the two the blocks
    carried, in their order."""
    first = _first_layout(args[:1])
    if first is None or not isinstance(out, torch.Tensor) or out.dim() != 4:
        return _default(func, args, kwargs, out)
    _, layout = first
    labels = list(dict.fromkeys(label for label, _, _ in layout[-1] if is_spatial(label)))
    if len(labels) != 2:
        return _default(func, args, kwargs, out)
    return (layout[0], _plain(out.shape[1]), _single(labels[0], out.shape[2]), _single(labels[1], out.shape[3]))


@_rule(*_names("repeat_interleave"))
def _repeat_interleave(func, args, kwargs, out):
    """Each element repeated ``repeats`` times in a row along ``dim``: a dim without positions
    (the batch, GCViT's global query repeated for every window) gets an innermost factor of the
    repeats, so each repeat stays with its batch element; anything else as before."""
    first = _first_layout(args[:1])
    repeats, dim = _arg(args, kwargs, 1, "repeats"), _arg(args, kwargs, 2, "dim")
    if first is None or not isinstance(out, torch.Tensor) or not isinstance(repeats, int) or dim is None:
        return _default(func, args, kwargs, out)
    x, layout = first
    d = int(dim) % x.dim()
    if spatial_labels(layout[d]) or out.dim() != x.dim():
        return _default(func, args, kwargs, out)
    repeated = layout[d] + (((None, repeats, 1),) if repeats > 1 else ())
    result = layout[:d] + (repeated,) + layout[d + 1 :]
    return result if matches(result, out.shape) else _default(func, args, kwargs, out)


@_rule(F.pad)
def _pad(func, args, kwargs, out):
    """A constant pad of k positions in front of a token dim (CoaT making room for its class
    token): k extra tokens in front of the grid (:data:`PREFIX`); anything else as before."""
    first = _first_layout(args[:1])
    amounts = _arg(args, kwargs, 1, "pad")
    mode = _arg(args, kwargs, 2, "mode", "constant")
    if first is None or not isinstance(out, torch.Tensor) or mode != "constant" or amounts is None:
        return _default(func, args, kwargs, out)
    x, layout = first
    pairs = {x.dim() - 1 - i: (int(amounts[2 * i]), int(amounts[2 * i + 1])) for i in range(len(amounts) // 2)}
    padded = {d: p for d, p in pairs.items() if p != (0, 0)}
    if len(padded) == 1:
        (d, (front, back)), = padded.items()
        grid = grid_of(layout[d])
        if back == 0 and front > 0 and (prefix_of(layout[d]) or len(spatial_labels(grid)) > 1):
            result = layout[:d] + (((PREFIX, prefix_of(layout[d]) + front, 0),) + tuple(grid),) + layout[d + 1 :]
            if matches(result, out.shape):
                return result
    return _default(func, args, kwargs, out)


@_rule(*_names("linear"))
def _linear(func, args, kwargs, out):
    first = _first_layout(args[:1])
    if first is None or not isinstance(out, torch.Tensor):
        return None
    layout = first[1]
    return reduced_layout(layout, (len(layout) - 1,), keepdim=False) + (_plain(out.shape[-1]),)


RECURRENCES = (torch.lstm, torch.gru, torch.rnn_tanh, torch.rnn_relu)  # what nn.LSTM / GRU / RNN call
# torch.lstm(input, hx, params, has_biases, num_layers, dropout, train, bidirectional,
# batch_first), and the same positions for the others (unpacked sequences)
RECURRENCE_ARGS = {"num_layers": 4, "bidirectional": 7, "batch_first": 8}


def recurrence_arg(args: Sequence[Any], kwargs: dict, name: str, default: Any) -> Any:
    return _arg(args, kwargs, RECURRENCE_ARGS[name], name, default)


@_rule(*RECURRENCES)
def _recurrent(func, args, kwargs, out):
    """``(output, *final states)`` of a recurrence over an unpacked batched sequence: the output
    keeps the input's dims but the features; a final state ``(layers*directions, batch,
    features)`` keeps the input's batch dim."""
    x = args[0]
    layout = get(x) if isinstance(x, torch.Tensor) else None
    if layout is None or x.dim() != 3 or not isinstance(out, (tuple, list)) or len(out) < 2:
        return None
    batch = 0 if recurrence_arg(args, kwargs, "batch_first", False) else 1
    first = layout[:-1] + (_plain(out[0].shape[-1]),)
    states = [(_plain(h.shape[0]), layout[batch], _plain(h.shape[-1])) for h in out[1:]]
    return (first, *states)


def coarsened(dims: tuple[Dim, ...], reduced: Dim) -> tuple[Dim, ...]:
    """``dims`` after a reduction (or a linear map) over ``reduced`` mixed the positions inside
    windows of split axes whose windows ``dims`` keep apart (Swin's patch merging): each window
    is one unit now,
    so the steps of the axis' other factors shrink by the window's width. ``dims`` unchanged
    when ``reduced`` holds no such innermost positions."""
    widths: dict[int, int] = {}
    spatial = [f for f in reduced if isinstance(f[0], int) and not isinstance(f[0], bool)]
    for label, size, stride in sorted(spatial, key=lambda f: (f[0], f[2])):
        if stride != widths.get(label, 1):
            return dims  # not the innermost positions
        widths[label] = widths.get(label, 1) * size
    kept = {label: [st for dim in dims for lb, _, st in dim if lb == label] for label in widths}
    if not widths or any(not strides or min(strides) < widths[label] for label, strides in kept.items()):
        return dims
    return tuple(
        tuple((lb, size, st // widths[lb]) if lb in widths else (lb, size, st) for lb, size, st in dim)
        for dim in dims
    )


@_rule(*_names("matmul", "bmm", "mm"), torch.Tensor.__matmul__, torch.Tensor.__rmatmul__)
def _matmul(func, args, kwargs, out):
    if not isinstance(out, torch.Tensor):
        return None
    a, b = args[0], args[1]
    if func is torch.Tensor.__rmatmul__:
        a, b = b, a
    la, lb = (
        get(a) if isinstance(a, torch.Tensor) else None,
        get(b) if isinstance(b, torch.Tensor) else None,
    )
    rank = out.dim()
    dims: list[Dim] = [_plain(s) for s in out.shape]
    if a.dim() >= 2 and la is not None:
        dims[rank - 2 if b.dim() >= 2 else rank - 1] = la[-2]
    if b.dim() >= 2 and lb is not None:
        dims[rank - 1] = lb[-1]
    batch_rank = rank - (a.dim() >= 2) - (b.dim() >= 2)
    for d in range(batch_rank):
        lined_up = []
        for t, lay in ((a, la), (b, lb)):
            k = d - (batch_rank - (t.dim() - 2))
            if lay is not None and t.dim() > 2 and k >= 0 and t.shape[k] == out.shape[d] and lay[k]:
                lined_up.append(lay[k])
        # the operand whose batch dim carries positions (a window's index) over one that
        # repeats a value along it (GCViT's global query, repeated for every window)
        carrying = [dim for dim in lined_up if spatial_labels(dim)]
        if carrying or lined_up:
            dims[d] = (carrying or lined_up)[0]
    summed = tuple(dict.fromkeys(
        [*(la[-1] if la is not None else ()), *(lb[-2 if b.dim() >= 2 else 0] if lb is not None else ())]
    ))
    # a sum over the positions inside windows that the result keeps apart, the positions not
    # kept (one query over a window's keys): each window is one unit (as reduced_layout)
    result = coarsened(_keys_plain(dims), summed)
    return result if matches(result, out.shape) else None


def _keys_plain(dims: Sequence[Dim]) -> Layout:
    """An all-pairs product (queries x keys, ``q @ k^T``) carries the same grid on two dims: the
    first keeps it (a unit of the scores is a query, its row of all keys), a later dim holding
    a factor already placed becomes plain. Two parts of one axis with other steps (the window
    and the position in it after a window partition) are different factors and both stay."""
    placed: set[Factor] = set()
    steps: dict[int, set[int]] = {}
    for dim in dims:
        for label, _, stride in grid_of(dim):
            if isinstance(label, int) and not isinstance(label, bool):
                steps.setdefault(label, set()).add(stride)
    out: list[Dim] = []
    for dim in dims:
        spatial = [f for f in grid_of(dim) if is_spatial(f[0])]
        if any(f in placed for f in spatial):
            # over a whole axis the keys are global (labelled Keys); inside windows (the axis
            # also has a part with another step: the window) the product stays local: plain
            whole = all(len(steps.get(label, ())) == 1 for label, _, _ in spatial if label != MIXED)
            axes = sorted(label for label, _, _ in spatial if label != MIXED)
            if whole and axes and len(axes) == len(spatial):
                # every position (extra tokens in front included) is read by every unit: one
                # factor of the dim's size, the other axes' labels beside it with size 1
                out.append(tuple((Keys(a), dim_size(dim) if i == 0 else 1, 1) for i, a in enumerate(axes)))
            else:
                out.append(_plain(dim_size(dim)) if not whole else ((MIXED, dim_size(dim), 1),))
            continue
        placed.update(spatial)
        out.append(dim)
    return tuple(out)


def _default(func, args, kwargs, out):
    inputs = tensors_in(list(args) + list(kwargs.values()))
    return _each(out, lambda t: elementwise_layout(inputs, t.shape))


@_rule(torch.einsum)
def _einsum(func, args, kwargs, out):
    if not isinstance(out, torch.Tensor):
        return None
    equation = args[0].replace(" ", "")
    operands = args[1:]
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = operands[0]
    lhs, _, rhs = equation.partition("->")
    if "..." in equation or not rhs:
        return _default(func, operands, {}, out)
    letters: dict[str, Dim] = {}
    for spec, t in zip(lhs.split(","), operands):
        lay = get(t) if isinstance(t, torch.Tensor) else None
        if lay is None:
            continue
        for letter, dim in zip(spec, lay):
            if dim and letter not in letters:
                letters[letter] = dim
    result = _keys_plain([letters.get(letter, _plain(size)) for letter, size in zip(rhs, out.shape)])
    return result if matches(result, out.shape) else _default(func, operands, {}, out)


def propagate(func: Any, args: Sequence[Any], kwargs: dict, out: Any) -> Any:
    """Layout of ``out`` (a tensor, or a tuple of layouts for a tuple of tensors)."""
    rule = _RULES.get(func)
    if rule is None:
        return _default(func, args, kwargs, out)
    return rule(func, args, kwargs, out)


def contracted_dims(
    func: Any, args: Sequence[Any], kwargs: dict
) -> list[tuple[torch.Tensor, tuple[int, ...]]]:
    """For matrix products: (operand, dims it is summed over). Empty for anything else."""
    if func is torch.einsum:
        equation = args[0].replace(" ", "")
        operands = args[1:]
        if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
            operands = operands[0]
        lhs, arrow, rhs = equation.partition("->")
        specs = lhs.split(",")
        if "..." in equation:
            return []
        if not arrow:
            joined = "".join(specs)
            rhs = "".join(sorted(c for c in set(joined) if joined.count(c) == 1))
        return [
            (t, tuple(i for i, letter in enumerate(spec) if letter not in rhs))
            for spec, t in zip(specs, operands)
            if isinstance(t, torch.Tensor)
        ]
    name = getattr(func, "__name__", "")
    if name in ("matmul", "bmm", "mm", "__matmul__", "__rmatmul__"):
        a, b = args[0], args[1]
        if name == "__rmatmul__":
            a, b = b, a
        pairs = []
        if isinstance(a, torch.Tensor):
            pairs.append((a, (a.dim() - 1,)))
        if isinstance(b, torch.Tensor):
            pairs.append((b, (0,) if b.dim() == 1 else (b.dim() - 2,)))
        return pairs
    if name == "linear":
        return [(args[0], (args[0].dim() - 1,))]
    return []
