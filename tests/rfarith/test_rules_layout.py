"""Rules of ops that move, split or select tensor dimensions (rfarith/rules/layout.py).

Channel-only reshapes never change a field; slicing a spatial axis from ``start`` with
``step`` is a window of one tap: unit m reads unit ``start + m*step``, so
    j' = j*step,  r' = r,  start' = start + start_index*j.
Every test starts from a conv 3x3 stride 2 on 17x17 (unless it says otherwise):
n = 8, j = 2, r = 3, start = 0.5+1 = 1.5; unit m sees 2m .. 2m+2.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import rfarith

from .expect import Lambda, assert_field, square

CONV = {"n": square(8), "j": square(2), "r": square(3), "start": square(1.5)}
SHAPE = (1, 3, 17, 17)


def after(fn, channels=4, **modules):
    """conv 3x3 stride 2 (node `stem`), then ``fn(self, y)``."""
    return Lambda(fn, nn.Conv2d(3, channels, 3, stride=2), **modules)


def out(fn, channels=4, shape=SHAPE, **modules):
    return rfarith.analyze(after(fn, channels, **modules), shape).output


def channel_shuffle(self, y):
    """ShuffleNet's shuffle, written with sizes read from the tensor."""
    b, c, h, w = y.size()
    return y.view(b, 2, c // 2, h, w).transpose(1, 2).contiguous().view(b, c, h, w)


def add_chunks(self, y):
    a, b = y.chunk(2, dim=1)
    return a + b


CHANNEL_ONLY = {
    "cat dim 1": lambda self, y: torch.cat([y, F.relu(y)], dim=1),
    "cat dim -3": lambda self, y: torch.cat((y, y), -3),
    "view": lambda self, y: y.view(1, 2, 2, 8, 8).view(1, 4, 8, 8),
    "reshape": lambda self, y: y.reshape(1, 2, 2, 8, 8).sum(1),
    "permute there and back": lambda self, y: y.permute(0, 2, 3, 1).permute(0, 3, 1, 2),
    "transpose there and back": lambda self, y: y.transpose(1, 3).transpose(3, 1),
    "chunk": add_chunks,
    "split": lambda self, y: torch.split(y, [1, 3], dim=1)[1],
    "getitem channels": lambda self, y: y[:, :2],
    "select channel": lambda self, y: y[:, 1],
    "channel shuffle": channel_shuffle,
    "F.channel_shuffle": lambda self, y: F.channel_shuffle(y, 2),
    "flatten and view back": lambda self, y: y.flatten(2).view(1, 4, 8, 8),
    "unsqueeze squeeze": lambda self, y: y.unsqueeze(2).squeeze(2),
    "stack": lambda self, y: torch.stack([y, 2 * y], dim=1).sum(1),
}


@pytest.mark.parametrize("fn", list(CHANNEL_ONLY.values()), ids=list(CHANNEL_ONLY))
def test_channel_only_layout_ops_keep_the_field(fn):
    assert_field(out(fn), **CONV)


def test_channel_shuffle_module_then_conv():
    """nn.ChannelShuffle(2) is neutral; a 3x3 p1 conv after it: r = 3+2*2 = 7, start 1.5."""

    def fn(self, y):
        return self.conv2(self.shuffle(y))

    rep = out(fn, shuffle=nn.ChannelShuffle(2), conv2=nn.Conv2d(4, 4, 3, padding=1))
    assert_field(rep, n=square(8), j=square(2), r=square(7), start=square(1.5))


def test_flattened_tokens_unflattened_back_to_a_grid_then_conv():
    """(B, C, H, W) -> flatten(2) -> transpose -> (B, HW, C) -> transpose back -> view
    (B, C, H, W): the spatial axes survive; a 3x3 p1 conv after it: r = 7, start 1.5."""

    def fn(self, y):
        t = y.flatten(2).transpose(1, 2)
        return self.conv2(t.transpose(1, 2).reshape(1, 4, 8, 8))

    assert_field(out(fn, conv2=nn.Conv2d(4, 4, 3, padding=1)), n=square(8), j=square(2), r=square(7), start=square(1.5))


def test_slicing_crops():
    """y[:, :, 1:, 2:5]: h: unit m reads m+1: n = 7, start = 1.5+1*2 = 3.5;
    w: unit m reads m+2: n = 3, start = 1.5+2*2 = 5.5. r and j unchanged."""
    o = out(lambda self, y: y[:, :, 1:, 2:5])
    assert_field(o, n=(7, 3), j=(2, 2), r=(3, 3), start=(3.5, 5.5))
    assert o.bounds((0, 0)) == ((2, 4), (4, 6))


def test_strided_and_negative_slices():
    """y[..., -4:, 1::3]: h: from 8-4 = 4: n = 4, start = 1.5+4*2 = 9.5;
    w: from 1 step 3 (units 1, 4, 7): n = 3, j = 2*3 = 6, start = 1.5+2 = 3.5, r = 3."""
    o = out(lambda self, y: y[..., -4:, 1::3])
    assert_field(o, n=(4, 3), j=(2, 6), r=(3, 3), start=(9.5, 3.5))


def test_strided_slice_of_the_input_has_holes_after_a_conv():
    """x[:, :, ::2, :] on 8x8 pixels: h: unit m reads pixel 2m: n = 4, j = 2, r = 1, start 0.5.
    A 3x3 p1 conv after it reads pixels 2m-2, 2m, 2m+2 along h: r = 5, holes; w: r = 3."""

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            return self.conv(x[:, :, ::2, :])

    rep = rfarith.analyze(Net(), (1, 3, 8, 8))
    assert_field(rep["getitem"], n=(4, 8), j=(2, 1), r=(1, 1), start=(0.5, 0.5))
    assert_field(rep.output, n=(4, 8), j=(2, 1), r=(5, 3), start=(0.5, 0.5), flags={"holes"})


def test_narrow_crops():
    """torch.narrow(y, 2, 1, 5) and y.narrow(3, 2, 4): h: n = 5, start 3.5; w: n = 4, start 5.5."""
    o = out(lambda self, y: torch.narrow(y, 2, 1, 5).narrow(3, 2, 4))
    assert_field(o, n=(5, 4), j=(2, 2), r=(3, 3), start=(3.5, 5.5))


def test_integer_index_on_a_spatial_dim_picks_one_row():
    """y[:, :, 3]: the row of unit 3: h: n = 1, start = 1.5+3*2 = 7.5, r = 3; w unchanged.
    The tensor (B, C, W) keeps w's field."""
    o = out(lambda self, y: y[:, :, 3])
    assert o.n == (1, 8) and o.r == (3, 3) and o.start == (7.5, 1.5) and o.j[1] == 2
    assert o.bounds((0, 1)) == ((6, 8), (2, 4))


def test_spatial_chunks_are_crops():
    """y.chunk(2, dim=3): the right half starts at unit 4: n = 4, start 1.5+4*2 = 9.5 along w;
    adding the halves merges unit m of the left (2m .. 2m+2) with unit m+4 of the right
    (2m+8 .. 2m+10): hull 2m .. 2m+10, r = 11, start 5.5, holes, misaligned."""

    def fn(self, y):
        left, right = y.chunk(2, dim=3)
        return left + right

    rep = rfarith.analyze(after(fn), SHAPE)
    assert_field(rep["getitem_1"], n=(8, 4), j=(2, 2), r=(3, 3), start=(1.5, 9.5))
    assert_field(rep.output, n=(8, 4), j=(2, 2), r=(3, 11), start=(1.5, 5.5), flags={"holes", "misaligned"})


def test_expand_of_a_pooled_gate_is_global():
    """y * y.mean((2, 3), keepdim=True).expand_as(y): the broadcast gate is a side path: the
    local field stays y's, flag global via mean."""
    o = out(lambda self, y: y * y.mean((2, 3), keepdim=True).expand_as(y))
    assert_field(o, **CONV, flags={"global"})
    assert o.global_via == ("mean",)


def test_repeat_tiles_units_without_making_them_global():
    """x.repeat(1, 1, 2, 1) on 3x4 pixels: h has 6 units, unit m sees pixel m mod 3; each unit
    sees one pixel (r = 1): nothing is global."""

    class Net(nn.Module):
        def forward(self, x):
            return x.repeat(1, 1, 2, 1)

    o = rfarith.analyze(Net(), (1, 2, 3, 4)).output
    assert [o.bounds((m, 0))[0] for m in range(6)] == [(0, 0), (1, 1), (2, 2), (0, 0), (1, 1), (2, 2)]
    assert o.r == (1, 1)
    assert "global" not in o.flags
