"""Rules for the ops the coverage census hit (issue 16), each derived by hand and, where the
probe can measure the map, cross-checked with ``crosscheck.assert_agree`` (exact pixel sets).

Conventions (the guide): input j = 1, r = 1, start = 0.5; conv / pool of kernel k, stride s,
left padding p: j' = j*s, r' = r + (k-1)*j, start' = start + ((k-1)/2 - p)*j.
"""

from __future__ import annotations

import pytest
import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

import crosscheck
import rfarith
from rfarith.rules import registry
from rfarith.rules.pointwise import elementwise

from .expect import Lambda, assert_field, square

# stem: conv 3x3 stride 2 on 17x17: n 8, j 2, r 3, start 1.5
STRIDED = {"n": square(8), "j": square(2), "r": square(3), "start": square(1.5)}
# stem: conv 3x3 on 16x16: n 14, j 1, r 3, start 1.5
PLAIN = {"n": square(14), "j": square(1), "r": square(3), "start": square(1.5)}


def on_plain(fn=None, **modules):
    """conv 3x3 (3 -> 8 channels, node ``stem``) on 16x16, then ``fn(self, y)``."""
    return Lambda(fn, nn.Conv2d(3, 8, 3), **modules)


# ---- stochastic depth ---------------------------------------------------------------------------
def tv_stochastic_depth(input, p, mode, training=True):
    """torchvision.ops.stochastic_depth, verbatim, under torchvision's qualified name (torchvision
    is not installed; the rule matches the name, registry.Named)."""
    if p < 0.0 or p > 1.0:
        raise ValueError(f"drop probability has to be between 0 and 1, but got {p}")
    if mode not in ["batch", "row"]:
        raise ValueError(f"mode has to be either 'batch' or 'row', but got {mode}")
    if not training or p == 0.0:
        return input
    survival_rate = 1.0 - p
    if mode == "row":
        size = [input.shape[0]] + [1] * (input.ndim - 1)
    else:
        size = [1] * input.ndim
    noise = torch.empty(size, dtype=input.dtype, device=input.device)
    noise = noise.bernoulli_(survival_rate)
    if survival_rate > 0.0:
        noise.div_(survival_rate)
    return input * noise


tv_stochastic_depth.__module__ = "torchvision.ops.stochastic_depth"
tv_stochastic_depth.__qualname__ = "stochastic_depth"


def stochastic_depth(x, p, mode, training):
    """A user's own copy (as in many repositories), covered by registering its name."""
    if not training or p == 0.0:
        return x
    keep = torch.empty([x.shape[0]] + [1] * (x.ndim - 1), dtype=x.dtype).bernoulli_(1 - p)
    return x * keep / (1 - p)


torch.fx.wrap("tv_stochastic_depth")
torch.fx.wrap("stochastic_depth")
registry.rule(registry.Named(f"{stochastic_depth.__module__}.{stochastic_depth.__qualname__}"), replace=True)(elementwise)


class DropPathBlock(nn.Module):
    """ConvNeXt / EfficientNet style: y + stochastic_depth(conv(y)) after a strided stem.
    ``always``: pass training=True whatever the mode (the Bernoulli branch)."""

    def __init__(self, fn, always: bool = False, p: float = 0.5) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, stride=2)
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.user = fn is stochastic_depth
        self.always = always
        self.p = p

    def forward(self, x):
        y = self.stem(x)
        training = self.training or self.always
        z = self.conv(y)
        z = stochastic_depth(z, self.p, "row", training) if self.user else tv_stochastic_depth(z, self.p, "row", training)
        return y + z


# stem r 3, start 1.5, j 2; conv 3x3 p1: r 3 + 2*2 = 7, start 1.5; stochastic depth neutral
# (identity in eval; in training x * noise, one draw per sample: every unit scaled alike, no
# unit reads another); y + z: same centre, hull r 7.
DROP_PATH = {"n": square(8), "j": square(2), "r": square(7), "start": square(1.5)}


