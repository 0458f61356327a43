"""Rules of ops that mix values across a dimension (rfarith/rules/mixing.py).

Mixing across channels changes no field. Mixing across a spatial dimension is global: on the
main path every unit then sees what all units saw together (clipped to the input), j = 0; as a
side path (normalisation statistics) the local field is kept and the flag `global` is added,
naming the node that caused it.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import rfarith
from tests.ground_truth import seen_by_autograd

from .expect import Lambda, assert_field, square

# conv 3x3 p1 on 8x8: n = 8, j = 1, r = 3, start = 0.5; units 0..7 see -1 .. 8 together,
# clipped to the input: 0 .. 7, so a global field has r = 8, start = 4.0, j = 0.
CONV = {"n": square(8), "j": square(1), "r": square(3), "start": square(0.5)}
SHAPE = (1, 3, 8, 8)


def after(fn=None, **modules):
    """conv 3x3 padding 1 (node `stem`), then ``fn(self, y)`` or the module ``op``."""
    return Lambda(fn, nn.Conv2d(3, 4, 3, padding=1), **modules)


# ---- normalisation ----------------------------------------------------------------------------
SPATIAL_NORMS = {
    "GroupNorm": lambda: after(op=nn.GroupNorm(2, 4)),
    "InstanceNorm2d": lambda: after(op=nn.InstanceNorm2d(4)),
    "LayerNorm(C, H, W)": lambda: after(op=nn.LayerNorm([4, 8, 8])),
    "LayerNorm(W)": lambda: after(op=nn.LayerNorm(8)),
    "F.group_norm": lambda: after(lambda self, y: F.group_norm(y, 2)),
    "F.instance_norm": lambda: after(lambda self, y: F.instance_norm(y)),
}


@pytest.mark.parametrize("build", list(SPATIAL_NORMS.values()), ids=list(SPATIAL_NORMS))
def test_norms_over_spatial_axes_are_a_global_side_path(build):
    """Statistics over H and/or W: the local field stays the conv's, flag global via the norm."""
    rep = rfarith.analyze(build(), SHAPE)
    out = rep.output
    assert_field(out, **CONV, flags={"global"})
    assert out.global_via == (out.node,)
    assert out.describe_flags() == f"global (via {out.node})"


def test_layernorm_over_channels_on_channels_last_is_neutral():
    """permute to (B, H, W, C), LayerNorm(C), permute back: statistics over channels only."""

    def fn(self, y):
        return self.norm(y.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    rep = rfarith.analyze(after(fn, norm=nn.LayerNorm(4)), SHAPE)
    assert_field(rep["norm"], **CONV)
    assert_field(rep.output, **CONV)


def test_batchnorm_then_groupnorm_names_only_the_groupnorm():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.GroupNorm(2, 4), nn.ReLU())
    rep = rfarith.analyze(model, SHAPE)
    assert_field(rep["1"], **CONV)
    assert_field(rep["3"], **CONV, flags={"global"})
    assert rep["3"].global_via == ("2",)


# ---- linear maps and reductions ---------------------------------------------------------------
class FlattenLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(4 * 4 * 4, 10)

    def forward(self, x):
        return self.fc(self.flatten(self.conv(x)))


def test_flatten_then_linear_is_global():
    """conv 3x3 (valid) on 6x6: n = 4, units 0..3 see 0 .. 5 together. Flatten keeps the field
    (the spatial axes ride in the flat dim); Linear mixes the flat dim: the whole input,
    n = 1, j = 0, r = 6, start = 3.0, global via fc."""
    rep = rfarith.analyze(FlattenLinear(), (1, 3, 6, 6))
    assert_field(rep["flatten"], n=square(4), j=square(1), r=square(3), start=square(1.5))
    out = rep.output
    assert out.node == "fc"
    assert_field(out, n=square(1), j=square(0), r=square(6), start=square(3.0), flags={"global"})
    assert out.global_via == ("fc",)
    assert rep.table.loc["fc", "shape"] == (1, 10)


REDUCTIONS = {
    "mean": lambda self, y: y.mean((2, 3)),
    "sum keepdim": lambda self, y: y.sum(dim=(-2, -1), keepdim=True),
    "torch.amax": lambda self, y: torch.amax(y, dim=(2, 3)),
    "torch.mean": lambda self, y: torch.mean(y, dim=[2, 3]),
}


@pytest.mark.parametrize("fn", list(REDUCTIONS.values()), ids=list(REDUCTIONS))
def test_spatial_reductions_are_global(fn):
    """Reducing H and W: every unit sees pixels 0 .. 7: r = 8, start = 4.0, j = 0, n = 1."""
    out = rfarith.analyze(after(fn), SHAPE).output
    assert_field(out, n=square(1), j=square(0), r=square(8), start=square(4.0), flags={"global"})
    assert out.global_via == (out.node,)


