"""The probe through a user's own ``torch.autograd.Function``.

A custom Function's forward runs without gradient, so the probe cannot replace its ops by
surrogates; what it follows is the Function's own backward (structural mode: positive weights,
positive input, support = exactly the non-zero gradient). Each model below is written as a
user would write it; its field is derived by hand in the docstring with the guide's
recurrences (input: ``j = 1, r = 1, start = 0.5``; a conv or box of kernel ``k``, stride 1,
padding ``p``: ``r' = r + (k-1)*j``, ``start' = start + ((k-1)/2 - p)*j``) and every probed
unit's bounds are checked against a brute-force oracle (:func:`oracle_bounds`): a float64 copy
of the model with every conv weight ``1/fan_in`` and no bias (the probe's structural weights,
so a value-dependent backward sees the same values), an all-ones input, ``torch.autograd.grad``
from one output unit (every channel, batch element 0), and the first and last non-zero pixel
per axis.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import rfarith
import rfnumeric
from tests.crosscheck.models.user_models import RoundSTE

SHAPE = (1, 3, 24, 24)  # larger than every field here: the probe needs no growing


# ---- the oracle -----------------------------------------------------------------------------
def oracle_bounds(model: nn.Module, shape, node: str | None, unit) -> tuple[tuple[int, int], ...]:
    """First and last input pixel, per axis, with a non-zero gradient of ``unit`` of ``node``'s
    map (``None``: the model output), computed by brute force on a float64 copy."""
    m = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for module in m.modules():
            if isinstance(module, nn.Conv2d):
                fan_in = module.weight[0].numel()
                module.weight.fill_(1.0 / fan_in)
                if module.bias is not None:
                    module.bias.zero_()
    captured = {}
    if node is not None:
        m.get_submodule(node).register_forward_hook(lambda mod, args, out: captured.update(out=out))
    x = torch.ones(shape, dtype=torch.float64, requires_grad=True)
    out = m(x)
    out = captured.get("out", out)
    seed = torch.zeros_like(out)
    seed[(0, slice(None), *unit)] = 1.0
    (grad,) = torch.autograd.grad(out, x, seed)
    seen = (grad[0] != 0).any(0).numpy()
    bounds = []
    for axis in range(seen.ndim):
        hit = np.nonzero(seen.any(tuple(a for a in range(seen.ndim) if a != axis)))[0]
        assert hit.size, f"unit {unit} sees no pixel"
        bounds.append((int(hit[0]), int(hit[-1])))
    return tuple(bounds)


def corners(n) -> list[tuple[int, int]]:
    return [(0, 0), (0, n[1] - 1), (n[0] - 1, 0), (n[0] - 1, n[1] - 1)]


def check(model: nn.Module, node: str | None, r, j, start, shape=SHAPE):
    """The probe's r, j, start are the hand-derived ones, and the bounds of the centre unit, its
    measured neighbours and the four corners are the oracle's."""
    p = rfnumeric.probe(model, shape, node=node)
    assert (p.r, p.j, p.start) == (r, j, start), p
    assert p.input_shape[2:] == shape[2:] and "global" not in p.flags
    for unit, bounds in p.measured.items():
        assert bounds == oracle_bounds(model, shape, node, unit), unit
    for unit in corners(p.n):
        q = rfnumeric.probe(model, shape, node=node, unit=unit)
        assert q.unit == unit and q.input_shape[2:] == shape[2:]
        assert q.bounds == oracle_bounds(model, shape, node, unit), unit
    return p


# ---- (1) a straight-through estimator (RoundSTE: rounds forward, passes the gradient back) ----
class Round(nn.Module):
    def forward(self, x):
        return RoundSTE.apply(x)