@pytest.mark.parametrize("fn", [tv_stochastic_depth, stochastic_depth], ids=["torchvision", "user copy"])
@pytest.mark.parametrize("always", [False, True], ids=["eval", "training=True"])
def test_stochastic_depth_is_neutral_in_eval_and_in_training(fn, always):
    rep = rfarith.analyze(DropPathBlock(fn, always), (1, 3, 17, 17))
    node = "tv_stochastic_depth" if fn is tv_stochastic_depth else "stochastic_depth"
    assert_field(rep[node], **DROP_PATH)
    assert_field(rep.output, **DROP_PATH)


def test_stochastic_depth_agrees_with_the_probe():
    """In eval (the probe's mode) and in training with p = 0 (returns the input)."""
    crosscheck.assert_agree(DropPathBlock(tv_stochastic_depth), (1, 3, 17, 17))
    crosscheck.assert_agree(DropPathBlock(tv_stochastic_depth, always=True, p=0.0), (1, 3, 17, 17))


def test_stochastic_depth_is_matched_by_qualified_name_only():
    assert registry.find_rule("call_function", tv_stochastic_depth, None) is elementwise

    def unrelated(x, p, mode, training):  # same name elsewhere: not matched
        return x

    unrelated.__module__, unrelated.__qualname__ = "mypackage.layers", "stochastic_depth"
    assert registry.find_rule("call_function", unrelated, None) is None


# ---- 1-D ops inside 2-D nets --------------------------------------------------------------------
class ECA(nn.Module):
    """Efficient channel attention: global average pooling, a conv1d over the channels, a
    sigmoid gate multiplied back. The conv1d slides along channels: no spatial effect."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3)
        self.conv = nn.Conv1d(1, 1, 3, padding=1, bias=False)

    def forward(self, x):
        x = self.stem(x)
        y = x.mean((2, 3)).view(x.shape[0], 1, -1)
        y = self.conv(y).view(x.shape[0], -1, 1, 1)
        return x * y.sigmoid()


def test_eca_conv1d_over_channels_keeps_the_local_field():
    """The gate is a global side path (via the mean): local field = the stem's, flag global."""
    rep = rfarith.analyze(ECA(), (1, 3, 16, 16))
    assert_field(rep.output, **PLAIN, flags={"global"})
    assert rep.output.global_via == ("mean",)
    crosscheck.assert_agree(ECA(), (1, 3, 16, 16))


