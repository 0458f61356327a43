"""The structural surrogates: nothing cancels, saturates or picks one pixel, for modules and
functional calls alike; and collapsing channels never changes a gradient."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import rfnumeric
from rfnumeric.measure import Request, Session, UnitSpec
from tests.ground_truth import per_axis, seen_by_autograd
from tests.rfnumeric import nets


class Cancelling(nn.Module):
    """conv(x) - conv(x) is identically 0: its real gradient is 0, its structure a 3x3 field."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3)

    def forward(self, x):
        return self.conv(x) - self.conv(x)


class SoftmaxOverChannels(nn.Module):
    """Softmax's gradient sums to zero over the channels; structurally it is the identity."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3)
        self.b = nn.Conv2d(4, 4, 3)

    def forward(self, x):
        return self.b(F.softmax(self.a(x), dim=1))


class Saturating(nn.Module):
    """Clamp, ReLU6, hardtanh, sign and round have zero gradient on most inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 2, 3)
        self.b = nn.Conv2d(2, 2, 3)

    def forward(self, x):
        y = torch.clamp(self.a(x), max=0.0)
        y = F.relu6(y - 10) + torch.sign(y) + torch.round(y) + F.hardtanh(y, 5, 6)
        return self.b(-y)


class ChannelsLast(nn.Module):
    """A ConvNeXt-style block: 7x7 depthwise conv, then LayerNorm over channels in
    channels-last layout: per position, so the field stays local and not global."""

    def __init__(self) -> None:
        super().__init__()
        self.dw = nn.Conv2d(4, 4, 7, padding=3, groups=4)
        self.norm = nn.LayerNorm(4)
        self.pw = nn.Linear(4, 4)

    def forward(self, x):
        y = self.pw(self.norm(self.dw(x).permute(0, 2, 3, 1)))
        return x + y.permute(0, 3, 1, 2)


class SpatialAttention(nn.Module):
    """Self-attention over positions (queries x keys, softmax over keys): global mixing."""

    def __init__(self) -> None:
        super().__init__()
        self.q = nn.Conv2d(4, 4, 1)
        self.k = nn.Conv2d(4, 4, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        q = self.q(x).flatten(2).transpose(1, 2)
        k = self.k(x).flatten(2)
        weights = torch.softmax(q @ k / c**0.5, dim=-1)
        v = x.flatten(2).transpose(1, 2)
        return x + (weights @ v).transpose(1, 2).reshape(b, c, h, w)


def field(model, shape, **kw):
    p = rfnumeric.probe(model.eval(), shape, **kw)
    return p.r, p.j, p.start, p.describe_flags()


def test_subtraction_adds_instead_of_cancelling():
    assert field(Cancelling(), (1, 2, 16, 16)) == ((3, 3), (1, 1), (1.5, 1.5), "")


def test_softmax_over_channels_is_the_identity():
    assert field(SoftmaxOverChannels(), (1, 3, 16, 16)) == ((5, 5), (1, 1), (2.5, 2.5), "")


def test_saturating_and_flat_ops_pass_the_gradient():
    assert field(Saturating(), (1, 1, 16, 16)) == ((5, 5), (1, 1), (2.5, 2.5), "")


def test_layer_norm_over_channels_is_local():
    """dw 7x7: r = 7, start 0.5 (padding 3); the residual adds the input pixel itself."""
    model = nn.Sequential(nn.Conv2d(3, 4, 4, stride=4), ChannelsLast())
    # patchify (2.0, 4, 4); 7x7 padding 3 on a jump of 4: r = 4 + 6*4 = 28, start 2.0
    assert field(model, (1, 3, 64, 64)) == ((28, 28), (4, 4), (2.0, 2.0), "")


@pytest.mark.parametrize(
    "norm",
    [nn.GroupNorm(2, 4), nn.InstanceNorm2d(4, affine=True), nn.LayerNorm([4, 14, 14])],
    ids=["group", "instance", "layer over C,H,W"],
)
def test_spatial_normalisation_is_a_global_side_path(norm):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), norm, nn.Conv2d(4, 4, 3))
    assert field(model, (1, 3, 16, 16)) == ((5, 5), (1, 1), (2.5, 2.5), "global (via 1)")
    assert field(model, (1, 3, 16, 16), mode="full")[:3] == ((16, 16), (0, 0), (8.0, 8.0))