class Quantised(nn.Module):
    """stem conv 3 (r 3, start 1.5), ``quant`` (RoundSTE: its backward is the identity, so the
    field is the stem's), head conv 3: r 3 + 2 = 5, j 1, start 2.5. Output unit (u, v) sees
    pixels u..u+4, v..v+4."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3)
        self.quant = Round()
        self.head = nn.Conv2d(8, 8, 3)

    def forward(self, x):
        return self.head(self.quant(self.stem(x)))


def test_straight_through_round_between_two_convs():
    p = check(Quantised(), None, (5, 5), (1, 1), (2.5, 2.5))
    assert p.n == (20, 20)


def test_probing_the_functions_own_output():
    """``quant`` is the Function's output itself: the stem's field, r 3, start 1.5."""
    check(Quantised(), "quant", (3, 3), (1, 1), (1.5, 1.5))


# ---- (2) a box blur with its own backward -----------------------------------------------------
class BoxBlur(torch.autograd.Function):
    """A 3x3 box blur (stride 1, zero padding 1) per channel; its backward is the transposed
    blur, written by hand."""

    @staticmethod
    def forward(ctx, x):
        ctx.channels = x.shape[1]
        with torch.no_grad():
            return F.avg_pool2d(x, 3, stride=1, padding=1)

    @staticmethod
    def backward(ctx, grad):
        box = grad.new_full((ctx.channels, 1, 3, 3), 1.0 / 9)
        return F.conv_transpose2d(grad, box, padding=1, groups=ctx.channels)


class DepthwiseBlur(torch.autograd.Function):
    """The same blur as a depthwise convolution with a fixed kernel; backward likewise."""

    @staticmethod
    def forward(ctx, x):
        box = x.new_full((x.shape[1], 1, 3, 3), 1.0 / 9)
        return F.conv2d(x, box, padding=1, groups=x.shape[1])

    @staticmethod
    def backward(ctx, grad):
        box = grad.new_full((grad.shape[1], 1, 3, 3), 1.0 / 9)
        return F.conv_transpose2d(grad, box, padding=1, groups=grad.shape[1])


class Blur(nn.Module):
    def __init__(self, function) -> None:
        super().__init__()
        self.function = function

    def forward(self, x):
        return self.function.apply(x)


class Blurred(nn.Module):
    """stem conv 3 (r 3, start 1.5), ``blur`` (box 3, padding 1: r 3 + 2 = 5, start
    1.5 + (1 - 1) = 1.5), head conv 3: r 5 + 2 = 7, j 1, start 2.5. Output unit (u, v) sees
    pixels u-1..u+5 (clipped to the input at the border: corner (0, 0) sees 0..5)."""

    def __init__(self, function) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3)
        self.blur = Blur(function)
        self.head = nn.Conv2d(8, 8, 3)

    def forward(self, x):
        return self.head(self.blur(self.stem(x)))


@pytest.mark.parametrize("function", [BoxBlur, DepthwiseBlur], ids=["avg_pool", "conv"])
def test_box_blur_with_its_own_backward_grows_the_field_by_two(function):
    p = check(Blurred(function), None, (7, 7), (1, 1), (2.5, 2.5))
    assert p.n == (20, 20)
    corner = rfnumeric.probe(Blurred(function), SHAPE, unit=(0, 0))
    assert corner.bounds == ((0, 5), (0, 5)) and "clipped" in corner.flags


@pytest.mark.parametrize("function", [BoxBlur, DepthwiseBlur], ids=["avg_pool", "conv"])
def test_the_blurred_map_itself(function):
    """``blur``: r 5, start 1.5; unit (u, v) sees u-1..u+3 (clipped)."""
    check(Blurred(function), "blur", (5, 5), (1, 1), (1.5, 1.5))


# ---- (3) a gradient for only some positions -------------------------------------------------
class ClampSTE(torch.autograd.Function):
    """Clamps to [0, limit] in the forward; the backward passes the gradient only where the
    input lay inside [0, limit] (the straight-through clamp of PACT-style quantisation), so its
    support depends on the values it saw."""

    @staticmethod
    def forward(ctx, x, limit):
        ctx.save_for_backward(x)
        ctx.limit = limit
        return x.clamp(0, limit)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * ((x >= 0) & (x <= ctx.limit)), None


class Clamped(nn.Module):
    """stem conv 3 with padding 1 (r 3, start 0.5), the clamp, head conv 3 with padding 1:
    r 5, j 1, start 0.5 where the clamp passes the gradient.

    What is right: the probe does not replace a user's backward, so the support is that
    backward's non-zero gradient at the probe's operating point (all-ones input, every weight
    ``1/fan_in``, no bias: the stem's outputs are 1 inside, 6/9 on its edges, 4/9 in its
    corners). A clamp whose pass band holds that point (``limit`` 6, as ReLU6) passes every
    position: the architecture's field, corners included. A clamp that shuts there (``limit``
    0.8 passes only the stem's border units) leaves the centre unit with no support at all: the
    probe says so (an error), it does not invent a field; a corner unit sees only what passes
    the border units, exactly as the oracle computes."""

    def __init__(self, limit: float) -> None:
        super().__init__()
        self.limit = limit
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x):
        return self.head(ClampSTE.apply(self.stem(x), self.limit))


def test_a_clamp_open_at_the_operating_point_passes_the_whole_field():
    check(Clamped(6.0), None, (5, 5), (1, 1), (0.5, 0.5))


def test_a_clamp_shut_at_the_operating_point_leaves_the_centre_unit_blind():
    model = Clamped(0.8)
    with pytest.raises(rfarith.ProbeError, match="receives no gradient"):
        rfnumeric.probe(model, SHAPE)
    # the border units see what the oracle says: corner (0, 0) reaches the stem's units (0, 0),
    # (0, 1) and (1, 0) (its unit (1, 1) is inside, value 1, shut), so pixels 0..2 per axis
    assert oracle_bounds(model, SHAPE, None, (0, 0)) == ((0, 2), (0, 2))


# ---- collapse and batching --------------------------------------------------------------------
class ShiftFirstChannel(torch.autograd.Function):
    """Returns its input unchanged (an alias: autograd makes it a view), but its backward
    sends channel 0's gradient ``shift`` pixels right and keeps the others': a backward that
    treats channels differently."""

    @staticmethod
    def forward(ctx, x, shift=1):
        ctx.shift = shift
        return x

    @staticmethod
    def backward(ctx, grad):
        out = grad.clone()
        out[:, 0] = 0
        out[:, 0, :, ctx.shift :] = grad[:, 0, :, : -ctx.shift]
        return out, None


class Shifted(nn.Module):
    """stem conv 3, the shift, head conv 3. Every channel of the head's window gets gradient;
    channel 0's lands one pixel right of the others', so the field is one pixel wider along w:
    r (5, 6), j 1, start (2.5, 3.0); unit (u, v) sees u..u+4, v..v+5. ``crop``: the Function's
    output is cropped by one pixel per side (a view) before the head: r (5, 6), start one pixel
    later, (3.5, 4.0)."""

    def __init__(self, crop: bool = False) -> None:
        super().__init__()
        self.crop = crop
        self.stem = nn.Conv2d(3, 8, 3)
        self.head = nn.Conv2d(8, 8, 3)

    def forward(self, x):
        y = ShiftFirstChannel.apply(self.stem(x))
        return self.head(y[..., 1:-1, 1:-1] if self.crop else y)


@pytest.mark.parametrize("crop", [False, True], ids=["direct", "cropped"])
def test_a_function_that_treats_channels_differently_gets_every_channels_gradient(crop):
    """The stem's output is one channel expanded (the probe collapses equal channels) and the
    Function returns it as is: the ops after it must not read it as one channel (a crop, a view
    of it, included), or the Function's backward would get channel 0's gradient only."""
    start = (3.5, 4.0) if crop else (2.5, 3.0)
    check(Shifted(crop), None, (5, 6), (1, 1), start)


class Branches(nn.Module):
    """Two branches concatenated, then the shift by 3, then a 1x1 head: channels 0..3 come from
    ``small`` (conv 3, padding 1: unit (u, v) sees u-1..u+1), 4..7 from ``large`` (conv 5,
    padding 2: u-2..u+2). Channel 0's gradient moves 3 pixels right, so along w the unit sees
    ``small`` at v-1..v+1 and v+2..v+4 and ``large`` at v-2..v+2: v-2..v+4, r 7, start 1.5
    (unit 0: -2..4); along h u-2..u+2: r 5, start 0.5. Were the concatenation read as one
    blended channel, ``large`` would be shifted too (v+1..v+5, r 8)."""

    def __init__(self) -> None:
        super().__init__()
        self.small = nn.Conv2d(3, 4, 3, padding=1)
        self.large = nn.Conv2d(3, 4, 5, padding=2)
        self.head = nn.Conv2d(8, 8, 1)

    def forward(self, x):
        y = torch.cat([self.small(x), self.large(x)], 1)
        return self.head(ShiftFirstChannel.apply(y, 3))


def test_a_function_reading_concatenated_branches_sees_each_channel_apart():
    check(Branches(), None, (5, 7), (1, 1), (0.5, 1.5))


class BatchMixingBackward(torch.autograd.Function):
    """An elementwise forward whose backward averages the gradient over the batch (as a
    hand-written batch statistic would)."""

    @staticmethod
    def forward(ctx, x):
        return x * 2

    @staticmethod
    def backward(ctx, grad):
        return grad.mean(0, keepdim=True).expand_as(grad) * 2


class BatchMixed(nn.Module):
    """stem conv 3, the Function, head conv 3: r 5, j 1, start 2.5 per unit, as for any
    elementwise op (the oracle runs one batch element). Probes sharing a batch would each see
    every probed unit's field; the probe must notice and measure one unit per pass."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3)
        self.head = nn.Conv2d(8, 8, 3)

    def forward(self, x):
        return self.head(BatchMixingBackward.apply(self.stem(x)))


