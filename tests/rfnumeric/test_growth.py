"""How the probe searches: input sizes that keep what the user's size divides by, windows and
phase grids of periodic fields."""

from __future__ import annotations

import pytest
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
