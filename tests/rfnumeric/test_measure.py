"""The measurement's input (one stored element) and its reading of the input gradient."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from rfnumeric import layout as lay
from rfnumeric.measure import Request, Session, UnitSpec, input_heat
from rfnumeric.mode import expanded
from tests.rfnumeric import nets


def test_one_channel_heat_keeps_every_non_zero_pixel_of_either_sign():
    gradient = torch.tensor([[[[0.0, -2.0], [3.0, 0.0]]]], dtype=torch.float64)
    heat = input_heat(gradient)
    assert heat.shape == (1, 2, 2)
    assert np.array_equal(heat != 0, [[[False, True], [True, False]]])
    assert np.array_equal(np.abs(heat), [[[0.0, 2.0], [3.0, 0.0]]])


def test_channels_add_magnitudes_so_opposite_signs_do_not_cancel():
    gradient = torch.zeros(2, 2, 1, 3, dtype=torch.float64)
    gradient[0, 0, 0, 1], gradient[0, 1, 0, 1] = 1.0, -1.0
    gradient[1, 1, 0, 2] = -4.0
    heat = input_heat(gradient)
    assert np.array_equal(heat, [[[0.0, 2.0, 0.0]], [[0.0, 0.0, 4.0]]])


# ---- the probe's input: one stored element, seen everywhere --------------------------------------
class ScalesItsInput(nn.Module):
    """Reads the input in place-sensitive ways: a product with itself, then an in-place op."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, padding=1)

    def forward(self, x):
        y = x * x
        y.mul_(2.0)
        return self.conv(y)


INPUT_CASES = {
    "residual": (nets.Residual, (2, 3, 16, 16)),
    "misaligned branches": (nets.Misaligned, (1, 1, 20, 20)),
    "geometry": (nets.Geometry, (1, 2, 19, 17)),
    "squeeze-excite": (lambda: nets.SqueezeExcite(2), (1, 2, 16, 16)),
    "product and in-place op on the input": (ScalesItsInput, (1, 3, 12, 12)),
}


def heatmaps(model: nn.Module, shape: tuple[int, ...], weights: str) -> list[np.ndarray]:
    session = Session(model.eval(), shape, weights)
    target = session.target(None)
    specs = [UnitSpec("centre"), UnitSpec("fixed", unit=(0,) * (len(shape) - 2))]
    requests = [Request(target, spec, keep_heatmap=True) for spec in specs]
    return [e.heatmap for e in session.measure(shape[2:], requests, local=True).elements]


@pytest.mark.filterwarnings("ignore:Using padding=.same.")
@pytest.mark.parametrize("weights", ["structural", "real"])
@pytest.mark.parametrize("name", list(INPUT_CASES))
def test_the_stride_0_input_gives_the_gradient_of_a_dense_one(name, weights, monkeypatch):
    """The probe's input holds one element (stride 0 everywhere); the plain way fills a dense
    tensor of ones. Both must give the same gradient, value for value."""
    factory, shape = INPUT_CASES[name]
    torch.manual_seed(0)
    model = factory()
    shortcut = heatmaps(model, shape, weights)
    leaf, _ = Session(model, shape)._input(shape[0], shape[2:], True)
    assert set(leaf.stride()) == {0}

    def dense_input(self, batch, sizes, collapse):
        leaf = torch.ones(
            (batch, 1 if collapse else self.channels, *sizes),
            dtype=torch.float64,
            requires_grad=True,
        )
        with torch.enable_grad():
            x = (
                expanded(leaf, (batch, self.channels, *sizes))
                if collapse and self.channels > 1
                else leaf * 1.0
            )
        lay.attach(x, lay.input_layout((batch, self.channels, *sizes)))
        return leaf, x

    monkeypatch.setattr(Session, "_input", dense_input)
    plain = heatmaps(model, shape, weights)
    for got, want in zip(shortcut, plain):
        assert np.array_equal(got != 0, want != 0)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