def test_a_backward_that_mixes_the_batch_is_probed_one_unit_per_pass():
    check(BatchMixed(), None, (5, 5), (1, 1), (2.5, 2.5))


def test_a_function_on_the_model_input():
    """The Function reads the (collapsed, batch-shared) input itself: RoundSTE, then conv 3:
    r 3, start 1.5."""
    model = nn.Sequential(Round(), nn.Conv2d(3, 4, 3))
    check(model, None, (3, 3), (1, 1), (1.5, 1.5))


class Chained(nn.Module):
    """stem conv 3, :class:`BatchMixingBackward`, then the box blur reading its output straight
    away (no op of the probe's in between, so the probe meets the first Function only through
    the second), head conv 3: r 3 + 0 + 2 + 2 = 7, j 1, start 2.5, as :class:`Blurred`. The
    first Function's backward mixes the batch: it must be found all the same."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3)
        self.head = nn.Conv2d(8, 8, 3)

    def forward(self, x):
        return self.head(BoxBlur.apply(BatchMixingBackward.apply(self.stem(x))))


def test_one_function_reading_anothers_output():
    check(Chained(), None, (7, 7), (1, 1), (2.5, 2.5))


def round_ste(x):
    """RoundSTE behind a function torch.fx keeps as one node, ``round_ste``."""
    return RoundSTE.apply(x)


torch.fx.wrap("round_ste")


class Wrapped(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3)
        self.head = nn.Conv2d(8, 8, 3)

    def forward(self, x):
        return self.head(round_ste(self.stem(x)))


def test_a_function_probed_by_its_graph_node():
    """``round_ste`` is an fx node, so the probe runs the traced graph and captures the
    Function's output there: the stem's field (RoundSTE's backward is the identity), r 3,
    start 1.5; each unit's bounds are the stem's, brute-forced."""
    model = Wrapped()
    p = rfnumeric.probe(model, SHAPE, node="round_ste")
    assert (p.r, p.j, p.start) == ((3, 3), (1, 1), (1.5, 1.5))
    for unit in [*(u for u in p.measured if u), *corners(p.n)]:
        q = rfnumeric.probe(model, SHAPE, node="round_ste", unit=unit)
        assert q.bounds == oracle_bounds(model, SHAPE, "stem", unit), unit


# ---- what cannot be located ---------------------------------------------------------------------
class ToTokens(torch.autograd.Function):
    """(batch, channels, h, w) to (batch, h*w, channels) through numpy: nothing the probe sees."""

    @staticmethod
    def forward(ctx, x):
        ctx.shape = x.shape
        b, c = x.shape[:2]
        return torch.from_numpy(x.detach().numpy().reshape(b, c, -1).transpose(0, 2, 1).copy())

    @staticmethod
    def backward(ctx, grad):
        return grad.transpose(1, 2).reshape(ctx.shape)


class Tokenised(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3)
        self.proj = nn.Linear(8, 8)

    def forward(self, x):
        return self.proj(ToTokens.apply(self.stem(x)))


def test_an_output_the_probe_cannot_place_is_an_error_naming_the_function():
    with pytest.raises(rfarith.ProbeError, match=r"custom autograd\.Function 'ToTokens'") as info:
        rfnumeric.probe(Tokenised(), SHAPE)
    message = str(info.value)
    assert "\n" not in message and "Way out: probe a node before 'ToTokens'" in message
    assert "(batch, channels, *spatial)" in message and info.value.kind == "layout"
    assert rfnumeric.probe(Tokenised(), SHAPE, node="stem").r == (3, 3)  # the way out works


def test_reentrant_checkpointing_is_refused():
    """Its backward recomputes the forward outside the probe, where no surrogate applies."""
    from torch.utils.checkpoint import checkpoint

    class Checkpointed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(3, 4, 3)
            self.body = nn.Sequential(nn.Conv2d(4, 4, 3), nn.MaxPool2d(3, 1))
            self.head = nn.Conv2d(4, 4, 3)

        def forward(self, x):
            return self.head(checkpoint(self.body, self.stem(x), use_reentrant=True))

    with pytest.raises(rfarith.ProbeError, match="checkpoint.*Way out"):
        rfnumeric.probe(Checkpointed(), SHAPE)