def test_instance_norm_with_running_statistics_is_local():
    norm = nn.InstanceNorm2d(4, track_running_stats=True).eval()
    model = nn.Sequential(nn.Conv2d(3, 4, 3), norm, nn.Conv2d(4, 4, 3))
    assert field(model, (1, 3, 16, 16)) == ((5, 5), (1, 1), (2.5, 2.5), "")


def test_attention_over_positions_is_global():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), SpatialAttention(), nn.Conv2d(4, 4, 3))
    r, j, start, flags = field(model, (1, 3, 16, 16))
    assert (r, j, start) == ((5, 5), (1, 1), (2.5, 2.5))
    assert flags.startswith("global (via 1.matmul")
    assert field(model, (1, 3, 16, 16), mode="full")[:2] == ((16, 16), (0, 0))


def test_functional_max_pool_with_indices_and_unpool():
    class Unpool(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3, padding=1)

        def forward(self, x):
            y, idx = F.max_pool2d(self.conv(x), 2, return_indices=True)
            return F.max_unpool2d(y, idx, 2, output_size=x.shape[2:])

    # conv (0.5, 3, 1); pool 2 (1.0, 4, 2); unpool 2: output m reads pool unit m // 2, so units
    # 2q and 2q+1 see pixels 2q-1..2q+2: period 2, jump 2, j = 1; unit 0 sees -1..2: start 1.0
    p = rfnumeric.probe(Unpool().eval(), (1, 1, 16, 16))
    assert p.r == (4, 4) and p.j == (1, 1) and p.start == (1.0, 1.0) and p.flags == frozenset()


def test_adaptive_max_pool_to_one_is_global_and_dilated_max_pool_exact():
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.AdaptiveMaxPool2d((1, None)), nn.Conv2d(2, 2, (1, 3))
    )
    p = rfnumeric.probe(model, (1, 1, 16, 16))
    # h: pooled to one unit, global; w: conv 3 then conv 3: r = 5
    assert p.r == (16, 5) and p.j == (0, 1) and p.start == (8.0, 2.5)
    assert p.flags == {"global"} and p.global_via == ("1",)


# ---- collapsing channels is exact -------------------------------------------------------------
class Dense(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(7, 4, 3, padding=1)
        self.c = nn.Conv2d(11, 2, 1)

    def forward(self, x):
        y = torch.cat([x, self.a(x)], 1)
        y = torch.cat([y, F.relu(self.b(y))], 1)
        return self.c(F.max_pool2d(y, 2))


class GroupedAfterConcat(nn.Module):
    """A grouped convolution sees one part of a concatenation per group."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(2, 2, 5, padding=2)
        self.b = nn.Conv2d(4, 4, 3, padding=1, groups=2)

    def forward(self, x):
        return self.b(torch.cat([x, self.a(x)], 1))


class ShuffleSplit(nn.Module):
    """ShuffleNet-style: split channels, process one half, concatenate, shuffle."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(2, 4, 3, padding=1)
        self.branch = nn.Conv2d(2, 2, 5, padding=2)

    def forward(self, x):
        x = self.stem(x)
        left, right = x.chunk(2, dim=1)
        y = torch.cat([left, self.branch(right)], 1)
        return F.channel_shuffle(y, 2)[:, :1]


class InPlace(nn.Module):
    """``z.add_(y)`` whose result is not assigned must really add in place."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(2, 2, 3, padding=1)
        self.b = nn.Conv2d(2, 2, 5, padding=2)

    def forward(self, x):
        y = self.a(x)
        z = self.b(y)
        z.add_(y)
        return z


class UpAndConcat(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.down = nn.Conv2d(2, 2, 3, stride=2, padding=1)
        self.up = nn.ConvTranspose2d(2, 2, 2, stride=2)
        self.out = nn.Conv2d(4, 1, 3, padding=1)

    def forward(self, x):
        return self.out(torch.cat([x, self.up(self.down(x))], 1))


class OneByOne(nn.Module):
    """1x1 convolutions: plain, strided, padded, between wider windows (a box filter of a
    one-unit window is a strided pick, not a pooling pass)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 1)
        self.b = nn.Conv2d(4, 4, 3, padding=1)
        self.c = nn.Conv2d(4, 6, 1, stride=2)
        self.d = nn.Conv2d(6, 2, 1, stride=3, padding=1)
        self.e = nn.Conv2d(2, 2, 3)

    def forward(self, x):
        y = self.b(self.a(x))
        return self.e(self.d(self.c(y) + self.c(x.repeat(1, 2, 1, 1)[:, :4])))


