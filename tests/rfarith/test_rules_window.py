"""Rules of ops that slide or resample along spatial axes (rfarith/rules/window.py).

Conv / pool with kernel k, stride s, dilation d, left padding p (the guide, with dilation):
    j' = j*s,  r' = r + d*(k-1)*j,  start' = start + (d*(k-1)/2 - p)*j
and n' from PyTorch's own output size. The input: j = 1, r = 1, start = 0.5.
"""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import rfarith

from .expect import Lambda, assert_field, square


def analyze(module: nn.Module, shape):
    """Analyse ``module``; a single torch layer is wrapped in a Sequential (node name "0") so
    that these tests exercise the layer's rule, not the tracing of a bare layer (see
    test_tracing.py for that)."""
    if type(module).__module__.startswith("torch.nn") and not isinstance(module, nn.Sequential):
        module = nn.Sequential(module)
    return rfarith.analyze(module, shape)





# ---- convolution ------------------------------------------------------------------------------
def test_conv_non_square_kernel_and_stride():
    """Conv2d k (3, 5), s (1, 2), p (1, 0) on 12x16.
    h: n = 12, j = 1, r = 3, start = 0.5+(1-1) = 0.5
    w: n = floor((16-5)/2)+1 = 6, j = 2, r = 5, start = 0.5+2 = 2.5"""
    rep = analyze(nn.Conv2d(3, 4, (3, 5), stride=(1, 2), padding=(1, 0)), (1, 3, 12, 16))
    assert_field(rep.output, n=(12, 6), j=(1, 2), r=(3, 5), start=(0.5, 2.5))


def test_dilated_conv_has_holes_that_a_second_conv_fills():
    """Conv k3 d2 p2 on 10x10: n = 10, r = 1+2*2 = 5, start = 0.5+(2-2) = 0.5; unit m sees
    m-2, m, m+2 (holes). A 3x3 p1 conv after it: r = 5+2 = 7, start 0.5; unit m sees
    {m-2, m, m+2} + {-1, 0, 1} = m-3 .. m+3, no holes left."""
    net = nn.Sequential(nn.Conv2d(3, 4, 3, dilation=2, padding=2), nn.Conv2d(4, 4, 3, padding=1))
    rep = analyze(net, (1, 3, 10, 10))
    assert_field(rep["0"], n=square(10), j=square(1), r=square(5), start=square(0.5), flags={"holes"})
    assert rep["0"].seen((3, 3)) == ((1, 3, 5), (1, 3, 5))
    assert_field(rep["1"], n=square(10), j=square(1), r=square(7), start=square(0.5))


@pytest.mark.parametrize("groups", [1, 2, 4])
def test_grouped_and_depthwise_convs_have_the_plain_geometry(groups):
    """Groups split channels only: k3 s2 p1 on 9x9: n = 5, j = 2, r = 3, start = 0.5."""
    rep = analyze(nn.Conv2d(4, 4, 3, stride=2, padding=1, groups=groups), (1, 4, 9, 9))
    assert_field(rep.output, n=square(5), j=square(2), r=square(3), start=square(0.5))


@pytest.mark.parametrize(
    "padding, n, start",
    [
        (0, 8, 2.5),  # int: start = 0.5 + (2-0) = 2.5, n = 12-4 = 8
        (2, 12, 0.5),  # start = 0.5 + (2-2) = 0.5
        ((1, 1), 10, 1.5),  # tuple: start = 0.5 + (2-1) = 1.5, n = 12+2-4 = 10
        ("valid", 8, 2.5),  # no padding
        ("same", 12, 0.5),  # odd kernel: 2 each side
    ],
)
def test_conv_padding_forms(padding, n, start):
    """Conv 5x5 stride 1 on 12x12 with every form of padding: r = 5, j = 1."""
    rep = analyze(nn.Conv2d(3, 4, 5, padding=padding), (1, 3, 12, 12))
    assert_field(rep.output, n=square(n), j=square(1), r=square(5), start=square(start))


EVEN_SAME = pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")


@EVEN_SAME
def test_same_padding_with_even_kernels_pads_the_odd_pixel_on_the_right():
    """padding='same' pads d*(k-1) in total, floor half on the left (PyTorch).
    h: k = 4, d = 1: total 3, left 1: r = 4, start = 0.5+(1.5-1) = 1.0; unit m sees m-1 .. m+2.
    w: k = 2, d = 3: total 3, left 1: r = 1+3*1 = 4, start = 0.5+(1.5-1) = 1.0; unit m sees
       m-1 and m+2 only (holes).
    n = 8 on both axes."""
    rep = analyze(nn.Conv2d(3, 4, (4, 2), padding="same", dilation=(1, 3)), (1, 3, 8, 8))
    out = rep.output
    assert_field(out, n=square(8), j=square(1), r=square(4), start=square(1.0), flags={"holes"})
    assert out.bounds((0, 0)) == ((-1, 2), (-1, 2))
    assert out.seen((0, 5)) == ((-1, 0, 1, 2), (4, 7))


