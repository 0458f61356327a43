"""Swin end to end: window attention (hand-written and F.scaled_dot_product_attention), window
reverse and the cyclic shift agree between rfarith and the probe, pixel set by pixel set.

A block of the zoo's Swin on a 4x4 patch embedding of a 56x56 input: 14 x 14 tokens, windows of
7 tokens (28 pixels). Expected by hand, along each axis: token m sees pixels 4m .. 4m+3 after the
embedding; after unshifted window attention its window, pixels 28*(m // 7) .. 28*(m // 7) + 27
(r 28, j 4, start 14.0, local: no flag global). With the shift of 3 tokens the windows wrap
around the border (torch.roll is circular): token 0 reads the rolled token 11, whose window
holds the tokens 10..13 and 0..2, pixels 40..55 and 0..11 (hull 0..55).

The model only accepts its own resolution, so the probe compares at the user's input only.
"""

from __future__ import annotations

import pytest
from torch import nn

import crosscheck
import rfarith
from crosscheck import zoo
from crosscheck.zoo.swin import SwinBlock

SHAPE = (1, 3, 56, 56)


class OneBlock(nn.Module):
    def __init__(self, shift: int, sdpa: bool) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, 12, 4, 4)
        self.block = SwinBlock(12, 2, 14, 7, shift, sdpa)

    def forward(self, x):
        x = self.embed(x).flatten(2).transpose(1, 2)
        x = self.block(x)
        return x.transpose(1, 2).reshape(1, 12, 14, 14)


def window_pixels(m: int) -> tuple[int, ...]:
    return tuple(range(28 * (m // 7), 28 * (m // 7) + 28))


def shifted_pixels(m: int, s: int = 3, n: int = 14) -> tuple[int, ...]:
    u = (m - s) % n
    tokens = sorted((7 * (u // 7) + s + t) % n for t in range(7))
    return tuple(p for t in tokens for p in range(4 * t, 4 * t + 4))


@pytest.mark.parametrize("sdpa", [False, True], ids=["matmul", "sdpa"])
def test_window_attention_is_the_window(sdpa):
    model = OneBlock(0, sdpa).eval()
    rep = rfarith.analyze(model, SHAPE)
    attn = rep["block.attn.proj"]
    assert attn.r == (28, 28) and attn.j == (4, 4) and attn.start == (14.0, 14.0)
    assert "global" not in attn.flags
    for unit in [(0, 0), (6, 7), (13, 3)]:
        assert attn.real_seen(unit) == tuple(window_pixels(m) for m in unit)
    df = crosscheck.compare(model, SHAPE, nodes=["block.attn.proj", "block.add"])
    assert (df["status"] == "agree").all(), df[["status", "reason_text"]].to_string()


@pytest.mark.parametrize("sdpa", [False, True], ids=["matmul", "sdpa"])
def test_shifted_windows_wrap_and_agree(sdpa):
    model = OneBlock(3, sdpa).eval()
    rep = rfarith.analyze(model, SHAPE)
    back = rep["block.roll_1"]
    assert "global" not in back.flags
    assert shifted_pixels(0) == (*range(0, 12), *range(40, 56))
    for unit in [(0, 0), (3, 9), (10, 13)]:
        assert back.real_seen(unit) == tuple(shifted_pixels(m) for m in unit)
    df = crosscheck.compare(model, SHAPE, nodes=["block.roll_1", "block.add_1"])
    assert (df["status"] == "agree").all(), df[["status", "reason_text"]].to_string()


def test_full_mode_agrees_too():
    """Window attention is no global mixing: full mode gives the same fields."""
    df = crosscheck.compare(OneBlock(3, False).eval(), SHAPE, nodes=["block.add_1"], mode="full")
    assert (df["status"] == "agree").all(), df[["status", "reason_text"]].to_string()


def test_zoo_swin_tiny_style():
    """Stage 1 (28 x 28 tokens, j 4): block 0 sees its window (r 28); block 1's shifted windows
    straddle two of block 0's (r 56). Patch merging (j 8), stage 2 (14 x 14 tokens, windows of 7
    tokens = 56 pixels)."""
    name = "swin_tiny_style"
    assert name in zoo.names()
    model = zoo.build(name)
    rep = rfarith.analyze(model, zoo.input_shape(name))
    assert rep["patch_embed"].r == (4, 4) and rep["patch_embed"].j == (4, 4)
    assert rep["stage1.0.attn.proj"].r == (28, 28)
    assert rep["stage1.1.attn.proj"].r == (56, 56)
    out = rep.output
    assert out.n == (14, 14) and out.j == (8, 8)
    assert "global" not in out.flags
    for node, r in [("stage1.0.add", 28), ("stage1.1.add_1", 56)]:
        assert rep[node].r == (r, r) and "global" not in rep[node].flags


class PatchMerging(nn.Module):
    """timm's Swin patch merging on (B, H, W, C): each 2x2 block to channels (reshape, the two
    2s moved last, flattened), a LayerNorm and a linear layer."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * c)
        self.reduction = nn.Linear(4 * c, 2 * c)

    def forward(self, x):
        b, h, w, c = x.shape
        x = x.reshape(b, h // 2, 2, w // 2, 2, c).permute(0, 1, 3, 4, 2, 5).flatten(3)
        return self.reduction(self.norm(x))


class Merged(nn.Module):
    """conv 3 pad 1 (r 3, j 1, start 0.5), patch merging (a 2x2 stride-2 window: r 4, j 2,
    start 1.0), conv 3 pad 1 (r 4 + 2*2 = 8, j 2, start 1.0)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.merge = PatchMerging(4)
        self.head = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x):
        y = self.merge(self.stem(x).permute(0, 2, 3, 1))
        return self.head(y.permute(0, 3, 1, 2))


def test_patch_merging_is_a_two_by_two_window_on_both_sides():
    rep = rfarith.analyze(Merged(), (1, 3, 16, 16))
    merged = rep["merge.reduction"]
    assert (merged.n, merged.j, merged.r, merged.start) == ((8, 8), (2, 2), (4, 4), (1.0, 1.0))
    assert (rep.output.r, rep.output.j, rep.output.start) == ((8, 8), (2, 2), (1.0, 1.0))
    frame = crosscheck.compare(Merged(), (1, 3, 16, 16))
    assert frame["status"].eq("agree").all(), frame[["status", "reason_text"]]