class InputSliceScaled(nn.Module):
    """A slice of the input (one stored element seen everywhere) through ``mul``: each pixel
    keeps its own gradient (it once went to pixel (0, 0) alone)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)

    def forward(self, x):
        return self.conv(x[:, :1] * 2.0)


COLLAPSE_CASES = {
    "a slice of the input, scaled": (InputSliceScaled, (1, 2, 16, 16), True),
    "1x1 convolutions": (OneByOne, (1, 3, 23, 23), True),
    "residual (out += x)": (nets.Residual, (1, 3, 16, 16), True),
    "dense concatenation": (Dense, (1, 3, 16, 16), True),
    "squeeze-excite": (lambda: nets.SqueezeExcite(2), (1, 2, 16, 16), True),
    "depthwise": (
        lambda: nn.Sequential(nn.Conv2d(2, 6, 3), nn.Conv2d(6, 6, 3, groups=6, stride=2)),
        (1, 2, 16, 16),
        True,
    ),
    "upsample and concatenate": (UpAndConcat, (1, 2, 16, 16), True),
    "grouped conv after concatenation": (GroupedAfterConcat, (1, 2, 16, 16), True),
    "split, shuffle, slice": (ShuffleSplit, (1, 2, 16, 16), True),
    "in-place add_": (InPlace, (1, 2, 16, 16), False),
}


def centre_heatmap(model, shape, collapse):
    session = Session(model.eval(), shape)
    session.collapse = collapse
    target = session.target(None)
    request = Request(target, UnitSpec("centre"), keep_heatmap=True)
    measurement = session.measure(shape[2:], [request], local=True)
    return measurement.elements[0].heatmap, session.collapse


@pytest.mark.parametrize("name", list(COLLAPSE_CASES))
def test_collapsed_channels_give_the_reference_gradient(name):
    """The reference computes every convolution with its full weight tensor (all 1/fan_in);
    the collapsed run computes each on the channel sum. Where an op could treat channels
    differently the collapsed run must notice and fall back (``stays``)."""
    factory, shape, stays = COLLAPSE_CASES[name]
    torch.manual_seed(0)
    model = factory()
    reference, _ = centre_heatmap(model, shape, collapse=False)
    collapsed, still_collapsed = centre_heatmap(model, shape, collapse=True)
    assert still_collapsed == stays
    assert np.array_equal(collapsed != 0, reference != 0)
    np.testing.assert_allclose(collapsed, reference, rtol=1e-10, atol=0)


# ---- resampling: PyTorch's own index map, in the model's dtype -------------------------------
class Resample(nn.Module):
    """One 1x1 conv (the model's dtype) and one ``F.interpolate`` call."""

    def __init__(self, **call) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 1, 1)
        self.call = call

    def forward(self, x):
        return F.interpolate(self.conv(x), **self.call)


