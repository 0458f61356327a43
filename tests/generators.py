"""Hypothesis strategies that build random valid conv / pool networks.

A network is a *spec* (a small tree of layers, chains, residual adds and concatenations) turned
into an ``nn.Module`` by :func:`build`. Shapes stay valid by construction: every layer is drawn
knowing the size of its input, and the branches of a merge are padded or cropped (asymmetrically,
so branches end up centred differently) to equal sizes. Networks are 1-D, 2-D or 3-D with
non-square everything, in a module-based or a functional forward.

With ``decoders=True`` the layers also upsample (transposed convolution with any stride,
padding, output padding and dilation; ``nn.Upsample`` / ``F.interpolate`` in every mode, with
integer and fractional scale factors or a ``size``; ``PixelShuffle``), and chains may hold
U-Net-style blocks: a strided encoder, an inner chain, an upsampling decoder, cropped or padded
back onto the block's input and merged with a skip path by addition or concatenation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from hypothesis import strategies as st
from torch import nn

# ---- specs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Conv:
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    padding: tuple[int, ...] | str
    padding_mode: str = "zeros"


@dataclass(frozen=True)
class Pool:
    kind: str  # "max" or "avg"
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    ceil_mode: bool


@dataclass(frozen=True)
class Pad:
    """F.pad amounts per axis as (left, right); negative amounts crop."""

    amounts: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class ConvT:
    """A transposed convolution."""

    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    output_padding: tuple[int, ...]
    dilation: tuple[int, ...]


@dataclass(frozen=True)
class Resize:
    """``F.interpolate`` with a per-axis ``scale`` or a ``size`` (one of them is None)."""

    mode: str
    scale: tuple[float, ...] | None
    size: tuple[int, ...] | None
    align_corners: bool | None


@dataclass(frozen=True)
class Shuffle:
    """A 1x1 convolution to ``channels * factor**2`` channels, then ``PixelShuffle(factor)`` (2-D)."""

    factor: int


@dataclass(frozen=True)
class Chain:
    layers: tuple


@dataclass(frozen=True)
class Add:
    branches: tuple


@dataclass(frozen=True)
class Concat:
    branches: tuple


@dataclass
class Net:
    spec: Chain
    input_size: tuple[int, ...]
    functional: bool
    channels: int = 2
    notes: list[str] = field(default_factory=list)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (1, self.channels, *self.input_size)


# ---- output sizes -----------------------------------------------------------------------------


def conv_out(n: int, k: int, s: int, d: int, p_left: int, p_right: int) -> int:
    return (n + p_left + p_right - d * (k - 1) - 1) // s + 1


def pool_out(n: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    span = n + 2 * p - d * (k - 1) - 1
    out = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= n + p:  # PyTorch: the last window must start inside
        out -= 1
    return out


def size_after(layer, sizes: tuple[int, ...]) -> tuple[int, ...]:
    if isinstance(layer, Conv):
        if layer.padding == "same":
            return sizes
        return tuple(
            conv_out(n, k, s, d, p, p)
            for n, k, s, d, p in zip(sizes, layer.kernel, layer.stride, layer.dilation, layer.padding)
        )
    if isinstance(layer, Pool):
        return tuple(
            pool_out(n, k, s, p, d, layer.ceil_mode)
            for n, k, s, p, d in zip(sizes, layer.kernel, layer.stride, layer.padding, layer.dilation)
        )
    if isinstance(layer, Pad):
        return tuple(n + left + right for n, (left, right) in zip(sizes, layer.amounts))
    if isinstance(layer, ConvT):
        return tuple(
            (n - 1) * s - 2 * p + d * (k - 1) + o + 1
            for n, k, s, p, o, d in zip(
                sizes, layer.kernel, layer.stride, layer.padding, layer.output_padding, layer.dilation
            )
        )
    if isinstance(layer, Resize):
        if layer.size is not None:
            return layer.size
        return tuple(math.floor(n * f) for n, f in zip(sizes, layer.scale))
    if isinstance(layer, Shuffle):
        return tuple(n * layer.factor for n in sizes)
    raise TypeError(layer)


# ---- strategies ---------------------------------------------------------------------------------


@st.composite
def conv_layers(draw, sizes: tuple[int, ...]):
    nd = len(sizes)
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(nd))
    dilation = tuple(draw(st.integers(1, 3)) if k > 1 else 1 for k in kernel)
    if draw(st.booleans()) and draw(st.booleans()):
        stride = (1,) * nd
        padding: tuple[int, ...] | str = "same"
    else:
        stride = tuple(draw(st.integers(1, 3)) for _ in range(nd))
        padding = tuple(draw(st.integers(0, d * (k - 1))) for k, d in zip(kernel, dilation))
    mode = draw(st.sampled_from(["zeros", "zeros", "reflect", "replicate", "circular"]))
    if mode == "reflect" and padding != "same" and any(p >= n for p, n in zip(padding, sizes)):
        mode = "zeros"
    if mode != "zeros" and padding == "same":
        mode = "zeros"
    return Conv(kernel, stride, dilation, padding, mode)


@st.composite
def pool_layers(draw, sizes: tuple[int, ...]):
    nd = len(sizes)
    kind = draw(st.sampled_from(["max", "avg"]))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    padding = tuple(draw(st.integers(0, k // 2)) for k in kernel)
    dilation = tuple(draw(st.integers(1, 2)) if kind == "max" and k > 1 else 1 for k in kernel)
    ceil_mode = draw(st.booleans())
    return Pool(kind, kernel, stride, padding, dilation, ceil_mode)


@st.composite
def pad_layers(draw, sizes: tuple[int, ...]):
    amounts = tuple((draw(st.integers(-1, 3)), draw(st.integers(-1, 3))) for _ in sizes)
    return Pad(amounts)


def _fits(layer, sizes: tuple[int, ...]) -> bool:
    """Whether PyTorch accepts ``layer`` on an input of ``sizes`` (checked by running it)."""
    out = size_after(layer, sizes)
    if not all(o >= 1 for o in out):
        return False
    module = _Layer(layer, len(sizes), 1, functional=False)
    try:
        with torch.no_grad():
            got = module(torch.zeros((1, 1, *sizes)))
    except RuntimeError:
        return False
    assert tuple(got.shape[2:]) == out, (layer, sizes, got.shape, out)
    return True


def _identity(nd: int) -> Conv:
    return Conv((1,) * nd, (1,) * nd, (1,) * nd, (0,) * nd)


def _unit_stride(layer):
    """The same layer with stride 1 (so that a branch keeps the jump it is given)."""
    if isinstance(layer, Conv) and layer.padding != "same":
        return Conv(layer.kernel, (1,) * len(layer.kernel), layer.dilation, layer.padding, layer.padding_mode)
    if isinstance(layer, Pool):
        return Pool(layer.kind, layer.kernel, (1,) * len(layer.kernel), layer.padding, layer.dilation, layer.ceil_mode)
    return layer


LINEAR_MODE = {1: "linear", 2: "bilinear", 3: "trilinear"}
MAX_SIZE = {1: 80, 2: 40, 3: 14}  # upsampling stops where a map would grow past this
SIMPLE_RATIOS = ((2, 1), (3, 1), (3, 2), (5, 2), (4, 3), (1, 2), (2, 3))  # size-based resizes


@st.composite
def conv_transpose_layers(draw, sizes: tuple[int, ...]):
    nd = len(sizes)
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(nd))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    dilation = tuple(draw(st.integers(1, 2)) if k > 1 else 1 for k in kernel)
    padding = tuple(draw(st.integers(0, d * (k - 1))) for k, d in zip(kernel, dilation))
    output_padding = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
    return ConvT(kernel, stride, padding, output_padding, dilation)


@st.composite
def resize_layers(draw, sizes: tuple[int, ...], fixed_size: bool = True):
    nd = len(sizes)
    modes = ["nearest", "nearest-exact", LINEAR_MODE[nd]] + (["bicubic"] if nd == 2 else [])
    mode = draw(st.sampled_from(modes))
    align = draw(st.booleans()) if mode not in ("nearest", "nearest-exact") else None
    if not fixed_size or draw(st.booleans()):
        scale = tuple(draw(st.sampled_from([2.0, 3.0, 1.5, 2.5, 0.5, 0.75, 1.0])) for _ in range(nd))
        return Resize(mode, scale, None, align)
    size = []
    for n in sizes:
        a, b = draw(st.sampled_from(SIMPLE_RATIOS))
        size.append(n * a // b if n * a % b == 0 else 2 * n)
    return Resize(mode, None, tuple(size), align)


@st.composite
def shuffle_layers(draw, sizes: tuple[int, ...]):
    return Shuffle(draw(st.integers(2, 3)))


def up_makers(nd: int, fixed_size: bool = True) -> list:
    resizes = resize_layers if fixed_size else scale_resize_layers
    return [conv_transpose_layers, resizes] + ([shuffle_layers] if nd == 2 else [])


def scale_resize_layers(sizes: tuple[int, ...]):
    """Resizes by a scale factor only (no fixed output ``size``)."""
    return resize_layers(sizes, fixed_size=False)


@st.composite
def layers(draw, sizes: tuple[int, ...], strided: bool = True, decoders: bool = False, fixed_size: bool = True):
    makers = [conv_layers, conv_layers, conv_layers, pool_layers, pad_layers]
    if decoders and strided:
        makers += up_makers(len(sizes), fixed_size)
    layer = draw(draw(st.sampled_from(makers))(sizes))
    if not strided:
        layer = _unit_stride(layer)
    if not _fits(layer, sizes) or max(size_after(layer, sizes)) > MAX_SIZE[len(sizes)]:
        layer = _identity(len(sizes))
    return layer


def jump(spec) -> tuple[int, ...] | None:
    """Product of strides along each axis (None for a spec without layers)."""
    if isinstance(spec, (Conv, Pool)):
        return spec.stride
    if isinstance(spec, (Pad, ConvT, Resize, Shuffle)):
        return None  # upsampling: no whole stride (branches are cropped to size anyway)
    if isinstance(spec, Chain):
        total = None
        for item in spec.layers:
            j = jump(item)
            if j is not None:
                total = j if total is None else tuple(a * b for a, b in zip(total, j))
        return total
    return jump(spec.branches[0])


@st.composite
def chains(
    draw,
    sizes: tuple[int, ...],
    depth: int,
    max_len: int = 4,
    strided: bool = True,
    decoders: bool = False,
    upsampling: bool | None = None,
    fixed_size: bool = True,
):
    """A chain of layers and (if depth allows) nested merges; returns (spec, out sizes).

    ``decoders`` allows U-Net blocks (which keep the jump), ``upsampling`` (default: as
    ``decoders``) upsampling layers in the chain itself (which change it)."""
    upsampling = decoders if upsampling is None else upsampling
    items = []
    for _ in range(draw(st.integers(1, max_len))):
        if depth > 0 and decoders and draw(st.integers(0, 3)) == 0:
            block, out = draw(unet_blocks(sizes, depth - 1, fixed_size))
        elif depth > 0 and draw(st.integers(0, 3)) == 0:
            block, out = draw(merges(sizes, depth - 1, decoders, fixed_size))
            if not strided and any(j != 1 for j in (jump(block) or ())):
                block, out = _identity(len(sizes)), sizes
        else:
            block = draw(layers(sizes, strided, upsampling, fixed_size))
            out = size_after(block, sizes)
        sizes = out
        items.append(block)
    return Chain(tuple(items)), sizes


def _match(sizes: tuple[int, ...], target: tuple[int, ...], draw) -> Pad | None:
    """Asymmetric pad / crop taking ``sizes`` to ``target`` (where to put the difference is drawn)."""
    if sizes == target:
        return None
    amounts = []
    for n, t in zip(sizes, target):
        diff = t - n
        left = draw(st.integers(min(0, diff), max(0, diff)))
        amounts.append((left, diff - left))
    return Pad(tuple(amounts))


@st.composite
def merges(draw, sizes: tuple[int, ...], depth: int, decoders: bool = False, fixed_size: bool = True):
    kind = draw(st.sampled_from([Add, Concat]))
    count = draw(st.integers(2, 3))
    # no upsampling in the branches: the others could not match the first one's jump
    first, first_out = draw(chains(sizes, depth, max_len=3, decoders=decoders, upsampling=False, fixed_size=fixed_size))
    branches = [first]
    outs = [first_out]
    step = jump(first) or (1,) * len(sizes)
    for _ in range(count - 1):
        # every branch must step alike: unit-stride layers, then one conv with the first's jump
        chain, out = draw(chains(sizes, depth, max_len=2, strided=False))
        if any(s != 1 for s in step):
            kernel = tuple(draw(st.integers(1, 3)) for _ in sizes)
            last = Conv(kernel, step, (1,) * len(sizes), tuple(k // 2 for k in kernel))
            if not _fits(last, out):
                last = Conv((1,) * len(sizes), step, (1,) * len(sizes), (0,) * len(sizes))
            chain = Chain(chain.layers + (last,))
            out = size_after(last, out)
        branches.append(chain)
        outs.append(out)
    target = outs[0]
    fixed = []
    for chain, out in zip(branches, outs):
        pad = _match(out, target, draw)
        fixed.append(Chain(chain.layers + ((pad,) if pad else ())))
    return kind(tuple(fixed)), target


@st.composite
def unet_blocks(draw, sizes: tuple[int, ...], depth: int, fixed_size: bool = True):
    """A U-Net level: encoder (stride s) -> inner chain -> decoder (up by s) -> crop or pad to the
    block's input, merged with a skip path; returns (spec, out sizes = sizes)."""
    nd = len(sizes)
    factor = tuple(draw(st.integers(2, 3)) if n >= 6 else 1 for n in sizes)
    if draw(st.booleans()):
        kernel = tuple(draw(st.integers(f, f + 1)) for f in factor)
        down = Conv(kernel, factor, (1,) * nd, tuple(k // 2 for k in kernel))
    else:
        down = Pool(draw(st.sampled_from(["max", "avg"])), factor, factor, (0,) * nd, (1,) * nd, False)
    if not _fits(down, sizes):
        down, factor = _identity(nd), (1,) * nd
    inner_sizes = size_after(down, sizes)
    inner, inner_out = draw(chains(inner_sizes, depth, max_len=2, strided=False, decoders=True, fixed_size=fixed_size))
    if draw(st.booleans()):
        kernel = tuple(draw(st.integers(f, f + 2)) for f in factor)
        up = ConvT(kernel, factor, tuple((k - f) // 2 for k, f in zip(kernel, factor)), (0,) * nd, (1,) * nd)
    else:
        mode = draw(st.sampled_from(["nearest", LINEAR_MODE[nd]]))
        align = draw(st.booleans()) if mode != "nearest" else None
        up = Resize(mode, tuple(float(f) for f in factor), None, align)
    if not _fits(up, inner_out) or max(size_after(up, inner_out)) > MAX_SIZE[nd]:
        up = _identity(nd)
    decoded = size_after(up, inner_out)
    decoder = Chain((down, *inner.layers, up) + ((_match(decoded, sizes, draw),) if decoded != sizes else ()))
    skip, skip_out = draw(chains(sizes, 0, max_len=1, strided=False))
    if skip_out != sizes:
        skip = Chain(skip.layers + (_match(skip_out, sizes, draw),))
    kind = draw(st.sampled_from([Add, Concat]))
    return kind((skip, decoder)), sizes


@st.composite
def nets(
    draw,
    max_depth: int = 2,
    decoders: bool = False,
    dims: tuple[int, ...] = (1, 2, 2, 2, 3),
    fixed_size: bool = True,
):
    """A random net; ``fixed_size=False`` keeps resizes to scale factors (no ``size=``)."""
    nd = draw(st.sampled_from(dims))
    low, high = {1: (6, 40), 2: (6, 24), 3: (5, 10)}[nd]
    sizes = tuple(draw(st.integers(low, high)) for _ in range(nd))
    spec, _ = draw(chains(sizes, max_depth, decoders=decoders, fixed_size=fixed_size))
    return Net(spec, sizes, functional=draw(st.booleans()))


# ---- building modules ---------------------------------------------------------------------------


class _Layer(nn.Module):
    """One spec layer, module-based or as functional calls inside forward."""

    def __init__(self, spec, nd: int, channels: int, functional: bool) -> None:
        super().__init__()
        self.spec = spec
        self.nd = nd
        self.functional = functional
        if isinstance(spec, Conv):
            conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[nd - 1](
                channels, channels, spec.kernel, spec.stride,
                padding=spec.padding, dilation=spec.dilation, padding_mode=spec.padding_mode,
            )
            if functional:
                self.weight, self.bias = conv.weight, conv.bias
            else:
                self.conv = conv
        elif isinstance(spec, ConvT):
            conv_t = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)[nd - 1](
                channels, channels, spec.kernel, spec.stride, padding=spec.padding,
                output_padding=spec.output_padding, dilation=spec.dilation,
            )
            if functional:
                self.weight, self.bias = conv_t.weight, conv_t.bias
            else:
                self.conv_t = conv_t
        elif isinstance(spec, Resize) and not functional:
            self.resize = nn.Upsample(spec.size, spec.scale, spec.mode, spec.align_corners)
        elif isinstance(spec, Shuffle):
            self.widen = nn.Conv2d(channels, channels * spec.factor**2, 1)
            self.shuffle = nn.PixelShuffle(spec.factor)
        elif isinstance(spec, Pool) and not functional:
            if spec.kind == "max":
                self.pool = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)[nd - 1](
                    spec.kernel, spec.stride, spec.padding, spec.dilation, ceil_mode=spec.ceil_mode
                )
            else:
                self.pool = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)[nd - 1](
                    spec.kernel, spec.stride, spec.padding, ceil_mode=spec.ceil_mode
                )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.spec
        if isinstance(s, Pad):
            flat = [a for pair in reversed(s.amounts) for a in pair]
            return F.pad(x, flat)
        if isinstance(s, Conv):
            if not self.functional:
                return self.conv(x)
            conv_fn = (F.conv1d, F.conv2d, F.conv3d)[self.nd - 1]
            if s.padding_mode != "zeros":
                flat = [p for pad in reversed(s.padding) for p in (pad, pad)]
                x = F.pad(x, flat, mode=s.padding_mode)
                return conv_fn(x, self.weight, self.bias, s.stride, 0, s.dilation)
            return conv_fn(x, self.weight, self.bias, s.stride, s.padding, s.dilation)
        if isinstance(s, ConvT):
            if not self.functional:
                return self.conv_t(x)
            conv_t_fn = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[self.nd - 1]
            return conv_t_fn(x, self.weight, self.bias, s.stride, s.padding, s.output_padding, 1, s.dilation)
        if isinstance(s, Resize):
            if not self.functional:
                return self.resize(x)
            return F.interpolate(x, s.size, s.scale, s.mode, s.align_corners)
        if isinstance(s, Shuffle):
            if not self.functional:
                return self.shuffle(self.widen(x))
            return F.pixel_shuffle(F.conv2d(x, self.widen.weight, self.widen.bias), s.factor)
        if not self.functional:
            return self.pool(x)
        if s.kind == "max":
            fn = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[self.nd - 1]
            return fn(x, s.kernel, s.stride, s.padding, s.dilation, ceil_mode=s.ceil_mode)
        fn = (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[self.nd - 1]
        return fn(x, s.kernel, s.stride, s.padding, ceil_mode=s.ceil_mode)


class _Chain(nn.Module):
    def __init__(self, items: list[nn.Module]) -> None:
        super().__init__()
        self.items = nn.ModuleList(items)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for item in self.items:
            x = item(x)
        return x


class _Merge(nn.Module):
    def __init__(self, branches: list[nn.Module], concat: bool, channels: int, nd: int) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)
        self.concat = concat
        if concat:  # back to the common channel count
            self.squeeze = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[nd - 1](channels * len(branches), channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [branch(x) for branch in self.branches]
        if self.concat:
            return self.squeeze(torch.cat(outs, dim=1))
        total = outs[0]
        for out in outs[1:]:
            total = total + out
        return total


def build(net: Net) -> nn.Module:
    nd = len(net.input_size)

    def make(spec) -> nn.Module:
        if isinstance(spec, Chain):
            return _Chain([make(item) for item in spec.layers])
        if isinstance(spec, (Add, Concat)):
            return _Merge([make(b) for b in spec.branches], isinstance(spec, Concat), net.channels, nd)
        return _Layer(spec, nd, net.channels, net.functional)

    return make(net.spec).eval()
