"""The user's model is exactly as before after every call, also when the call raises; models
with several outputs, unknown names and odd maps get clear answers or clear errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import rfarith
import rfnumeric
from tests.rfnumeric import nets
from tests.snapshot import ModelSnapshot


class Instrumented(nn.Module):
    """A model in training mode with hooks of every kind, a frozen layer, a stored gradient and
    BatchNorm statistics: everything a careless probe could change."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Conv2d(4, 2, 3, stride=2)
        self.head.weight.requires_grad_(False)
        self.calls = {"pre": 0, "forward": 0, "backward": 0}
        self.conv.register_forward_pre_hook(self._pre)
        self.bn.register_forward_hook(self._forward)
        self.head.register_full_backward_hook(self._backward)
        self.conv.weight.grad = torch.full_like(self.conv.weight, 0.5)

    def _pre(self, module, args):
        self.calls["pre"] += 1

    def _forward(self, module, args, output):
        self.calls["forward"] += 1

    def _backward(self, module, grad_input, grad_output):
        self.calls["backward"] += 1

    def forward(self, x):
        return self.head(torch.relu(self.bn(self.conv(x))))


CALLS = {
    "probe": lambda m: rfnumeric.probe(m, (1, 3, 20, 20)),
    "probe real full": lambda m: rfnumeric.probe(m, (1, 3, 20, 20), weights="real", mode="full"),
    "probe node": lambda m: rfnumeric.probe(m, (1, 3, 20, 20), node="bn", unit=(0, 0)),
    "sweep": lambda m: rfnumeric.sweep(m, (1, 3, 20, 20)),
    "effective": lambda m: rfnumeric.effective(m, (1, 3, 20, 20), n_inputs=2),
}

FAILING = {
    "unknown node": (
        lambda m: rfnumeric.probe(m, (1, 3, 20, 20), node="cnov"),
        rfarith.UnknownNode,
    ),
    "wrong channels": (lambda m: rfnumeric.probe(m, (1, 5, 20, 20)), rfarith.ShapeError),
    "too small": (lambda m: rfnumeric.probe(m, (1, 3, 4, 4)), rfarith.RFError),
    "max_size": (lambda m: rfnumeric.probe(m, (1, 3, 6, 6), max_size=6), rfarith.ProbeError),
}


def assert_hooks_still_fire(model: Instrumented) -> None:
    before = dict(model.calls)
    model(torch.ones(1, 3, 20, 20)).sum().backward()
    assert model.calls["pre"] == before["pre"] + 1
    assert model.calls["forward"] == before["forward"] + 1
    assert model.calls["backward"] == before["backward"] + 1


@pytest.mark.parametrize("name", list(CALLS))
def test_model_unchanged_after_a_call(name):
    model = Instrumented().train()
    snapshot = ModelSnapshot.of(model)
    CALLS[name](model)
    snapshot.assert_same(model)
    assert model.calls == {"pre": 0, "forward": 0, "backward": 0}  # the probe's copy ran, hook-free
    assert_hooks_still_fire(model)


@pytest.mark.parametrize("name", list(FAILING))
def test_model_unchanged_after_an_error(name):
    call, error = FAILING[name]
    model = Instrumented().train()
    snapshot = ModelSnapshot.of(model)
    with pytest.raises(error):
        call(model)
    snapshot.assert_same(model)
    assert_hooks_still_fire(model)


def test_user_hooks_do_not_run_on_the_probe_copy():
    """The copy runs the modules' own forward: a user's hook that records (or even breaks)
    outputs does not fire on the probe's tensors."""
    calls = []
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Identity())
    model[1].register_forward_hook(lambda m, a, out: calls.append(out) or out * float("nan"))
    snapshot = ModelSnapshot.of(model)
    assert rfnumeric.probe(model, (1, 1, 8, 8)).r == (3, 3)
    assert calls == []
    snapshot.assert_same(model)


def test_unknown_node_lists_close_names():
    with pytest.raises(
        rfarith.UnknownNode, match=r"unknown node name 'conv2x'.*Close names: conv2"
    ):
        rfnumeric.probe(nets.Residual(), (1, 3, 16, 16), node="conv2x")


def test_unknown_node_of_an_untraceable_model_lists_module_paths():
    with pytest.raises(rfarith.UnknownNode, match=r"Close names: b.*cannot trace"):
        rfnumeric.probe(nets.DataDependent(), (1, 3, 16, 16), node="bb")


