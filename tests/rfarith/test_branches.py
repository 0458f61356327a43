"""Branches and merges: unit m of a merge sees the union of what unit m of each input sees.

Per axis, with lo(m) and hi(m) the first and last pixel of unit m:
    lo = min(lo_a, lo_b), hi = max(hi_a, hi_b), r = hi - lo + 1, start = (lo + hi + 1) / 2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import rfarith

from .expect import assert_field, square


class Aligned(nn.Module):
    """Branch A: 1x1 conv stride 4. Branch B: 3x3 conv stride 2 padding 1, then 1x1 stride 2."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 1, stride=4)
        self.b1 = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.b2 = nn.Conv2d(4, 4, 1, stride=2)

    def forward(self, x):
        return self.a(x) + self.b2(self.b1(x))


def test_aligned_two_branches():
    """16x16 input.

    A:  k1 s4 p0:  n = floor(15/4)+1 = 4, j = 4, r = 1, start = 0.5; unit m sees 4m .. 4m.
    B1: k3 s2 p1:  n = 8, j = 2, r = 3, start = 0.5+(1-1) = 0.5; unit m sees 2m-1 .. 2m+1.
    B2: k1 s2 p0:  n = floor(7/2)+1 = 4, j = 4, r = 3, start = 0.5; unit m sees 4m-1 .. 4m+1.
    add: lo = min(4m, 4m-1) = 4m-1, hi = max(4m, 4m+1) = 4m+1: r = 3, j = 4, start = 0.5.
    Both centred on 4m+0.5: aligned, no flag. Effective padding -lo(0) = 1.
    """
    rep = rfarith.analyze(Aligned(), (1, 3, 16, 16))
    assert_field(rep["a"], n=square(4), j=square(4), r=square(1), start=square(0.5))
    assert_field(rep["b2"], n=square(4), j=square(4), r=square(3), start=square(0.5))
    out = rep.output
    assert out.node == "add"
    assert_field(out, n=square(4), j=square(4), r=square(3), start=square(0.5))
    assert out.offset == (-1, -1)  # effective padding 1
    assert out.centre0 == (0.0, 0.0)


class Misaligned(nn.Module):
    """Branch A: F.pad(x, (0, 3, 0, 3)) then 5x5 stride 2. Branch B: 3x3 stride 2 padding 1,
    then 3x3 padding 1."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 5, stride=2)
        self.b1 = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.b2 = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        return self.a(F.pad(x, (0, 3, 0, 3))) + self.b2(self.b1(x))


def test_misaligned_two_branches():
    """16x16 input.

    pad (0 left, 3 right): n = 19, unit m sees pixel m (left padding 0 shifts nothing).
    A:  k5 s2 p0: n = floor((19-5)/2)+1 = 8, j = 2, r = 5, start = 0.5+2 = 2.5; sees 2m .. 2m+4.
    B1: k3 s2 p1: n = 8, j = 2, r = 3, start = 0.5; sees 2m-1 .. 2m+1.
    B2: k3 s1 p1: n = 8, j = 2, r = 3+2*2 = 7, start = 0.5; sees 2m-3 .. 2m+3.
    add: lo = 2m-3, hi = 2m+4: r = 8, j = 2, start = (-3+4+1)/2 = 1.0.
    Centres differ (2.5 vs 0.5): misaligned, exact all the same.
    In 2-D unit (m, m') sees the union of two squares, A's [2m, 2m+4]^2 and B's [2m-3, 2m+3]^2:
    the hull's corner pixel (2m-3, 2m'+4) is in neither (A's rows start at 2m, B's columns end
    at 2m'+3), so the support has holes although each axis alone is contiguous.
    """
    rep = rfarith.analyze(Misaligned(), (1, 3, 16, 16))
    assert_field(rep["a"], n=square(8), j=square(2), r=square(5), start=square(2.5))
    assert_field(rep["b2"], n=square(8), j=square(2), r=square(7), start=square(0.5))
    out = rep.output
    assert_field(out, n=square(8), j=square(2), r=square(8), start=square(1.0), flags={"misaligned", "holes"})
    assert out.bounds((0, 3)) == ((-3, 4), (3, 10))


class Inception(nn.Module):
    """Stem 3x3 stride 2, then four branches concatenated on channels:
    1x1 | 1x1 -> 3x3 p1 | 1x1 -> 1x7 p(0,3) | maxpool 3 s1 p1 -> 1x1."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, stride=2)
        self.b1 = nn.Conv2d(4, 2, 1)
        self.b2 = nn.Sequential(nn.Conv2d(4, 2, 1), nn.ReLU(), nn.Conv2d(2, 2, 3, padding=1))
        self.b3 = nn.Sequential(nn.Conv2d(4, 2, 1), nn.ReLU(), nn.Conv2d(2, 2, (1, 7), padding=(0, 3)))
        self.b4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), nn.Conv2d(4, 2, 1))

    def forward(self, x):
        y = self.stem(x)
        return torch.cat([self.b1(y), self.b2(y), self.b3(y), self.b4(y)], 1)


