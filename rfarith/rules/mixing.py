"""Ops that mix values across a dimension: reductions, linear maps, attention, normalisation.

Mixing across a dimension that carries no input axis (channels, heads) changes no field.
Mixing across a spatial dimension is global: on the main path (global pooling, flatten then
linear, attention) every unit then sees what all units saw together; as a side path
(normalisation statistics) the local field is unchanged and only the flag ``global`` is added.
"""

from __future__ import annotations

import operator
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UnsupportedOp
from ..value import (
    Dim,
    Value,
    axis_units,
    coarser,
    factors_of,
    inside_and_outside,
    is_part,
    reduced_inside_windows,
    window_field,
    window_mixing,
    window_unit,
)
from .common import require_value
from .pointwise import elementwise, merged
from .registry import Call, rule


def _dims_arg(value, rank: int) -> tuple[int, ...]:
    if value is None or isinstance(value, bool):
        return tuple(range(rank))
    if isinstance(value, int):
        return (value % rank,)
    if len(value) == 0:
        return tuple(range(rank))
    return tuple(int(d) % rank for d in value)


# ---- reductions -----------------------------------------------------------------------------
def reduce_over(call: Call, x: Value, reduced: tuple[int, ...], keepdim: bool) -> Value:
    if any(is_part(a) for d in range(x.rank) for a, _ in x.dims[d] if a is not None) and any(
        x.axes_of(d) for d in reduced
    ):
        merged = reduced_inside_windows(x, reduced, keepdim)
        if merged is not None:
            return merged
        raise UnsupportedOp(
            call.node, call.op,
            "a reduction over a dim of a spatial axis split into windows (reverse the window partition first, "
            "or measure it with crosscheck.hybrid)",
        )
    axes = tuple(int(a) for d in reduced for a in x.axes_of(d))
    y = x.globalised(axes, call.node, units=1) if axes else x
    dims: list[Dim] = []
    for d, dim in enumerate(x.dims):
        if d not in reduced:
            dims.append(dim)
        elif keepdim:
            dims.append(tuple((a, 1) for a, _ in dim if a is not None))
    return replace(y, dims=tuple(dims))


_REDUCTIONS = (
    "mean", "sum", "amax", "amin", "std", "var", "logsumexp", "prod", "nansum", "nanmean", "norm",
    "median", "max", "min", "any", "all", "count_nonzero", "nanmedian", "mode", "kthvalue",
    "aminmax",
)


@rule(
    *_REDUCTIONS,
    torch.mean, torch.sum, torch.amax, torch.amin, torch.std, torch.var, torch.logsumexp,
    torch.prod, torch.nansum, torch.nanmean, torch.norm, torch.median, torch.max, torch.min,
    torch.any, torch.all, torch.count_nonzero, torch.std_mean, torch.var_mean, torch.aminmax,
    torch.nanmedian, torch.mode, torch.kthvalue, torch.linalg.vector_norm,
)
def reduction(call: Call):
    """Over the dims given by name ``dim`` (``axis``), every dim without one; ``mode`` and
    ``kthvalue`` default to the last dim, as their signatures say."""
    tensors = [t for t, _ in call.tensors()]
    if len(tensors) > 1:  # torch.max(a, b) and friends are elementwise
        return elementwise(call)
    x = require_value(call)
    rank = x.rank
    dim = call.kwargs["axis"] if "axis" in call.kwargs else call.arg(1, "dim", None)  # by name: norm's is third
    reduced = _dims_arg(dim, rank)
    outputs = call.out if isinstance(call.out, tuple) else (call.out,)
    keepdim = outputs[0].dim() == rank and rank > 0
    out = reduce_over(call, x, reduced, keepdim)
    return tuple(out for _ in outputs) if isinstance(call.out, tuple) else out