@EVEN_SAME
def test_functional_same_padding_even_kernel():
    """F.conv1d(padding='same'), k = 4: left pad 1: r = 4, start 1.0, unit 0 sees -1 .. 2."""
    weight = nn.Parameter(torch.ones(2, 3, 4))
    net = Lambda(lambda self, x: F.conv1d(x, self.w, padding="same"))
    net.w = weight
    rep = analyze(net, (1, 3, 10))
    assert_field(rep.output, n=(10,), j=(1,), r=(4,), start=(1.0,))
    assert rep.output.bounds(0) == ((-1, 2),)


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
def test_every_padding_mode_has_the_same_unclipped_geometry(mode):
    """padding_mode changes what the padded pixels hold, not where units sit: positions outside
    the input are reported unclipped (the guide's convention), as for zero padding.
    Conv k3, p (2, 1) on 8x8:
    h: n = 8+4-2 = 10, r = 3, start = 0.5+(1-2) = -0.5
    w: n = 8, r = 3, start = 0.5"""
    rep = analyze(nn.Conv2d(3, 4, 3, padding=(2, 1), padding_mode=mode), (1, 3, 8, 8))
    assert_field(rep.output, n=(10, 8), j=(1, 1), r=(3, 3), start=(-0.5, 0.5))


@pytest.mark.parametrize(
    "mode, corner",
    [
        ("zeros", (0, 1)),  # padding pixels hold zeros: unit 0 sees pixels 0, 1
        ("reflect", (0, 1)),  # pixel -1 reflects pixel 1
        ("replicate", (0, 1)),  # pixel -1 repeats pixel 0
        ("circular", (0, 1, 7)),  # pixel -1 wraps to pixel 7
    ],
)
def test_padding_mode_decides_what_the_real_border_units_see(mode, corner):
    """Conv 3x3 p1 on 8x8: unclipped unit 0 sees -1 .. 1 whatever the mode; the real unit 0
    sees the input pixels the padding copies; unit 3 (inside) sees 2 .. 4 in every mode."""
    out = analyze(nn.Conv2d(3, 4, 3, padding=1, padding_mode=mode), (1, 3, 8, 8)).output
    assert out.bounds((0, 0)) == ((-1, 1), (-1, 1))
    assert out.real_seen((0, 0)) == (corner, corner)
    assert out.real_bounds((0, 3)) == ((corner[0], corner[-1]), (2, 4))


def test_functional_conv2d_reads_stride_padding_dilation():
    """F.conv2d(x, w, None, 2, 1, 1): k = 3 (from the weight), s 2, p 1 on 9x9:
    n = 5, j = 2, r = 3, start = 0.5. Then F.conv2d(.., stride=1, padding=0, dilation=2):
    r = 3 + 2*2*2 = 11, start = 0.5 + (2-0)*2 = 4.5, n = 5-4 = 1."""

    def forward(self, x):
        y = F.conv2d(x, self.w1, None, 2, 1, 1)
        return F.conv2d(y, self.w2, stride=1, padding=0, dilation=2)

    net = Lambda(forward)
    net.w1 = nn.Parameter(torch.ones(4, 3, 3, 3))
    net.w2 = nn.Parameter(torch.ones(4, 4, 3, 3))
    rep = analyze(net, (1, 3, 9, 9))
    assert_field(rep["conv2d"], n=square(5), j=square(2), r=square(3), start=square(0.5))
    assert_field(rep["conv2d_1"], n=square(1), j=square(2), r=square(11), start=square(4.5), flags={"holes"})


# On 9x9, each (n, j, r, start) by hand:
KEYWORD_FORMS = {
    # k3 s2 p1: n = floor((9+2-3)/2)+1 = 5, r 3, start 0.5+(1-1) = 0.5
    "F.conv2d(stride=, padding=)": (lambda self, x: F.conv2d(x, self.w, stride=2, padding=1), (5, 2, 3, 0.5)),
    # k3 s2 p0: n = 4, start 0.5+1 = 1.5
    "F.conv2d(input=, weight=, stride=)": (lambda self, x: F.conv2d(input=x, weight=self.w, stride=2), (4, 2, 3, 1.5)),
    "F.max_pool2d(kernel_size=, stride=, padding=)": (
        lambda self, x: F.max_pool2d(x, kernel_size=3, stride=2, padding=1), (5, 2, 3, 0.5)),
    # stride defaults to the kernel: k3 s3: n = 3, start 1.5
    "F.avg_pool2d(kernel_size=)": (lambda self, x: F.avg_pool2d(x, kernel_size=3), (3, 3, 3, 1.5)),
    "F.lp_pool2d(norm_type, kernel_size=, stride=)": (
        lambda self, x: F.lp_pool2d(x, 2, kernel_size=3, stride=2), (4, 2, 3, 1.5)),
    # 2 on the left of both axes: n = 11, start 0.5-2 = -1.5
    "F.pad(pad=)": (lambda self, x: F.pad(x, pad=(2, 0, 2, 0)), (11, 1, 1, -1.5)),
    # nearest, scale 1/2: o reads unit floor(2o): n = 4, j = 2, r 1, start 0.5
    "F.interpolate(scale_factor=0.5)": (lambda self, x: F.interpolate(x, scale_factor=0.5), (4, 2, 1, 0.5)),
}