def test_reduction_over_one_axis_is_global_along_it_only():
    """y.mean(3): w global (r 8, start 4.0, j 0, n 1); h unchanged (r 3, start 0.5)."""
    out = rfarith.analyze(after(lambda self, y: y.mean(3)), SHAPE).output
    assert_field(out, n=(8, 1), j=(1, 0), r=(3, 8), start=(0.5, 4.0), flags={"global"})


def test_reduction_over_channels_is_neutral():
    """y.mean(1, keepdim=True) and y.amax(1) (a CBAM spatial gate's inputs): per unit."""
    out = rfarith.analyze(after(lambda self, y: y.mean(1, keepdim=True) + y.amax(1, keepdim=True)), SHAPE).output
    assert_field(out, **CONV)


def test_reduction_result_read_by_attribute():
    """y.max(1).values (as y.max(1)[0]): a max over channels, per unit: unchanged field."""
    out = rfarith.analyze(after(lambda self, y: y.max(1).values + y.max(1)[0]), SHAPE).output
    assert_field(out, **CONV)


def test_linear_on_the_last_spatial_axis_is_global_along_it():
    """nn.Linear(8, 8) on a (B, C, H, W) map mixes along W only: w global (every output sees
    the whole row: r 8, start 4.0, j 0); h unchanged (r 3, start 0.5, j 1)."""
    out = rfarith.analyze(after(op=nn.Linear(8, 8)), SHAPE).output
    assert out.j == (1, 0) and out.r == (3, 8) and out.start == (0.5, 4.0)
    assert "global" in out.flags and out.global_via == ("op",)


def test_softmax_over_channels_is_neutral_over_space_is_global():
    channels = rfarith.analyze(after(lambda self, y: y.softmax(dim=1)), SHAPE).output
    assert_field(channels, **CONV)
    space = rfarith.analyze(after(lambda self, y: F.softmax(y.flatten(2), dim=-1)), SHAPE).output
    assert "global" in space.flags and space.global_via == ("softmax",)
    assert space.r == square(8) and space.j == square(0)


# ---- channels-last blocks and token models ----------------------------------------------------
class ConvNeXtBlock(nn.Module):
    def __init__(self, c=4):
        super().__init__()
        self.dwconv = nn.Conv2d(c, c, 7, padding=3, groups=c)
        self.norm = nn.LayerNorm(c, eps=1e-6)
        self.pwconv1 = nn.Linear(c, 4 * c)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * c, c)
        self.gamma = nn.Parameter(torch.full((c,), 1e-6))

    def forward(self, x):
        y = self.dwconv(x).permute(0, 2, 3, 1)  # (N, C, H, W) -> (N, H, W, C)
        y = self.pwconv2(self.act(self.pwconv1(self.norm(y))))
        y = (self.gamma * y).permute(0, 3, 1, 2)
        return x + y


class ConvNeXtLike(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 2, stride=2)
        self.stages = nn.Sequential(ConvNeXtBlock(), ConvNeXtBlock())

    def forward(self, x):
        return self.stages(self.stem(x))


def test_convnext_block_linear_and_layernorm_on_channels_last_are_pointwise():
    """16x16 input. stem 2x2 s2: n = 8, j = 2, r = 2, start = 1.0.
    block 1: dwconv 7x7 p3: r = 2+6*2 = 14, start = 1.0+(3-3)*2 = 1.0; LayerNorm(C) and the
      Linears act on the channels-last dim: pointwise, r 14; residual: union with r 2: r 14.
    block 2: r = 14+12 = 26, start 1.0. No flags anywhere (nothing global, centred alike)."""
    rep = rfarith.analyze(ConvNeXtLike(), (1, 3, 16, 16))
    for node in ("stages.0.norm", "stages.0.pwconv1", "stages.0.act", "stages.0.pwconv2", "stages.0.add"):
        assert_field(rep[node], n=square(8), j=square(2), r=square(14), start=square(1.0))
    assert rep.table.loc["stages.0.pwconv1", "shape"] == (1, 8, 8, 16)
    assert_field(rep.output, n=square(8), j=square(2), r=square(26), start=square(1.0))


class TinyViT(nn.Module):
    """Patch embedding 4x4 stride 4, tokens (B, N, C), one attention layer with a residual."""

    def __init__(self, c=8):
        super().__init__()
        self.patch = nn.Conv2d(3, c, 4, stride=4)
        self.norm = nn.LayerNorm(c)
        self.qkv = nn.Linear(c, 3 * c)
        self.proj = nn.Linear(c, c)

    def forward(self, x):
        t = self.patch(x).flatten(2).transpose(1, 2)  # (B, 16, C)
        q, k, v = self.qkv(self.norm(t)).chunk(3, dim=-1)
        attn = (q @ k.transpose(-2, -1)).softmax(dim=-1)
        return t + self.proj(attn @ v)