# ---- softmax-like ops over one dim --------------------------------------------------------
@rule(
    nn.Softmax, nn.LogSoftmax, nn.Softmin, F.softmax, F.log_softmax, F.softmin, torch.softmax,
    torch.log_softmax, torch._softmax, torch._log_softmax, "softmax", "log_softmax",
)
def softmax(call: Call):
    x = require_value(call)
    dim = call.module.dim if call.module is not None else call.arg(1, "dim", None)
    if dim is None:
        dim = 0 if x.rank in (0, 1, 3) else 1  # PyTorch's legacy implicit choice
    windows, whole = _windows_and_whole(x, (dim % x.rank,))
    y = _inside_windows(x, windows)
    return y.globalised(whole, call.node) if whole else y


@rule(
    torch.cumsum, torch.cumprod, torch.cummax, torch.cummin, torch.logcumsumexp, "cumsum", "cumprod",
    "cumsum_", "cumprod_", "cummax", "cummin", "logcumsumexp",
)
def cumulative(call: Call):
    """Along a channel dim: unit by unit. Along a spatial axis unit m sees what units 0..m saw,
    a causal field, as a unidirectional recurrence's (:func:`_causal`)."""
    x = require_value(call)
    dim = call.arg(1, "dim") % x.rank
    if x.axes_of(dim):
        x = _causal(call, x, dim)
    out = x.relaid(call.out_shape)
    return (out, out) if isinstance(call.out, tuple) else out


# ---- normalisation --------------------------------------------------------------------------
def _windows_and_whole(x: Value, dims: tuple[int, ...]) -> tuple[dict[int, int], tuple[int, ...]]:
    """How an op mixing over ``dims`` acts per axis they carry: ``(windows, whole)``, the axes
    whose positions inside windows it mixes (the windows kept apart by other dims: each unit
    sees its window of ``windows[axis]`` units, exactly) and the axes it mixes whole."""
    windows: dict[int, int] = {}
    whole: list[int] = []
    for a in sorted({int(a) for d in dims for a in x.axes_of(d)}):
        mixed, kept = inside_and_outside(x, dims, a)
        try:
            how, w = window_mixing(mixed, kept, x.n[a])
        except ValueError:
            how, w = "global", None
        if how == "window":
            windows[a] = w
        else:
            whole.append(a)
    return windows, tuple(whole)


def _inside_windows(x: Value, windows: dict[int, int]) -> Value:
    return x.map_fields({a: (lambda f, w=w: window_field(f, w)) for a, w in windows.items()})


def _side_path_if(call: Call, x: Value, stat_dims: tuple[int, ...]) -> Value:
    """Statistics over ``stat_dims``: a global side path if they include a spatial axis; over
    the positions inside windows that another dim keeps apart (a LayerNorm over a TNT patch's
    pixels), every unit sees its window through them, exactly (local, as window attention)."""
    windows, whole = _windows_and_whole(x, stat_dims)
    y = _inside_windows(x, windows)
    return y.with_global((call.node,)) if whole else y


@rule(
    nn.LayerNorm, F.layer_norm, torch.layer_norm,
    *([nn.RMSNorm, F.rms_norm] if hasattr(nn, "RMSNorm") else []),
    *([torch.rms_norm] if hasattr(torch, "rms_norm") else []),
)
def layer_norm(call: Call):
    x = require_value(call)
    shape = call.module.normalized_shape if call.module is not None else call.arg(1, "normalized_shape")
    count = 1 if isinstance(shape, int) else len(shape)
    return _side_path_if(call, x, tuple(range(x.rank - count, x.rank)))


@rule(
    nn.GroupNorm, F.group_norm, torch.group_norm, nn.InstanceNorm1d, nn.InstanceNorm2d,
    nn.InstanceNorm3d, F.instance_norm, torch.instance_norm,
)
def spatial_norm(call: Call):
    """Statistics over each sample's (group's) spatial positions: a global side path. An
    InstanceNorm that normalises with running statistics (``track_running_stats`` in eval mode,
    ``use_input_stats=False``) is a per-channel affine map: neutral."""
    x = require_value(call)
    if call.module is not None:
        m = call.module
        uses_input = not isinstance(m, nn.modules.instancenorm._InstanceNorm) or m.training or not m.track_running_stats
    elif call.target in (F.instance_norm, torch.instance_norm):
        uses_input = bool(call.arg(5, "use_input_stats", True))
    else:
        uses_input = True
    return _side_path_if(call, x, tuple(range(2, x.rank))) if uses_input else x