def test_inception_style_four_branch_concat():
    """17x17 input.

    stem k3 s2: n = 8, j = 2, r = 3, start = 0.5+1 = 1.5.
    b1 (1x1):                 r = (3, 3)
    b2 (3x3 p1):              r = 3+2*2 = 7 per axis, start 1.5+(1-1)*2 = 1.5
    b3 (1x7 p(0,3)):          h: r = 3; w: r = 3+6*2 = 15, start 1.5+(3-3)*2 = 1.5
    b4 (maxpool 3 s1 p1, 1x1): r = 7 per axis, start 1.5
    cat on channels: per axis the largest (all centred alike): h 7, w 15, start 1.5, j 2.
    In 2-D the support is the union of the branch boxes 3x3, 7x7, 3x15, 7x7 (pixels): the
    corners of the 7x15 hull are in none of them (only b3 reaches the outer columns, over its
    3 central rows): holes.
    """
    rep = rfarith.analyze(Inception(), (1, 3, 17, 17))
    assert_field(rep["b3.2"], n=(8, 8), j=(2, 2), r=(3, 15), start=(1.5, 1.5))
    assert_field(rep["b4.0"], n=(8, 8), j=(2, 2), r=(7, 7), start=(1.5, 1.5))
    out = rep.output
    assert out.node == "cat"
    assert rep.table.loc["cat", "shape"] == (1, 8, 8, 8)
    assert_field(out, n=(8, 8), j=(2, 2), r=(7, 15), start=(1.5, 1.5), flags={"holes"})


class DenseLayer(nn.Module):
    def __init__(self, cin, growth):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, 4, 1)
        self.norm2 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, growth, 3, padding=1)

    def forward(self, features):
        x = torch.cat(features, 1)
        x = self.conv1(F.relu(self.norm1(x)))
        return self.conv2(F.relu(self.norm2(x)))


class DenseNetLike(nn.Module):
    """conv0 3x3 p1, a dense block of two layers (each reads the concat of all before it),
    then a transition: BN, ReLU, 1x1 conv, 2x2 average pooling."""

    def __init__(self):
        super().__init__()
        self.conv0 = nn.Conv2d(3, 4, 3, padding=1)
        self.layer1 = DenseLayer(4, 2)
        self.layer2 = DenseLayer(6, 2)
        self.transition = nn.Sequential(nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 1), nn.AvgPool2d(2))

    def forward(self, x):
        features = [self.conv0(x)]
        features.append(self.layer1(features))
        features.append(self.layer2(features))
        return self.transition(torch.cat(features, 1))


def test_densenet_style_block():
    """8x8 input; every conv keeps the centre (p = (k-1)/2), so all fields are centred alike.

    conv0 3x3 p1:                  r = 3, start 0.5
    layer1 = 1x1, 3x3 p1 on conv0: r = 3+2 = 5
    layer2 reads cat(conv0, layer1) (r = max(3, 5) = 5), then 1x1, 3x3: r = 7
    cat(conv0, layer1, layer2):    r = 7, start 0.5, j = 1
    transition 1x1, avgpool 2:     n = 4, j = 2, r = 7+1 = 8, start = 0.5+0.5 = 1.0
    """
    rep = rfarith.analyze(DenseNetLike(), (1, 3, 8, 8))
    assert_field(rep["layer1.conv2"], n=square(8), j=square(1), r=square(5), start=square(0.5))
    assert_field(rep["layer2.cat"], n=square(8), j=square(1), r=square(5), start=square(0.5))
    assert_field(rep["cat"], n=square(8), j=square(1), r=square(7), start=square(0.5))
    assert_field(rep.output, n=square(4), j=square(2), r=square(8), start=square(1.0))