class TwoHeads(nn.Module):
    def __init__(self, as_dict: bool) -> None:
        super().__init__()
        self.as_dict = as_dict
        self.low = nn.Conv2d(1, 2, 3)
        self.high = nn.Conv2d(2, 2, 3, stride=2)

    def forward(self, x):
        low = self.low(x)
        high = self.high(low)
        return {"low": low, "high": high} if self.as_dict else (low, high)


def test_several_outputs_need_a_choice_that_lists_them():
    with pytest.raises(ValueError, match=r"2 outputs \('low': tensor .*'high': tensor .*output=") as refused:
        rfnumeric.probe(TwoHeads(as_dict=True), (1, 1, 16, 16))
    # the way out from the CLI too, which has no output= (the erf command used to name only it)
    assert "node='output[high]' (CLI: --node 'output[high]')" in str(refused.value)
    with pytest.raises(ValueError, match=r"node='output\[1\]'"):
        rfnumeric.effective(TwoHeads(as_dict=False), (1, 1, 16, 16), n_inputs=1)
    assert rfnumeric.effective(TwoHeads(as_dict=False), (1, 1, 16, 16), n_inputs=1, node="output[1]").structural_r == (5, 5)
    with pytest.raises(ValueError, match=r"is not one of the outputs"):
        rfnumeric.probe(TwoHeads(as_dict=True), (1, 1, 16, 16), output="middle")


@pytest.mark.parametrize("as_dict", [True, False])
def test_choosing_an_output(as_dict):
    model = TwoHeads(as_dict)
    high = rfnumeric.probe(model, (1, 1, 16, 16), output="high" if as_dict else 1)
    low = rfnumeric.probe(model, (1, 1, 16, 16), output="low" if as_dict else 0)
    assert (high.r, high.j, high.start) == ((5, 5), (2, 2), (2.5, 2.5))
    assert (low.r, low.j, low.start) == ((3, 3), (1, 1), (1.5, 1.5))
    key = "high" if as_dict else "1"
    by_name = rfnumeric.probe(model, (1, 1, 16, 16), node=f"output[{key}]")  # rfarith's row name
    assert by_name.r == (5, 5)


def test_a_node_returning_a_tuple_is_chosen_with_output():
    class Split(nn.Module):
        def forward(self, x):
            return x[:, :1], x[:, 1:]

    model = nn.Sequential()
    model.add_module("conv", nn.Conv2d(1, 2, 3))
    model.add_module("split", Split())
    p = rfnumeric.probe(model, (1, 1, 16, 16), node="split", output=1)
    assert p.r == (3, 3)
    with pytest.raises(ValueError, match="2 outputs"):
        rfnumeric.probe(model, (1, 1, 16, 16), node="split")


def test_an_unused_module_is_a_clear_error():
    class Spare(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used = nn.Conv2d(1, 1, 3)
            self.spare = nn.Conv2d(1, 1, 3)

        def forward(self, x):
            return self.used(x)

    with pytest.raises(rfarith.ProbeError, match="never ran"):
        rfnumeric.probe(Spare(), (1, 1, 8, 8), node="spare")


def test_a_constant_output_is_a_clear_error():
    class Constant(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bias = nn.Parameter(torch.ones(1, 1, 4, 4))

        def forward(self, x):
            return self.bias * 2

    with pytest.raises(rfarith.ProbeError, match="does not depend on the model input"):
        rfnumeric.probe(Constant(), (1, 1, 8, 8))


def test_one_unit_global_map_reports_a_zero_jump():
    """Global average pooling: one unit at every size, seeing the whole input."""
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.AdaptiveAvgPool2d(1))
    p = rfnumeric.probe(model, (1, 1, 12, 12))
    assert p.n == (1, 1) and p.r == (12, 12) and p.j == (0, 0) and p.start == (6.0, 6.0)
    assert p.flags == {"global"} and p.global_via == ("1",)


def test_a_lazy_model_must_be_initialised_first():
    model = nn.Sequential(nn.LazyConv2d(2, 3))
    with pytest.raises(rfarith.ProbeError, match="run the model once"):
        rfnumeric.probe(model, (1, 1, 8, 8))
    model(torch.ones(1, 1, 8, 8))
    assert rfnumeric.probe(model, (1, 1, 8, 8)).r == (3, 3)
