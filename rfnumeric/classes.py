"""Channel classes: a collapsed blend that remembers which channels carry which support.

A channel concatenation of collapsed maps is kept as a *blend* (``surrogates.cat``): one channel
holding the channel-weighted mean of the parts. Its channel sum is exact, so every op that sums
all channels alike (a convolution) sees what it would see; an op that picks channels (a split,
a channel shuffle, a slice) could not tell the parts apart and made the probe run again with
every channel (``Retry``).

A blend made of a few *classes* of equal channels (what a concatenation, a channel split, a
shuffle create) now records them: ``labels`` gives each channel's class, ``bases`` each class's
one-channel value. Ops that only move channels (``view``, ``reshape``, ``transpose``,
``permute``, ``chunk``, ``split``, ``narrow``, slicing, ``contiguous``) move the labels and the
bases the same way and give a new blend of exactly the classes they keep, or a plain collapsed
map when one class is left. Every value is still a positive combination of the bases' own
autograd graphs, so the gradient of each kept channel reaches exactly its class's support: the
same support, bit for bit, as the probe with every channel
(``tests/rfnumeric/test_channel_classes.py``).

Anything these ops cannot move exactly (a reshape merging channels with a spatial axis, indexing
with tensors) returns ``None``, and the blend is handled as before.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .mode import _BLEND, expanded, record, recorded, value_of

_CLASSES = "_rfnumeric_classes"
MAX_CLASSES = 64  # beyond this many supports in one blend, it is kept as a plain blend


@dataclass(frozen=True)
class ChannelClasses:
    """``labels``: an int64 tensor of the blend's rank, size 1 along batch and spatial dims,
    each channel's class; ``bases[k]``: class ``k``'s value, of the blend's rank, size 1 along
    every dim the labels vary in."""

    labels: torch.Tensor
    bases: tuple[torch.Tensor, ...]


def classes_of(t: Any) -> ChannelClasses | None:
    """The classes recorded on ``t``, if ``t`` is still the tensor they were recorded for."""
    return recorded(t, _CLASSES)


def attach(t: torch.Tensor, classes: ChannelClasses) -> torch.Tensor:
    """Record ``classes`` on ``t``, a blend whose value is theirs, and mark it a blend."""
    record(t, _CLASSES, classes)
    setattr(t, _BLEND, True)
    return t


def _apart(value: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """``value`` expanded to ``shape``, always a tensor of its own (``expanded`` returns a
    tensor of the full shape as it is), so that marks set on it stay off ``value``."""
    out = expanded(value, shape)
    return value.view_as(value) if out is value else out


def blend(classes: ChannelClasses, shape: Sequence[int]) -> torch.Tensor:
    """The tensor of ``shape`` whose channels hold ``classes``: a plain collapsed map if one
    class is left, else the blend (the channel-weighted mean of the classes) recording them."""
    labels = classes.labels.flatten()
    counts = torch.bincount(labels, minlength=len(classes.bases))
    present = [k for k, c in enumerate(counts.tolist()) if c]
    if len(present) == 1:
        return _apart(classes.bases[present[0]], shape)
    total = labels.numel()
    value = sum(classes.bases[k] * (int(counts[k]) / total) for k in present)
    if len(present) < len(classes.bases):  # renumber the classes kept
        renumber = torch.full((len(classes.bases),), -1, dtype=torch.int64)
        renumber[present] = torch.arange(len(present))
        classes = ChannelClasses(renumber[classes.labels], tuple(classes.bases[k] for k in present))
    return attach(_apart(value, shape), classes)


def for_concatenation(parts: Sequence[torch.Tensor], dim: int) -> ChannelClasses | None:
    """The classes of ``torch.cat(parts, dim)`` along the channel dim: each part's own, or one
    class for a collapsed part (one channel expanded); ``None`` if a part is neither (a blend
    without classes, or a map with real channels) or there would be too many classes."""
    labels, bases = [], []
    for part in parts:
        own = classes_of(part)
        if own is None:
            value = value_of(part)
            if getattr(part, _BLEND, False) or value.dim() != part.dim() or value.shape[dim] != 1:
                return None
            # all channels equal: one class, its stored value where that has every unit (else the
            # first channel, a view whose gradient still reaches every pixel)
            whole = all(v == p or d == dim for d, (v, p) in enumerate(zip(value.shape, part.shape)))
            base = value if whole else part.narrow(dim, 0, 1)
            own = ChannelClasses(torch.zeros(_label_shape(part, dim), dtype=torch.int64), (base,))
        labels.append(own.labels + len(bases))
        bases.extend(own.bases)
    if len(bases) > MAX_CLASSES:
        return None
    return ChannelClasses(torch.cat(labels, dim), tuple(bases))


def _label_shape(t: torch.Tensor, dim: int) -> tuple[int, ...]:
    return tuple(size if d == dim else 1 for d, size in enumerate(t.shape))


# ---- ops that only move channels ------------------------------------------------------------
_PERMUTING = {
    torch.Tensor.transpose, torch.transpose, torch.Tensor.swapaxes, torch.swapaxes,
    torch.Tensor.swapdims, torch.swapdims, torch.Tensor.permute, torch.permute,
    torch.Tensor.movedim, torch.movedim, torch.Tensor.moveaxis, torch.moveaxis,
}  # fmt: skip
_VIEWS = _PERMUTING | {
    torch.Tensor.chunk, torch.chunk, torch.Tensor.split, torch.split,
    torch.Tensor.tensor_split, torch.tensor_split, torch.Tensor.unbind, torch.unbind,
    torch.Tensor.narrow, torch.narrow, torch.Tensor.__getitem__,
    torch.Tensor.squeeze, torch.squeeze, torch.Tensor.unsqueeze, torch.unsqueeze,
}  # fmt: skip
_RESHAPES = {
    torch.Tensor.view, torch.Tensor.reshape, torch.reshape, torch.Tensor.flatten, torch.flatten,
    torch.Tensor.unflatten, torch.unflatten, torch.Tensor.view_as, torch.Tensor.reshape_as,
}  # fmt: skip
_SAME = {torch.Tensor.contiguous, torch.Tensor.clone, torch.clone}
_CHANNELS_ONLY = {torch.nn.functional.channel_shuffle, torch.channel_shuffle, torch.native_channel_shuffle}
REGROUPING = frozenset(_VIEWS | _RESHAPES | _SAME | _CHANNELS_ONLY)


def regroup(func, args: tuple, kwargs: dict) -> Any:
    """``func`` applied to a blend with classes (``args[0]``), the classes moved along: one
    tensor or a tuple of them, as ``func`` returns; ``None`` if the op does not only move
    channels."""
    x = args[0]
    classes = classes_of(x)
    if classes is None:
        return None
    if func in _SAME:
        return blend(classes, x.shape)
    if func in _CHANNELS_ONLY:  # a permutation of dim 1 alone: the labels move, the bases stay
        labels = func(classes.labels, *args[1:], **kwargs)
        return blend(ChannelClasses(labels.contiguous(), classes.bases), x.shape)
    move = _mover(func, args, kwargs, x)
    if move is None:
        return None
    try:
        with torch.no_grad():  # the geometry only: where each channel goes
            moved = move(classes.labels.expand(x.shape))
    except RuntimeError:  # e.g. a view merging channels with a spatial axis: not a move of channels
        return None
    outs = []
    for label in _items(moved):
        # dims along which the labels vary carry channels (the labels are stored contiguous,
        # broadcast along batch and space): labels keep those dims, the bases every other one
        channel_dims = [d for d in range(label.dim()) if label.stride(d) != 0 and label.shape[d] > 1]
        small = _narrowed(label, [d for d in range(label.dim()) if d not in channel_dims])
        kept = []
        for b in classes.bases:  # broadcast to x's shape like the labels, a base lands where they do
            moved_base = _moved_base(func, args, kwargs, b, tuple(label.shape), channel_dims)
            if moved_base is None:
                return None
            kept.append(moved_base)
        outs.append(blend(ChannelClasses(small.contiguous(), tuple(kept)), label.shape))
    if isinstance(moved, torch.Tensor):
        return outs[0]
    return tuple(outs) if isinstance(moved, tuple) else outs



def _moved_base(func, args: tuple, kwargs: dict, base: torch.Tensor, shape: tuple[int, ...], channel_dims: list[int]):
    """A class's base moved as ``func`` moves the blend, ``shape`` being where the broadcast
    base lands: a permutation permutes the base; any other move keeps the order of the base's
    own elements (batch and space), so it is a reshape of the base, unless it cut along batch
    or space (``None``). Never through the full broadcast shape: its backward would build a
    tensor of every channel."""
    if func in _PERMUTING:
        return func(base, *args[1:], **kwargs)
    target = tuple(1 if d in channel_dims else size for d, size in enumerate(shape))
    if math.prod(target) != base.numel():
        return None
    return base.reshape(target)


def _mover(func, args: tuple, kwargs: dict, x: torch.Tensor):
    """A function doing to a tensor of ``x``'s shape what ``func`` does to ``x``, as a view (no
    copy of the broadcast labels or bases); ``None`` if it could copy."""
    rest = args[1:]
    if func is torch.Tensor.__getitem__ and not _basic_index(rest[0]):
        return None
    if func in _VIEWS:
        return lambda t: func(t, *rest, **kwargs)
    shape = func(torch.empty(x.shape, device="meta"), *rest, **kwargs).shape
    return lambda t: t.view(shape)


def _basic_index(index: Any) -> bool:
    """Whether ``t[index]`` is a view (ints, slices, None, Ellipsis only)."""
    parts = index if isinstance(index, tuple) else (index,)
    return all(p is None or p is Ellipsis or isinstance(p, (int, slice)) for p in parts)


def _items(value: Any) -> list[torch.Tensor]:
    return [value] if isinstance(value, torch.Tensor) else list(value)


def _narrowed(t: torch.Tensor, dims: Sequence[int]) -> torch.Tensor:
    """``t`` cut to its first element along ``dims`` (dims it is equal along)."""
    for d in dims:
        if t.shape[d] > 1:
            t = t.narrow(d, 0, 1)
    return t


def grouped(
    classes: ChannelClasses,
    groups: int,
    c_out: int,
    filtered: Callable[[torch.Tensor], torch.Tensor],
    out_shape: Callable[[torch.Tensor], tuple[int, ...]],
) -> torch.Tensor | None:
    """A grouped convolution with equal weights on a blend with classes: each group's output
    channels hold ``filtered`` (the convolution of one channel) of the sum of the group's input
    channels, so groups with the same mix of classes give one new class. ``None`` if that makes
    too many classes."""
    labels = classes.labels.reshape(-1)
    per_group = labels.numel() // groups
    mixes: dict[tuple[int, ...], int] = {}
    group_class = []
    for g in range(groups):
        counts = torch.bincount(labels[g * per_group : (g + 1) * per_group], minlength=len(classes.bases))
        group_class.append(mixes.setdefault(tuple(counts.tolist()), len(mixes)))
    if len(mixes) > MAX_CLASSES:
        return None
    bases = tuple(
        filtered(sum(classes.bases[k] * c for k, c in enumerate(counts) if c)) for counts in mixes
    )
    rank = classes.labels.dim()
    out_labels = torch.tensor([group_class[o // (c_out // groups)] for o in range(c_out)], dtype=torch.int64)
    out_labels = out_labels.reshape(1, c_out, *(1,) * (rank - 2))
    return blend(ChannelClasses(out_labels, bases), out_shape(bases[0]))