def test_token_model_exact_up_to_the_patch_embedding_then_global():
    """16x16 input. patch 4x4 s4: n = 4, j = 4, r = 4, start = 2.0.
    flatten(2), transpose(1, 2): tokens carry (h, w) in one dim; LayerNorm(C) and Linear(C) are
    per token: same field, no flags.
    q @ k^T is the first op that mixes tokens: every unit sees what all 4x4 patches see
    together, pixels 0 .. 15: r = 16, start = 8.0, j = 0, global via matmul.
    attn @ v mixes tokens again (it may be named too, after matmul).
    The residual t + proj(attn @ v): the local field is the residual's (r 4, the hull over the
    paths that avoid every global mixing, DESIGN.md) and the result carries global, first via
    matmul."""
    rep = rfarith.analyze(TinyViT(), (1, 3, 16, 16))
    patch = {"n": square(4), "j": square(4), "r": square(4), "start": square(2.0)}
    for node in ("patch", "flatten", "transpose", "norm", "qkv"):
        assert_field(rep[node], **patch)
    assert rep.table.loc["transpose", "shape"] == (1, 16, 8)
    mixed = rep["matmul"]
    assert mixed.j == square(0) and mixed.r == square(16) and mixed.start == square(8.0)
    assert "global" in mixed.flags and mixed.global_via == ("matmul",)
    assert rep["softmax"].global_via == ("matmul",)
    for node in ("matmul_1", "proj"):
        assert "global" in rep[node].flags and rep[node].global_via[0] == "matmul"
    out = rep.output
    assert (out.j, out.r, out.start) == (square(4), square(4), square(2.0))
    assert out.describe_flags().startswith("global (via matmul")


class SDPAViT(nn.Module):
    def __init__(self, c=8):
        super().__init__()
        self.patch = nn.Conv2d(3, c, 4, stride=4)
        self.qkv = nn.Linear(c, 3 * c)

    def forward(self, x):
        t = self.patch(x).flatten(2).transpose(1, 2)
        q, k, v = self.qkv(t).unflatten(-1, (3, 2, 4)).permute(2, 0, 3, 1, 4).unbind(0)  # (B, heads, N, d)
        return F.scaled_dot_product_attention(q, k, v)


def test_scaled_dot_product_attention_is_global():
    """Heads split with unflatten/permute/unbind keep the token axes; the attention call mixes
    them: r 16, start 8.0, j 0, global via scaled_dot_product_attention."""
    rep = rfarith.analyze(SDPAViT(), (1, 3, 16, 16))
    assert_field(rep["qkv"], n=square(4), j=square(4), r=square(4), start=square(2.0))
    out = rep.output
    assert out.r == square(16) and out.j == square(0) and out.start == square(8.0)
    assert out.global_via == ("scaled_dot_product_attention",)


class MHAViT(nn.Module):
    def __init__(self, c=8):
        super().__init__()
        self.patch = nn.Conv2d(3, c, 4, stride=4)
        self.attn = nn.MultiheadAttention(c, 2, batch_first=True)

    def forward(self, x):
        t = self.patch(x).flatten(2).transpose(1, 2)
        out, _ = self.attn(t, t, t)
        return out


def test_multihead_attention_module_is_global():
    rep = rfarith.analyze(MHAViT(), (1, 3, 16, 16))
    out = rep.output
    assert out.r == square(16) and out.j == square(0) and out.start == square(8.0)
    assert out.global_via == ("attn",)


class Cumulative(nn.Module):
    """Conv 3x3 (padding 1), then a cumulative op along w."""

    def __init__(self, op) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, padding=1)
        self.op = op

    def forward(self, x):
        y = self.op(self.conv(x), dim=3)
        return y[0] if self.op is torch.cummax else y  # cummax: (values, indices)


@pytest.mark.parametrize("op", [torch.cumsum, torch.cumprod, torch.logcumsumexp, torch.cummax], ids=lambda f: f.__name__)
def test_a_cumulative_op_along_a_spatial_axis_is_causal(op):
    """Unit (h, w) sees rows h-1 .. h+1 and columns 0 .. w+1, the conv's columns of units
    0 .. w: global along w and causal. Before: refused ('unit m sees units 0..m'). Checked
    against autograd (float64, random weights) but for cummax, whose gradient picks one
    pixel."""
    model = Cumulative(op)
    rf = rfarith.analyze(model, SHAPE).output
    assert rf.flags == {"global", "causal"}
    assert (rf.j, rf.r, rf.start) == ((1, 0), (3, 8), (0.5, 4.0))
    for h, w in [(0, 0), (3, 2), (7, 7)]:
        assert rf.real_bounds((h, w)) == ((max(h - 1, 0), min(h + 1, 7)), (0, min(w + 1, 7)))
        if op is torch.cummax:
            continue
        assert (rf.mask((h, w)) == seen_by_autograd(model, SHAPE, (h, w))).all(), (h, w)
