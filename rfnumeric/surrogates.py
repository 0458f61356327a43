"""What each op becomes inside the probe: one table from torch function to handler.

A handler is ``handler(mode, func, args, kwargs) -> output`` (see :class:`~rfnumeric.mode.ProbeMode`).
Handlers for the *structural* probe replace an op by a surrogate whose Jacobian is non-negative
and has the same non-zero pattern as the op's (or the union over inputs), so nothing cancels
and nothing saturates:

- nonlinearities, dropout, eval-mode BatchNorm, casts and ``detach``: identity;
- ``add``, ``sub``, ``mul``, ``div``, ``where``, ``maximum``, ...: the mean of the operands that
  depend on the input (a ``sub`` acts as an ``add``; constants drop out);
- convolution and linear layers: every weight ``1/fan_in``, no bias (computed on the channel sum,
  which is exact for equal weights and keeps the output one channel wide);
- max pooling: average pooling of the same geometry (a depthwise box filter when dilated);
- softmax over channels: identity; over a spatial axis, and normalisation statistics over
  spatial axes: ``(x + mean) / 2`` (positive everywhere, every unit sees the whole input).

Handlers for *global spatial reductions* run in both weight modes: in ``local`` mode their
output is cut from the gradient (``ProbeMode.cut``) so the probe measures the local field;
``full`` mode follows them. With ``weights="real"`` every other op runs as it is.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from rfarith.errors import ProbeError, ShapeError

from . import layout as lay
from .classes import attach, classes_of, for_concatenation, grouped
from .mode import (
    Handler,
    ProbeMode,
    Retry,
    augmented_assignment,
    broadcast_to,
    depends,
    expanded,
    overlapping,
    value_of,
)

TABLE: dict[Any, Handler] = {}
SYMMETRIC: set[Any] = set()  # ops that treat every channel alike (see ``cat``)


def handles(*targets: Any, symmetric: bool = False) -> Callable[[Handler], Handler]:
    """Register ``fn`` for every target; a target registered twice is a bug. ``symmetric``: the
    op treats all channels alike, so it may take a blended tensor (see :func:`cat`)."""

    def register(fn: Handler) -> Handler:
        for target in dict.fromkeys(t for t in targets if t is not None):
            if target in TABLE:
                raise ValueError(f"a handler for {target!r} is already registered")
            TABLE[target] = fn
            if symmetric:
                SYMMETRIC.add(target)
        return fn

    return register


def ops(*names: str, owners: Sequence[Any] = (torch, torch.Tensor, F)) -> list[Any]:
    """Every ``torch.<name>``, ``Tensor.<name>`` and ``F.<name>`` that exists, each once."""
    found: list[Any] = []
    for name in names:
        for owner in owners:
            fn = getattr(owner, name, None)
            if fn is not None and callable(fn) and fn not in found:
                found.append(fn)
    return found


def arg(args: tuple, kwargs: dict, index: int, name: str, default: Any = None) -> Any:
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


def real(mode: ProbeMode, func: Any, args: tuple, kwargs: dict) -> Any:
    """The op itself (with the in-place and view guards of collapsed tensors)."""
    return mode.passthrough(func, args, kwargs)


def _per_axis(value: Any, nd: int) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * nd
    values = tuple(int(v) for v in value)
    return values * nd if len(values) == 1 else values


def broadcast_shape(*shapes: Sequence[int]) -> tuple[int, ...]:
    """NumPy broadcasting of shapes (torch.broadcast_shapes, without its import cost)."""
    rank = max((len(s) for s in shapes), default=0)
    out = [1] * rank
    for shape in shapes:
        for i, size in enumerate(shape, start=rank - len(shape)):
            if size != 1:
                if out[i] not in (1, size):
                    raise RuntimeError(f"shapes {[tuple(s) for s in shapes]} do not broadcast")
                out[i] = int(size)
    return tuple(out)


def broadcast(mode: ProbeMode, value: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """``value`` at ``shape``: a stride-0 view when collapsing, a real tensor otherwise."""
    return broadcast_to(value, tuple(shape), mode.collapse)


def per_channel(
    mode: ProbeMode, x: torch.Tensor, nd: int, fn: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """Apply ``fn``, an op acting on each channel's trailing ``nd`` axes alike, to ``x``'s base
    when ``x`` is one channel expanded (exact: equal channels stay equal)."""
    base = value_of(x)
    if base is not x and base.dim() == x.dim() and base.shape[-nd:] == x.shape[-nd:]:
        y = fn(base)
        return broadcast(mode, y, tuple(x.shape[:-nd]) + tuple(y.shape[-nd:]))
    return fn(x)


# ---- identities -----------------------------------------------------------------------------
_ACTIVATIONS = (
    "relu", "relu_", "relu6", "leaky_relu", "leaky_relu_", "elu", "elu_", "selu", "selu_",
    "celu", "celu_", "gelu", "silu", "mish", "hardswish", "hardsigmoid", "hardtanh",
    "hardtanh_", "softplus", "softsign", "softshrink", "hardshrink", "tanhshrink", "threshold",
    "threshold_", "logsigmoid", "rrelu", "rrelu_", "sigmoid", "sigmoid_", "tanh", "tanh_",
    "prelu",
)  # fmt: skip
_MATH = (
    "exp", "exp_", "exp2", "exp2_", "expm1", "expm1_", "log", "log_", "log2", "log2_", "log10",
    "log10_", "log1p", "log1p_", "sqrt", "sqrt_", "rsqrt", "rsqrt_", "reciprocal",
    "reciprocal_", "abs", "abs_", "absolute", "absolute_", "neg", "neg_", "negative",
    "negative_", "positive", "square", "square_", "sign", "sign_", "sgn", "sgn_", "floor",
    "floor_", "ceil", "ceil_", "round", "round_", "trunc", "trunc_", "frac", "frac_", "fix",
    "fix_", "erf", "erf_", "erfc", "erfc_", "sin", "sin_", "cos", "cos_", "tan", "tan_", "atan",
    "atan_", "asinh", "asinh_", "sinh", "sinh_", "cosh", "cosh_", "nan_to_num", "nan_to_num_",
    "clamp", "clamp_", "clip", "clip_", "clamp_min", "clamp_min_", "clamp_max", "clamp_max_",
    "logit", "logit_", "__neg__", "__abs__", "__pos__",
)  # fmt: skip
_DROPOUT = (
    "dropout", "dropout_", "alpha_dropout", "alpha_dropout_", "feature_alpha_dropout",
    "feature_alpha_dropout_", "dropout1d", "dropout2d", "dropout3d", "feature_dropout",
    "feature_dropout_",
)  # fmt: skip


@handles(
    *ops(*_ACTIVATIONS, *_MATH, *_DROPOUT, "local_response_norm", "detach", "detach_"),
    symmetric=True,
)
def identity(mode: ProbeMode, func, args, kwargs):
    """Nonlinearities pass the gradient through unchanged (ReLU6, sigmoid, clamp would zero it)."""
    if not mode.structural or not depends(args[0]):
        return real(mode, func, args, kwargs)
    return args[0]


@handles(*ops("batch_norm"), symmetric=True)
def batch_norm(mode: ProbeMode, func, args, kwargs):
    """Eval-mode BatchNorm is a per-channel affine map: identity in structural mode. With real
    weights and ``training=True`` it mixes batch elements, so probes cannot share a batch."""
    x = args[0]
    if mode.structural and depends(x):
        return x
    if arg(args, kwargs, 5, "training", False) and depends(x):
        mode.check_batch(x, (0,))
    return real(mode, func, args, kwargs)


@handles(*ops("glu"))
def glu(mode: ProbeMode, func, args, kwargs):
    x = args[0]
    if not mode.structural or not depends(x):
        return real(mode, func, args, kwargs)
    a, b = x.chunk(2, dim=arg(args, kwargs, 1, "dim", -1))
    return (a + b) / 2


_INTEGER_CASTS = (
    torch.Tensor.long,
    torch.Tensor.int,
    torch.Tensor.short,
    torch.Tensor.char,
    torch.Tensor.byte,
)


@handles(
    torch.Tensor.float,
    torch.Tensor.half,
    torch.Tensor.bfloat16,
    torch.Tensor.double,
    torch.Tensor.to,
    torch.Tensor.type,
    *_INTEGER_CASTS,
    symmetric=True,
)
def cast(mode: ProbeMode, func, args, kwargs):
    """The probe computes in float64; a cast to another float type would lose range and
    precision in the backward pass. Casts to integer types cut the gradient: an error."""
    x = args[0]
    if not depends(x):
        return real(mode, func, args, kwargs)
    if func in (torch.Tensor.float, torch.Tensor.half, torch.Tensor.bfloat16, torch.Tensor.double):
        return x
    dtypes = [a for a in list(args[1:]) + list(kwargs.values()) if isinstance(a, torch.dtype)]
    if func in _INTEGER_CASTS:
        dtypes = [torch.int64]
    if any(not d.is_floating_point for d in dtypes):
        raise ProbeError(
            f"the model converts input-dependent values to {dtypes[0]} at '{mode.name}': no gradient "
            "flows through an integer cast, so the probe cannot tell which pixels matter there. "
            "rfnumeric probes models whose input is a float tensor; probe a node before the cast."
        )
    args = tuple(torch.float64 if isinstance(a, torch.dtype) else a for a in args)
    kwargs = {k: torch.float64 if isinstance(v, torch.dtype) else v for k, v in kwargs.items()}
    return real(mode, func, args, kwargs)


_PERMUTATIONS = ops("permute", "transpose", "swapaxes", "swapdims", "movedim", "moveaxis", "t") + [
    torch.Tensor.T.__get__,
    torch.Tensor.mT.__get__,
]


@handles(*_PERMUTATIONS)
def permutation(mode: ProbeMode, func, args, kwargs):
    """Reordering dims keeps a collapsed tensor collapsed: reorder its base the same way."""
    x = args[0]
    out = real(mode, func, args, kwargs)
    base = value_of(x) if mode.collapse and isinstance(x, torch.Tensor) else x
    if base is x or not isinstance(out, torch.Tensor):
        return out
    return expanded(func(base, *args[1:], **kwargs), out.shape)


@handles(torch.Tensor.contiguous, symmetric=True)
def contiguous(mode: ProbeMode, func, args, kwargs):
    """A collapsed tensor stays collapsed (``view`` on it is answered by ``reshape``)."""
    if mode.collapse and value_of(args[0]) is not args[0]:
        return args[0]
    return real(mode, func, args, kwargs)


@handles(*ops("embedding", "embedding_bag", "one_hot"))
def integer_input(mode: ProbeMode, func, args, kwargs):
    x = args[0]
    if depends(x) or (isinstance(x, torch.Tensor) and x.is_floating_point()):
        raise ProbeError(
            f"the model reads its input as integer indices ({getattr(func, '__name__', func)} at "
            f"'{mode.name}', input of shape {tuple(x.shape)}). rfnumeric probes models whose input is a "
            "float tensor (an image, a signal, a volume): wrap the part of the network after the "
            "embedding in a module and probe that with the embedded tensor's shape."
        )
    return real(mode, func, args, kwargs)


# ---- sign-free arithmetic -------------------------------------------------------------------
_MIXES = (
    "add", "add_", "sub", "sub_", "subtract", "subtract_", "rsub", "mul", "mul_", "multiply",
    "multiply_", "div", "div_", "divide", "divide_", "true_divide", "true_divide_",
    "floor_divide", "floor_divide_", "remainder", "remainder_", "fmod", "fmod_", "maximum",
    "minimum", "fmax", "fmin", "atan2", "atan2_", "arctan2", "hypot", "hypot_", "copysign",
    "copysign_", "xlogy", "logaddexp", "logaddexp2", "lerp", "lerp_", "addcmul", "addcmul_",
    "addcdiv", "addcdiv_", "where", "masked_fill", "masked_fill_", "pow", "pow_", "float_power",
    "float_power_", "__rsub__", "__rdiv__", "__rtruediv__", "__rmul__", "__radd__",
    "__rfloordiv__", "__rmod__", "__rpow__", "__iadd__", "__isub__", "__imul__", "__itruediv__",
)  # fmt: skip


@handles(*ops(*_MIXES), symmetric=True)
def mix(mode: ProbeMode, func, args, kwargs):
    """The mean of the input-dependent operands, broadcast like the op's output: a positive
    combination, so ``x - conv(x)`` adds and ``x * gate`` reaches both ``x`` and the gate."""
    if not mode.structural or "out" in kwargs:
        return real(mode, func, args, kwargs)
    tensors = lay.tensors_in(list(args) + list(kwargs.values()))
    operands = [t for t in tensors if depends(t)]
    if not operands:
        return real(mode, func, args, kwargs)
    shape = broadcast_shape(*(t.shape for t in tensors))
    values = [value_of(t) for t in operands]
    combined = values[0] * 1.0 if len(values) == 1 else sum(values[1:], values[0]) / len(values)
    name = getattr(func, "__name__", "")
    inplace = (name.endswith("_") and not name.endswith("__")) or name.startswith("__i")
    if not inplace:
        return broadcast(mode, combined, shape)
    target = args[0]
    if overlapping(target) or value_of(target) is not target:
        if augmented_assignment(mode.frame) or name.startswith("__i"):
            return broadcast(mode, combined, shape)  # Python rebinds the name to this result
        raise Retry("collapse", mode.name)
    return target.copy_(combined.expand(target.shape))


# ---- convolution and linear layers ----------------------------------------------------------
_CONV = {torch.conv1d: 1, torch.conv2d: 2, torch.conv3d: 3}
_CONV_TRANSPOSE = {torch.conv_transpose1d: 1, torch.conv_transpose2d: 2, torch.conv_transpose3d: 3}


def _conv_geometry(func, args, kwargs) -> dict[str, Any]:
    if func in _CONV:
        return {
            "stride": arg(args, kwargs, 3, "stride", 1),
            "padding": arg(args, kwargs, 4, "padding", 0),
            "dilation": arg(args, kwargs, 5, "dilation", 1),
            "groups": arg(args, kwargs, 6, "groups", 1),
        }
    return {
        "stride": arg(args, kwargs, 3, "stride", 1),
        "padding": arg(args, kwargs, 4, "padding", 0),
        "output_padding": arg(args, kwargs, 5, "output_padding", 0),
        "groups": arg(args, kwargs, 6, "groups", 1),
        "dilation": arg(args, kwargs, 7, "dilation", 1),
    }


def box_filter(
    x: torch.Tensor, kernel: tuple[int, ...], geometry: dict[str, Any]
) -> torch.Tensor | None:
    """The mean over each window of a convolution's geometry, per channel, as average pooling
    (much faster than a convolution with equal weights); None for dilated windows."""
    nd = len(kernel)
    dilation = _per_axis(geometry["dilation"], nd)
    stride = _per_axis(geometry["stride"], nd)
    if any(d != 1 for d in dilation):
        return None
    padding = geometry["padding"]
    if padding == "same":
        if any(s != 1 for s in stride):
            raise ValueError("padding='same' is not supported for strided convolutions")
        pairs = [((k - 1) // 2, k - 1 - (k - 1) // 2) for k in kernel]
    elif padding == "valid":
        pairs = [(0, 0)] * nd
    else:
        pairs = [(p, p) for p in _per_axis(padding, nd)]
    symmetric = all(left == right and 2 * left <= k for (left, right), k in zip(pairs, kernel))
    if not symmetric:
        flat = [p for pair in reversed(pairs) for p in pair]
        x = F.pad(x, flat)
    if all(k == 1 for k in kernel):  # a one-unit window is a strided pick: no pooling pass
        return x[(..., *(slice(None, None, s) for s in stride))]
    avg = (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[nd - 1]
    return avg(x, kernel, stride, [left for left, _ in pairs] if symmetric else 0, False, True)


@handles(*_CONV, *_CONV_TRANSPOSE, symmetric=True)
def conv(mode: ProbeMode, func, args, kwargs):
    """Every weight ``1/fan_in`` and no bias. All output channels of a group are then equal, so
    the op is computed once on the channel sum with an all-ones kernel (exact) and expanded."""
    x, weight = arg(args, kwargs, 0, "input"), arg(args, kwargs, 1, "weight")
    if not mode.structural or not depends(x):
        return real(mode, func, args, kwargs)
    geometry = _conv_geometry(func, args, kwargs)
    if depends(weight):  # a weight computed from the input (dynamic convolution): positive already
        return func(x, weight, None, **geometry)
    transposed = func in _CONV_TRANSPOSE
    nd = (_CONV_TRANSPOSE if transposed else _CONV)[func]
    unbatched = x.dim() == nd + 1
    if unbatched:
        x = x.unsqueeze(0)
    groups = int(geometry["groups"])
    c_in = x.shape[1]
    expected = weight.shape[0] if transposed else weight.shape[1] * groups
    c_out = weight.shape[1] * groups if transposed else weight.shape[0]
    if c_in != expected and unbatched and mode.input_rank != nd + 2:  # torch read it unbatched
        raise ShapeError(
            f"layer '{mode.name}' ({getattr(func, '__name__', 'conv')}) works on {nd} spatial axes but "
            f"input_shape has {mode.input_rank - 2}. Way out: give input_shape as (batch, channels, "
            f"*{nd} spatial sizes).",
            node=mode.name,
            kind="rank",
        )
    if c_in != expected:
        raise ShapeError(
            f"layer '{mode.name}' ({getattr(func, '__name__', 'conv')}) expects {expected} input channels "
            f"but gets {c_in} (input of shape {tuple(x.shape[1:])} per batch element). Way out: check the channel count of "
            "input_shape (batch, channels, *spatial).",
            node=mode.name,
            kind="channels",
        )
    kernel = tuple(weight.shape[2:])
    fan_in = (c_in // groups) * math.prod(kernel)
    classes = classes_of(x) if mode.collapse and groups > 1 and not unbatched else None
    if classes is not None:  # each group sums its own mix of the blend's classes
        mode.exact = True
        out = _grouped_on_classes(func, classes, groups, c_out, kernel, fan_in, geometry, x)
        if out is not None:
            return out
    if mode.blended_input and 1 < groups < c_in:
        raise Retry("collapse", mode.name)  # groups would see different parts of a blend
    mode.exact = groups == 1  # every output channel is the channel sum: a blend's sum is exact
    if not mode.collapse:
        out = func(x, torch.full(weight.shape, 1.0 / fan_in, dtype=x.dtype), None, **geometry)
        return out.squeeze(0) if unbatched else out
    base = value_of(x)
    one_channel = base.dim() == x.dim() and base.shape[1] == 1 and base.shape[2:] == x.shape[2:]
    # the channel sum is ``summed * channels``: the factor joins the one scaling pass below
    if one_channel or groups == 1:
        summed, channels = (base, c_in // groups) if one_channel else (x.sum(1, keepdim=True), 1)
        kernel_groups = 1
    else:
        summed, channels = x.reshape(x.shape[0], groups, c_in // groups, *x.shape[2:]).sum(2), 1
        kernel_groups = groups
    y = box_filter(summed, kernel, geometry) if not transposed else None
    if y is None:
        ones = torch.full((kernel_groups, 1, *kernel), channels / fan_in, dtype=x.dtype)
        y = func(summed, ones, None, **{**geometry, "groups": kernel_groups})
    else:  # always a new tensor: the box filter of a one-unit window is a view of its input
        y = y * (channels * math.prod(kernel) / fan_in)
    if kernel_groups == 1:
        shape = (x.shape[0], c_out, *y.shape[2:])
        return broadcast(mode, y[0], shape[1:]) if unbatched else broadcast(mode, y, shape)
    per_group = c_out // groups
    out = (
        y.unsqueeze(2)
        .expand(y.shape[0], groups, per_group, *y.shape[2:])
        .reshape(y.shape[0], c_out, *y.shape[2:])
    )
    return out.squeeze(0) if unbatched else out


def _grouped_on_classes(func, classes, groups, c_out, kernel, fan_in, geometry, x):
    """A grouped or depthwise convolution of a blend with channel classes (``classes.grouped``):
    one box filter per distinct mix of classes among the groups; ``None`` if there are too
    many mixes."""
    full = (x.shape[0], 1, *x.shape[2:])

    def filtered(summed: torch.Tensor) -> torch.Tensor:
        summed = summed.expand(full)
        y = box_filter(summed, kernel, geometry) if func in _CONV else None
        if y is None:
            ones = torch.full((1, 1, *kernel), 1.0 / fan_in, dtype=x.dtype)
            return func(summed, ones, None, **{**geometry, "groups": 1})
        return y * (math.prod(kernel) / fan_in)

    return grouped(classes, groups, c_out, filtered, lambda y: (x.shape[0], c_out, *y.shape[2:]))


@handles(*ops("linear"), symmetric=True)
def linear(mode: ProbeMode, func, args, kwargs):
    """Every weight ``1/in_features``: the mean over the last dim, broadcast to the outputs. A
    linear map over a dim that carries a spatial axis (flatten, then fc) is a global reduction."""
    x, weight = arg(args, kwargs, 0, "input"), arg(args, kwargs, 1, "weight")
    if not depends(x):
        return real(mode, func, args, kwargs)
    last = (x.dim() - 1,)
    mode.check_batch(x, last)
    if mode.structural and not depends(weight):
        if x.shape[-1] != weight.shape[-1]:
            raise ShapeError(
                f"layer '{mode.name}' (linear) expects {weight.shape[-1]} input features but gets "
                f"{x.shape[-1]} (input of shape {tuple(x.shape[1:])} per batch element). Way out: the model needs a different "
                "input size; check input_shape.",
                node=mode.name,
            )
        mean = value_of(x).mean(-1, keepdim=True)
        if weight.dim() == 1:
            value = broadcast(mode, mean.squeeze(-1), x.shape[:-1])
        else:
            value = broadcast(mode, mean, (*x.shape[:-1], weight.shape[0]))
    elif mode.structural:
        value = func(x, weight, None)
    else:
        value = real(mode, func, args, kwargs)
    return mode.cut(value, mode.axes_of(x, last))


@handles(*ops("bilinear"))
def bilinear(mode: ProbeMode, func, args, kwargs):
    x1, x2, weight = args[0], args[1], arg(args, kwargs, 2, "weight")
    if not mode.structural or not (depends(x1) or depends(x2)):
        return real(mode, func, args, kwargs)
    parts = [value_of(t).mean(-1, keepdim=True) for t in (x1, x2) if depends(t)]
    mean = sum(parts[1:], parts[0]) / len(parts)
    return broadcast(mode, mean, (*broadcast_shape(x1.shape[:-1], x2.shape[:-1]), weight.shape[0]))


_MATMULS = ops("matmul", "mm", "bmm", "addmm", "baddbmm", "addbmm", "__matmul__", "__rmatmul__") + [
    torch.einsum
]


@handles(*_MATMULS)
def matmul(mode: ProbeMode, func, args, kwargs):
    """Constant operands become all-ones (every connection present, positive); a product that
    sums over a spatial dim (attention: weights @ values) is a global reduction."""
    tensors = lay.tensors_in(list(args))
    if not any(depends(t) for t in tensors):
        return real(mode, func, args, kwargs)
    pairs = lay.contracted_dims(func, args, kwargs)
    for t, dims in pairs:
        if depends(t):
            mode.check_batch(t, dims)
    axes = frozenset().union(*(mode.axes_of(t, dims) for t, dims in pairs if depends(t)))
    if mode.structural:
        args = _positive_operands(args)
    value = real(mode, func, args, kwargs)
    if isinstance(value, torch.Tensor):
        axes |= _axes_twice(_product_layout(func, args, kwargs, value))  # queries x keys
        if mode.structural and sum(depends(t) for t in tensors) > 1:
            value = _bounded(value)
    return mode.cut(value, axes)


def _bounded(value: torch.Tensor) -> torch.Tensor:
    """A product of two input-dependent operands (queries times keys) squares magnitudes, and
    a stack of attention blocks overflows float64 within a few dozen; scaled by a constant (no
    gradient path through it) so that its largest element is 1. Scaling by a positive
    constant changes no support."""
    base = value_of(value)
    with torch.no_grad():
        top = base.abs().amax()
    if not (bool(torch.isfinite(top)) and float(top) > 0):
        return value
    return base / top if base is value else expanded(base / top, value.shape)


def _product_layout(func, args, kwargs, value: torch.Tensor) -> lay.Layout | None:
    try:
        return lay.propagate(func, args, kwargs, value)
    except Exception:  # an unusual call the layout rules do not read: no evidence either way
        return None


def _axes_twice(layout: lay.Layout | None) -> frozenset[int]:
    """Spatial axes carried by two different dims (an all-pairs product: every query meets
    every key)."""
    if layout is None:
        return frozenset()
    seen: dict[int, int] = {}
    twice: set[int] = set()
    for d, dim in enumerate(layout):
        for label in lay.spatial_labels(dim):
            if seen.setdefault(label, d) != d:
                twice.add(label)
    return frozenset(twice)


def _positive_operands(args: tuple) -> tuple:
    def positive(a: Any) -> Any:
        if isinstance(a, torch.Tensor) and not depends(a) and a.is_floating_point():
            return torch.ones_like(a, dtype=torch.float64)
        if isinstance(a, (list, tuple)):
            return type(a)(positive(x) for x in a)
        return a

    return tuple(positive(a) for a in args)


@handles(*ops("cat", "concat", "concatenate"), symmetric=True)
def cat(mode: ProbeMode, func, args, kwargs):
    """Channel concatenation keeps maps collapsed by *blending*: one channel holding the
    channel-weighted mean of the parts, expanded to the full width. Its channel sum is exact,
    so every op that treats all channels alike (and sums them, as a convolution does) sees
    exactly what it would see; any other op taking a blended tensor makes the measurement run
    again uncollapsed (``Retry``), so a blend never changes an answer."""
    tensors = list(arg(args, kwargs, 0, "tensors"))
    dim = arg(args, kwargs, 1, "dim", 0)
    parts = [t for t in tensors if isinstance(t, torch.Tensor)]
    rank = parts[0].dim() if parts else 0
    channels = (
        isinstance(dim, int)
        and rank >= 3
        and dim % rank == 1
        and not any(depends(t) and mode.mixes(t, (1,), "spatial") for t in parts)
        and not any(depends(t) and mode.mixes(t, (1,), lay.BATCH) for t in parts)
    )
    if not (mode.structural and mode.collapse and channels and any(depends(t) for t in parts)):
        if mode.blended_input:
            raise Retry("collapse", mode.name)
        return real(mode, func, args, kwargs)
    total = None
    width = 0
    for t in parts:
        base = value_of(t)
        part = base * t.shape[1] if base.shape[1] == 1 else base.sum(1, keepdim=True)
        total = part if total is None else total + part
        width += t.shape[1]
    out_shape = (parts[0].shape[0], width, *parts[0].shape[2:])
    mode.blends = True
    out = expanded(total / width, out_shape)
    classes = for_concatenation(parts, 1)
    if classes is not None and out is not total:  # which channels carry which part's support
        attach(out, classes)
    return out


@handles(*ops("flatten", "view", "reshape"), symmetric=True)
def flatten(mode: ProbeMode, func, args, kwargs):
    """A blend may be flattened with everything after the channels into one dim (a classifier
    head); any other reshape of a blend could separate its channels."""
    out = real(mode, func, args, kwargs)
    if mode.blended_input:
        x = args[0]
        if not (
            isinstance(out, torch.Tensor)
            and x.dim() >= 2
            and out.dim() == 2
            and out.shape[0] == x.shape[0]
        ):
            raise Retry("collapse", mode.name)
    return out


# ---- pooling ----------------------------------------------------------------------------------
def pool_output_size(n: int, kernel: int, stride: int, pad: int, dilation: int, ceil: bool) -> int:
    """PyTorch's pooling output size (ceil mode: the last window must start inside the input)."""
    span = n + 2 * pad - dilation * (kernel - 1) - 1
    if ceil:
        out = -(-span // stride) + 1
        if (out - 1) * stride >= n + pad:
            out -= 1
        return out
    return span // stride + 1


def window_average(x: torch.Tensor, kernel, stride, padding, dilation, ceil: bool) -> torch.Tensor:
    """Average pooling of max pooling's geometry (kernel, stride, padding, dilation, ceil_mode)."""
    nd = len(kernel)
    # avg_pool rejects an input smaller than the kernel before padding, max_pool (padding
    # counted) does not: such an input takes the box filter too
    if all(d == 1 for d in dilation) and all(n >= k for n, k in zip(x.shape[-nd:], kernel)):
        avg = (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[nd - 1]
        return avg(x, kernel, stride, padding, ceil, True)
    unbatched = x.dim() == nd + 1
    if unbatched:
        x = x.unsqueeze(0)
    sizes = x.shape[2:]
    out = [
        pool_output_size(n, k, s, p, d, ceil)
        for n, k, s, p, d in zip(sizes, kernel, stride, padding, dilation)
    ]
    extra = [
        max(0, (o - 1) * s + d * (k - 1) + 1 - (n + 2 * p))
        for o, n, k, s, p, d in zip(out, sizes, kernel, stride, padding, dilation)
    ]
    pads: list[int] = []
    for p, e in reversed(list(zip(padding, extra))):
        pads += [p, p + e]
    channels = x.shape[1]
    box = torch.full((channels, 1, *kernel), 1.0 / math.prod(kernel), dtype=x.dtype)
    conv_fn = (F.conv1d, F.conv2d, F.conv3d)[nd - 1]
    y = conv_fn(F.pad(x, pads), box, None, stride, 0, dilation, channels)
    for axis, o in enumerate(out):
        y = y.narrow(2 + axis, 0, o)
    return y.squeeze(0) if unbatched else y


def _window(
    args: tuple, kwargs: dict, index: int, nd: int
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Kernel and stride of a pooling call whose kernel_size is argument ``index`` and stride
    the next one (a missing or empty stride is the kernel, as in PyTorch)."""
    kernel = _per_axis(arg(args, kwargs, index, "kernel_size"), nd)
    stride = arg(args, kwargs, index + 1, "stride", None)
    if stride is None or (not isinstance(stride, int) and len(stride) == 0):
        return kernel, kernel
    return kernel, _per_axis(stride, nd)


_MAX_POOL = {
    F.max_pool1d: 1,
    F.max_pool2d: 2,
    F.max_pool3d: 3,
    torch.max_pool1d: 1,
    torch.max_pool2d: 2,
    torch.max_pool3d: 3,
}
_MAX_POOL_INDICES = {
    F.max_pool1d_with_indices: 1,
    F.max_pool2d_with_indices: 2,
    F.max_pool3d_with_indices: 3,
}
_MAX_POOL_WITH_INDICES = {
    1: F.max_pool1d_with_indices,
    2: F.max_pool2d_with_indices,
    3: F.max_pool3d_with_indices,
}


@handles(*_MAX_POOL, *_MAX_POOL_INDICES, symmetric=True)
def max_pool(mode: ProbeMode, func, args, kwargs):
    """Max pooling sends the gradient to one pixel per window; its average of the same
    geometry sends it to all of them."""
    x = args[0]
    if not mode.structural or not depends(x):
        return real(mode, func, args, kwargs)
    nd = {**_MAX_POOL, **_MAX_POOL_INDICES}[func]
    kernel, stride = _window(args, kwargs, 1, nd)
    padding = _per_axis(arg(args, kwargs, 3, "padding", 0), nd)
    dilation = _per_axis(arg(args, kwargs, 4, "dilation", 1), nd)
    ceil = bool(arg(args, kwargs, 5, "ceil_mode", False))
    value = per_channel(
        mode, x, nd, lambda t: window_average(t, kernel, stride, padding, dilation, ceil)
    )
    if func in _MAX_POOL_INDICES or arg(args, kwargs, 6, "return_indices", False):
        indices = _MAX_POOL_WITH_INDICES[nd](x.detach(), kernel, stride, padding, dilation, ceil)[1]
        return value, indices
    return value


_AVG_POOL = {F.avg_pool1d: 1, F.avg_pool2d: 2, F.avg_pool3d: 3, torch.avg_pool1d: 1}
_LP_POOL = {F.lp_pool1d: 1, F.lp_pool2d: 2}
if hasattr(F, "lp_pool3d"):
    _LP_POOL[F.lp_pool3d] = 3


@handles(*_AVG_POOL, symmetric=True)
def avg_pool(mode: ProbeMode, func, args, kwargs):
    x = args[0]
    if not depends(x):
        return real(mode, func, args, kwargs)
    return per_channel(mode, x, _AVG_POOL[func], lambda t: func(t, *args[1:], **kwargs))


@handles(*_LP_POOL, symmetric=True)
def lp_pool(mode: ProbeMode, func, args, kwargs):
    x = args[0]
    if not mode.structural or not depends(x):
        return real(mode, func, args, kwargs)
    nd = _LP_POOL[func]
    kernel, stride = _window(args, kwargs, 2, nd)
    ceil = bool(arg(args, kwargs, 4, "ceil_mode", False))
    return per_channel(
        mode, x, nd, lambda t: window_average(t, kernel, stride, (0,) * nd, (1,) * nd, ceil)
    )


_UNPOOL = {F.max_unpool1d: 1, F.max_unpool2d: 2, F.max_unpool3d: 3}


@handles(*_UNPOOL)
def max_unpool(mode: ProbeMode, func, args, kwargs):
    """Unpooling puts each value at its max's position; structurally it may land anywhere in
    its window: a transposed box filter of the same geometry."""
    x = args[0]
    if not mode.structural or not depends(x):
        return real(mode, func, args, kwargs)
    nd = _UNPOOL[func]
    kernel, stride = _window(args, kwargs, 2, nd)
    padding = _per_axis(arg(args, kwargs, 4, "padding", 0), nd)
    output_size = arg(args, kwargs, 5, "output_size", None)
    default = [
        (n - 1) * s - 2 * p + k for n, s, p, k in zip(x.shape[-nd:], stride, padding, kernel)
    ]
    target = list(output_size)[-nd:] if output_size is not None else default

    def spread(t: torch.Tensor) -> torch.Tensor:
        unbatched = t.dim() == nd + 1
        t = t.unsqueeze(0) if unbatched else t
        channels = t.shape[1]
        ones = torch.ones((channels, 1, *kernel), dtype=t.dtype)
        extra = [max(0, min(want - have, s - 1)) for want, have, s in zip(target, default, stride)]
        y = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[nd - 1](
            t, ones, None, stride, padding, extra, channels
        )
        for axis, size in enumerate(target):
            if y.shape[2 + axis] < size:
                pad = [0, 0] * (nd - 1 - axis) + [0, size - y.shape[2 + axis]]
                y = F.pad(y, pad)
            y = y.narrow(2 + axis, 0, size)
        return y.squeeze(0) if unbatched else y

    return per_channel(mode, x, nd, spread)


@handles(*ops("pad", "constant_pad_nd"), symmetric=True)
def pad(mode: ProbeMode, func, args, kwargs):
    """Padding acts on each channel alike (kept as it is)."""
    x = args[0]
    if not depends(x):
        return real(mode, func, args, kwargs)
    nd = max(1, len(arg(args, kwargs, 1, "pad")) // 2)
    if mode.structural:
        args, kwargs = _finite_pad_value(func, args, kwargs)
    if nd > x.dim() - 1:
        return real(mode, func, args, kwargs)
    return per_channel(mode, x, nd, lambda t: real(mode, func, (t, *args[1:]), kwargs))


def _finite_pad_value(func, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """A constant pad of -inf (TF 'same' max pooling: timm's MaxPool2dSame) would make every
    structural sum infinite; the value of a constant never changes which pixels are seen, so
    structurally it is 0."""
    position = 2 if "constant_pad_nd" in getattr(func, "__name__", "") else 3  # F.pad(x, pad, mode, value)
    value = arg(args, kwargs, position, "value")
    if not isinstance(value, (int, float)) or math.isfinite(value):
        return args, kwargs
    if "value" in kwargs:
        return args, {**kwargs, "value": 0.0}
    return (*args[:position], 0.0, *args[position + 1 :]), kwargs


_RESIZES = {
    F.interpolate: {},
    F.upsample: {},
    F.upsample_nearest: {"mode": "nearest"},
    F.upsample_bilinear: {"mode": "bilinear", "align_corners": True},
}
_RESIZE_ARGS = ("size", "scale_factor", "mode", "align_corners", "recompute_scale_factor", "antialias")


def interpolate_call(func, args: tuple, kwargs: dict) -> dict[str, Any]:
    """The keyword arguments of ``F.interpolate`` that ``func(*args, **kwargs)`` amounts to."""
    call = dict(zip(_RESIZE_ARGS, args[1:]))
    call.update(kwargs)
    call.update(_RESIZES[func])
    return call


def follows_the_input_size(call: dict[str, Any]) -> bool:
    """Whether the index map of an ``F.interpolate`` call changes with the input size, not only
    its length: a fixed output size, ``align_corners=True`` (the ratio is ``(n_in - 1) /
    (n_out - 1)``), or a scale factor recomputed from the sizes."""
    return (
        call.get("size") is not None
        or bool(call.get("align_corners")) and call.get("mode") not in (None, "nearest", "nearest-exact", "area")
        or bool(call.get("recompute_scale_factor"))
    )


def _one_axis(value: Any, nd: int, axis: int, other: Any) -> Any:
    """``value`` (a per-axis size or scale, or one for every axis) with every axis but ``axis``
    set to ``other``."""
    if value is None:
        return None
    values = list(value) if isinstance(value, (list, tuple)) else [value] * nd
    values = values * nd if len(values) == 1 else values
    return tuple(values[a] if a == axis else other for a in range(nd))


def resize_taps(
    call: dict[str, Any], n_in: int, nd: int, axis: int, dtype: torch.dtype
) -> tuple[tuple[int, ...], ...]:
    """The input units each output unit of ``axis`` reads, as PyTorch computes them in ``dtype``.

    Every mode of ``F.interpolate`` resamples each axis on its own, with an index map that
    depends only on that axis's sizes and scale. So one call on ``n_in`` one-hot rows along
    ``axis`` (every other axis one unit long, at scale 1) reads the map off: output ``m`` reads
    input ``i`` where row ``i`` is non-zero at ``m``. Running it in the model's own dtype keeps
    its rounding: a float32 bilinear x3 gives unit 1 a weight of 1.5e-8 on its right-hand
    neighbour, which float64 rounds to exactly 0."""
    thin = dict(call)
    thin["size"] = _one_axis(call.get("size"), nd, axis, 1)
    thin["scale_factor"] = _one_axis(call.get("scale_factor"), nd, axis, 1.0)
    return _read_taps(tuple(sorted(thin.items())), n_in, nd, axis, dtype)


@functools.lru_cache(maxsize=256)
def _read_taps(
    thin: tuple[tuple[str, Any], ...], n_in: int, nd: int, axis: int, dtype: torch.dtype
) -> tuple[tuple[int, ...], ...]:
    """:func:`resize_taps` for one axis's call (cached: a search runs the same resizes at the
    same sizes in every forward)."""
    shape = [n_in, 1] + [1] * nd
    shape[2 + axis] = n_in
    rows = torch.eye(n_in, dtype=dtype).reshape(shape)
    out = F.interpolate(rows, **dict(thin)).reshape(n_in, -1)
    return tuple(tuple(out[:, m].nonzero().flatten().tolist()) for m in range(out.shape[1]))


def gather_average(x: torch.Tensor, dim: int, taps: Sequence[Sequence[int]]) -> torch.Tensor:
    """Output unit ``m`` along ``dim`` = the mean of ``x`` at the units ``taps[m]`` (a
    non-negative surrogate of any resampling with that pattern of non-zero weights)."""
    width = max(len(t) for t in taps)
    index = torch.tensor([list(t) + [t[0]] * (width - len(t)) for t in taps], dtype=torch.long)
    weight = torch.tensor(
        [[1.0 / len(t)] * len(t) + [0.0] * (width - len(t)) for t in taps], dtype=x.dtype
    )
    view = [1] * x.dim()
    view[dim] = len(taps)
    total = None
    for k in range(width):
        term = x.index_select(dim, index[:, k]) * weight[:, k].reshape(view)
        total = term if total is None else total + term
    return total


@handles(*_RESIZES, symmetric=True)
def resize(mode: ProbeMode, func, args, kwargs):
    """Interpolation acts on each channel alike. Structurally, each axis becomes the mean of the
    units PyTorch's own index map reads in the model's dtype (:func:`resize_taps`): the same
    non-zero pattern as the user's model, with non-negative weights (bicubic has negative ones)."""
    x = args[0]
    nd = x.dim() - 2
    if not depends(x) or nd < 1:
        return real(mode, func, args, kwargs)
    call = interpolate_call(func, args, kwargs)
    if follows_the_input_size(call):
        mode.records.size_dependent.append(mode.name)
    if not mode.structural:
        return per_channel(mode, x, nd, lambda t: real(mode, func, (t, *args[1:]), kwargs))
    try:
        taps = [resize_taps(call, n, nd, a, mode.model_dtype) for a, n in enumerate(x.shape[2:])]
    except (RuntimeError, ValueError, TypeError):
        return real(mode, func, args, kwargs)  # let the op itself raise its own error
    if any(not unit for axis_taps in taps for unit in axis_taps):
        return real(mode, func, args, kwargs)

    def resample(t: torch.Tensor) -> torch.Tensor:
        for a, axis_taps in enumerate(taps):
            t = gather_average(t, t.dim() - nd + a, axis_taps)
        return t

    return per_channel(mode, x, nd, resample)


# ---- global spatial reductions --------------------------------------------------------------
_ADAPTIVE = {
    F.adaptive_avg_pool1d: 1,
    F.adaptive_avg_pool2d: 2,
    F.adaptive_avg_pool3d: 3,
    F.adaptive_max_pool1d: 1,
    F.adaptive_max_pool2d: 2,
    F.adaptive_max_pool3d: 3,
    F.adaptive_max_pool1d_with_indices: 1,
    F.adaptive_max_pool2d_with_indices: 2,
    F.adaptive_max_pool3d_with_indices: 3,
    torch.adaptive_avg_pool1d: 1,
    torch.adaptive_max_pool1d: 1,
}
_ADAPTIVE_AVG = {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d}
_ADAPTIVE_MAX_INDICES = {
    1: F.adaptive_max_pool1d_with_indices,
    2: F.adaptive_max_pool2d_with_indices,
    3: F.adaptive_max_pool3d_with_indices,
}


@handles(*_ADAPTIVE, symmetric=True)
def adaptive_pool(mode: ProbeMode, func, args, kwargs):
    """Adaptive max pooling becomes adaptive average pooling; pooling an axis to one unit is a
    global reduction (squeeze-excite, global average pooling)."""
    x = args[0]
    if not depends(x):
        return real(mode, func, args, kwargs)
    nd = _ADAPTIVE[func]
    size = arg(args, kwargs, 1, "output_size")
    sizes = (size,) * nd if isinstance(size, int) or size is None else tuple(size)
    sizes = tuple(x.shape[-nd + i] if s is None else int(s) for i, s in enumerate(sizes))
    pooled_dims = tuple(
        x.dim() - nd + i for i, s in enumerate(sizes) if s == 1 and x.shape[-nd + i] > 1
    )
    if any(s not in (1, n) for s, n in zip(sizes, x.shape[-nd:])):
        mode.records.size_dependent.append(mode.name)  # its windows follow the input size
    is_max = func not in (
        F.adaptive_avg_pool1d,
        F.adaptive_avg_pool2d,
        F.adaptive_avg_pool3d,
        torch.adaptive_avg_pool1d,
    )
    with_indices = func in (
        F.adaptive_max_pool1d_with_indices,
        F.adaptive_max_pool2d_with_indices,
        F.adaptive_max_pool3d_with_indices,
        torch.adaptive_max_pool1d,
    ) or bool(arg(args, kwargs, 2, "return_indices", False) and is_max)
    if mode.structural:
        value = per_channel(mode, x, nd, lambda t: _ADAPTIVE_AVG[nd](t, sizes))
        if with_indices:
            value = (value, _ADAPTIVE_MAX_INDICES[nd](x.detach(), sizes)[1])
    else:
        value = real(mode, func, args, kwargs)
    return mode.cut(value, mode.axes_of(x, pooled_dims))


@handles(*ops(*lay.FLOAT_REDUCTIONS, "norm"), torch.linalg.vector_norm, symmetric=True)
def reduction(mode: ProbeMode, func, args, kwargs):
    """Structurally every reduction is a mean (max and min would pick one pixel). Reducing a
    spatial axis is a global reduction."""
    found = lay.reduction_dims(func, args, kwargs)
    if found is None:  # torch.max(a, b) and friends: elementwise
        return mix(mode, func, args, kwargs)
    x = args[0]
    if not depends(x) or not x.is_floating_point():
        return real(mode, func, args, kwargs)
    dims, keepdim = found
    mode.check_batch(x, dims)
    mode.exact = x.dim() >= 3 and 1 in dims
    value = (
        _mean_reduction(mode, func, args, kwargs, dims, keepdim)
        if mode.structural
        else real(mode, func, args, kwargs)
    )
    return mode.cut(value, mode.axes_of(x, dims))


def _mean_reduction(mode: ProbeMode, func, args, kwargs, dims: tuple[int, ...], keepdim: bool):
    x = args[0]
    base = value_of(x)
    mean = base.mean(dims, keepdim=True) if dims else base * 1.0
    kept = tuple(1 if d in dims else s for d, s in enumerate(x.shape))
    mean = broadcast(mode, mean, kept)
    if not keepdim and dims:
        mean = broadcast(
            mode,
            value_of(mean).squeeze(dims),
            tuple(s for d, s in enumerate(x.shape) if d not in dims),
        )
    if getattr(func, "__name__", "") not in lay.TUPLE_REDUCTIONS:
        return mean
    structure = func(x.detach(), *args[1:], **kwargs)
    if not isinstance(structure, tuple):
        return mean
    from .mode import _rebuild

    return _rebuild(
        structure,
        [mean if isinstance(v, torch.Tensor) and v.is_floating_point() else v for v in structure],
    )


_SOFTMAX = ops("softmax", "log_softmax", "softmin", "_softmax", "_log_softmax")


def _softmax_dim(func, args, kwargs, x: torch.Tensor) -> int:
    dim = arg(args, kwargs, 1, "dim")
    if dim is None:
        dim = 0 if x.dim() in (0, 1, 3) else 1  # PyTorch's legacy implicit choice
    return int(dim) % max(x.dim(), 1)


@handles(*_SOFTMAX, symmetric=True)
def softmax(mode: ProbeMode, func, args, kwargs):
    """Softmax's gradient sums to zero: over channels it becomes identity; over a spatial axis
    it is a global mixing, over the positions inside windows a mixing of each window, made
    positive as ``(x + mean) / 2``."""
    x = args[0]
    if not depends(x):
        return real(mode, func, args, kwargs)
    dim = _softmax_dim(func, args, kwargs, x)
    mode.check_batch(x, (dim,))
    axes = mode.axes_of(x, (dim,))
    if mode.structural:
        if not axes and not mode.mixes(x, (dim,), "spatial"):  # over channels: identity
            return x
        base = value_of(x)  # over positions (inside windows too): every one of them is read
        value = broadcast(mode, (base + base.mean(dim, keepdim=True)) / 2, x.shape)
    else:
        value = real(mode, func, args, kwargs)
    return mode.cut(value, axes)


@handles(*ops("cumsum", "cumsum_", "cumprod", "cumprod_", "logcumsumexp", "cummax", "cummin"))
def cumulative(mode: ProbeMode, func, args, kwargs):
    x = args[0]
    if not depends(x):
        return real(mode, func, args, kwargs)
    dim = int(arg(args, kwargs, 1, "dim")) % x.dim()
    mode.check_batch(x, (dim,))
    if mode.structural:
        total = x.cumsum(dim)
        name = getattr(func, "__name__", "")
        value = (total, func(x.detach(), dim)[1]) if name in ("cummax", "cummin") else total
    else:
        value = real(mode, func, args, kwargs)
    return mode.cut(value, mode.axes_of(x, (dim,)))


# ---- normalisation --------------------------------------------------------------------------
def _affine(y: torch.Tensor, weight: Any, bias: Any, channel_dim: int | None) -> torch.Tensor:
    shape = [1] * y.dim()
    if channel_dim is None:
        if isinstance(weight, torch.Tensor):
            y = y * weight
        if isinstance(bias, torch.Tensor):
            y = y + bias
        return y
    shape[channel_dim] = y.shape[channel_dim]
    if isinstance(weight, torch.Tensor):
        y = y * weight.reshape(shape)
    if isinstance(bias, torch.Tensor):
        y = y + bias.reshape(shape)
    return y


def _normalised(
    mode: ProbeMode,
    x: torch.Tensor,
    dims: tuple[int, ...],
    eps: float,
    axes: frozenset[int],
    rms: bool = False,
) -> torch.Tensor:
    """``x`` normalised over ``dims`` with statistics cut from the gradient (real weights, local)."""
    if rms:
        return x / torch.sqrt(mode.cut(x.pow(2).mean(dims, keepdim=True), axes) + eps)
    mean = mode.cut(x.mean(dims, keepdim=True), axes)
    var = mode.cut(x.var(dims, keepdim=True, unbiased=False), axes)
    return (x - mean) / torch.sqrt(var + eps)


def _norm_surrogate(
    mode: ProbeMode, x: torch.Tensor, dims: tuple[int, ...], axes: frozenset[int]
) -> torch.Tensor:
    """``(x + mean over dims) / 2``: every unit sees the statistic's whole extent, positively."""
    base = value_of(x)
    stat = mode.cut(base.mean(dims, keepdim=True), axes)
    return broadcast(mode, (base + stat) / 2, x.shape)


@handles(*ops("group_norm"), symmetric=True)
def group_norm(mode: ProbeMode, func, args, kwargs):
    """Statistics over each sample's channels and positions: a global side path."""
    x = args[0]
    if not depends(x) or x.dim() < 3:
        return real(mode, func, args, kwargs)
    stat_dims = tuple(range(1, x.dim()))
    axes = mode.axes_of(x, stat_dims)
    if mode.structural:
        return _norm_surrogate(mode, x, stat_dims, axes)
    if not (mode.local and axes):
        return real(mode, func, args, kwargs)
    groups = int(arg(args, kwargs, 1, "num_groups"))
    grouped = x.reshape(x.shape[0], groups, -1)
    y = _normalised(mode, grouped, (2,), float(arg(args, kwargs, 4, "eps", 1e-5)), axes).reshape(
        x.shape
    )
    return _affine(y, arg(args, kwargs, 2, "weight"), arg(args, kwargs, 3, "bias"), 1)


@handles(*ops("instance_norm"), symmetric=True)
def instance_norm(mode: ProbeMode, func, args, kwargs):
    """Statistics over each channel's positions (unless running statistics are used)."""
    x = args[0]
    if not depends(x) or x.dim() < 3:
        return real(mode, func, args, kwargs)
    if not arg(args, kwargs, 5, "use_input_stats", True):
        return x if mode.structural else real(mode, func, args, kwargs)
    spatial = tuple(range(2, x.dim()))
    axes = mode.axes_of(x, spatial)
    if mode.structural:
        return _norm_surrogate(mode, x, spatial, axes)
    if not (mode.local and axes):
        return real(mode, func, args, kwargs)
    y = _normalised(mode, x, spatial, float(arg(args, kwargs, 7, "eps", 1e-5)), axes)
    return _affine(y, arg(args, kwargs, 3, "weight"), arg(args, kwargs, 4, "bias"), 1)


@handles(*ops("layer_norm", "rms_norm"), symmetric=True)
def layer_norm(mode: ProbeMode, func, args, kwargs):
    """Statistics over the last dims: a global side path only if those dims are spatial (a
    LayerNorm over channels, as in channels-last ConvNeXt blocks, is local)."""
    x = args[0]
    if not depends(x):
        return real(mode, func, args, kwargs)
    shape = arg(args, kwargs, 1, "normalized_shape")
    count = 1 if isinstance(shape, int) else len(shape)
    dims = tuple(range(x.dim() - count, x.dim()))
    axes = mode.axes_of(x, dims)
    if mode.structural:  # statistics over positions (inside windows too) reach every one of them
        return _norm_surrogate(mode, x, dims, axes) if axes or mode.mixes(x, dims, "spatial") else x
    if not (mode.local and axes):
        return real(mode, func, args, kwargs)
    rms = getattr(func, "__name__", "") == "rms_norm"
    eps = arg(args, kwargs, 3 if rms else 4, "eps", None) or 1e-5
    y = _normalised(mode, x, dims, float(eps), axes, rms=rms)
    weight = arg(args, kwargs, 2, "weight")
    bias = None if rms else arg(args, kwargs, 3, "bias")
    return _affine(y, weight, bias, None)


@handles(*ops("normalize", owners=(F,)), symmetric=True)
def normalize(mode: ProbeMode, func, args, kwargs):
    x = args[0]
    if not depends(x):
        return real(mode, func, args, kwargs)
    dim = int(arg(args, kwargs, 2, "dim", 1)) % x.dim()
    mode.check_batch(x, (dim,))
    axes = mode.axes_of(x, (dim,))
    if mode.structural:
        return _norm_surrogate(mode, x, (dim,), axes) if axes or mode.mixes(x, (dim,), "spatial") else x
    if not (mode.local and axes):
        return real(mode, func, args, kwargs)
    p = float(arg(args, kwargs, 1, "p", 2.0))
    eps = float(arg(args, kwargs, 3, "eps", 1e-12))
    return x / mode.cut(x.norm(p, dim, keepdim=True).clamp_min(eps), axes)


# ---- recurrences ----------------------------------------------------------------------------
@handles(*lay.RECURRENCES, symmetric=True)
def recurrent(mode: ProbeMode, func, args, kwargs):
    """An RNN / LSTM / GRU over a sequence (``torch.lstm(input, hx, params, has_biases,
    num_layers, dropout, train, bidirectional, batch_first)``, and the same for the others).
    Step t's state is computed from steps 0..t (a backward direction's from t..L-1), and the
    final states from the whole sequence. Structurally, per layer and direction: the cumulative
    sum along the sequence of the mean over the features (a real recurrence's gradient decays
    with the distance and underflows; this one does not), the directions side by side in the
    features, the next layer reading the mean of both. Along a spatial axis a global mixing
    (cut in local mode). A packed sequence (its lengths are data) runs as it is."""
    x, hx = args[0], args[1]
    packed = isinstance(hx, torch.Tensor) and not hx.is_floating_point()  # (data, batch_sizes, ...)
    if not depends(x) or packed or x.dim() != 3:
        return real(mode, func, args, kwargs)
    batch_first = bool(lay.recurrence_arg(args, kwargs, "batch_first", False))
    seq, batch = (1, 0) if batch_first else (0, 1)
    mode.check_batch(x, (seq,))
    axes = mode.axes_of(x, (seq,))
    if not mode.structural:
        return mode.cut(real(mode, func, args, kwargs), axes)
    states = list(hx) if isinstance(hx, (tuple, list)) else [hx]
    bidirectional = bool(lay.recurrence_arg(args, kwargs, "bidirectional", False))
    step = value_of(x).mean(-1, keepdim=True).expand(*x.shape[:-1], 1)
    initial = [value_of(h).mean((0, 2)) for h in states if depends(h)]  # every step reads them
    if initial:
        shape = [x.shape[batch] if d == batch else 1 for d in range(3)]
        step = step + (sum(initial) / len(initial)).reshape(shape)
    whole = step.sum(seq, keepdim=True)  # what every final state reads
    directions = [step]
    for _ in range(int(lay.recurrence_arg(args, kwargs, "num_layers", 1))):
        directions = [step.cumsum(seq)]
        if bidirectional:
            directions.append(step.flip(seq).cumsum(seq).flip(seq))
        step = sum(directions) / len(directions)
    width = states[0].shape[-1]  # features per direction (an LSTM's projection size)
    if len(directions) == 1:
        out = broadcast(mode, directions[0], (*x.shape[:-1], width))
    else:
        out = torch.cat([d.expand(*x.shape[:-1], width) for d in directions], -1)
    finals = whole.reshape(1, x.shape[batch], 1)
    results = [out, *(broadcast(mode, finals, h.shape) for h in states)]
    # laid out here, not left to the mode: the cut below reads each tensor's layout, and a
    # final state's cannot be told from the tensor alone
    layouts = lay.propagate(func, args, kwargs, tuple(results))
    for t, layout in zip(results, layouts or ()):
        lay.attach(t, layout)
    mode.exact = True  # computed from the mean over every feature: no blend
    return mode.cut(tuple(results), axes)


# ---- attention ------------------------------------------------------------------------------
@handles(F.scaled_dot_product_attention)
def attention(mode: ProbeMode, func, args, kwargs):
    """Every query sees every key: a global mixing of the token axis (cut in local mode).
    Structurally: ``mean(q) + mean(k) + mean(v)``, positive and fully connected."""
    q, k, v = (arg(args, kwargs, i, n) for i, n in enumerate(("query", "key", "value")))
    if not any(depends(t) for t in (q, k, v)):
        return real(mode, func, args, kwargs)
    for t in (k, v):
        if depends(t):
            mode.check_batch(t, (t.dim() - 2,))
    axes = frozenset().union(*(mode.axes_of(t, (t.dim() - 2,)) for t in (q, k, v) if depends(t)))
    shape = (*q.shape[:-1], v.shape[-1])
    if mode.structural:
        parts = [t.mean(-1, keepdim=True) for t in (q,) if depends(t)]
        parts += [t.mean((-2, -1), keepdim=True) for t in (k, v) if depends(t)]
        try:
            broadcast_shape(*(p.shape for p in parts), shape)
            value = broadcast(mode, sum(parts[1:], parts[0]) / len(parts), shape)
        except (
            RuntimeError
        ):  # grouped-query heads that do not broadcast: the op on positive operands
            value = real(mode, func, _positive_operands(tuple(args)), kwargs)
    else:
        value = real(mode, func, args, kwargs)
    return mode.cut(value, axes)


@handles(F.multi_head_attention_forward)
def multi_head_attention(mode: ProbeMode, func, args, kwargs):
    """``nn.MultiheadAttention``: like :func:`attention`, on (sequence, batch, features) inputs."""
    q, k, v = args[0], args[1], args[2]
    if not any(depends(t) for t in (q, k, v)):
        return real(mode, func, args, kwargs)
    for t in (k, v):
        if depends(t):
            mode.check_batch(t, (0,))
    axes = frozenset().union(*(mode.axes_of(t, (0,)) for t in (q, k, v) if depends(t)))
    if not mode.structural:
        out, weights = real(mode, func, args, kwargs)
        return mode.cut(out, axes), weights
    parts = [t.mean(-1, keepdim=True) for t in (q,) if depends(t)]
    parts += [t.mean((0, -1), keepdim=True) for t in (k, v) if depends(t)]
    out = broadcast(mode, sum(parts[1:], parts[0]) / len(parts), q.shape)
    weights = None
    if arg(args, kwargs, 15, "need_weights", True):
        batched = q.dim() == 3
        heads = int(arg(args, kwargs, 4, "num_heads"))
        average = arg(args, kwargs, 23, "average_attn_weights", True)
        shape = (
            ((q.shape[1],) if batched else ())
            + (() if average else (heads,))
            + (q.shape[0], k.shape[0])
        )
        weights = torch.full(shape, 1.0 / k.shape[0], dtype=torch.float64)
    return mode.cut(out, axes), weights
