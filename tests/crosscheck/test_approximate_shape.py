"""Supports made of many rectangles: InceptionNeXt's square and band kernels, composed block
after block. rfarith keeps the union of rectangles exactly up to ``rfarith.value.MAX_TERMS``;
past it the shape becomes the per-axis union, flagged ``approximate`` (the bounds stay exact),
and the verdict compares bounds, not pixel sets. Before, the limit was 64 and the union was not
flagged: timm's inception_next_atto showed 1,042,560 pixels the analytic side claimed and no
gradient reaches (the plain probe with every channel confirmed the probe's set)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

import crosscheck
import rfarith
import rfarith.value

SHAPE = (1, 3, 48, 48)


class InceptionDW(nn.Module):
    """Channels split four ways: identity, 3x3, 1x7 and 7x1 depthwise, concatenated."""

    def __init__(self, c: int = 8) -> None:
        super().__init__()
        g = c // 4
        self.square = nn.Conv2d(g, g, 3, padding=1, groups=g)
        self.band_w = nn.Conv2d(g, g, (1, 7), padding=(0, 3), groups=g)
        self.band_h = nn.Conv2d(g, g, (7, 1), padding=(3, 0), groups=g)
        self.split = (c - 3 * g, g, g, g)

    def forward(self, x):
        a, b, c, d = torch.split(x, self.split, dim=1)
        return torch.cat((a, self.square(b), self.band_w(c), self.band_h(d)), dim=1)


class Block(nn.Module):
    def __init__(self, c: int = 8) -> None:
        super().__init__()
        self.mix = InceptionDW(c)
        self.mlp = nn.Conv2d(c, c, 1)

    def forward(self, x):
        return x + self.mlp(self.mix(x))


def net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 1), Block(), Block(), Block())


def test_many_rectangles_stay_exact_below_the_limit():
    out = rfarith.analyze(net(), SHAPE).output
    assert len(out.terms) > 4 and "approximate" not in out.flags and "holes" in out.flags
    frame = crosscheck.compare(net(), SHAPE)
    assert frame["status"].eq("agree").all(), frame[["status", "reason_text"]]


def test_past_the_limit_the_shape_is_flagged_and_only_bounds_are_compared(monkeypatch):
    exact = rfarith.analyze(net(), SHAPE).output
    monkeypatch.setattr(rfarith.value, "MAX_TERMS", 2)
    out = rfarith.analyze(net(), SHAPE).output
    assert "approximate" in out.flags and len(out.terms) == 1
    assert (out.r, out.j, out.start) == (exact.r, exact.j, exact.start)  # the bounds stay exact
    centre = (24, 24)
    assert out.bounds(centre) == exact.bounds(centre)
    assert np.all(out.mask(centre) >= exact.mask(centre)) and out.mask(centre).sum() > exact.mask(centre).sum()
    frame = crosscheck.compare(net(), SHAPE)
    last = frame.iloc[-1]
    assert last["status"] == "not_compared" and "approximate_shape" in last["reason"], last["reason_text"]
    assert not frame["status"].eq("disagree").any()