@pytest.mark.parametrize("fn, expected", list(KEYWORD_FORMS.values()), ids=list(KEYWORD_FORMS))
def test_functional_forms_read_keyword_arguments(fn, expected):
    net = Lambda(fn)
    net.w = nn.Parameter(torch.ones(4, 3, 3, 3))
    n, j, r, start = expected
    assert_field(analyze(net, (1, 3, 9, 9)).output, n=square(n), j=square(j), r=square(r), start=square(start))


def test_conv1d_on_a_1d_input():
    """Conv1d k5 s2 p1 on 20: n = floor((20+2-5)/2)+1 = 9, j = 2, r = 5, start = 0.5+(2-1) = 1.5."""
    rep = analyze(nn.Conv1d(2, 4, 5, stride=2, padding=1), (1, 2, 20))
    assert rep.axes == ("l",)
    assert_field(rep.output, n=(9,), j=(2,), r=(5,), start=(1.5,))


def test_conv3d_on_a_3d_input():
    """Conv3d k (3, 1, 5), s (1, 2, 1), p (1, 0, 2) on 4x8x10:
    d: n = 4, j = 1, r = 3, start 0.5;  h: n = floor(7/2)+1 = 4, j = 2, r = 1, start 0.5;
    w: n = 10, j = 1, r = 5, start 0.5. Then MaxPool3d(2): n (2, 2, 5), j (2, 4, 2),
    r (3+1, 1+2, 5+1) = (4, 3, 6), start (0.5+0.5, 0.5+0.5*2, 0.5+0.5) = (1.0, 1.5, 1.0).
    The pool's second tap along h reads conv unit 2m+1, i.e. pixels 4m and 4m+2: holes."""
    net = nn.Sequential(nn.Conv3d(1, 2, (3, 1, 5), stride=(1, 2, 1), padding=(1, 0, 2)), nn.MaxPool3d(2))
    rep = analyze(net, (1, 1, 4, 8, 10))
    assert rep.axes == ("d", "h", "w")
    assert_field(rep["0"], n=(4, 4, 10), j=(1, 2, 1), r=(3, 1, 5), start=(0.5, 0.5, 0.5))
    assert_field(rep["1"], n=(2, 2, 5), j=(2, 4, 2), r=(4, 3, 6), start=(1.0, 1.5, 1.0), flags={"holes"})


def test_stride_larger_than_kernel_then_3x3_leaves_holes():
    """1x1 s2 on 16x16: n = 8, j = 2, r = 1, start 0.5 (pixel 2m). 3x3 p1 after it reads units
    m-1 .. m+1, pixels 2m-2, 2m, 2m+2: r = 1+2*2 = 5, start 0.5, holes."""
    net = nn.Sequential(nn.Conv2d(3, 4, 1, stride=2), nn.Conv2d(4, 4, 3, padding=1))
    rep = analyze(net, (1, 3, 16, 16))
    assert_field(rep["0"], n=square(8), j=square(2), r=square(1), start=square(0.5))
    out = rep.output
    assert_field(out, n=square(8), j=square(2), r=square(5), start=square(0.5), flags={"holes"})
    assert out.seen((0, 3)) == ((-2, 0, 2), (4, 6, 8))


# ---- pooling ----------------------------------------------------------------------------------
def test_maxpool_padding_dilation_ceil_mode():
    """MaxPool2d(3, 2, padding=1, dilation=2, ceil_mode=True) on 16x16:
    n = ceil((16+2-2*2-1)/2)+1 = ceil(6.5)+1 = 8 (the last window starts at 14-1 = 13 < 16),
    j = 2, r = 1+2*2 = 5, start = 0.5+(2-1) = 1.5, holes (dilation 2)."""
    rep = analyze(nn.MaxPool2d(3, 2, padding=1, dilation=2, ceil_mode=True), (1, 3, 16, 16))
    assert_field(rep.output, n=square(8), j=square(2), r=square(5), start=square(1.5), flags={"holes"})
    floor = analyze(nn.MaxPool2d(3, 2, padding=1, dilation=2), (1, 3, 16, 16)).output
    assert floor.n == (7, 7) and floor.start == (1.5, 1.5)