class Bottleneck(nn.Module):
    """ResNet bottleneck; the stride sits on the 3x3 (ResNet v1.5) or on the first 1x1 (v1)."""

    def __init__(self, stride_on_3x3=True):
        super().__init__()
        s3, s1 = (2, 1) if stride_on_3x3 else (1, 2)
        self.conv1 = nn.Conv2d(4, 2, 1, stride=s1, bias=False)
        self.bn1 = nn.BatchNorm2d(2)
        self.conv2 = nn.Conv2d(2, 2, 3, stride=s3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(2)
        self.conv3 = nn.Conv2d(2, 8, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = nn.Sequential(nn.Conv2d(4, 8, 1, stride=2, bias=False), nn.BatchNorm2d(8))

    def forward(self, x):
        identity = self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += identity
        return self.relu(out)


class OneBlock(nn.Module):
    def __init__(self, stride_on_3x3=True):
        super().__init__()
        self.layer1 = nn.Sequential(Bottleneck(stride_on_3x3))

    def forward(self, x):
        return self.layer1(x)


def test_resnet_bottleneck_with_strided_shortcut():
    """16x16 input, stride on the 3x3.

    main: 1x1 (pixel m), 3x3 s2 p1: n = 8, j = 2, r = 3, start = 0.5; sees 2m-1 .. 2m+1.
    shortcut: 1x1 s2: n = 8, j = 2, r = 1, start = 0.5; sees 2m.
    add: lo = 2m-1, hi = 2m+1: r = 3, j = 2, start = 0.5, aligned, no holes.
    """
    rep = rfarith.analyze(OneBlock(True), (1, 4, 16, 16))
    assert_field(rep["layer1.0.downsample.0"], n=square(8), j=square(2), r=square(1), start=square(0.5))
    assert_field(rep["layer1.0.add"], n=square(8), j=square(2), r=square(3), start=square(0.5))
    assert_field(rep.output, n=square(8), j=square(2), r=square(3), start=square(0.5))
    assert rep.output.node == "layer1.0.relu_2"


def test_resnet_v1_bottleneck_stride_on_1x1_has_holes():
    """Stride on the first 1x1: it reads pixel 2m; the 3x3 p1 after it reads its units m-1..m+1,
    i.e. pixels 2m-2, 2m, 2m+2: r = 5 with holes; the shortcut adds pixel 2m only.
    add: r = 5, j = 2, start = 0.5, flag holes (pixels 2m-1 and 2m+1 are never seen)."""
    rep = rfarith.analyze(OneBlock(False), (1, 4, 16, 16))
    out = rep["layer1.0.add"]
    assert_field(out, n=square(8), j=square(2), r=square(5), start=square(0.5), flags={"holes"})
    assert out.seen((1, 1)) == ((0, 2, 4), (0, 2, 4))


class SqueezeExcite(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(c, 2, 1)
        self.relu = nn.ReLU()
        self.fc2 = nn.Conv2d(2, c, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x):
        return x * self.gate(self.fc2(self.relu(self.fc1(self.pool(x)))))


class SENet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.se = SqueezeExcite(4)
        self.head = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        return self.head(self.se(self.conv(x)))


def test_squeeze_excite_is_a_global_side_path():
    """8x8 input.

    conv 3x3 p1: n = 8, j = 1, r = 3, start = 0.5.
    se.pool (to one unit): every unit sees what conv units 0..7 see together, -1 .. 8, clipped to
    the input: 0 .. 7, so r = 8, start = 4.0, j = 0, n = 1, global (via se.pool).
    se.mul = conv * gate: the gate is broadcast from one unit, a side path: the local field stays
    the conv's (r 3, start 0.5) and gains `global (via se.pool)`.
    head 3x3 p1: r = 5, start 0.5, still global via se.pool.
    """
    rep = rfarith.analyze(SENet(), (1, 3, 8, 8))
    pool = rep["se.pool"]
    assert_field(pool, n=square(1), j=square(0), r=square(8), start=square(4.0), flags={"global"})
    assert pool.global_via == ("se.pool",)
    mul = rep["se.mul"]
    assert_field(mul, n=square(8), j=square(1), r=square(3), start=square(0.5), flags={"global"})
    assert mul.global_via == ("se.pool",)
    assert mul.describe_flags() == "global (via se.pool)"
    out = rep.output
    assert_field(out, n=square(8), j=square(1), r=square(5), start=square(0.5), flags={"global"})
    assert out.global_via == ("se.pool",)
    assert "global (via se.pool)" in rep.table.loc["head", "flags"]


class FunctionalSE(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2)
        self.fc = nn.Conv2d(4, 4, 1)

    def forward(self, x):
        y = self.conv(x)
        s = y.mean((2, 3), keepdim=True)
        return y * torch.sigmoid(self.fc(s))


def test_functional_squeeze_excite_names_the_mean():
    """9x9 input: conv 3x3 s2: n = 4, j = 2, r = 3, start = 1.5. The gate is the spatial mean
    (node `mean`), broadcast into the product: local field unchanged, global via mean."""
    rep = rfarith.analyze(FunctionalSE(), (1, 3, 9, 9))
    out = rep.output
    assert_field(out, n=square(4), j=square(2), r=square(3), start=square(1.5), flags={"global"})
    assert out.global_via == ("mean",)


class Cross(nn.Module):
    """Factorised branches, 1x5 and 5x1, added (Inception v3's 1xn / nx1 in parallel)."""

    def __init__(self):
        super().__init__()
        self.row = nn.Conv2d(3, 4, (1, 5), padding=(0, 2))
        self.col = nn.Conv2d(3, 4, (5, 1), padding=(2, 0))

    def forward(self, x):
        return self.row(x) + self.col(x)


def test_parallel_1xn_and_nx1_branches_leave_the_corners_unseen():
    """9x9. row: h r 1, w r 5; col: h r 5, w r 1; both centred (start 0.5). add: per-axis hull
    5x5, start 0.5, aligned; the support is a plus sign: the 16 corner pixels of the 5x5 box
    are unseen, so holes."""
    rep = rfarith.analyze(Cross(), (1, 3, 9, 9))
    assert_field(rep["row"], n=square(9), j=square(1), r=(1, 5), start=square(0.5))
    assert_field(rep.output, n=square(9), j=square(1), r=square(5), start=square(0.5), flags={"holes"})


class UNetLike(nn.Module):
    """Down (3x3 s2 p1), up (transposed 2x2 s2), concat with the skip, conv 3x3 p1."""

    def __init__(self):
        super().__init__()
        self.down = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.up = nn.ConvTranspose2d(4, 4, 2, stride=2)
        self.out = nn.Conv2d(7, 2, 3, padding=1)

    def forward(self, x):
        return self.out(torch.cat([x, self.up(self.down(x))], 1))


def test_unet_style_skip_concat():
    """8x8. down: n 4, unit i sees 2i-1 .. 2i+1. up: o = 2q+p reads q: units 0..3 see
    (-1,1) (-1,1) (1,3) (1,3): j = 2/2 = 1 with period 2, r 3.
    cat with the skip (pixel o): o = 1's skip pixel 1 lies inside (-1, 1): the same bounds, but
    centres differ (odd units: 1.5 vs 0.5): misaligned.
    out 3x3 p1: o reads cat units o-1 .. o+1: o = 0: units -1 (the up's (q=-1, p=1): -3 .. -1)
    .. 1: -3 .. 1; o = 1: -1 .. 3; o = 2: -1 .. 3; o = 3: 1 .. 5. r = 5, j = 1, period 2,
    start = (-3+1+1)/2 = -0.5."""
    rep = rfarith.analyze(UNetLike(), (1, 3, 8, 8))
    up = rep["up"]
    assert [up.bounds((m, 0))[0] for m in range(4)] == [(-1, 1), (-1, 1), (1, 3), (1, 3)]
    assert (up.j, up.r, up.phases) == (square(1), square(3), square(2))
    assert "misaligned" in rep["cat"].flags
    out = rep.output
    assert [out.bounds((m, m))[0] for m in range(4)] == [(-3, 1), (-1, 3), (-1, 3), (1, 5)]
    assert (out.n, out.j, out.r, out.start, out.phases) == (square(8), square(1), square(5), square(-0.5), square(2))


class Sub(nn.Module):
    """x - conv(x): a subtraction merges like an addition."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 5, padding=2)

    def forward(self, x):
        return x - self.conv(x)


def test_subtraction_is_a_merge():
    """conv 5x5 p2: r = 5, start 0.5; x: r = 1, start 0.5. sub: hull r = 5, aligned."""
    rep = rfarith.analyze(Sub(), (1, 3, 10, 10))
    assert_field(rep.output, n=square(10), j=square(1), r=square(5), start=square(0.5))


class UpsampledPlusInput(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 3, 3, stride=2)
        self.b = nn.Upsample(scale_factor=2)

    def forward(self, x):
        y = self.a(x)  # 7x7 from 15x15, j = 2
        return x[:, :, :14, :14] + self.b(y)  # j = 1 and j = 2/2 = 1, periods 1 and 2


def test_merge_of_an_upsampled_map_and_the_input():
    """15x15 input. a: k3 s2: n = 7, j = 2; unit i sees 2i .. 2i+2. Nearest x2: unit m sees a's
    unit floor(m/2): 2*floor(m/2) .. 2*floor(m/2)+2 (period 2, j = 2/2 = 1). x[:, :, :14, :14]:
    unit m sees pixel m. add: unit m sees min(m, 2*floor(m/2)) .. max(m, 2*floor(m/2)+2):
    m = 0: 0..2, m = 1: 0..2, m = 2: 2..4, m = 3: 2..4 -> period 2, j = 1, r = 3."""
    rep = rfarith.analyze(UpsampledPlusInput(), (1, 3, 15, 15))
    out = rep.output
    assert out.j == (1, 1) and out.r == (3, 3) and out.phases == (2, 2)
    assert [out.bounds((m, 0))[0] for m in range(4)] == [(0, 2), (0, 2), (2, 4), (2, 4)]


class PooledToOneColumn(nn.Module):
    """x + resize(avgpool of the first two columns): at this input the pool's map has one
    column, and the resize gives every column that unit's field (row h, columns 0 and 1)."""

    def forward(self, x):
        pooled = F.avg_pool2d(x[..., :2], (1, 2))  # n: (6, 1)
        return x + F.interpolate(pooled, size=(6, 4), mode="nearest")


def test_a_map_local_ops_reduce_to_one_unit_stays_in_the_field():
    """Not a global reduction (the probe follows it too): unit (2, 3) sees row 2, columns 0, 1
    (the broadcast path) and 3 (x itself); the summary along w describes the part that steps
    (x: r 1, j 1), and no flag global."""
    rf = rfarith.analyze(PooledToOneColumn(), (1, 1, 6, 4)).output
    assert rf.real_seen((2, 3)) == ((2,), (0, 1, 3))
    assert rf.real_seen((2, 0)) == ((2,), (0, 1))
    assert rf.broadcast_axes == ("w",)
    assert "global" not in rf.flags
    assert (rf.j[1], rf.r[1]) == (1, 1)
    assert rf.bounds((2, 3)) == ((2, 2), (0, 3))


class OneRowResized(nn.Module):
    """An average pool as tall as this input (local ops: a window of 4 rows) resized back to 4
    rows: every unit sees all 4 rows of its column, at this input only."""

    def forward(self, x):
        return F.interpolate(F.avg_pool2d(x, (4, 1)), size=(4, 5), mode="nearest")


def test_a_field_every_path_of_which_passes_a_one_unit_map_is_constant_along_it():
    rf = rfarith.analyze(OneRowResized(), (1, 1, 4, 5)).output
    assert rf.broadcast_axes == ("h",)
    assert rf.j == (0, 1) and "global" in rf.flags and not rf.global_via
    assert rf.real_seen((1, 2)) == ((0, 1, 2, 3), (2,))
    assert rfarith.analyze(OneRowResized(), (1, 1, 4, 5)).output.real_seen((3, 0)) == ((0, 1, 2, 3), (0,))


class TallBroadcastColumn(nn.Module):
    """x + resize(3x2 average of the first two columns): the broadcast path sees rows h-1..h+1
    of columns 0, 1; x sees pixel (h, w) alone. Along h the summary is r 3 with that path,
    r 1 without it."""

    def forward(self, x):
        pooled = F.avg_pool2d(x[..., :2], (3, 2), stride=1, padding=(1, 0))  # n: (6, 1)
        return x + F.interpolate(pooled, size=(6, 4), mode="nearest")


def test_the_axes_a_broadcast_path_reaches_are_those_whose_summary_it_changes():
    tall = rfarith.analyze(TallBroadcastColumn(), (1, 1, 6, 4)).output
    assert tall.broadcast_axes == ("w",) and tall.broadcast_reach == ("h", "w")
    assert tall.r == (3, 1)
    flat = rfarith.analyze(PooledToOneColumn(), (1, 1, 6, 4)).output
    assert flat.broadcast_axes == ("w",) and flat.broadcast_reach == ("w",)
    plain = rfarith.analyze(nn.Conv2d(1, 1, 3), (1, 1, 6, 4)).output
    assert plain.broadcast_axes == () and plain.broadcast_reach == ()