class RowConv1d(nn.Module):
    """(B, C, H, W) -> (B*H, C, W): Conv1d k5 p2 then AvgPool1d k3 s1 p1 along w, rows apart."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3)
        self.conv = nn.Conv1d(8, 8, 5, padding=2)
        self.pool = nn.AvgPool1d(3, 1, 1)

    def forward(self, x):
        x = self.stem(x)
        b, c, h, w = x.shape
        y = x.permute(0, 2, 1, 3).reshape(b * h, c, w)
        y = self.pool(self.conv(y))
        return y.reshape(b, h, c, w).permute(0, 2, 1, 3)


@pytest.mark.parametrize("batch", [1, 2])
def test_conv1d_and_avgpool1d_along_one_axis_of_a_2d_map(batch):
    """h: the stem's (r 3, start 1.5). w: conv k5 p2: r 3 + 4 = 7, start 1.5 + (2 - 2) = 1.5;
    pool k3 p1: r 9, start 1.5. n 14 x 14, j 1. The batch dim b*h carries h unit by unit."""
    rep = rfarith.analyze(RowConv1d(), (batch, 3, 16, 16))
    assert_field(rep.output, n=square(14), j=square(1), r=(3, 9), start=square(1.5))
    if batch == 1:
        crosscheck.assert_agree(RowConv1d(), (1, 3, 16, 16))


def tokens_then(op, back=True):
    """stem, flatten (h, w) into tokens (B, C, H*W), ``op``, and (``back``) to a grid with H
    rows again."""

    def fn(self, y):
        b, c, h, w = y.shape
        z = self.op(y.flatten(2))
        return z.reshape(b, z.shape[1], h, -1) if back else z

    return on_plain(fn, op=op)


FLATTENED = {
    # a 1x1 conv reads token m only: the stem's field; the same as a 1x1 Conv2d
    "Conv1d k1": (nn.Conv1d(8, 8, 1), nn.Conv2d(8, 8, 1), PLAIN),
    # k = s = 2 with 2 | W = 14: window m reads tokens 2m, 2m+1 = (h, 2w'), (h, 2w'+1), never
    # across a row: along w k2 s2: n 7, j 2, r 3 + 1 = 4, start 1.5 + 0.5 = 2
    "AvgPool1d 2": (nn.AvgPool1d(2), nn.AvgPool2d((1, 2)), {"n": (14, 7), "j": (1, 2), "r": (3, 4), "start": (1.5, 2.0)}),
    # k = s = 7, 7 | 14: along w k7 s7: n 2, j 7, r 3 + 6 = 9, start 1.5 + 3 = 4.5
    "MaxPool1d 7": (nn.MaxPool1d(7), nn.MaxPool2d((1, 7)), {"n": (14, 2), "j": (1, 7), "r": (3, 9), "start": (1.5, 4.5)}),
}


@pytest.mark.parametrize("case", list(FLATTENED))
def test_1d_ops_over_flattened_tokens_that_stay_in_their_row(case):
    """Hand-derived, and unit by unit the field of the same op written in 2-D (which the probe
    measures: it cannot place the units of a window along a flattened factor)."""
    op, op_2d, expected = FLATTENED[case]
    rf = rfarith.analyze(tokens_then(op), (1, 3, 16, 16)).output
    assert_field(rf, **expected)
    model_2d = on_plain(op=op_2d)
    rf_2d = rfarith.analyze(model_2d, (1, 3, 16, 16)).output
    units = [(h, w) for h in range(rf.n[0]) for w in range(rf.n[1])]
    assert rf.n == rf_2d.n and all(rf.real_seen(u) == rf_2d.real_seen(u) for u in units)
    crosscheck.assert_agree(model_2d, (1, 3, 16, 16))


@pytest.mark.parametrize("op", [nn.AvgPool1d(196), nn.AdaptiveAvgPool1d(1), nn.AdaptiveMaxPool1d(1)], ids=type)
def test_1d_pooling_over_all_tokens_is_global(op):
    """One unit reading all 196 tokens: the 14 x 14 stem units together see pixels 0 .. 15:
    r 16, j 0, start 8, n 1 per axis, flag global via the pool."""
    model = tokens_then(op, back=False)
    rep = rfarith.analyze(model, (1, 3, 16, 16))
    assert_field(rep.output, n=square(1), j=square(0), r=square(16), start=square(8.0), flags={"global"})
    assert rep.output.global_via == ("op",)
    crosscheck.assert_agree(model, (1, 3, 16, 16))


def test_1d_windows_that_cross_rows_are_refused_with_a_way_out():
    """Conv1d k3 p1 over the 196 tokens: token (h, 13) reads (h+1, 0): no per-axis field."""
    with pytest.raises(rfarith.UnsupportedOp) as info:
        rfarith.analyze(tokens_then(nn.Conv1d(8, 8, 3, padding=1)), (1, 3, 16, 16))
    message = str(info.value)
    assert "h, w" in message and "row" in message and "(B*H, C, W)" in message
    assert "hybrid" not in message  # the hybrid measures the same flattened axis: no way out


# ---- F.pad, every mode, 1-D to 3-D --------------------------------------------------------------
class PadThenConv(nn.Module):
    def __init__(self, nd: int, mode: str) -> None:
        super().__init__()
        self.nd, self.mode = nd, mode
        self.conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[nd - 1](2, 2, 3)

    def forward(self, x):
        return self.conv(F.pad(x, (2, 1) * self.nd, mode=self.mode))


# Input 8 per axis. pad (2, 1): n 11, padded unit u reads input u - 2 (start -1.5); conv k3:
# n 9, r 3, start -0.5, j 1 whatever the mode. What the real border units see depends on the
# mode: unit 0 reads padded 0, 1, 2 = input -2, -1, 0; unit 8 reads input 6, 7, 8:
# constant: {0}, {6, 7}; reflect (-k -> k, 7+k -> 7-k): {0, 1, 2}, {6, 7};
# replicate (clamp): {0}, {6, 7}; circular (mod 8): {0, 6, 7}, {0, 6, 7}.
BORDERS = {
    "constant": ((0,), (6, 7)),
    "reflect": ((0, 1, 2), (6, 7)),
    "replicate": ((0,), (6, 7)),
    "circular": ((0, 6, 7), (0, 6, 7)),
}


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("mode", list(BORDERS))
def test_functional_pad_every_mode_every_rank(mode, nd):
    shape = (1, 2) + (8,) * nd
    rep = rfarith.analyze(PadThenConv(nd, mode), shape)
    rf = rep.output
    assert_field(rf, n=square(9, nd), j=square(1, nd), r=square(3, nd), start=square(-0.5, nd))
    first, last = BORDERS[mode]
    assert rf.real_seen((0,) * nd) == (first,) * nd
    assert rf.real_seen((8,) * nd) == (last,) * nd
    crosscheck.assert_agree(PadThenConv(nd, mode), shape)


def test_pad_of_a_channels_last_map():
    """Swin's patch merging pads (B, H, W, C) with (0, 0, 1, 1, 1, 1): C untouched, h and w
    padded by 1. stem r 3 start 1.5 n 14; pad: n 16, start 0.5; conv 3x3: r 5, start 1.5, n 14."""

    def fn(self, y):
        z = F.pad(y.permute(0, 2, 3, 1), (0, 0, 1, 1, 1, 1)).permute(0, 3, 1, 2)
        return self.conv(z)

    model = on_plain(fn, conv=nn.Conv2d(8, 8, 3))
    assert_field(rfarith.analyze(model, (1, 3, 16, 16)).output, n=square(14), j=square(1), r=square(5), start=square(1.5))
    crosscheck.assert_agree(model, (1, 3, 16, 16))


# ---- max unpooling ------------------------------------------------------------------------------
class Unpool(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3)
        self.pool = nn.MaxPool2d(3, 2, 1, return_indices=True)
        self.unpool = nn.MaxUnpool2d(3, 2, 1)

    def forward(self, x):
        y, indices = self.pool(self.stem(x))
        return self.unpool(y, indices)


def test_max_unpool_is_a_transposed_window():
    """stem on 18: n 16, r 3, start 1.5. pool k3 s2 p1: n 8, j 2, r 5, start 1.5; pooled unit q
    sees pixels 2q-1 .. 2q+3. Unpool k3 s2 p1: output position m is in the windows
    2i-1 .. 2i+1 of i = m/2 (m even) or i = (m-1)/2, (m+1)/2 (m odd), so unit 2q sees
    2q-1 .. 2q+3 (5 pixels) and unit 2q+1 sees 2q-1 .. 2q+5 (7): period 2, j 1, r 7,
    nonuniform; n = (8-1)*2 - 2 + 3 = 15."""
    rep = rfarith.analyze(Unpool(), (1, 3, 18, 18))
    rf = rep.output
    assert rf.n == square(15) and rf.j == square(1) and rf.r == square(7) and "nonuniform" in rf.flags
    assert rf.bounds((4, 4)) == ((3, 7), (3, 7)) and rf.bounds((5, 5)) == ((3, 9), (3, 9))
    crosscheck.assert_agree(Unpool(), (1, 3, 18, 18), nodes=["unpool"])


def test_functional_max_unpool_defaults_stride_to_the_kernel():
    """F.max_unpool2d(y, i, 2) after max_pool2d(2): unit m reads pooled unit m // 2 (each output
    position in one 2x2 window): stem r 3, pool k2 s2: r 4, j 2; unpool: period 2 of jump 2,
    units 2q and 2q+1 see the pooled unit q's 4 pixels: j 1, r 4, n 16."""

    def fn(self, y):
        pooled, indices = F.max_pool2d(y, 2, return_indices=True)
        return F.max_unpool2d(pooled, indices, 2)

    rf = rfarith.analyze(Lambda(fn, nn.Conv2d(3, 4, 3)), (1, 3, 18, 18)).output
    assert rf.n == square(16) and rf.j == square(1) and rf.r == square(4)
    assert rf.bounds((2, 2)) == rf.bounds((3, 3)) == ((2, 5), (2, 5))