def test_avgpool_ceil_mode_keeps_the_partial_window():
    """AvgPool2d(2, ceil_mode=True) on 7x7: n = ceil(5/2)+1 = 4; unit 3 sees pixels 6 .. 7
    (7 is past the input: unclipped). r = 2, j = 2, start = 0.5+0.5 = 1.0."""
    rep = analyze(nn.AvgPool2d(2, ceil_mode=True), (1, 3, 7, 7))
    assert_field(rep.output, n=square(4), j=square(2), r=square(2), start=square(1.0))
    assert rep.output.bounds((3, 3)) == ((6, 7), (6, 7))


def test_avgpool_padding_and_non_square_kernel():
    """AvgPool2d((2, 3), stride=(2, 1), padding=(1, 1)) on 8x9:
    h: n = floor((8+2-2)/2)+1 = 5, j = 2, r = 2, start = 0.5+(0.5-1) = 0.0
    w: n = 9+2-3+1 = 9, j = 1, r = 3, start = 0.5+(1-1) = 0.5"""
    rep = analyze(nn.AvgPool2d((2, 3), stride=(2, 1), padding=(1, 1)), (1, 3, 8, 9))
    assert_field(rep.output, n=(5, 9), j=(2, 1), r=(2, 3), start=(0.0, 0.5))


def test_lppool_module_and_function():
    """LPPool2d(2, 3, stride=2) on 9x9: n = 4, j = 2, r = 3, start = 1.5.
    F.lp_pool1d(x, 2, 2) on 10: n = 5, j = 2, r = 2, start = 1.0."""
    rep = analyze(nn.LPPool2d(2, 3, stride=2), (1, 3, 9, 9))
    assert_field(rep.output, n=square(4), j=square(2), r=square(3), start=square(1.5))
    rep = analyze(Lambda(lambda self, x: F.lp_pool1d(x, 2, 2)), (1, 3, 10))
    assert_field(rep.output, n=(5,), j=(2,), r=(2,), start=(1.0,))


def test_functional_pools():
    """F.max_pool2d(x, 3, 2, 1) on 10x10: n = 5, j = 2, r = 3, start = 0.5; then
    F.avg_pool2d(x, 2): n = 2, j = 4, r = 3+2 = 5, start = 0.5+0.5*2 = 1.5."""
    rep = analyze(Lambda(lambda self, x: F.avg_pool2d(F.max_pool2d(x, 3, 2, 1), 2)), (1, 3, 10, 10))
    assert_field(rep["max_pool2d"], n=square(5), j=square(2), r=square(3), start=square(0.5))
    assert_field(rep.output, n=square(2), j=square(4), r=square(5), start=square(1.5))


def test_maxpool_return_indices():
    """MaxPool2d(2, return_indices=True) on 10x10, values kept: n = 5, j = 2, r = 2, start 1.0."""

    def forward(self, x):
        values, _ = self.pool(x)
        return values

    rep = analyze(Lambda(forward, pool=nn.MaxPool2d(2, return_indices=True)), (1, 3, 10, 10))
    assert_field(rep.output, n=square(5), j=square(2), r=square(2), start=square(1.0))


def test_maxpool1d_on_a_1d_input():
    """MaxPool1d(3, 2) on 11: n = 5, j = 2, r = 3, start = 1.5."""
    rep = analyze(nn.MaxPool1d(3, 2), (1, 2, 11))
    assert_field(rep.output, n=(5,), j=(2,), r=(3,), start=(1.5,))


# ---- adaptive pooling -------------------------------------------------------------------------
def test_adaptive_pool_with_divisible_sizes_is_a_plain_pool():
    """AdaptiveAvgPool2d(4) on 8x8: bin m = floor(2m) .. ceil(2m+2)-1 = 2m .. 2m+1:
    a 2x2 stride-2 pool: n = 4, j = 2, r = 2, start = 1.0, uniform."""
    rep = analyze(nn.AdaptiveAvgPool2d(4), (1, 3, 8, 8))
    assert_field(rep.output, n=square(4), j=square(2), r=square(2), start=square(1.0))


def test_adaptive_pool_with_non_divisible_sizes_is_nonuniform():
    """AdaptiveMaxPool1d(3) on 5: bin m = floor(5m/3) .. ceil(5(m+1)/3)-1:
    m = 0: 0 .. 1, m = 1: 1 .. 3, m = 2: 3 .. 4. Sizes 2, 3, 2: r = 3 (the largest),
    start = centre of unit 0 = 1.0, nonuniform; the pattern repeats every 3 units, 5 pixels
    further: j = 5/3."""
    rep = analyze(nn.AdaptiveMaxPool1d(3), (1, 2, 5))
    out = rep.output
    assert [out.bounds(m) for m in range(3)] == [((0, 1),), ((1, 3),), ((3, 4),)]
    assert (out.n, out.r, out.start, out.j) == ((3,), (3,), (1.0,), (Fraction(5, 3),))
    assert out.phases == (3,)
    assert "nonuniform" in out.flags


