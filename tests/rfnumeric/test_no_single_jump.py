"""A field with no single jump: the probe never reports a summary its own units contradict.

The net adds a stride-2 branch to a stride-1 branch. Along each axis, branch A (conv 5, stride
2, padding 2) lets unit m see 2m-2 .. 2m+2, branch B (conv 5, stride 1, no padding, cropped to
A's size) m .. m+4. The sum sees ``min(2m-2, m) .. max(2m+2, m+4)``: 2m-2 .. m+4 for m <= 2,
m .. 2m+2 from there on (with a gap between the branches from m = 8): field sizes 7, 6, 5, 6,
7, ... and no period. At an 8-pixel input units 0, 1, 2 see 0..4, 0..5, 2..6; three adjacent
units once passed for j 1, r 5, start 2.5, which puts unit 1 at 1..5.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import rfnumeric


class StrideMerge(nn.Module):
    """A stride-2 and a stride-1 branch, the second cropped to the first's size, added (inputs
    of at least 8 pixels per axis: B then has at least as many units as A)."""

    def __init__(self, dims: int) -> None:
        super().__init__()
        conv = nn.Conv2d if dims == 2 else nn.Conv1d
        self.dims = dims
        self.a = conv(1, 1, 5, stride=2, padding=2)
        self.b = conv(1, 1, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.a(x), self.b(x)
        if self.dims == 2:
            return a + b[..., : a.shape[-2], : a.shape[-1]]
        return a + b[..., : a.shape[-1]]


def field(m: int, size: int) -> tuple[int, int]:
    """First and last pixel unit m sees along one axis of a ``size``-pixel input (clipped)."""
    return max(0, min(2 * m - 2, m)), min(size - 1, max(2 * m + 2, m + 4))


def brute_force(model: nn.Module, sizes: tuple[int, ...], units: list[tuple[int, ...]]):
    """Per unit, per axis, the first and last input pixel with non-zero gradient: positive
    weights, zero biases, float64, one ``torch.autograd.grad`` per unit."""
    model = model.double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.abs() + 0.1 if p.dim() > 1 else torch.zeros_like(p))
    x = torch.rand(1, 1, *sizes, dtype=torch.float64) + 0.5
    x.requires_grad_(True)
    y = model(x)
    found = {}
    for unit in units:
        (grad,) = torch.autograd.grad(y[(0, 0, *unit)], x, retain_graph=True)
        seen = grad[0, 0] != 0
        per_axis = []
        for a in range(len(sizes)):
            others = tuple(b for b in range(len(sizes)) if b != a)
            line = seen.any(dim=others) if others else seen
            idx = torch.nonzero(line).flatten().tolist()
            per_axis.append((idx[0], idx[-1]))
        found[unit] = tuple(per_axis)
    return found


@pytest.mark.parametrize("dims", [1, 2])
def test_the_net_sees_what_the_docstring_says(dims):
    sizes = (20,) * dims
    units = [(m,) * dims for m in range(10)]
    seen = brute_force(StrideMerge(dims), sizes, units)
    assert all(seen[u] == (field(u[0], 20),) * dims for u in units)
    assert [field(m, 8) for m in range(3)] == [(0, 4), (0, 5), (2, 6)]


def assert_no_single_jump(p: rfnumeric.ProbeResult, dims: int) -> None:
    """No summary along any axis, flagged and explained; every unit measured reported right."""
    for a in range(dims):
        assert math.isnan(p.j[a]) and math.isnan(p.r[a]) and math.isnan(p.start[a]), p
        assert (p.r[a], p.j[a]) != (5, 1)
    assert "nonuniform" in p.flags
    assert len(p.notes) == dims and all(n.startswith("no single jump along") for n in p.notes)
    assert all(n in p.describe_flags() for n in p.notes)
    sizes = p.input_shape[2:]
    units = [u for u in p.measured if u]
    truth = brute_force(StrideMerge(dims), sizes, units)
    for u in units:
        assert p.bounds_of(u) == truth[u], (u, p.bounds_of(u), truth[u])
    assert p.bounds == truth[p.unit]


@pytest.mark.parametrize("dims", [1, 2])
@pytest.mark.parametrize("hint", [None, 7, 20])
def test_a_merge_of_strides_two_and_one_has_no_single_jump(dims, hint):
    """Without a hint the input grows (the three units' fit contradicted unit 1), with a hint
    it starts large: either way no period explains the window and nothing is summarised."""
    p = rfnumeric.probe(StrideMerge(dims), (1, 1) + (8,) * dims, size_hint=hint)
    assert_no_single_jump(p, dims)
    assert p.input_shape[2:] != (8,) * dims  # measured on a grown input


@pytest.mark.parametrize("dims", [1, 2])
def test_at_the_users_input_the_contradicted_unit_is_named(dims):
    """At 8 pixels (max_size keeps it there) the probe measures units 0..2 right and says why
    it reports no jump: j 1, r 5, start 2.5 would put unit 1 at 1..5, it sees 0..5."""
    p = rfnumeric.probe(StrideMerge(dims), (1, 1) + (8,) * dims, max_size=8)
    assert_no_single_jump(p, dims)
    centre = (2,) * dims
    for a in range(dims):
        for m in range(3):
            unit = centre[:a] + (m,) + centre[a + 1 :]
            assert p.bounds_of(unit)[a] == field(m, 8)
    assert all(
        "unit 1 sees 0..5 (cut at the border), but j 1, r 5, start 2.5 put it at 1..5" in note
        for note in p.notes
    )


def test_sweep_reports_no_summary_either():
    table = rfnumeric.sweep(StrideMerge(1), (1, 1, 8), max_size=8)
    row = table.loc["add"]
    assert all(math.isnan(row[c]) for c in ("j_l", "r_l", "start_l"))
    assert "nonuniform" in row["flags"]