@rule(F.normalize)
def normalize(call: Call):
    x = require_value(call)
    dim = call.arg(2, "dim", 1) % x.rank
    return _side_path_if(call, x, (dim,))


# ---- linear maps ----------------------------------------------------------------------------
@rule(nn.Linear, F.linear, nn.LazyLinear)
def linear(call: Call):
    x = require_value(call)
    out = contract_last(call, x)
    return replace(out, dims=out.dims[:-1] + (((None, call.out_shape[-1]),) if call.out_shape[-1] != 1 else (),))


def contract_last(call: Call, x: Value) -> Value:
    """Mix across the last dimension (a linear map on it)."""
    return reduce_over(call, x, (x.rank - 1,), keepdim=True)


def _letters(rank: int, tail: str, batch: str) -> str:
    return batch[len(batch) - (rank - len(tail)) :] + tail


def contract(call: Call, operands: list[tuple[torch.Tensor, str]], out_letters: str) -> Value:
    """Einsum-style contraction.

    Summing over a spatial dim (``att @ v`` sums over the keys), or one axis landing on two
    output dims (``q @ k^T``: queries x keys), mixes tokens: along that axis every operand is
    globalised (a global mixing op, as attention is: in a merge with a path around it, a side
    path). The output keeps the grid where an output dim still carries it: the first output
    dim holding an axis keeps it (the queries of ``q @ k^T``, the rows of ``att @ v``), a later
    one (the keys) becomes a plain dim."""
    out_shape = call.out_shape
    present = [(t, call.value(t), letters) for t, letters in operands if call.value(t) is not None]
    mixed: dict[int, list] = {}  # axis -> the factors of it mixed over

    def mix(factors) -> None:
        for a, size in factors:
            if a is not None:
                mixed.setdefault(int(a), []).append((a, size))

    for _, v, letters in present:
        for i, letter in enumerate(letters):
            if letter not in out_letters:
                mix(v.dims[i])
    dims: list[Dim] = []
    for o, letter in enumerate(out_letters):
        chosen: Dim | None = None
        for t, v, letters in present:
            if letter in letters:
                i = letters.index(letter)
                if v.axes_of(i) and t.shape[i] == out_shape[o]:
                    if chosen is not None and chosen != v.dims[i]:
                        mix(tuple(chosen) + tuple(v.dims[i]))
                    if chosen is None:
                        chosen = v.dims[i]
        dims.append(chosen if chosen is not None else _opaque(out_shape[o]))
    placed: set = set()
    for o, dim in enumerate(dims):
        spatial = [f for f in dim if f[0] is not None]
        if any(f in placed for f in spatial):  # the keys of queries x keys
            mix(spatial)
            dims[o] = _opaque(out_shape[o])
        placed.update(spatial)
    n_axes = len(present[0][1].n)
    carried = axis_units(dims, n_axes)
    n = [
        carried[a] if carried[a] is not None else (1 if a in mixed else max(v.n[a] for _, v, _ in present))
        for a in range(n_axes)
    ]
    carrying = {a: max((v for _, v, _ in present if _carries_any(v, mixed[a])), key=lambda v: v.n[a]) for a in mixed}
    units = {a: v.n[a] for a, v in carrying.items()}
    # the windows must stay apart in the operand whose positions inside them are summed
    kept = {a: [f for f in factors_of(v.dims, a) if f not in mixed[a]] for a, v in carrying.items()}
    windows = _windows_mixed(call, units, mixed, kept)
    # a window whose positions the result no longer carries (a single query attending over a
    # window's keys) is one unit now: the other parts of its axis step in windows
    reduced = {a: w for a, w in windows.items() if n[a] * w == units[a]}
    if reduced:
        left = {a: len(factors_of(dims, a)) for a in reduced}
        dims = [tuple(coarser(f, reduced, left) for f in dim) for dim in dims]
    values = [_mixed(call, v, mixed, windows, reduced, n) for _, v, _ in present]
    return merged(call, dims, values, tuple(n))