def test_adaptive_pool_7_to_3_bins():
    """AdaptiveAvgPool1d(3) on 7: floor(7m/3) .. ceil(7(m+1)/3)-1: 0 .. 2, 2 .. 4, 4 .. 6."""
    out = analyze(nn.AdaptiveAvgPool1d(3), (1, 2, 7)).output
    assert [out.bounds(m) for m in range(3)] == [((0, 2),), ((2, 4),), ((4, 6),)]
    assert out.r == (3,)


def test_adaptive_pool_to_one_unit_is_global():
    """Conv 3x3 (valid) on 8x8: units 0 .. 5 see pixels 0 .. 7 together. AdaptiveAvgPool2d(1):
    the whole input: n = 1, j = 0, r = 8, start = 4.0, global (via the pool)."""
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1))
    out = analyze(net, (1, 3, 8, 8)).output
    assert_field(out, n=square(1), j=square(0), r=square(8), start=square(4.0), flags={"global"})
    assert out.global_via == ("1",)


def test_adaptive_pool_to_one_unit_along_one_axis():
    """F.adaptive_avg_pool2d(x, (1, 4)) on 6x8: h global (r 6, start 3.0, j 0); w a 2-pool
    (r 2, j 2, start 1.0)."""
    out = analyze(Lambda(lambda self, x: F.adaptive_avg_pool2d(x, (1, 4))), (1, 3, 6, 8)).output
    assert_field(out, n=(1, 4), j=(0, 2), r=(6, 2), start=(3.0, 1.0), flags={"global"})
    assert out.global_via == ("adaptive_avg_pool2d",)


# ---- padding and cropping ---------------------------------------------------------------------
def test_asymmetric_functional_pad_then_conv():
    """F.pad(x, (1, 2, 3, 0)) on 8x8: w gets 1 left, 2 right; h gets 3 top, 0 bottom.
    Unit m reads pixel m - p_left: h: n = 11, start = 0.5-3 = -2.5; w: n = 11, start = -0.5.
    Conv 3x3 valid: n = 9, r = 3, h start = -2.5+1 = -1.5, w start = -0.5+1 = 0.5."""

    def forward(self, x):
        return self.conv(F.pad(x, (1, 2, 3, 0)))

    rep = analyze(Lambda(forward, conv=nn.Conv2d(3, 4, 3)), (1, 3, 8, 8))
    assert_field(rep["pad"], n=(11, 11), j=(1, 1), r=(1, 1), start=(-2.5, -0.5))
    assert_field(rep["conv"], n=(9, 9), j=(1, 1), r=(3, 3), start=(-1.5, 0.5))


PAD_MODULES = [
    nn.ZeroPad2d((1, 2, 3, 0)),
    nn.ConstantPad2d((1, 2, 3, 0), 0.5),
    nn.ReflectionPad2d((1, 2, 3, 0)),
    nn.ReplicationPad2d((1, 2, 3, 0)),
]
if hasattr(nn, "CircularPad2d"):
    PAD_MODULES.append(nn.CircularPad2d((1, 2, 3, 0)))


@pytest.mark.parametrize("pad", PAD_MODULES, ids=lambda m: type(m).__name__)
def test_pad_modules_asymmetric(pad):
    """(left 1, right 2, top 3, bottom 0) on 8x8: as F.pad above: n (11, 11), start (-2.5, -0.5)."""
    assert_field(analyze(pad, (1, 3, 8, 8)).output, n=(11, 11), j=(1, 1), r=(1, 1), start=(-2.5, -0.5))


def test_negative_pad_crops():
    """F.pad(x, (-1, 0, 0, -2)) on 8x8: w: crop 1 on the left, unit m reads pixel m+1:
    n = 7, start = 1.5; h: crop 2 at the bottom: n = 6, start 0.5."""
    out = analyze(Lambda(lambda self, x: F.pad(x, (-1, 0, 0, -2))), (1, 3, 8, 8)).output
    assert_field(out, n=(6, 7), j=(1, 1), r=(1, 1), start=(0.5, 1.5))


def test_functional_reflect_pad():
    """F.pad(x, (2, 2), mode='reflect') on 1-D 10: n = 14, start = 0.5-2 = -1.5."""
    out = analyze(Lambda(lambda self, x: F.pad(x, (2, 2), mode="reflect")), (1, 2, 10)).output
    assert_field(out, n=(14,), j=(1,), r=(1,), start=(-1.5,))