# ---- linear algebra ---------------------------------------------------------------------------
def test_bilinear_mixes_features_only():
    """nn.Bilinear on channels-last (B, H, W, C) twice the same map: unit (h, w) reads unit
    (h, w) of both inputs: the stem's field."""

    def fn(self, y):
        z = y.permute(0, 2, 3, 1)
        return self.op(z, z).permute(0, 3, 1, 2)

    model = on_plain(fn, op=nn.Bilinear(8, 8, 5))
    assert_field(rfarith.analyze(model, (1, 3, 16, 16)).output, **PLAIN)
    crosscheck.assert_agree(model, (1, 3, 16, 16))


def test_addmm_family_contracts_like_matmul():
    """baddbmm(tokens, W, tokens) = tokens + W @ tokens over channels, (B, C, H*W): every
    token reads itself: the stem's field. addmm(bias, tokens^T, W): the same, 2-D."""

    def batched(self, y):
        t = y.flatten(2)
        return torch.baddbmm(t, self.w.expand(t.shape[0], 8, 8), t).view(y.shape)

    def plain(self, y):
        t = y.flatten(2)[0].t()  # (H*W, C)
        return torch.addmm(self.b, t, self.w[0]).t().reshape(y.shape)

    for fn in (batched, plain):
        model = on_plain(fn)
        model.w = nn.Parameter(torch.ones(1, 8, 8))
        model.b = nn.Parameter(torch.zeros(8))
        assert_field(rfarith.analyze(model, (1, 3, 16, 16)).output, **PLAIN)
    crosscheck.assert_agree(model, (1, 3, 16, 16), nodes=[rfarith.analyze(model, (1, 3, 16, 16)).names[-1]])