def _carries_any(v: Value, factors: list) -> bool:
    return any(f in dim for dim in v.dims for f in factors)


def _windows_mixed(call: Call, units: dict[int, int], mixed: dict[int, list], kept_by_axis: dict[int, list]) -> dict[int, int]:
    """The axes whose positions inside windows (kept apart by the factors ``kept_by_axis``) the
    op mixes, with the windows' widths; the other mixed axes are mixed whole. ``units``: per
    mixed axis, the units of the operand that carries the mixed factors. Refuses anything else."""
    windows = {}
    for a in sorted(mixed):
        try:
            how, w = window_mixing(mixed[a], kept_by_axis.get(a, []), units[a])
        except ValueError as exc:
            raise UnsupportedOp(call.node, call.op, str(exc)) from None
        if how == "window":
            windows[a] = w
    return windows


def _mixed(call: Call, v: Value, mixed: dict[int, list], windows: dict[int, int], reduced: dict[int, int], n: list[int]) -> Value:
    """``v`` after a mixing op over the factors ``mixed`` (per axis): global along an axis the op
    mixes whole, every unit its window along an axis split into windows whose position inside
    the window it mixes (Swin's window attention: local and exact), one unit per window where
    the result keeps no position inside them (``reduced``)."""
    maps = {}
    for a in sorted(mixed):
        if a in reduced:
            if v.n[a] == n[a] * reduced[a]:  # this operand carries the windows' positions
                maps[a] = lambda f, w=reduced[a]: window_unit(f, w)
        elif a in windows:
            maps[a] = lambda f, w=windows[a]: window_field(f, w)
        else:
            v = v.globalised((a,), call.node, units=n[a])
    return v.map_fields(maps) if maps else v


_BATCH = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@rule(nn.Bilinear, F.bilinear, torch.bilinear)
def bilinear(call: Call):
    """``out[..., o] = sum_ij x1[..., i] W[o, i, j] x2[..., j] + b[o]``: unit ``...`` of the
    output reads unit ``...`` of both inputs and mixes their last dims (features), like two
    linear layers merged."""
    x1, x2 = call.arg(0, "input1"), call.arg(1, "input2")
    return contract(
        call,
        [(x1, _letters(x1.dim(), "i", _BATCH)), (x2, _letters(x2.dim(), "j", _BATCH))],
        _letters(call.out.dim(), "o", _BATCH),
    )


@rule(torch.addmm, torch.baddbmm, torch.addbmm, "addmm", "baddbmm", "addbmm")
def add_matmul(call: Call):
    """``beta*input + alpha*(mat1 @ mat2)``: the product's contraction (``addmm``: ``ik,kj->ij``;
    ``baddbmm``: ``bik,bkj->bij``; ``addbmm`` also sums over the batch: ``bik,bkj->ij``), merged
    unit by unit with ``input`` broadcast to the result."""
    name = call.op if call.kind == "call_method" else call.target.__name__
    first, second = ("mat1", "mat2") if name == "addmm" else ("batch1", "batch2")
    term, a, b = call.arg(0, "input"), call.arg(1, first), call.arg(2, second)
    out = {"addmm": "ij", "baddbmm": "Bij", "addbmm": "ij"}[name]
    left, right = ("ik", "kj") if name == "addmm" else ("Bik", "Bkj")
    return contract(call, [(a, left), (b, right), (term, out[len(out) - term.dim():])], out)


