"""Deep nets: the structural probe stays exact where a plain float64 gradient underflows.

A stack of L stride-1 convolutions with kernel k has r = 1 + L*(k-1), j = 1 and, without
padding, start = r/2. With weights 1/k, the gradient reaching the edge of the field of a unit
is k**-L: for k = 3 that is 1e-76 at L = 160, and 1e-334 at L = 700, below float64's smallest
subnormal (5e-324).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

import rfnumeric
from tests.rfnumeric import nets


def test_160_conv_layers_are_exact_without_help():
    depth = 160
    p = rfnumeric.probe(nets.conv_stack(depth), (1, 1, 330, 330))
    r = 1 + depth * 2
    assert p.r == (r, r) and p.j == (1, 1) and p.start == (r / 2, r / 2)
    assert "underflow" not in p.flags
    lo = p.unit[0]  # unit m of a valid stack sees m .. m + r - 1
    assert p.bounds == ((lo, lo + r - 1), (p.unit[1], p.unit[1] + r - 1))


def naive_support(depth: int, size: int) -> int:
    """Pixels with non-zero float64 gradient from the centre unit, without any guard."""
    x = torch.ones(1, 1, size, dtype=torch.float64, requires_grad=True)
    y = x
    weight = torch.full((1, 1, 3), 1 / 3, dtype=torch.float64)
    for _ in range(depth):
        y = F.conv1d(y, weight)
    y[0, 0, y.shape[-1] // 2].backward()
    return int((x.grad != 0).sum())


def test_700_conv_layers_would_underflow_and_the_probe_says_so():
    depth, size = 700, 1500
    r = 1 + depth * 2
    assert naive_support(depth, size) < r  # the plain gradient loses the field's edges
    p = rfnumeric.probe(nets.conv_stack(depth, dims=1), (1, 1, size))
    assert p.r == (r,) and p.j == (1,) and p.start == (r / 2,)
    assert len(p.support[0]) == r  # every pixel, edges included
    assert "underflow" in p.flags  # the gradients were compressed to stay representable


def test_real_weights_report_the_underflow_they_cannot_avoid():
    """With the model's own weights the probe changes nothing: the same stack with weights 1/3
    loses the field's edges, and the result says so instead of passing it off as exact."""
    depth, size = 700, 1500
    model = nets.conv_stack(depth, dims=1)
    with torch.no_grad():
        for conv in model:
            conv.weight.fill_(1 / 3)
            conv.bias.zero_()
    p = rfnumeric.probe(model, (1, 1, size), weights="real")
    assert "underflow" in p.flags
    assert p.r[0] < 1 + depth * 2