def test_pad_modules_1d_and_3d():
    """ZeroPad1d((2, 0)) on 10: n = 12, start -1.5. ConstantPad3d((0, 0, 0, 0, 1, 1), 0) on
    4x5x6 pads the depth only: d: n = 6, start -0.5; h, w unchanged."""
    assert_field(analyze(nn.ZeroPad1d((2, 0)), (1, 2, 10)).output, n=(12,), j=(1,), r=(1,), start=(-1.5,))
    out = analyze(nn.ConstantPad3d((0, 0, 0, 0, 1, 1), 0.0), (1, 2, 4, 5, 6)).output
    assert_field(out, n=(6, 5, 6), j=(1, 1, 1), r=(1, 1, 1), start=(-0.5, 0.5, 0.5))


# ---- transposed convolution -------------------------------------------------------------------
def test_conv_transpose1d_k3_s2_p1():
    """ConvTranspose1d k3 s2 p1 on 5: n = (5-1)*2-2+3 = 9. Input unit i writes output
    2i-1+t (t = 0..2), so output o reads the i with o = 2i-1+t: o = 2q reads q (t = 1);
    o = 2q+1 reads q (t = 2) and q+1 (t = 0). Bounds 0..4: (0,0) (0,1) (1,1) (1,2) (2,2).
    Sizes 1 and 2: r = 2, nonuniform; period 2, one pixel per period: j = 1/2; start 0.5."""
    out = analyze(nn.ConvTranspose1d(2, 2, 3, stride=2, padding=1), (1, 2, 5)).output
    assert out.n == (9,)
    assert [out.bounds(m)[0] for m in range(5)] == [(0, 0), (0, 1), (1, 1), (1, 2), (2, 2)]
    assert (out.j, out.r, out.start, out.phases) == ((Fraction(1, 2),), (2,), (0.5,), (2,))
    assert out.flags == {"nonuniform"}


def test_conv_transpose2d_decoder_after_a_strided_conv():
    """Conv 3x3 s2 p1 on 8x8: n = 4, unit i sees 2i-1 .. 2i+1.
    ConvTranspose2d k4 s2 p1: n = 3*2-2+4 = 8; input i writes o = 2i-1+t (t = 0..3):
    o = 2q reads q (t = 1) and q-1 (t = 3): pixels 2q-3 .. 2q+1;
    o = 2q+1 reads q+1 (t = 0) and q (t = 2): pixels 2q-1 .. 2q+3.
    Bounds o = 0..3: (-3,1) (-1,3) (-1,3) (1,5): r = 5, period 2, two pixels per period: j = 1,
    start = (-3+1+1)/2 = -0.5."""
    net = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ConvTranspose2d(4, 4, 4, stride=2, padding=1))
    out = analyze(net, (1, 3, 8, 8)).output
    assert out.n == (8, 8)
    assert [out.bounds((m, m))[0] for m in range(4)] == [(-3, 1), (-1, 3), (-1, 3), (1, 5)]
    assert (out.j, out.r, out.start, out.phases) == ((1, 1), (5, 5), (-0.5, -0.5), (2, 2))


def test_conv_transpose3d_k2_s2():
    """ConvTranspose3d k2 s2 on 2x3x4: n = 2x: (4, 6, 8); o reads input unit floor(o/2)
    (t = o mod 2): unit o sees pixel floor(o/2): r = 1, j = 1/2, start 0.5, period 2."""
    out = analyze(nn.ConvTranspose3d(1, 1, 2, stride=2), (1, 1, 2, 3, 4)).output
    assert out.n == (4, 6, 8)
    assert out.j == (Fraction(1, 2),) * 3 and out.r == (1, 1, 1) and out.start == (0.5, 0.5, 0.5)
    assert [out.bounds((0, 0, m))[2] for m in range(5)] == [(0, 0), (0, 0), (1, 1), (1, 1), (2, 2)]


def test_conv_transpose_output_padding_and_functional_form():
    """ConvTranspose2d k3 s2 p1 output_padding 1 on 4x4: n = 3*2-2+3+1 = 8, same map as the
    1-D case above: o = 2q sees q, o = 2q+1 sees q .. q+1. F.conv_transpose2d with the same
    geometry gives the same field."""
    module = nn.ConvTranspose2d(2, 2, 3, stride=2, padding=1, output_padding=1)
    out = analyze(module, (1, 2, 4, 4)).output
    assert out.n == (8, 8)
    assert [out.bounds((m, 0))[0] for m in range(4)] == [(0, 0), (0, 1), (1, 1), (1, 2)]

    def forward(self, x):
        return F.conv_transpose2d(x, self.w, stride=2, padding=1, output_padding=1)

    net = Lambda(forward)
    net.w = nn.Parameter(torch.ones(2, 2, 3, 3))
    functional = analyze(net, (1, 2, 4, 4)).output
    assert [functional.bounds((m, m)) for m in range(4)] == [out.bounds((m, m)) for m in range(4)]
    assert functional.n == out.n