@rule(torch.matmul, operator.matmul, torch.bmm, torch.mm, "matmul", "bmm", "mm", "__matmul__", "__rmatmul__")
def matmul(call: Call):
    a, b = call.args[0], call.args[1]
    if call.op == "__rmatmul__":
        a, b = b, a
    la = "k" if a.dim() == 1 else _letters(a.dim(), "ik", _BATCH)
    lb = "k" if b.dim() == 1 else _letters(b.dim(), "kj", _BATCH)
    batch_rank = max(a.dim(), b.dim()) - 2
    out = _BATCH[len(_BATCH) - max(batch_rank, 0) :] + ("i" if a.dim() > 1 else "") + ("j" if b.dim() > 1 else "")
    return contract(call, [(a, la), (b, lb)], out)


def _expand_ellipsis(spec: str, rank: int) -> str:
    if "..." not in spec:
        return spec
    explicit = len(spec) - 3
    return spec.replace("...", _BATCH[len(_BATCH) - (rank - explicit) :])


@rule(torch.einsum)
def einsum(call: Call):
    equation = call.args[0].replace(" ", "")
    operands = call.args[1:]
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = operands[0]
    inputs, _, output = equation.partition("->")
    specs = inputs.split(",")
    specs = [_expand_ellipsis(s, t.dim()) for s, t in zip(specs, operands)]
    if not _:
        letters = "".join(specs)
        output = "".join(sorted(c for c in set(letters) if letters.count(c) == 1 and c.islower()))
    output = _expand_ellipsis(output, call.out.dim()) if "..." in output else output
    return contract(call, list(zip(operands, specs)), output)


# ---- attention ------------------------------------------------------------------------------
def attend(call: Call, query: torch.Tensor, others: list[torch.Tensor], out: torch.Tensor) -> Value:
    """Every query sees every key: all spatial axes of the operands become global."""
    values = [v for v in (call.value(t) for t in [query, *others]) if v is not None]
    shaped = query if call.value(query) is not None else next(t for t in others if call.value(t) is not None)
    base = call.value(shaped)
    dims = base.dims[:-1] + (((None, out.shape[-1]),) if out.shape[-1] != 1 else (),)
    if len(dims) != out.dim():
        dims = tuple(((None, s),) if s != 1 else () for s in out.shape)
    windowed = _window_tokens(call, [query, *others], dims)
    if windowed is not None:  # attention inside windows: every query sees its window
        kept = {a: factors_of(dims, a) for a in windowed}
        windows = _windows_mixed(call, {a: base.n[a] for a in windowed}, windowed, kept)
        return merged(call, dims, [_mixed(call, v, windowed, windows, {}, list(base.n)) for v in values], base.n)
    axes = tuple(range(len(base.n)))
    values = [v.globalised(axes, call.node) for v in values]
    return merged(call, dims, values, base.n)


def _window_tokens(call: Call, tensors: list[torch.Tensor], dims) -> dict[int, list] | None:
    """The factors per axis the keys' token dim (second to last) holds, when it holds parts of
    axes split into windows (a window partition) and the output keeps the windows apart in
    another dim; None for attention over whole axes (global)."""
    mixed: dict[int, list] = {}
    for t in tensors:
        v = call.value(t)
        if v is None or t.dim() < 2:
            continue
        for a, size in v.dims[t.dim() - 2]:
            if a is not None:
                mixed.setdefault(int(a), [])
                if (a, size) not in mixed[int(a)]:
                    mixed[int(a)].append((a, size))
    if not mixed or not any(is_part(a) for fs in mixed.values() for a, _ in fs):
        return None
    return mixed


@rule(F.scaled_dot_product_attention)
def scaled_dot_product_attention(call: Call):
    q, k, v = call.arg(0, "query"), call.arg(1, "key"), call.arg(2, "value")
    return attend(call, q, [k, v], call.out)


@rule(nn.MultiheadAttention)
def multihead_attention(call: Call):
    q, k, v = call.arg(0, "query"), call.arg(1, "key"), call.arg(2, "value")
    out = call.out[0] if isinstance(call.out, tuple) else call.out
    value = attend(call, q, [k, v], out)
    if not isinstance(call.out, tuple):
        return value
    weights = call.out[1]
    if weights is None:
        return (value, None)
    return (value, replace(value, dims=tuple(((None, s),) if s != 1 else () for s in weights.shape)))