def test_addmm_summing_over_tokens_is_global():
    """addmm(bias, y^T, y) over tokens (C, H*W) @ (H*W, C): every entry sums all tokens: no
    spatial dim left, one unit that sees the whole input (r 16, start 8), via the addmm."""

    def fn(self, y):
        t = y.flatten(2)[0]  # (C, H*W)
        return torch.addmm(self.b, t, t.t())

    model = on_plain(fn)
    model.b = nn.Parameter(torch.zeros(8, 8))
    rf = rfarith.analyze(model, (1, 3, 16, 16)).output
    assert_field(rf, n=square(1), j=square(0), r=square(16), start=square(8.0), flags={"global"})
    assert rf.global_via == ("addmm",)


# ---- reductions and norms read by name ----------------------------------------------------------
# After the stem (16 -> 14): reducing w leaves h as the stem's, w one unit seeing 0 .. 15.
ALONG_W = {"n": (14, 1), "j": (1, 0), "r": (3, 16), "start": (1.5, 8.0)}
BOTH = {"n": square(1), "j": square(0), "r": square(16), "start": square(8.0)}
NAMED_REDUCTIONS = {
    # kthvalue(input, k, dim=-1): the dim is the third parameter and defaults to the last
    "torch.kthvalue(y, 2)": (lambda self, y: torch.kthvalue(y, 2).values, ALONG_W),
    "Tensor.kthvalue(2, 3)": (lambda self, y: y.kthvalue(2, 3)[0], ALONG_W),
    "torch.mode(y)": (lambda self, y: torch.mode(y).values, ALONG_W),
    "Tensor.nanmedian(-1)": (lambda self, y: y.nanmedian(-1).values, ALONG_W),
    "torch.aminmax(dim=-1)": (lambda self, y: torch.aminmax(y, dim=-1).min, ALONG_W),
    # norm(input, p, dim): dim third
    "torch.norm(y, 2, (2, 3))": (lambda self, y: torch.norm(y, 2, (2, 3)), BOTH),
    "vector_norm(y, 2, (2, 3))": (lambda self, y: torch.linalg.vector_norm(y, 2, (2, 3)), BOTH),
    "Tensor.norm(dim=1)": (lambda self, y: y.norm(dim=1), PLAIN),
    "torch._softmax(y, -1)": (lambda self, y: torch._softmax(y, -1, False), {**PLAIN, "r": (3, 16), "j": (1, 0), "start": (1.5, 8.0)}),
    "torch._log_softmax(y, 1)": (lambda self, y: torch._log_softmax(y, 1, False), PLAIN),
}