def units_seen(model: nn.Module, length: int) -> list[set[int]]:
    """What every output unit of ``model`` sees of a ``length``-unit input, from the probe."""
    session = Session(model, (1, 1, length))
    target = session.target(None)
    n = session.measure((length,), [Request(target, UnitSpec("centre"))], local=True).elements[0].n
    requests = [Request(target, UnitSpec("fixed", unit=(m,)), keep_heatmap=True) for m in range(n[0])]
    elements = session.measure((length,), requests, local=True).elements
    return [set(np.flatnonzero(e.heatmap.reshape(-1))) for e in elements]


def jacobian_pattern(call: dict, length: int, dtype: torch.dtype) -> list[set[int]]:
    """The non-zero pattern of the real op's Jacobian in ``dtype`` (autograd, unit by unit)."""
    x = torch.rand(1, 1, length, dtype=dtype, requires_grad=True)
    y = F.interpolate(x, **call)
    rows = []
    for m in range(y.shape[-1]):
        (grad,) = torch.autograd.grad(y[0, 0, m], x, retain_graph=True)
        rows.append(set(np.flatnonzero(grad.reshape(-1).numpy())))
    return rows


RESAMPLINGS = [
    {"scale_factor": 3.0, "mode": "linear", "align_corners": False},
    {"scale_factor": 2.5, "mode": "linear", "align_corners": False},
    {"scale_factor": 3.0, "mode": "linear", "align_corners": True},
    {"size": 13, "mode": "linear", "align_corners": True},
    {"size": 17, "mode": "nearest"},
    {"scale_factor": 1.7, "mode": "nearest-exact"},
    {"scale_factor": 0.5, "mode": "linear", "align_corners": False, "antialias": False},
    {"size": 4, "mode": "area"},
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("call", RESAMPLINGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_resampling_sees_what_the_models_dtype_reads(call, dtype):
    """Every output unit sees exactly the inputs the real op's Jacobian, computed in the
    model's own dtype, reaches: float32 rounding included (bilinear x3 in float32 gives unit
    1 a weight of 1.5e-8 on input 1; float64 gives it exactly 0)."""
    model = Resample(**call).to(dtype)
    assert units_seen(model, 7) == jacobian_pattern(call, 7, dtype)


def test_float32_rounding_reaches_the_neighbour_float64_does_not():
    """The case the surrogate exists for, spelled out: the two dtypes really differ."""
    call = {"scale_factor": 3.0, "mode": "linear", "align_corners": False}
    assert units_seen(Resample(**call), 6)[1] == {0, 1}
    assert units_seen(Resample(**call).double(), 6)[1] == {0}


def test_bicubic_weights_of_both_signs_do_not_cancel():
    """Bicubic weights are partly negative; on the probe's positive signals a real bicubic
    could cancel to zero. The surrogate averages the taps instead: every tap is seen."""

    class Bicubic(nn.Module):
        def forward(self, x):
            return F.interpolate(x, scale_factor=2.0, mode="bicubic", align_corners=False)

    session = Session(Bicubic(), (1, 1, 8, 8))
    target = session.target(None)
    request = Request(target, UnitSpec("fixed", unit=(7, 7)), keep_heatmap=True)
    heatmap = session.measure((8, 8), [request], local=True).elements[0].heatmap
    rows, cols = np.nonzero(heatmap.reshape(8, 8))
    # unit 7 of x2: x = 7.5/2 - 0.5 = 3.25, taps floor(x)-1 .. floor(x)+2 = 2..5 on both axes
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (2, 5, 2, 5)
    assert np.all(heatmap.reshape(8, 8)[2:6, 2:6] > 0)


def test_max_pool_on_an_input_smaller_than_its_kernel_counts_the_padding():
    """max_pool3d takes a 2-unit axis with kernel 3 and padding 1 (padding counted); the
    average-pool surrogate must too, and see the same two rows."""

    class Pool(nn.Module):
        def forward(self, x):
            return F.max_pool3d(x, (1, 3, 1), (1, 1, 1), (0, 1, 0), ceil_mode=True)

    session = Session(Pool(), (1, 1, 3, 2, 3))
    target = session.target(None)
    request = Request(target, UnitSpec("fixed", unit=(1, 0, 1)))
    element = session.measure((3, 2, 3), [request], local=True).elements[0]
    assert element.n == (3, 2, 3)
    assert [(s.lo, s.hi) for s in element.spans] == [(1, 1), (0, 1), (1, 1)]


# ---- the box filter: the mean over each window of a convolution -------------------------------
BOX_GEOMETRIES = [
    ((1, 1), 1, 0),
    ((1, 1), 2, 0),
    ((1, 1), (3, 2), 1),
    ((1,), 2, 0),
    ((1, 1, 1), 2, (0, 1, 0)),
    ((3, 3), 1, 1),
    ((3, 3), 2, 1),
    ((2, 2), 1, "same"),
    ((3, 1), (2, 1), (1, 0)),
    ((5, 5), 1, "valid"),
    ((2, 3, 1), 1, (1, 1, 0)),
]


@pytest.mark.filterwarnings("ignore:Using padding=.same.")
@pytest.mark.parametrize("kernel, stride, padding", BOX_GEOMETRIES)
def test_box_filter_is_the_convolution_with_equal_weights(kernel, stride, padding):
    from rfnumeric.surrogates import box_filter

    nd = len(kernel)
    torch.manual_seed(nd)
    x = torch.rand(2, 1, *(11 - a for a in range(nd)), dtype=torch.float64)
    x[x < 0.3] = 0  # zeros too: the supports must match exactly
    conv = (F.conv1d, F.conv2d, F.conv3d)[nd - 1]
    weight = torch.full((1, 1, *kernel), 1.0 / np.prod(kernel), dtype=torch.float64)
    want = conv(x, weight, stride=stride, padding=padding)
    got = box_filter(x, kernel, {"stride": stride, "padding": padding, "dilation": 1})
    assert got.shape == want.shape
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-12, atol=0)


# ---- resizes whose index map follows the input size -------------------------------------------
@pytest.mark.parametrize(
    "call, follows",
    [
        ({"size": 12, "mode": "nearest"}, True),
        ({"scale_factor": 2.0, "mode": "bilinear", "align_corners": True}, True),
        ({"scale_factor": 1.5, "mode": "linear", "align_corners": False, "recompute_scale_factor": True}, True),
        ({"scale_factor": 1.5, "mode": "bilinear", "align_corners": False}, False),
        ({"scale_factor": 2.0, "mode": "nearest"}, False),
        ({"scale_factor": 0.5, "mode": "area"}, False),
    ],
)
def test_a_resize_follows_the_input_size_where_its_ratio_does(call, follows):
    """align_corners=True reads (n_in - 1) / (n_out - 1), which changes with n_in: 6 -> 9 has
    j 5/8, 10 -> 15 has j 9/14. A plain scale factor keeps 1/scale at every size."""
    from rfnumeric.surrogates import follows_the_input_size

    assert follows_the_input_size(call) is follows


def test_a_field_grown_through_an_align_corners_resize_warns():
    class Corners(nn.Module):
        def forward(self, x):
            return F.interpolate(x, scale_factor=(2.0, 1.5), mode="bilinear", align_corners=True)

    with pytest.warns(rfnumeric.GrownInputWarning, match="work differently"):
        rfnumeric.probe(Corners(), (1, 2, 6, 6))


class MaxPoolSame(nn.Module):
    """TF 'same' max pooling as timm writes it: pad with -inf, then pool without padding."""

    def forward(self, x):
        return F.max_pool2d(F.pad(x, [1, 1, 1, 1], value=-float("inf")), 3, stride=2)


def test_a_pad_of_minus_infinity_does_not_overflow_the_structural_probe():
    """conv 3 pad 1 (r 3), 'same' max pool 3 s2 (r 5, j 2), conv 3 pad 1 (r 9): the -inf pad
    made every structural sum infinite (the probe refused); its value never changes the support."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), MaxPoolSame(), nn.Conv2d(4, 4, 3, padding=1))
    p = rfnumeric.probe(model, (1, 3, 32, 32))
    assert p.r == (9, 9) and p.j == (2, 2)


# ---- recurrences --------------------------------------------------------------------------------
class RowRecurrence(nn.Module):
    """Conv 3x3 (padding 1), then a recurrence along each row (the sequence is w, the batch
    b*h), back to a map. ``batch_first=False`` runs the sequence first: (W, B*H, C)."""

    def __init__(self, rnn: type[nn.Module], bidirectional: bool, batch_first: bool, **extra) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.rnn = rnn(4, 5, batch_first=batch_first, bidirectional=bidirectional, **extra)
        self.batch_first = batch_first

    def forward(self, x):
        y = self.conv(x)
        b, c, h, w = y.shape
        rows = y.permute(0, 2, 3, 1).reshape(b * h, w, c)
        if not self.batch_first:
            rows = rows.transpose(0, 1)
        out = self.rnn(rows)[0]
        if not self.batch_first:
            out = out.transpose(0, 1)
        return out.reshape(b, h, w, -1).permute(0, 3, 1, 2)


@pytest.mark.parametrize("rnn", [nn.LSTM, nn.GRU, nn.RNN], ids=lambda c: c.__name__)
@pytest.mark.parametrize("bidirectional", [False, True], ids=["forward", "both"])
@pytest.mark.parametrize("batch_first", [True, False], ids=["batch_first", "seq_first"])
def test_a_recurrence_is_followed_step_by_step(rnn, bidirectional, batch_first):
    """A forward recurrence's step w sees columns 0 .. w+1 (the conv's columns of steps 0..w),
    a bidirectional one every column; rows h-1 .. h+1 either way: the same pixels as autograd
    through the real module, on a sequence short enough for its gradient to stay far from
    float64's smallest numbers."""
    torch.manual_seed(1)
    model = RowRecurrence(rnn, bidirectional, batch_first)
    shape = (1, 3, 12, 16)
    for unit in [(0, 0), (5, 6), (11, 15)]:
        probe = rfnumeric.probe(model, shape, unit=unit)
        assert probe.support == per_axis(seen_by_autograd(model, shape, unit)), unit
        assert "global" in probe.flags and probe.global_via == ("rnn",)


