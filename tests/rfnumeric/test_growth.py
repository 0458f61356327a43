"""How the probe searches: input sizes that keep what the user's size divides by, windows and
phase grids of periodic fields."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import rfarith
import rfnumeric
from rfnumeric.search import grown, keeping_residues, start_sizes


@pytest.mark.parametrize("user", [13, 24, 64, 224, 227])
def test_growth_keeps_the_power_of_two_of_the_users_size(user):
    power = user & -user
    size = user
    for _ in range(6):
        bigger = grown(size, user)
        assert bigger > size and (bigger - user) % power == 0
        size = bigger


@pytest.mark.parametrize("user", [13, 16, 21, 24])
@pytest.mark.parametrize("strictness", [1, 2, 3])
def test_strict_growth_keeps_more_residues(user, strictness):
    """Strictness k divides the step by the k-th of 2, 6, 12, ... (times the power of two)."""
    divisor = (2, 6, 12)[strictness - 1]
    for target in (user + 1, user + 7, 2 * user, 5 * user):
        size = keeping_residues(target, user, strictness)
        assert size >= target and (size - user) % divisor == 0 and (size - user) % (user & -user) == 0


def test_start_sizes_hold_the_hinted_field_with_room():
    assert start_sizes((24, 24), 41, 4096) == (56, 56)  # 41 + 8 = 49, up to 24 + 4 * 8
    assert start_sizes((13,), 100, 64) == (64,)  # capped at max_size
    assert start_sizes((128, 128), 112, 4096) == (128, 128)  # a field that fits starts where asked
    assert start_sizes((128, 32), (112, 41), 4096) == (128, 64)  # per axis


class FixedCrop(nn.Module):
    """Two stride-3 branches cropped to match at the user's size 13 (sizes 5 and 4 + 1): at a
    grown size they only match when it is congruent to 13 mod 3. r = 3 + 4 * 2 * 3 = 27."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv1d(1, 1, 1, stride=3)
        self.b = nn.Conv1d(1, 1, 3, stride=3)
        self.tail = nn.Sequential(*[nn.Conv1d(1, 1, 3, padding=1) for _ in range(4)])

    def forward(self, x):
        return self.tail(self.a(x) + nn.functional.pad(self.b(x), (0, 1)))


def test_a_model_that_rejects_a_grown_size_is_measured_at_a_stricter_one():
    p = rfnumeric.probe(FixedCrop(), (1, 1, 13))
    assert p.r == (27,) and p.j == (3,) and p.start == (1.5,)
    assert (p.input_shape[2] - 13) % 3 == 0


class OneSize(nn.Module):
    """Accepts 16x16 only (as timm's PatchEmbed checks its image size): three convs of 5,
    padding 2, then one of 7 with stride 2: r 19, j 2, wider than the input."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(*[nn.Conv2d(3 if i == 0 else 4, 4, 5, padding=2) for i in range(3)])
        self.head = nn.Conv2d(4, 4, 7, stride=2, padding=3)

    def forward(self, x):
        if tuple(x.shape[-2:]) != (16, 16):
            raise ValueError(f"Input size {tuple(x.shape[-2:])} doesn't match model (16, 16)")
        return self.head(self.body(x))


def _support_by_autograd(model: nn.Module, shape, unit) -> tuple[tuple[int, ...], ...]:
    """Per axis, the pixels one output unit's gradient reaches (plain autograd, positive
    weights and input: nothing cancels)."""
    net = OneSize().double().eval()
    net.load_state_dict(model.state_dict())
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(0.1)
    x = torch.ones(shape, dtype=torch.float64, requires_grad=True)
    net(x)[(0, slice(None), *unit)].sum().backward()
    seen = x.grad.abs().sum(1)[0] != 0
    return tuple(tuple(int(i) for i in torch.nonzero(seen.any(dim=1 - a)).flatten()) for a in range(2))


@pytest.mark.parametrize("size_hint", [None, 40])
def test_a_model_that_accepts_one_size_is_read_there_cut_by_the_border(size_hint):
    """The field (r 19) does not fit 16x16 and the model rejects every larger input: the probe
    reads what the units see of 16x16 (exactly, against plain autograd), flags the field
    ``clipped``, and gives j, r, start as NaN with the model's own error, not a cut size."""
    model = OneSize()
    p = rfnumeric.probe(model, (1, 3, 16, 16), size_hint=size_hint)
    assert p.input_shape == (1, 3, 16, 16) and p.n == (8, 8)
    assert all(math.isnan(v) for v in (*p.r, *p.start)) and all(math.isnan(float(j)) for j in p.j)
    assert "clipped" in p.flags and "doesn't match model (16, 16)" in p.growth_refused
    assert "cut by the border along h, w" in p.describe_flags()
    for unit, bounds in p.measured.items():
        pixels = _support_by_autograd(model, (1, 3, 16, 16), unit)
        assert bounds == tuple((axis[0], axis[-1]) for axis in pixels), unit
    assert p.support == _support_by_autograd(model, (1, 3, 16, 16), p.unit)