def test_dilated_transposed_conv_leaves_units_that_see_nothing():
    """ConvTranspose1d k3 s2 d2 on 5: n = (5-1)*2 + 2*2 + 1 = 13; input i writes o = 2i + 2t,
    so odd outputs get no input at all, and o = 2q reads q, q-1, q-2: pixels q-2 .. q.
    Unit 0: (-2, 0), units 1, 3, 5: nothing; j = 1/2, r = 3, start = (-2+0+1)/2 = -0.5;
    sizes 3 and 0: nonuniform."""
    out = analyze(nn.ConvTranspose1d(1, 1, 3, stride=2, dilation=2), (1, 1, 5)).output
    assert out.n == (13,) and out.j == (Fraction(1, 2),) and out.r == (3,) and out.start == (-0.5,)
    assert [out.bounds(m)[0] for m in (0, 2, 4)] == [(-2, 0), (-1, 1), (0, 2)]
    assert "nonuniform" in out.flags
    with pytest.raises(ValueError, match="sees no input pixel"):
        out.bounds(1)


# ---- upsampling -------------------------------------------------------------------------------
def upsampled(up: nn.Module, shape=(1, 3, 6, 6)):
    """Conv 3x3 p1 (unit i sees i-1 .. i+1), then the upsampling under test."""
    return analyze(nn.Sequential(nn.Conv2d(shape[1], 4, 3, padding=1), up), shape).output


def test_nearest_upsample_by_two():
    """Output o reads conv unit floor(o/2): o = 0, 1: (-1, 1); o = 2, 3: (0, 2); n = 12.
    r = 3, j = 1/2 (one pixel per two units), start 0.5, period 2."""
    out = upsampled(nn.Upsample(scale_factor=2, mode="nearest"))
    assert out.n == (12, 12)
    assert [out.bounds((m, m))[0] for m in range(5)] == [(-1, 1), (-1, 1), (0, 2), (0, 2), (1, 3)]
    assert (out.j, out.r, out.start, out.phases) == (square(Fraction(1, 2)), square(3), square(0.5), square(2))


def test_spacing_that_varies_shows_as_phases_and_only_sizes_flag_nonuniform():
    """The decoder issue: "flag nonuniform only where the sizes really differ"; a varying spacing
    shows as phases > 1. After nearest x2 units 0 and 1 see the same pixels and unit 2 two
    pixels further: spacing 0, 2, 0, 2, sizes equal: phases 2, no flag. The k4 s2 p1 transposed
    conv of the decoder test (lo: -3, -1, -1, 1) also has equal sizes: phases 2, no flag."""
    up = upsampled(nn.Upsample(scale_factor=2, mode="nearest"))
    assert up.phases == (2, 2) and "nonuniform" not in up.flags
    net = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ConvTranspose2d(4, 4, 4, stride=2, padding=1))
    out = analyze(net, (1, 3, 8, 8)).output
    assert out.phases == (2, 2) and "nonuniform" not in out.flags


def test_conv_after_an_upsampling():
    """Nearest x2 on 4x4 pixels (unit u sees pixel floor(u/2)), then conv 3x3 p1: unit o reads
    u = o-1 .. o+1, pixels floor((o-1)/2) .. floor((o+1)/2): o = 0: -1 .. 0, o = 1: 0 .. 1,
    o = 2: 0 .. 1, o = 3: 1 .. 2. Period 2, j = 1/2, r = 2, start = (-1+0+1)/2 = 0.0."""
    out = analyze(nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(3, 3, 3, padding=1)), (1, 3, 4, 4)).output
    assert [out.bounds((m, 0))[0] for m in range(5)] == [(-1, 0), (0, 1), (0, 1), (1, 2), (1, 2)]
    assert (out.j, out.r, out.start, out.phases) == (square(Fraction(1, 2)), square(2), square(0.0), square(2))


def test_bilinear_upsample_by_two():
    """align_corners=False: o reads x = (o+1/2)/2 - 1/2 = o/2 - 1/4, units floor(x), floor(x)+1:
    o = 0: x = -1/4, units -1, 0: pixels -2 .. 1;  o = 1: x = 1/4, units 0, 1: -1 .. 2;
    o = 2: x = 3/4, units 0, 1: -1 .. 2;           o = 3: x = 5/4, units 1, 2: 0 .. 3.
    r = 4, j = 1/2, start = (-2+1+1)/2 = 0.0 (unclipped: PyTorch clamps unit -1 to 0 at the
    border, which only narrows the clipped field)."""
    out = upsampled(nn.Upsample(scale_factor=2, mode="bilinear"))
    assert [out.bounds((m, m))[0] for m in range(4)] == [(-2, 1), (-1, 2), (-1, 2), (0, 3)]
    assert (out.j, out.r, out.start) == (square(Fraction(1, 2)), square(4), square(0.0))