def test_a_long_recurrence_does_not_underflow():
    """Two stacked LSTM layers with projections over 600 steps: a real LSTM's gradient shrinks
    with every step it crosses (the real module measured 27 .. 133 for step 80 of 160); the
    surrogate's prefix sums do not. Step 450 sees columns 0 .. 451 (the conv's), step 0 columns
    0 .. 1; the final states are not read."""
    model = RowRecurrence(nn.LSTM, False, True, num_layers=2, proj_size=3)
    for unit, columns in [((2, 450), (0, 451)), ((2, 0), (0, 1))]:
        probe = rfnumeric.probe(model, (1, 3, 6, 600), unit=unit)
        assert probe.bounds == ((1, 3), columns)
        assert "underflow" not in probe.flags


def test_the_final_states_see_the_whole_sequence():
    """h_n of a GRU over each row: one vector per row that read every column of it."""

    class Final(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.rnn = nn.GRU(4, 4, batch_first=True)

        def forward(self, x):
            y = self.conv(x)
            b, c, h, w = y.shape
            state = self.rnn(y.permute(0, 2, 3, 1).reshape(b * h, w, c))[1]  # (1, B*H, 4)
            return state.reshape(b, h, 4).permute(0, 2, 1)  # (B, 4, H)

    probe = rfnumeric.probe(Final(), (1, 3, 10, 40), unit=(5, 0))  # w summarised: one unit
    assert probe.bounds == ((4, 6), (0, 39))