@pytest.mark.parametrize("fn", [v[0] for v in NAMED_REDUCTIONS.values()], ids=list(NAMED_REDUCTIONS))
def test_reduction_dims_are_read_by_name(fn):
    expected = next(e for f, e in NAMED_REDUCTIONS.values() if f is fn)
    rf = rfarith.analyze(on_plain(fn), (1, 3, 16, 16)).output
    flags = {"global"} if rf.j != (1, 1) else set()
    assert_field(rf, **expected, flags=flags)


NORMS = {
    # statistics over H, W: the stem's field, flag global
    "torch.group_norm": (lambda self, y: torch.group_norm(y, 2), True),
    "torch.instance_norm": (lambda self, y: torch.instance_norm(y, None, None, None, None, True, 0.1, 1e-5, False), True),
    # running statistics: a per-channel affine map, neutral
    "torch.instance_norm running": (
        lambda self, y: torch.instance_norm(y, None, None, self.mean, self.var, False, 0.1, 1e-5, False),
        False,
    ),
    "F.instance_norm running": (lambda self, y: F.instance_norm(y, self.mean, self.var, use_input_stats=False), False),
    # over channels (channels last): neutral
    "torch.layer_norm over C": (lambda self, y: torch.layer_norm(y.permute(0, 2, 3, 1), (8,)).permute(0, 3, 1, 2), False),
}


@pytest.mark.parametrize("fn", [v[0] for v in NORMS.values()], ids=list(NORMS))
def test_functional_norms(fn):
    spatial = next(s for f, s in NORMS.values() if f is fn)
    model = on_plain(fn)
    model.register_buffer("mean", torch.zeros(8))
    model.register_buffer("var", torch.ones(8))
    rf = rfarith.analyze(model, (1, 3, 16, 16)).output
    assert_field(rf, **PLAIN, flags={"global"} if spatial else set())


@pytest.mark.parametrize("track", [True, False])
def test_instance_norm_module_with_running_statistics_is_neutral_in_eval(track):
    """InstanceNorm2d(track_running_stats=True) normalises with running statistics in eval:
    per channel, neutral; without, with each map's own statistics: a global side path."""
    model = on_plain(op=nn.InstanceNorm2d(8, track_running_stats=track))
    rf = rfarith.analyze(model, (1, 3, 16, 16)).output
    assert_field(rf, **PLAIN, flags={"global"} if not track else set())
    crosscheck.assert_agree(model, (1, 3, 16, 16))