def test_functional_bilinear_align_corners():
    """F.interpolate(size 12, bilinear, align_corners=True) from 6: x = o*(6-1)/(12-1) = 5o/11.
    o = 0: x = 0 exactly, unit 0 alone: -1 .. 1 (3 pixels); o = 1: 5/11, units 0, 1: -1 .. 2;
    o = 2: 10/11, units 0, 1: -1 .. 2; o = 3: 15/11, units 1, 2: 0 .. 3.
    Period 11 covering 5 units: j = 5/11; sizes 3 and 4: r = 4, nonuniform."""

    def forward(self, x):
        return F.interpolate(self.conv(x), size=(12, 12), mode="bilinear", align_corners=True)

    out = analyze(Lambda(forward, conv=nn.Conv2d(3, 4, 3, padding=1)), (1, 3, 6, 6)).output
    assert [out.bounds((m, m))[0] for m in range(4)] == [(-1, 1), (-1, 2), (-1, 2), (0, 3)]
    assert out.j == square(Fraction(5, 11)) and out.r == square(4)
    assert "nonuniform" in out.flags


def test_nearest_to_a_size_that_is_not_a_multiple():
    """F.interpolate(size=6) from 4, nearest: o reads floor(4o/6) = floor(2o/3): 0 0 1 2 2 3:
    period 3 covering 2 pixels, j = 2/3, r = 1.
    'nearest-exact' reads floor((o+1/2)*2/3): 0 1 1 2 3 3."""
    nearest = analyze(Lambda(lambda self, x: F.interpolate(x, size=6)), (1, 2, 4)).output
    assert [nearest.bounds(m)[0][0] for m in range(6)] == [0, 0, 1, 2, 2, 3]
    assert nearest.j == (Fraction(2, 3),) and nearest.r == (1,)
    exact = analyze(Lambda(lambda self, x: F.interpolate(x, size=6, mode="nearest-exact")), (1, 2, 4)).output
    assert [exact.bounds(m)[0][0] for m in range(6)] == [0, 1, 1, 2, 3, 3]


def test_upsample_by_different_factors_per_axis():
    """scale_factor (3, 1), nearest, on the pixel grid: h: o sees pixel floor(o/3), j = 1/3;
    w: unchanged, j = 1, start 0.5."""
    out = analyze(nn.Upsample(scale_factor=(3, 1)), (1, 2, 4, 5)).output
    assert out.n == (12, 5)
    assert out.j == (Fraction(1, 3), 1)
    assert [out.bounds((m, 2))[0] for m in range(4)] == [(0, 0), (0, 0), (0, 0), (1, 1)]
    assert out.bounds((0, 2))[1] == (2, 2)


# ---- pixel shuffle ----------------------------------------------------------------------------
def test_pixel_shuffle_is_an_upsampling():
    """Conv 3x3 p1 to 16 channels on 6x6, PixelShuffle(2): 12x12, output o reads conv unit
    floor(o/2) (of some channel): o = 0, 1: (-1, 1); o = 2, 3: (0, 2); j = 1/2, r = 3."""
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.PixelShuffle(2))
    out = analyze(net, (1, 3, 6, 6)).output
    assert out.n == (12, 12)
    assert [out.bounds((m, 0))[0] for m in range(4)] == [(-1, 1), (-1, 1), (0, 2), (0, 2)]
    assert out.j == square(Fraction(1, 2)) and out.r == square(3)


def test_pixel_unshuffle_is_a_2x2_stride_2_window():
    """PixelUnshuffle(2) on 8x8: unit m gathers pixels 2m, 2m+1 (in its channels):
    n = 4, j = 2, r = 2, start = 1.0."""
    out = analyze(nn.PixelUnshuffle(2), (1, 3, 8, 8)).output
    assert_field(out, n=square(4), j=square(2), r=square(2), start=square(1.0))


@pytest.mark.parametrize(
    ("dtype", "scale", "flagged"),
    [(torch.float32, 3.0, True), (torch.float64, 3.0, False), (torch.float32, 2.0, False)],
)
def test_resize_rounding_is_flagged(dtype, scale, flagged):
    """float32 bilinear x3 gives unit 3q+1 a weight of 1.5e-8 on input q+1 for some q (float64
    rounds it to 0; x2 is exact in binary): the field follows PyTorch unit by unit and says so."""

    class Up(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 1)

        def forward(self, x):
            return F.interpolate(self.conv(x), scale_factor=scale, mode="bilinear", align_corners=False)

    rf = rfarith.analyze(Up().to(dtype), (1, 1, 6, 6)).output
    assert ("rounding" in rf.flags) == flagged
