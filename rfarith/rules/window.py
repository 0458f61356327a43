"""Rules for ops that slide, resample or shift along spatial axes.

Derivations (one axis, unit m of the output, units of the input map):

- conv / pool (kernel k, stride s, dilation d, left padding p): m reads ``m*s - p + d*t``,
  t = 0..k-1: the guide's ``j' = j*s``, ``r' = r + d*(k-1)*j``, ``start' = start + (d*(k-1)/2 - p)*j``.
- transposed conv: input unit i writes output ``i*s - p + d*t``, so output m = q*s + r reads
  the units ``(r + p - d*t) / s`` that are integers: period s in the output.
- pad / crop: m reads ``m - p_left`` (negative padding crops).
- nearest (scale ``a/b`` = input units per output unit, reduced): m reads ``floor(m*a/b)``;
  ``m + b`` reads ``a`` units further, so the period is b. 'nearest-exact' reads
  ``floor((m + 1/2)*a/b)``; linear modes read ``floor(x)`` and ``floor(x)+1`` unless x is an
  integer (the second weight is then exactly 0), with ``x = (m + 1/2)*a/b - 1/2`` or, with
  ``align_corners``, ``x = m*(n_in-1)/(n_out-1)``; cubic modes read ``floor(x)-1 .. floor(x)+2``.
  The clamping PyTorch applies at the borders is a border effect, outside the periodic extension.
- adaptive pooling: m reads ``floor(m*n_in/n_out) .. ceil((m+1)*n_in/n_out) - 1``; to one unit
  it is a global reduction.
- pixel shuffle (factor r): m reads unit ``floor(m/r)``; pixel unshuffle: units ``r*m .. r*m+r-1``
  (spread over channels, which every later op may mix).
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from .. import axisfield as af
from ..errors import UnsupportedOp
from ..value import TokenDim, prefix_of
from . import resize
from .common import AxisMap, WindowMap, map_trailing_axes, require_value, windowed
from .params import conv_pad_left, pad_pairs, per_axis
from .registry import Call, rule

_CONV_ND = {nn.Conv1d: 1, nn.Conv2d: 2, nn.Conv3d: 3}
_CONV_FN_ND = {F.conv1d: 1, F.conv2d: 2, F.conv3d: 3, torch.conv1d: 1, torch.conv2d: 2, torch.conv3d: 3}


def _conv_nd(call: Call) -> int:
    if call.module is not None:
        return len(call.module.kernel_size)
    return _CONV_FN_ND[call.target]


# ---- convolution ----------------------------------------------------------------------------
@rule(nn.Conv1d, nn.Conv2d, nn.Conv3d, *_CONV_FN_ND)
def conv(call: Call):
    x = require_value(call)
    nd = _conv_nd(call)
    if call.module is not None:
        m = call.module
        kernel, stride, dilation = tuple(m.kernel_size), tuple(m.stride), tuple(m.dilation)
        padding = m.padding
        border = m.padding_mode
    else:
        kernel = tuple(call.arg(1, "weight").shape[2:])
        stride = per_axis(call.arg(3, "stride", 1), nd, "stride")
        padding = call.arg(4, "padding", 0)
        dilation = per_axis(call.arg(5, "dilation", 1), nd, "dilation")
        border = "zeros"
    pad_left = conv_pad_left(padding, kernel, dilation)
    return map_trailing_axes(call, x, nd, windowed(kernel, stride, dilation, pad_left, border))


# ---- transposed convolution -----------------------------------------------------------------
def _transposed_map(kernel: int, stride: int, dilation: int, padding: int) -> AxisMap:
    sources = tuple(
        tuple((r + padding - dilation * t) // stride for t in range(kernel) if (r + padding - dilation * t) % stride == 0)
        for r in range(stride)
    )
    return lambda f, _n, n_out, _e: af.resample(f, stride, 1, sources, n_out)


_TCONV_FN_ND = {
    F.conv_transpose1d: 1,
    F.conv_transpose2d: 2,
    F.conv_transpose3d: 3,
    torch.conv_transpose1d: 1,
    torch.conv_transpose2d: 2,
    torch.conv_transpose3d: 3,
}


@rule(nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, *_TCONV_FN_ND)
def conv_transpose(call: Call):
    x = require_value(call)
    if call.module is not None:
        m = call.module
        nd = len(m.kernel_size)
        kernel, stride, padding, dilation = m.kernel_size, m.stride, m.padding, m.dilation
    else:
        nd = _TCONV_FN_ND[call.target]
        kernel = tuple(call.arg(1, "weight").shape[2:])
        stride = per_axis(call.arg(3, "stride", 1), nd, "stride")
        padding = per_axis(call.arg(4, "padding", 0), nd, "padding")
        dilation = per_axis(call.arg(7, "dilation", 1), nd, "dilation")
    maps = [_transposed_map(k, s, d, p) for k, s, d, p in zip(kernel, stride, dilation, padding)]
    return map_trailing_axes(call, x, nd, maps)


_UNPOOL = {nn.MaxUnpool1d: 1, nn.MaxUnpool2d: 2, nn.MaxUnpool3d: 3}
_UNPOOL_FN = {F.max_unpool1d: 1, F.max_unpool2d: 2, F.max_unpool3d: 3}


@rule(*_UNPOOL, *_UNPOOL_FN)
def max_unpool(call: Call):
    """Max unpooling (kernel k, stride s, padding p) puts input unit i at the position its
    ``indices`` name, one of its pooling window's ``i*s - p + t``, t = 0..k-1. Which one depends
    on the data; the units that may receive i are those of a transposed convolution of the same
    geometry (dilation 1), so its index map is that one."""
    x = require_value(call)
    if call.module is not None:
        m = call.module
        nd = _UNPOOL[next(c for c in type(m).__mro__ if c in _UNPOOL)]
        kernel, stride, padding = m.kernel_size, m.stride, m.padding
    else:
        nd = _UNPOOL_FN[call.target]
        kernel, stride, padding = call.arg(2, "kernel_size"), call.arg(3, "stride", None), call.arg(4, "padding", 0)
    kernel = per_axis(kernel, nd, "kernel_size")
    stride = kernel if stride is None else per_axis(stride, nd, "stride")
    padding = per_axis(padding, nd, "padding")
    return map_trailing_axes(call, x, nd, [_transposed_map(k, s, 1, p) for k, s, p in zip(kernel, stride, padding)])


# ---- pooling --------------------------------------------------------------------------------
_MAXPOOL = {nn.MaxPool1d: 1, nn.MaxPool2d: 2, nn.MaxPool3d: 3}
_AVGPOOL = {nn.AvgPool1d: 1, nn.AvgPool2d: 2, nn.AvgPool3d: 3}
_LPPOOL = {nn.LPPool1d: 1, nn.LPPool2d: 2}
if hasattr(nn, "LPPool3d"):
    _LPPOOL[nn.LPPool3d] = 3
_MAXPOOL_FN = {
    F.max_pool1d: 1, F.max_pool2d: 2, F.max_pool3d: 3,
    torch.max_pool1d: 1, torch.max_pool2d: 2, torch.max_pool3d: 3,
    F.max_pool1d_with_indices: 1, F.max_pool2d_with_indices: 2, F.max_pool3d_with_indices: 3,
}
_AVGPOOL_FN = {F.avg_pool1d: 1, F.avg_pool2d: 2, F.avg_pool3d: 3, torch.avg_pool1d: 1}
_LPPOOL_FN = {F.lp_pool1d: 1, F.lp_pool2d: 2}
if hasattr(F, "lp_pool3d"):
    _LPPOOL_FN[F.lp_pool3d] = 3


def _pool_window(kernel, stride, padding, dilation, nd):
    kernel = per_axis(kernel, nd, "kernel_size")
    stride = kernel if stride is None or (not isinstance(stride, int) and len(stride) == 0) else per_axis(stride, nd, "stride")
    return kernel, stride, per_axis(dilation, nd, "dilation"), per_axis(padding, nd, "padding")


@rule(*_MAXPOOL, *_AVGPOOL, *_LPPOOL, *_MAXPOOL_FN, *_AVGPOOL_FN, *_LPPOOL_FN)
def pool(call: Call):
    x = require_value(call)
    m = call.module
    if m is not None:
        nd = {**_MAXPOOL, **_AVGPOOL, **_LPPOOL}[next(c for c in type(m).__mro__ if c in {**_MAXPOOL, **_AVGPOOL, **_LPPOOL})]
        window = _pool_window(m.kernel_size, m.stride, getattr(m, "padding", 0), getattr(m, "dilation", 1), nd)
    elif call.target in _MAXPOOL_FN:
        nd = _MAXPOOL_FN[call.target]
        window = _pool_window(call.arg(1, "kernel_size"), call.arg(2, "stride", None),
                              call.arg(3, "padding", 0), call.arg(4, "dilation", 1), nd)
    elif call.target in _AVGPOOL_FN:
        nd = _AVGPOOL_FN[call.target]
        window = _pool_window(call.arg(1, "kernel_size"), call.arg(2, "stride", None), call.arg(3, "padding", 0), 1, nd)
    else:
        nd = _LPPOOL_FN[call.target]
        window = _pool_window(call.arg(2, "kernel_size"), call.arg(3, "stride", None), 0, 1, nd)
    kernel, stride, dilation, pad_left = window
    out = map_trailing_axes(call, x, nd, windowed(kernel, stride, dilation, pad_left))
    return (out, out) if isinstance(call.out, tuple) else out


# ---- adaptive pooling -----------------------------------------------------------------------
class AdaptiveMap:
    """Adaptive pooling's index map (an AxisMap): to one unit, a reduction of the whole dim."""

    def __call__(self, f: af.AxisField, n_in: int, n_out: int, extent: int) -> af.AxisField:
        if n_out == 1:
            return af.hull_of_units(f, 1, extent)
        g = math.gcd(n_in, n_out)
        a, b = n_in // g, n_out // g
        sources = tuple(tuple(range((p * a) // b, -((-(p + 1) * a) // b))) for p in range(b))
        return af.resample(f, b, a, sources, n_out)

    @staticmethod
    def is_identity(n_in: int, n_out: int) -> bool:
        return n_in == n_out

    @staticmethod
    def covers_all(_n_in: int, n_out: int) -> bool:
        return n_out == 1


adaptive_map = AdaptiveMap()


_ADAPTIVE = {
    nn.AdaptiveAvgPool1d: 1, nn.AdaptiveAvgPool2d: 2, nn.AdaptiveAvgPool3d: 3,
    nn.AdaptiveMaxPool1d: 1, nn.AdaptiveMaxPool2d: 2, nn.AdaptiveMaxPool3d: 3,
}
_ADAPTIVE_FN = {
    F.adaptive_avg_pool1d: 1, F.adaptive_avg_pool2d: 2, F.adaptive_avg_pool3d: 3,
    F.adaptive_max_pool1d: 1, F.adaptive_max_pool2d: 2, F.adaptive_max_pool3d: 3,
    torch.adaptive_avg_pool1d: 1, torch.adaptive_max_pool1d: 1,
    F.adaptive_max_pool1d_with_indices: 1, F.adaptive_max_pool2d_with_indices: 2,
    F.adaptive_max_pool3d_with_indices: 3,
}


@rule(*_ADAPTIVE, *_ADAPTIVE_FN)
def adaptive_pool(call: Call):
    x = require_value(call)
    if call.module is not None:
        nd = next(v for c, v in _ADAPTIVE.items() if isinstance(call.module, c))
    else:
        nd = _ADAPTIVE_FN[call.target]
    out = map_trailing_axes(call, x, nd, [adaptive_map] * nd)
    return (out, out) if isinstance(call.out, tuple) else out


# ---- padding and cropping -------------------------------------------------------------------
def _shift_map(pad_left: int, border: str = "zeros") -> AxisMap:
    return WindowMap(1, 1, 1, pad_left, border)


_PAD_BORDERS = {"constant": "zeros", "zeros": "zeros", "reflect": "reflect", "replicate": "replicate", "circular": "circular"}


def _pad(call: Call, x, pad, mode: str) -> object:
    if mode not in _PAD_BORDERS:
        raise UnsupportedOp(call.node, call.op, f"padding mode {mode!r}")
    border = _PAD_BORDERS[mode]
    pairs = pad_pairs(pad, x.rank)
    tokens = _tokens_in_front(x, pairs) if mode == "constant" else None
    if tokens is not None:
        return tokens
    first = min(pairs)
    nd = x.rank - first
    maps = [_shift_map(pairs[d][0] if d in pairs else 0, border) for d in range(first, x.rank)]
    return _without_channel_mixing(call, x, nd, maps)


def _tokens_in_front(x, pairs: dict[int, tuple[int, int]]):
    """A constant pad of k positions in front of a token dim (flattened h·w, CoaT's conv
    position encoding making room for its class token): k extra tokens that are no unit of
    the grid, as a class token is (:class:`~rfarith.value.TokenDim`). None for any other pad."""
    padded = {d: p for d, p in pairs.items() if p != (0, 0)}
    if len(padded) != 1:
        return None
    (d, (front, back)), = padded.items()
    dim = x.dims[d]
    axes = {int(a) for a, _ in dim if a is not None}
    if back != 0 or front <= 0 or not (prefix_of(dim) or len(axes) > 1):
        return None
    tokens = TokenDim(tuple(dim), prefix_of(dim) + front)
    return replace(x, dims=x.dims[:d] + (tokens,) + x.dims[d + 1 :])


def _without_channel_mixing(call, x, nd, maps, marks_global: bool = True):
    """Like map_trailing_axes, for ops that do not mix the dim in front (pads, crops, resizes)."""
    return map_trailing_axes(call, x, nd, maps, mixes_front=False, marks_global=marks_global)


_PAD_MODULES = [
    nn.ZeroPad1d, nn.ZeroPad2d, nn.ZeroPad3d,
    nn.ConstantPad1d, nn.ConstantPad2d, nn.ConstantPad3d,
    nn.ReflectionPad1d, nn.ReflectionPad2d, nn.ReflectionPad3d,
    nn.ReplicationPad1d, nn.ReplicationPad2d, nn.ReplicationPad3d,
]
for _name in ("CircularPad1d", "CircularPad2d", "CircularPad3d"):
    if hasattr(nn, _name):
        _PAD_MODULES.append(getattr(nn, _name))


@rule(*_PAD_MODULES, F.pad, torch.constant_pad_nd)
def pad(call: Call):
    x = require_value(call)
    if call.module is not None:
        amounts, mode = call.module.padding, _module_pad_mode(call.module)
    else:
        amounts, mode = call.arg(1, "pad"), call.arg(2, "mode", "constant")
    return _pad(call, x, tuple(amounts), mode)


def _module_pad_mode(module) -> str:
    name = type(module).__name__
    for prefix, mode in (("Reflection", "reflect"), ("Replication", "replicate"), ("Circular", "circular")):
        if name.startswith(prefix):
            return mode
    return "constant"


def crop(call: Call, x, dim: int, start: int, step: int):
    """Value of ``x`` sliced along ``dim`` from ``start`` with ``step`` (ends come from shapes)."""
    nd = x.rank - dim
    maps = [_shift_map(0)] * nd
    maps[0] = lambda f, _n, n_out, _e: af.window(f, 1, step, 1, -start, n_out)
    return _without_channel_mixing(call, x, nd, maps)


@rule(torch.narrow, "narrow")
def narrow(call: Call):
    x = require_value(call)
    dim = call.arg(1, "dim") % x.rank
    start = int(call.arg(2, "start"))
    size = call.input.shape[dim]
    return crop(call, x, dim, start % size if start < 0 else start, 1)


# ---- resampling -----------------------------------------------------------------------------
_MODES = ("nearest", "nearest-exact", "linear", "bilinear", "trilinear", "bicubic", "area")


def _scales(scale_factor, nd: int) -> tuple:
    if scale_factor is None:
        return (None,) * nd
    if isinstance(scale_factor, (list, tuple)):
        return tuple(scale_factor) * (nd if len(scale_factor) == 1 else 1)
    return (scale_factor,) * nd


def _interpolate(call: Call, size, scale_factor, mode, align_corners, recompute, antialias):
    x = require_value(call)
    nd = x.rank - 2
    if mode not in _MODES:
        raise UnsupportedOp(call.node, call.op, f"interpolation mode {mode!r}")
    in_shape = tuple(call.input.shape[2:])
    out_shape = call.out_shape[2:]
    scales = _scales(scale_factor, nd)
    maps = []
    rounded = False
    for i in range(nd):
        if mode == "area":
            maps.append(adaptive_map)
            continue
        if antialias and out_shape[i] < in_shape[i] and mode in ("bilinear", "bicubic"):
            raise UnsupportedOp(call.node, call.op, "antialiased downsampling (its taps widen with the scale)")
        axis = resize.AxisResize(mode, bool(align_corners), scales[i], bool(recompute), call.input.dtype, nd, i)
        maps.append(axis.field_map)
        rounded = rounded or axis.rounds(in_shape[i], out_shape[i])
    out = _without_channel_mixing(call, x, nd, maps, marks_global=mode == "area")
    return replace(out, flags=out.flags | {"rounding"}) if rounded else out


@rule(F.interpolate, F.upsample, F.upsample_nearest, F.upsample_bilinear)
def interpolate(call: Call):
    if call.target is F.upsample_nearest:
        return _interpolate(call, call.arg(1, "size", None), call.arg(2, "scale_factor", None), "nearest", None, None, False)
    if call.target is F.upsample_bilinear:
        return _interpolate(call, call.arg(1, "size", None), call.arg(2, "scale_factor", None), "bilinear", True, None, False)
    return _interpolate(
        call,
        call.arg(1, "size", None),
        call.arg(2, "scale_factor", None),
        call.arg(3, "mode", "nearest"),
        call.arg(4, "align_corners", None),
        call.arg(5, "recompute_scale_factor", None),
        call.arg(6, "antialias", False),
    )


@rule(nn.Upsample)
def upsample_module(call: Call):
    m = call.module
    return _interpolate(call, m.size, m.scale_factor, m.mode, m.align_corners, getattr(m, "recompute_scale_factor", None), False)


# ---- pixel shuffle --------------------------------------------------------------------------
@rule(nn.PixelShuffle, F.pixel_shuffle, torch.pixel_shuffle)
def pixel_shuffle(call: Call):
    x = require_value(call)
    r = call.module.upscale_factor if call.module is not None else int(call.arg(1, "upscale_factor"))
    step = lambda f, _n, n_out, _e: af.resample(f, r, 1, ((0,),) * r, n_out)  # noqa: E731
    return map_trailing_axes(call, x, 2, [step, step])


@rule(nn.PixelUnshuffle, F.pixel_unshuffle, torch.pixel_unshuffle)
def pixel_unshuffle(call: Call):
    x = require_value(call)
    r = call.module.downscale_factor if call.module is not None else int(call.arg(1, "downscale_factor"))
    return map_trailing_axes(call, x, 2, windowed((r, r), (r, r), (1, 1), (0, 0)))