# ---- recurrences --------------------------------------------------------------------------
PROBE_WAY_OUT = "probe the model with rfnumeric.probe, which follows any forward numerically"

def _opaque(size: int) -> Dim:
    return ((None, size),) if size != 1 else ()


def _causal(call: Call, x: Value, seq_dim: int) -> Value:
    """``x`` read by a unidirectional recurrence (or a cumulative op) along ``seq_dim`` (see
    :func:`recurrent`): its factors, outermost first, must be whole input axes (a window's parts
    or channels folded into the sequence order the steps otherwise)."""
    factors = [(a, size) for a, size in x.dims[seq_dim] if size != 1]
    if any(a is None or is_part(a) or x.n[int(a)] != size for a, size in factors):
        raise UnsupportedOp(
            call.node, call.op,
            "a unidirectional recurrence over a sequence that holds parts of an axis or channels "
            "(unit t sees the steps before it in an order rfarith does not follow)",
            way_out=PROBE_WAY_OUT,
        )
    return x.causal(tuple(int(a) for a, _ in factors), call.node)


@rule(nn.RNN, nn.LSTM, nn.GRU)
def recurrent(call: Call):
    """An RNN / LSTM / GRU (``out, h_n`` or ``out, (h_n, c_n)``).

    Derivation, for a sequence dim that carries spatial axes (rows of a feature map reshaped to
    ``(B*H, W, C)``: the sequence is w): the state after step t is computed from the inputs of
    steps 0..t (and, in the backward direction of a bidirectional RNN, t..L-1), and ``h_n`` /
    ``c_n`` summarise all of it. A recurrence along a spatial axis is a global mixing op, as
    attention is (DESIGN.md), flagged ``global`` via this module; the batch dim (the other rows,
    h) is untouched, unit by unit; the features are mixed like a linear layer's. Bidirectional,
    unit t of ``out`` sees the hull of all units. Unidirectional, along a sequence that is one
    whole axis, unit t sees exactly what units 0..t saw (``af.prefix_of_units``; flagged
    ``causal``: r, j and start describe the hull, the last unit's field, and every real unit's
    own field is exact). Over a sequence that flattens several axes (raster order), unit (i, t)
    sees rows 0..i-1 whole and row i up to t: a union of products, one per axis
    (:meth:`Value.causal`). Merged with a path around it (a residual), this path is a global
    side path and the local field is the hull of the others.
    """
    m = call.module
    seq = call.input
    if not isinstance(seq, torch.Tensor):
        raise UnsupportedOp(call.node, call.op, "a PackedSequence input (its lengths come from the data)", way_out=PROBE_WAY_OUT)
    if any(call.value(t) is not None for t, _ in call.tensors() if t is not seq):
        raise UnsupportedOp(call.node, call.op, "an initial state computed from the model input", way_out=PROBE_WAY_OUT)
    x = require_value(call)
    batched = seq.dim() == 3
    seq_dim = 1 if batched and m.batch_first else 0
    features = contract_last(call, x)  # the input-to-hidden maps mix the features
    along = features.axes_of(seq_dim)
    if along and not m.bidirectional:
        mixed = _causal(call, features, seq_dim)
    else:
        mixed = features.globalised(along, call.node) if along else features
    out, state = call.out
    out_value = replace(mixed, dims=mixed.dims[:-1] + (_opaque(out.shape[-1]),))
    whole = features.globalised(along, call.node) if along else features
    summary = reduce_over(call, whole, (seq_dim,), keepdim=False)  # dims: (batch,) features

    def state_value(t: torch.Tensor) -> Value:
        batch = summary.dims[:-1]  # () unbatched
        return replace(summary, dims=(_opaque(t.shape[0]), *batch, _opaque(t.shape[-1])))

    if isinstance(state, (tuple, list)):  # LSTM: (h_n, c_n)
        return out_value, tuple(state_value(t) for t in state)
    return out_value, state_value(state)