def test_a_sweep_reads_the_cut_field_too():
    """Through the graph (traced with the sizes of 16x16): a larger input fails already in the
    trace, which is the model rejecting it, not an untraceable model."""
    table = rfnumeric.sweep(OneSize(), (1, 3, 16, 16))
    assert table.loc["body.2", "r_h"] == 13 and math.isnan(table.loc["head", "r_h"])
    assert table.loc["head", "flags"].startswith("clipped (cut by the border along h, w: the model rejected")
    assert "doesn't match model (16, 16)" in table.loc["head", "flags"]


def test_a_field_that_fits_the_one_size_a_model_accepts_is_whole():
    """Where the field fits, nothing is cut: the map before the head (r 13) at 16x16."""
    p = rfnumeric.probe(OneSize(), (1, 3, 16, 16), node="body.2")
    assert p.r == (13, 13) and p.j == (1, 1) and not p.growth_refused and "clipped" not in p.flags


# ---- windows along periodic axes: a band across the other axes' phases ------------------------
class EveryThirdColumn(nn.Module):
    """Two branches added: a 3x1 conv everywhere, and a 7x1 conv that a stride-3 transposed
    conv (kernel 1) spreads to every third column only. Unit (m, w) sees 7 rows where
    w % 3 == 0 and 3 rows elsewhere: the field is not a product of per-axis fields."""

    def __init__(self) -> None:
        super().__init__()
        self.narrow = nn.Conv2d(1, 1, (3, 3), padding=(1, 1))
        self.wide = nn.Conv2d(1, 1, (7, 1), padding=(3, 0))
        self.down = nn.Conv2d(1, 1, 1, stride=(1, 3))
        self.up = nn.ConvTranspose2d(1, 1, 1, stride=(1, 3))

    def forward(self, x):
        spread = self.up(self.down(self.wide(x)))
        return self.narrow(x)[..., : spread.shape[-1]] + spread


def test_band_seeds_show_every_columns_rows():
    from rfnumeric.measure import Request, Session, UnitSpec

    session = Session(EveryThirdColumn(), (1, 1, 30, 30))
    target = session.target(None)
    spec = UnitSpec("step", 0, 0, band=(1, 8))
    assert spec.seeded((30, 30)) == [(15, 15 + k) for k in range(8)]
    plain, banded = session.measure(
        (30, 30), [Request(target, UnitSpec("fixed", unit=(15, 16))), Request(target, spec)], True
    ).elements
    assert (plain.spans[0].lo, plain.spans[0].hi) == (14, 16)  # column 16: the 3x3 branch only
    assert (banded.spans[0].lo, banded.spans[0].hi) == (12, 18)  # columns 15..22: both branches


def test_a_window_over_two_periodic_axes_gives_the_largest_rows():
    from rfnumeric.measure import Session
    from rfnumeric.search import Search, run_searches

    session = Session(EveryThirdColumn(), (1, 1, 30, 30))
    target = session.target(None)
    search = Search(target, (30, 30), (30, 30), 30, want_full=False, keep_heatmap=False, periodic=frozenset({0, 1}))
    run_searches(session, [search])
    assert search.outcome.fits[0].r == 7 and search.outcome.fits[0].j == 1


class CornerHole(nn.Module):
    """A 1x1 branch plus a 2x3 max-pool branch resized back and shifted one column right. Unit
    (h, w) with w % 3 == 0 sees its own pixel beside the pool's 2x3 window, not inside it: the
    other row of column w is a hole. Only that column phase has it, at either row phase, so
    steps along one axis (banded across the other) never show it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1)

    def forward(self, x):
        pooled = F.interpolate(F.max_pool2d(x, (2, 3)), scale_factor=(2, 3), mode="nearest")
        return self.conv(x) + F.pad(pooled, (1, -1, 0, 0))


@pytest.mark.parametrize("shape", [(1, 1, 12, 21), (1, 1, 8, 15), (1, 1, 10, 33)])
def test_holes_at_one_combination_of_phases_are_found(shape):
    probed = rfnumeric.probe(CornerHole(), shape)
    assert "holes" in probed.flags and "nonuniform" in probed.flags
    assert "holes" in rfarith.analyze(CornerHole(), shape).rows[-1].field.flags


def test_the_phase_grid_holds_every_combination_but_the_centre():
    from rfnumeric.fitting import AxisFit
    from rfnumeric.measure import Session
    from rfnumeric.search import Search

    session = Session(CornerHole(), (1, 1, 12, 21))
    search = Search(session.target(None), (12, 21), (12, 21), 64)
    fits = [AxisFit(1, 2, 1.0, False, True, period=2), AxisFit(1, 4, 1.0, False, True, period=3)]
    assert search._phase_grid(fits, [0, 1]) == ((0, 1), (0, 2), (1, 0), (1, 1), (1, 2))
    assert search._phase_grid(fits, [1]) == ()  # one periodic axis: its steps hold every phase
