"""Rules of elementwise ops (rfarith/rules/pointwise.py): the explicit neutral list and merges.

A neutral op acts unit by unit: its output unit m sees exactly what its input unit m sees.
Every test starts from a conv 3x3 stride 2 on 9x9: n = 4, j = 2, r = 3, start = 0.5+1 = 1.5.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import rfarith

from .expect import Lambda, assert_field, square

CONV = {"n": square(4), "j": square(2), "r": square(3), "start": square(1.5)}
SHAPE = (1, 3, 9, 9)


def after(fn=None, **modules):
    """conv 3x3 stride 2 (node `stem`), then ``fn(self, y)`` or the module ``op``."""
    return Lambda(fn, nn.Conv2d(3, 4, 3, stride=2), **modules)


NEUTRAL_MODULES = [
    nn.ReLU(inplace=True), nn.ReLU6(), nn.LeakyReLU(0.1), nn.PReLU(), nn.ELU(), nn.SELU(), nn.GELU(),
    nn.SiLU(), nn.Mish(), nn.Sigmoid(), nn.Tanh(), nn.Hardswish(), nn.Hardsigmoid(), nn.Softplus(),
    nn.Dropout(0.5), nn.Dropout2d(0.5), nn.Identity(), nn.BatchNorm2d(4), nn.LocalResponseNorm(2),
]


@pytest.mark.parametrize("module", NEUTRAL_MODULES, ids=lambda m: type(m).__name__)
def test_neutral_modules_pass_the_field_through(module):
    rep = rfarith.analyze(after(op=module), SHAPE)
    assert_field(rep["op"], **CONV)
    assert rep.table.loc["op", "op"] == type(module).__name__


NEUTRAL_CALLS = {
    "F.relu": lambda self, y: F.relu(y),
    "F.gelu": lambda self, y: F.gelu(y),
    "torch.sigmoid": lambda self, y: torch.sigmoid(y),
    "Tensor.clamp": lambda self, y: y.clamp(0, 1),
    "torch.exp": lambda self, y: torch.exp(y),
    "Tensor.sqrt": lambda self, y: y.abs().sqrt(),
    "scalar mul": lambda self, y: y * 2,
    "scalar radd": lambda self, y: 1 + y,
    "scalar div": lambda self, y: y / 3,
    "neg": lambda self, y: -y,
    "pow": lambda self, y: y**2,
    "F.dropout": lambda self, y: F.dropout(y, 0.2, training=self.training),
    "contiguous": lambda self, y: y.contiguous(),
}


@pytest.mark.parametrize("fn", list(NEUTRAL_CALLS.values()), ids=list(NEUTRAL_CALLS))
def test_neutral_functions_and_methods(fn):
    rep = rfarith.analyze(after(fn), SHAPE)
    assert_field(rep.output, **CONV)


def test_batchnorm_is_neutral_and_left_in_training_mode():
    """BatchNorm in eval mode is a per-channel affine map: neutral. The model stays in
    training mode and its running statistics are not updated."""
    model = after(op=nn.BatchNorm2d(4)).train()
    before = model.op.running_mean.clone(), int(model.op.num_batches_tracked)
    rep = rfarith.analyze(model, SHAPE)
    assert_field(rep["op"], **CONV)
    assert model.training and model.op.training
    assert torch.equal(model.op.running_mean, before[0]) and int(model.op.num_batches_tracked) == before[1]


def test_functional_batch_norm_is_neutral():
    def fn(self, y):
        return F.batch_norm(y, self.mean, self.var, training=False)

    model = after(fn)
    model.register_buffer("mean", torch.zeros(4))
    model.register_buffer("var", torch.ones(4))
    assert_field(rfarith.analyze(model, SHAPE).output, **CONV)


def test_per_channel_parameter_broadcast_is_not_global():
    """y * scale + shift with (1, C, 1, 1) parameters: the parameters do not depend on the
    input, so the product is neutral and nothing becomes global."""

    def fn(self, y):
        return y * self.scale + self.shift

    model = after(fn)
    model.scale = nn.Parameter(torch.ones(1, 4, 1, 1))
    model.shift = nn.Parameter(torch.zeros(1, 4, 1, 1))
    assert_field(rfarith.analyze(model, SHAPE).output, **CONV)


def test_merge_of_two_branches_of_one_tensor():
    """relu(y) + sigmoid(y) * y: every input has the conv's field: unchanged."""
    rep = rfarith.analyze(after(lambda self, y: F.relu(y) + torch.sigmoid(y) * y), SHAPE)
    assert_field(rep.output, **CONV)


def test_torch_maximum_merges_shifted_maps():
    """torch.maximum(y, pad-cropped y) merges y's unit m (pixels 2m .. 2m+2) with unit m+1 of y
    (pixels 2m+2 .. 2m+4, read through a 1-unit left crop and a 1-unit right zero pad):
    hull 2m .. 2m+4, r = 5, j = 2, start 2.5; centres differ: misaligned.
    F.pad(y, (-1, 1, -1, 1)): unit m reads unit m+1: start 1.5+2 = 3.5.
    In 2-D the two 3x3 boxes touch at one corner pixel: the other corners of the 5x5 hull,
    e.g. (2m, 2m'+4), are unseen: holes."""

    def fn(self, y):
        return torch.maximum(y, F.pad(y, (-1, 1, -1, 1)))

    rep = rfarith.analyze(after(fn), SHAPE)
    assert_field(rep["pad"], n=square(4), j=square(2), r=square(3), start=square(3.5))
    assert_field(rep.output, n=square(4), j=square(2), r=square(5), start=square(2.5), flags={"misaligned", "holes"})


def test_torch_where_with_a_torch_comparison():
    """torch.where(torch.gt(y, 0), y, -y): every input has y's field: unchanged."""
    rep = rfarith.analyze(after(lambda self, y: torch.where(torch.gt(y, 0), y, -y)), SHAPE)
    assert_field(rep.output, **CONV)


def test_comparison_operators_are_elementwise():
    """y * (y > 0): a mask computed unit by unit: unchanged field."""
    rep = rfarith.analyze(after(lambda self, y: y * (y > 0)), SHAPE)
    assert_field(rep.output, **CONV)


class DifferentSteps(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1, stride=2)

    def forward(self, x):
        return x[:, :, :8, :8] + self.conv(x)


def test_merge_of_different_jumps_is_unsupported():
    """x[:, :, :8, :8] (j = 1) + 1x1 stride 2 on 16x16 (n = 8, j = 2): equal shapes but units
    step differently: no exact per-unit field of this form; an UnsupportedOp naming `add`."""
    with pytest.raises(rfarith.UnsupportedOp) as info:
        rfarith.analyze(DifferentSteps(), (1, 3, 16, 16))
    assert info.value.node == "add"
    assert "'add'" in str(info.value)