# ---- transposes and attributes -------------------------------------------------------------------
TRANSPOSES = {
    "x.mT": lambda self, y: (y.flatten(2).mT @ self.w).mT.reshape(y.shape),
    "x.T": lambda self, y: (y.flatten(2)[0].T @ self.w).T.reshape(y.shape),
    "x.t()": lambda self, y: (y.flatten(2)[0].t() @ self.w).t().reshape(y.shape),
    "torch.t": lambda self, y: torch.t(torch.t(y.flatten(2)[0]) @ self.w).reshape(y.shape),
    "x.data": lambda self, y: y.data,
}


@pytest.mark.parametrize("fn", list(TRANSPOSES.values()), ids=list(TRANSPOSES))
def test_transposes_keep_the_token_grid(fn):
    """Tokens (H*W, C) @ W (C, C) mixes channels only; transposed back: the stem's field."""
    model = on_plain(fn)
    model.w = nn.Parameter(torch.ones(8, 8))
    rep = rfarith.analyze(model, (1, 3, 16, 16))
    assert_field(rep.output, **PLAIN)


def test_matrix_transpose_agrees_with_the_probe():
    model = on_plain(TRANSPOSES["x.mT"])
    model.w = nn.Parameter(torch.ones(8, 8))
    crosscheck.assert_agree(model, (1, 3, 16, 16), nodes=[rfarith.analyze(model, (1, 3, 16, 16)).names[-1]])


def test_concatenate_reads_axis():
    """torch.concatenate([y, y], axis=3): along w the grid is lost (two maps side by side):
    w global via the concatenate, h the stem's. Before, ``axis`` was not read (dim 0)."""
    rf = rfarith.analyze(on_plain(lambda self, y: torch.concatenate([y, y], axis=3)), (1, 3, 16, 16)).output
    assert rf.r == (3, 16) and rf.j == (1, 0) and rf.global_via == ("concatenate",)


# ---- the pointwise ops the probe already had ------------------------------------------------------
POINTWISE = {
    "torch.log2": lambda self, y: torch.log2(y.abs() + 1),
    "Tensor.tan": lambda self, y: y.tan(),
    "torch.cosh": lambda self, y: torch.cosh(y),
    "Tensor.logit": lambda self, y: y.sigmoid().logit(),
    "torch.erfc": lambda self, y: torch.erfc(y),
    "Tensor.frac": lambda self, y: y.frac(),
    "torch.sgn": lambda self, y: torch.sgn(y),
    "Tensor.exp2_": lambda self, y: y.clone().exp2_(),
    "torch.selu": lambda self, y: torch.selu(y),
    "torch.threshold": lambda self, y: torch.threshold(y, 0.0, 0.0),
    "Tensor.__iadd__": lambda self, y: y.clone().__iadd__(y),
    "torch.xlogy": lambda self, y: torch.xlogy(y, y.abs() + 1),
    "torch.logaddexp": lambda self, y: torch.logaddexp(y, y),
}


@pytest.mark.parametrize("fn", list(POINTWISE.values()), ids=list(POINTWISE))
def test_pointwise_ops_pass_the_field_through(fn):
    """Unit m of the output is a function of unit m of the input(s): the stem's field."""
    assert_field(rfarith.analyze(on_plain(fn), (1, 3, 16, 16)).output, **PLAIN)


def test_pointwise_ops_agree_with_the_probe():
    def chain(self, y):
        z = torch.log2(y.abs() + 1).tan()
        z = torch.cosh(z) + torch.erfc(z) + z.frac() + z.sigmoid().logit()
        return self.conv(z)

    # stem r 3 start 1.5, then conv 3x3: r 5, start 2.5, n 12
    model = on_plain(chain, conv=nn.Conv2d(8, 4, 3))
    assert_field(rfarith.analyze(model, (1, 3, 16, 16)).output, n=square(12), j=square(1), r=square(5), start=square(2.5))
    crosscheck.assert_agree(model, (1, 3, 16, 16))
