"""Channel classes (rfnumeric/classes.py): a blend that knows which channels carry which support
stays collapsed through splits, shuffles, slices and grouped convolutions, and gives the same
gradient, value for value, as the probe with every channel."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import rfnumeric
from rfnumeric.measure import Request, Session, UnitSpec


def shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """torchvision's channel_shuffle, as users copy it."""
    b, c, h, w = x.shape
    x = x.view(b, groups, c // groups, h, w)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(b, -1, h, w)


class Unit(nn.Module):
    """A ShuffleNet-v2 unit: split, one half through 1x1 / depthwise 3x3 / 1x1, concatenate,
    shuffle. The half passed on keeps the supports of every earlier unit."""

    def __init__(self, channels: int, dilation: int = 1) -> None:
        super().__init__()
        half = channels // 2
        self.branch = nn.Sequential(
            nn.Conv2d(half, half, 1),
            nn.Conv2d(half, half, 3, padding=dilation, dilation=dilation, groups=half),
            nn.Conv2d(half, half, 1),
        )

    def forward(self, x):
        kept, changed = x.chunk(2, dim=1)
        return shuffle(torch.cat([kept, self.branch(changed)], 1), 2)


class Stack(nn.Module):
    def __init__(self, units: int = 4, channels: int = 8) -> None:
        super().__init__()
        self.stem = nn.Conv2d(2, channels, 3, padding=1)
        self.units = nn.Sequential(*[Unit(channels, 1 + i % 2) for i in range(units)])

    def forward(self, x):
        return self.units(self.stem(x))[:, 1:2]  # one channel: the supports differ by channel


class ConcatThenSplit(nn.Module):
    """Two fields concatenated, then each half read on its own (a narrow and a slice)."""

    def __init__(self) -> None:
        super().__init__()
        self.small = nn.Conv2d(2, 3, 3, padding=1)
        self.large = nn.Conv2d(2, 5, 7, padding=3)

    def forward(self, x):
        y = torch.cat([self.small(x), self.large(x)], 1)
        return y.narrow(1, 2, 2) * 1.0 + y[:, 6:8]


class GroupedAfterConcat(nn.Module):
    """Groups of a grouped conv that each read a different mix of two fields."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(2, 3, 5, padding=2)
        self.b = nn.Conv2d(6, 6, 3, padding=1, groups=3)

    def forward(self, x):
        return self.b(torch.cat([x[:, :1].expand(-1, 3, -1, -1) * 1.0, self.a(x)], 1))[:, :2]


class DepthwiseThenPick(nn.Module):
    """A depthwise conv of a concatenation keeps the channels apart; one channel is read."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(2, 2, 5, padding=2)
        self.dw = nn.Conv2d(4, 4, 3, padding=2, dilation=2, groups=4)

    def forward(self, x):
        y = torch.cat([self.a(x), F.avg_pool2d(x, 3, 1, 1)], 1)
        return self.dw(y)[:, 3:4]


class ChannelShuffleOp(nn.Module):
    """F.channel_shuffle and a permute to channels-last and back."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(2, 2, 5, padding=2)

    def forward(self, x):
        y = F.channel_shuffle(torch.cat([x, self.a(x)], 1), 2)
        y = y.permute(0, 2, 3, 1).permute(0, 3, 1, 2)
        return y[:, 1:2]


CASES = {
    "shufflenet units (view, transpose, contiguous, view, chunk)": (Stack, (1, 2, 24, 24)),
    "concatenation, then narrow and slice": (ConcatThenSplit, (1, 2, 16, 16)),
    "grouped conv over a concatenation": (GroupedAfterConcat, (1, 2, 16, 16)),
    "dilated depthwise conv over a concatenation": (DepthwiseThenPick, (1, 2, 16, 16)),
    "F.channel_shuffle and permutes": (ChannelShuffleOp, (1, 2, 16, 16)),
}


def centre(model: nn.Module, shape, collapse: bool, unit: tuple[int, ...] | None = None):
    session = Session(model.eval(), shape)
    session.collapse = collapse
    spec = UnitSpec("centre") if unit is None else UnitSpec("fixed", unit=unit)
    measurement = session.measure(shape[2:], [Request(session.target(None), spec, keep_heatmap=True)], local=True)
    return measurement.elements[0].heatmap, session.collapse


@pytest.mark.parametrize("name", list(CASES))
def test_classes_keep_the_probe_collapsed_and_exact(name):
    factory, shape = CASES[name]
    torch.manual_seed(0)
    model = factory()
    reference, _ = centre(model, shape, collapse=False)
    collapsed, still_collapsed = centre(model, shape, collapse=True)
    assert still_collapsed, "the probe fell back to every channel"
    assert np.array_equal(collapsed != 0, reference != 0)
    np.testing.assert_allclose(collapsed, reference, rtol=1e-10, atol=0)


def test_every_unit_of_a_shuffle_stack_matches_the_full_probe():
    """Not only the centre: units near the border (zero padding cuts their supports
    differently per class) give the reference's gradient too."""
    torch.manual_seed(1)
    model, shape = Stack(units=3), (1, 2, 12, 12)
    for unit in [(0, 0), (0, 11), (5, 6), (11, 3)]:
        reference, _ = centre(model, shape, False, unit)
        collapsed, still = centre(model, shape, True, unit)
        assert still
        np.testing.assert_allclose(collapsed, reference, rtol=1e-10, atol=0)


def test_the_probe_result_is_the_same_with_or_without_classes(monkeypatch):
    """The whole probe (search, fit) on the shuffle stack, with the classes and with them
    switched off (every channel, the slow way)."""
    torch.manual_seed(2)
    model, shape = Stack(units=4), (1, 2, 20, 20)
    fast = rfnumeric.probe(model, shape)
    monkeypatch.setattr(Session, "collapse", False, raising=False)
    original = Session.__init__

    def uncollapsed(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.collapse = False

    monkeypatch.setattr(Session, "__init__", uncollapsed)
    slow = rfnumeric.probe(model, shape)
    assert (fast.r, fast.j, fast.start, fast.bounds, fast.flags) == (slow.r, slow.j, slow.start, slow.bounds, slow.flags)
    assert np.array_equal(fast.heatmap != 0, slow.heatmap != 0)


def test_a_reshape_merging_channels_with_space_falls_back():
    """A flatten of channels with a spatial axis is no move of channels: the probe runs with
    every channel, and still gives the reference."""

    class Merge(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(2, 2, 3, padding=1)

        def forward(self, x):
            y = torch.cat([x, self.a(x)], 1)  # (1, 4, 8, 8)
            return y.reshape(1, 2, 16, 8)[:, :1]

    torch.manual_seed(3)
    reference, _ = centre(Merge(), (1, 2, 8, 8), collapse=False)
    collapsed, still = centre(Merge(), (1, 2, 8, 8), collapse=True)
    assert not still
    np.testing.assert_allclose(collapsed, reference, rtol=1e-10, atol=0)
