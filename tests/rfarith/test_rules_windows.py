"""Window partition, attention inside windows, window reverse and the cyclic shift (Swin).

No patch embedding: the input (1, C, 14, 14) goes channels-last and is cut into 2 x 2 windows
of 7 x 7 pixels, so a unit is a pixel. Expected by hand, along each axis (n 14):

- partition then reverse, nothing in between: the identity (r 1, j 1, start 0.5);
- attention inside the windows: unit m sees its window, pixels ``7*(m // 7) .. 7*(m // 7) + 6``
  (r 7, j 1 on average: period 7, jump 7; start 3.5; local, no flag global);
- ``torch.roll(x, s)`` along an axis: unit m sees pixel ``(m - s) mod 14``;
- shifted windows (roll by -3, windows, attention, reverse, roll by +3): unit m reads the
  rolled unit ``u = (m - 3) mod 14``, which sees the window of ``u``, the pixels
  ``(7*(u // 7) + 3 + t) mod 14`` for t in 0..6: unit 0 (u = 11) sees 10..13 and 0..2, a window
  that wraps around the border; unit 3 (u = 0) sees 3..9.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import crosscheck
import rfarith
from rfarith.errors import UnsupportedOp
from rfarith.value import Part

W = 7
SHAPE = (1, 4, 14, 14)


def partition(x):
    B, H, Wd, C = x.shape
    return x.view(B, H // W, W, Wd // W, W, C).permute(0, 1, 3, 2, 4, 5).reshape(-1, W * W, C)


def reverse(win, H, Wd):
    C = win.shape[-1]
    return win.view(1, H // W, Wd // W, W, W, C).permute(0, 1, 3, 2, 4, 5).reshape(1, H, Wd, C)


def attend(t, how):
    if how == "sdpa":
        q = t.unsqueeze(1)
        return F.scaled_dot_product_attention(q, q, q).squeeze(1)
    att = (t @ t.transpose(-2, -1)).softmax(dim=-1)
    return att @ t


class Windows(nn.Module):
    def __init__(self, how: str | None = None, shift: int = 0) -> None:
        super().__init__()
        self.how, self.shift = how, shift

    def forward(self, x):
        y = x.permute(0, 2, 3, 1)
        if self.shift:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
        win = partition(y)
        if self.how:
            win = attend(win, self.how)
        y = reverse(win, 14, 14)
        if self.shift:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        return y.permute(0, 3, 1, 2)


def window_of(m: int) -> tuple[int, ...]:
    return tuple(range(W * (m // W), W * (m // W) + W))


def shifted_window_of(m: int, s: int = 3, n: int = 14) -> tuple[int, ...]:
    u = (m - s) % n
    return tuple(sorted((W * (u // W) + s + t) % n for t in range(W)))


def test_partition_splits_the_axes_with_steps():
    assert Part(0, 7) == 0 and Part(0, 7) != Part(0, 1) and hash(Part(1, 7)) == hash(1)
    out = rfarith.analyze(Windows(), SHAPE).output
    assert out.n == (14, 14) and out.r == (1, 1) and out.j == (1, 1) and out.start == (0.5, 0.5)
    assert out.real_seen((9, 4)) == ((9,), (4,))


@pytest.mark.parametrize("how", ["matmul", "sdpa"])
def test_attention_inside_windows_is_the_window(how):
    rep = rfarith.analyze(Windows(how), SHAPE)
    out = rep.output
    assert out.n == (14, 14)
    assert out.r == (7, 7) and out.j == (1, 1) and out.start == (3.5, 3.5)
    assert "global" not in out.flags
    for unit in [(0, 0), (6, 7), (7, 13), (13, 2), (3, 10)]:
        assert out.real_seen(unit) == tuple(window_of(m) for m in unit)
        assert out.bounds(unit) == tuple((window_of(m)[0], window_of(m)[-1]) for m in unit)


def test_roll_is_a_circular_shift():
    class Roll(nn.Module):
        def forward(self, x):
            return torch.roll(x, shifts=3, dims=2)

    out = rfarith.analyze(Roll(), SHAPE).output
    assert out.r == (1, 1) and out.j == (1, 1)
    for m in range(14):
        assert out.real_seen((m, 5)) == (((m - 3) % 14,), (5,))


@pytest.mark.parametrize("how", ["matmul", "sdpa"])
def test_shifted_windows_wrap_around_the_border(how):
    out = rfarith.analyze(Windows(how, shift=3), SHAPE).output
    assert "global" not in out.flags
    assert shifted_window_of(0) == (0, 1, 2, 10, 11, 12, 13)
    assert shifted_window_of(3) == tuple(range(3, 10))
    for unit in [(0, 0), (3, 3), (9, 10), (10, 2), (13, 13), (2, 6)]:
        assert out.real_seen(unit) == tuple(shifted_window_of(m) for m in unit)


def test_a_merge_of_windows_keeps_the_units():
    """An elementwise op on windowed tokens: 14 units per axis (the product of the window and
    the position in it), not 7 (the last factor)."""

    class Add(nn.Module):
        def forward(self, x):
            win = partition(x.permute(0, 2, 3, 1))
            return reverse(win + 2 * win, 14, 14).permute(0, 3, 1, 2)

    out = rfarith.analyze(Add(), SHAPE).output
    assert out.n == (14, 14) and out.r == (1, 1)
    assert out.real_seen((12, 1)) == ((12,), (1,))


class Refused(nn.Module):
    def __init__(self, what: str) -> None:
        super().__init__()
        self.what = what

    def forward(self, x):
        win = partition(x.permute(0, 2, 3, 1))  # (4, 49, C)
        if self.what == "across_windows":  # attention over the windows, not inside them
            t = win.transpose(0, 1)
            return (t @ t.transpose(-2, -1)).softmax(-1) @ t
        if self.what == "index":
            return win[:, 3]
        if self.what == "reduce":
            return win.mean(1)
        if self.what == "roll_tokens":
            return torch.roll(win, 2, dims=1)
        raise AssertionError(self.what)


@pytest.mark.parametrize("what", ["across_windows", "index", "roll_tokens"])
def test_what_is_not_exact_is_refused(what):
    with pytest.raises(UnsupportedOp):
        rfarith.analyze(Refused(what), SHAPE)


def test_a_reduction_over_the_positions_inside_the_windows_is_a_window():
    """win.mean(1) over the 49 positions of each 7x7 window: one unit per window (2 x 2 of the
    14 x 14 input), each seeing its window: r 7, j 7, start 3.5; the probe agrees."""
    out = rfarith.analyze(Refused("reduce"), SHAPE).output
    assert (out.n, out.r, out.j, out.start) == ((2, 2), (7, 7), (7, 7), (3.5, 3.5))
    frame = crosscheck.compare(Refused("reduce"), SHAPE)
    assert frame["status"].eq("agree").all(), frame[["status", "reason_text"]]


class SpaceToDepth(nn.Module):
    """TResNet's stem as timm writes it: every 4x4 block of pixels moved into the channels
    (view, permute, view), then a 3x3 conv (padding 1) over the 4x-coarser grid, which mixes
    the channels and so the positions inside each block: unit m sees blocks m-1 .. m+1, pixels
    4m-4 .. 4m+7 (r 12, j 4, start 2). ``groups``: a depthwise conv keeps the blocks' positions
    apart, which the arithmetic does not follow (refused, not guessed)."""

    def __init__(self, block: int = 4) -> None:
        super().__init__()
        self.block = block
        self.conv = nn.Conv2d(3 * block * block, 8, 3, padding=1)

    def forward(self, x):
        n, c, h, w = x.size()
        bs = self.block
        x = x.view(n, c, h // bs, bs, w // bs, bs).permute(0, 3, 5, 1, 2, 4).contiguous()
        return self.conv(x.view(n, c * bs * bs, h // bs, w // bs))


def test_a_space_to_depth_then_a_conv_is_a_window_then_the_conv():
    out = rfarith.analyze(SpaceToDepth(), (1, 3, 32, 32)).output
    assert (out.n, out.r, out.j, out.start) == ((8, 8), (12, 12), (4, 4), (2.0, 2.0))
    assert out.bounds((0, 3)) == ((-4, 7), (8, 19))
    frame = crosscheck.compare(SpaceToDepth(), (1, 3, 32, 32))
    assert frame["status"].eq("agree").all(), frame[["status", "reason_text"]]


class PoolInsideWindows(nn.Module):
    """SAM2-Hiera's pooling as timm writes it: tokens partitioned into 8x8 windows, each window
    max-pooled to 4x4 on its own (kernel 2 stride 2, or kernel 3 stride 2 padding 1, whose
    padding sits at every window's edge), the windows put back, then a 3x3 conv."""

    def __init__(self, kernel: int = 2, padding: int = 0) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(kernel, 2, padding)
        self.conv = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        b, c, h, w = x.shape
        win = x.view(b, c, h // 8, 8, w // 8, 8).permute(0, 2, 4, 1, 3, 5).reshape(-1, c, 8, 8)
        win = self.pool(win)
        back = win.view(b, h // 8, w // 8, c, 4, 4).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h // 2, w // 2)
        return self.conv(back)


@pytest.mark.parametrize("kernel, padding", [(2, 0), (3, 1)])
def test_a_pooling_inside_windows_is_periodic_and_agrees(kernel, padding):
    """Kernel 2: the same as pooling the whole map (r 2, j 2). Kernel 3 padding 1: row 4 (the
    first of the second window) reads pixels 8..9 only (position -1 is the window's padding,
    not pixel 7 as a pooling of the whole map would read); column 3 reads 5..7."""
    model = PoolInsideWindows(kernel, padding)
    report = rfarith.analyze(model, (1, 4, 16, 16))
    pool = report["pool"]
    assert pool.n == (8, 8)
    if kernel == 2:
        assert (pool.r, pool.j) == ((2, 2), (2, 2))
    else:
        assert pool.bounds((4, 3)) == ((8, 9), (5, 7))
    frame = crosscheck.compare(model, (1, 4, 16, 16))
    assert frame["status"].eq("agree").all(), frame[["status", "reason_text"]]


class PatchPixels(nn.Module):
    """TNT's inner stream as timm writes it: an Unfold into 4x4 blocks, the pixels of each
    block as 16 tokens, a LayerNorm over a block's pixels and features together (its
    statistics read the whole block: each pixel token sees its block, not the whole input),
    then the blocks' pixels folded into one feature vector per block by a Linear."""

    def __init__(self, stats_over_block: bool = True) -> None:
        super().__init__()
        self.unfold = nn.Unfold(4, stride=4)
        self.norm = nn.LayerNorm((16, 3) if stats_over_block else 3)
        self.proj = nn.Linear(48, 8)

    def forward(self, x):
        b, c = x.shape[:2]
        pixels = self.unfold(x).transpose(1, 2).reshape(-1, c, 16).transpose(1, 2)  # (B*N, 16, C)
        pixels = self.norm(pixels)
        return self.proj(pixels.reshape(b, -1, 16 * c))  # (B, N, 8): one token per block


@pytest.mark.parametrize("stats_over_block", [True, False])
def test_an_unfold_into_blocks_and_statistics_inside_them_are_local(stats_over_block):
    """The norm's pixel tokens: r 4 (their block) with statistics over the block, r 1 without;
    never global. The tokens after the Linear: r 4, j 4. Both sides agree on every unit."""
    model = PatchPixels(stats_over_block)
    report = rfarith.analyze(model, (1, 3, 16, 16))
    norm = report["norm"]
    assert norm.r == ((4, 4) if stats_over_block else (1, 1)) and not norm.global_via
    assert (report.output.r, report.output.j, report.output.start) == ((4, 4), (4, 4), (2.0, 2.0))
    frame = crosscheck.compare(model, (1, 3, 16, 16))
    assert frame["status"].eq("agree").all(), frame[["status", "reason_text"]]
    frame = crosscheck.compare(model, (1, 3, 16, 16), mode="full")
    assert frame["status"].eq("agree").all(), frame[["status", "reason_text"]]


class Outlook(nn.Module):
    """VOLO's outlook attention as timm writes it (one head): values unfolded into overlapping
    3x3 blocks (padding 1), weights from a Linear at each position, a sum over each block's
    taps, the taps folded back. ``roundtrip``: ``fold(unfold(x))`` alone, which puts every
    tap back on the pixel it came from (each output pixel sees itself only)."""

    def __init__(self, roundtrip: bool = False, stride: int = 1) -> None:
        super().__init__()
        self.roundtrip, self.stride = roundtrip, stride
        self.v = nn.Conv2d(3, 4, 1)
        self.attn = nn.Linear(3, 81)

    def forward(self, x):
        b, _, h, w = x.shape
        v = F.unfold(self.v(x), 3, padding=1, stride=self.stride)  # (B, 4*9, L)
        if self.roundtrip:
            return F.fold(v, (h, w), 3, padding=1, stride=self.stride)
        n = v.shape[-1]
        v = v.reshape(b, 4, 9, n).permute(0, 3, 2, 1)  # (B, L, 9 taps, 4)
        pooled = F.avg_pool2d(x, self.stride, self.stride) if self.stride > 1 else x
        attn = self.attn(pooled.flatten(2).transpose(1, 2)).reshape(b, n, 9, 9).softmax(-1)
        out = (attn @ v).permute(0, 3, 2, 1).reshape(b, 4 * 9, n)
        return F.fold(out, (h, w), 3, padding=1, stride=self.stride)


@pytest.mark.parametrize("roundtrip, stride, r", [(True, 1, 1), (False, 1, 5), (False, 2, 5)])
def test_overlapping_unfold_and_fold_are_exact(roundtrip, stride, r):
    """fold(unfold(x)) puts each tap back on its own pixel: r 1. With the taps summed in between
    (outlook attention), each block sees its 3x3 window and each output pixel the blocks that
    cover it: r 5 (stride 1; with stride 2 the pooled weights see 2x2 blocks, the values r 5)."""
    model = Outlook(roundtrip, stride)
    report = rfarith.analyze(model, (1, 3, 16, 16))
    assert report.output.n == (16, 16) and report.output.r == (r, r)
    frame = crosscheck.compare(model, (1, 3, 16, 16))
    assert frame["status"].eq("agree").all(), frame[["status", "reason_text"]]


class EmptyPrefix(nn.Module):
    """Rotary embedding as timm applies it with no prefix tokens: the tokens split into the
    first 0 (an empty slice) and the rest, the rest rotated (here scaled), put back together."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 4, stride=4)

    def forward(self, x):
        tokens = self.conv(x).flatten(2).transpose(1, 2)  # (B, 16, 8)
        prefix, rest = tokens[:, :0], tokens[:, 0:]
        return torch.cat([prefix, rest * 2.0], dim=1)


def test_an_empty_slice_and_its_concatenation_are_nothing():
    """Neither global nor refused: the tokens keep their grid (r 4, j 4)."""
    out = rfarith.analyze(EmptyPrefix(), (1, 3, 16, 16)).output
    assert (out.r, out.j, out.global_via) == ((4, 4), (4, 4), ())
    frame = crosscheck.compare(EmptyPrefix(), (1, 3, 16, 16))
    assert frame["status"].eq("agree").all(), frame[["status", "reason_text"]]


class Blocks(nn.Module):
    """NesT's blockify / deblockify as timm writes them (channels last), then a pooling of the
    map put back: the window and the position in it must be one axis again for the pooling."""

    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(4, 1, batch_first=True)
        self.pool = nn.MaxPool2d(3, 2, padding=1)

    def forward(self, x):
        b, c, h, w = x.shape
        t = x.permute(0, 2, 3, 1).reshape(b, h // 4, 4, w // 4, 4, c).transpose(2, 3).reshape(b * (h // 4) * (w // 4), 16, c)
        t = self.attn(t, t, t, need_weights=False)[0]  # attention inside each 4x4 block: local
        back = t.reshape(b, h // 4, w // 4, 4, 4, c).transpose(2, 3).reshape(b, h, w, c).permute(0, 3, 1, 2)
        return self.pool(back)


def test_blocks_put_back_are_one_axis_again():
    out = rfarith.analyze(Blocks(), (1, 4, 16, 16)).output
    assert out.n == (8, 8) and out.global_via == ()
    frame = crosscheck.compare(Blocks(), (1, 4, 16, 16))
    assert frame["status"].eq("agree").all(), frame[["status", "reason_text"]]


class RepeatInterleave(nn.Module):
    """GCViT's global query: pooled to one token per image, repeated for each of the image's
    windows along the batch dim, then attending over each window's tokens. ``along_w``: a
    nearest upsampling written as repeat_interleave along the width instead."""

    def __init__(self, along_w: bool = False) -> None:
        super().__init__()
        self.along_w = along_w
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        if self.along_w:
            return y.repeat_interleave(2, dim=3)
        b, c, h, w = y.shape
        windows = y.view(b, c, h // 4, 4, w // 4, 4).permute(0, 2, 4, 3, 5, 1).reshape(-1, 16, c)
        query = y.mean((2, 3)).unsqueeze(1).repeat_interleave(windows.shape[0] // b, dim=0)
        attn = (query @ windows.transpose(1, 2)).softmax(-1)  # (B*nW, 1, 16)
        return (attn @ windows).view(b, h // 4, w // 4, c).permute(0, 3, 1, 2)


def test_repeat_interleave_over_windows_and_along_an_axis():
    """Over the windows: each window's output sees its 4x4 window of the conv (r 6, j 4) and,
    through the pooled query, the whole input (global). Along w: a nearest upsampling by 2
    (period 2, j 1/2)."""
    out = rfarith.analyze(RepeatInterleave(), (1, 3, 16, 16)).output
    assert (out.r, out.j, out.start) == ((6, 6), (4, 4), (2.0, 2.0)) and out.global_via
    up = rfarith.analyze(RepeatInterleave(along_w=True), (1, 3, 16, 16)).output
    assert up.n == (16, 32) and up.r == (3, 3) and str(up.j[1]) == "1/2"
    for model in (RepeatInterleave(), RepeatInterleave(along_w=True)):
        frame = crosscheck.compare(model, (1, 3, 16, 16))
        assert frame["status"].eq("agree").all(), frame[["status", "reason_text"]]


class RoomForClassToken(nn.Module):
    """CoaT's convolutional position encoding as timm writes it: the patch tokens' values
    padded with one zero token in front (room for the class token), added to attention
    output that has the class token in front."""

    def __init__(self) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, 8, 4, stride=4)
        self.cls = nn.Parameter(torch.zeros(1, 1, 8))

    def forward(self, x):
        tokens = self.patch(x).flatten(2).transpose(1, 2)  # (B, 16, 8)
        with_cls = torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], dim=1)
        encoding = F.pad(tokens * 2.0, (0, 0, 1, 0, 0, 0))  # (B, 17, 8), a zero token in front
        return (with_cls + encoding)[:, 1:]


def test_a_pad_in_front_of_tokens_makes_room_for_a_class_token():
    out = rfarith.analyze(RoomForClassToken(), (1, 3, 16, 16)).output
    assert (out.r, out.j, out.global_via) == ((4, 4), (4, 4), ())
    frame = crosscheck.compare(RoomForClassToken(), (1, 3, 16, 16))
    assert frame["status"].eq("agree").all(), frame[["status", "reason_text"]]


class SlidingSum(nn.Module):
    """Windows cut with x.unfold (as HaloNet cuts its blocks with their halo): windows of 5
    every 2 along h, of 3 every 3 along w, each window's positions then summed (a box filter
    with those steps), or kept (``keep``: each unit one pixel of one window)."""

    def __init__(self, keep: bool = False) -> None:
        super().__init__()
        self.keep = keep

    def forward(self, x):
        windows = x.unfold(2, 5, 2).unfold(3, 3, 3)  # (B, C, 6, 5, 5, 3)
        return windows if self.keep else windows.sum((-2, -1))


@pytest.mark.parametrize("keep", [False, True])
def test_windows_cut_by_tensor_unfold(keep):
    """Summed: unit (m, k) sees rows 2m .. 2m+4, columns 3k .. 3k+2 (r 5 x 3, j 2 x 3). Kept: the
    units are (window, position) pairs, unit 5q+t seeing row 2q+t: one pixel each."""
    report = rfarith.analyze(SlidingSum(keep), (1, 2, 16, 15))
    out = report.output
    if keep:
        assert out.n == (30, 15) and out.r == (1, 1) and out.bounds((7, 4)) == ((4, 4), (4, 4))
    else:
        assert (out.n, out.r, out.j) == ((6, 5), (5, 3), (2, 3)) and out.bounds((1, 2)) == ((2, 6), (6, 8))
    frame = crosscheck.compare(SlidingSum(keep), (1, 2, 16, 15))
    assert frame["status"].eq("agree").all(), frame[["status", "reason_text"]]
