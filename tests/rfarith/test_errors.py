"""Bad models and bad inputs: the right error, naming where and what, and the model untouched.

After every failing call the model is exactly as before: state dict (bit-exact), training
flags, requires_grad flags, hooks and .grad (tests/snapshot.py).
"""

from __future__ import annotations

import pytest
import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

import rfarith
from tests.snapshot import ModelSnapshot


def my_op(x):
    """A user function torch.fx keeps as one call (fx.wrap): no rule knows it."""
    return x.flip(-1)


torch.fx.wrap("my_op")


def prepared(model: nn.Module) -> nn.Module:
    """Put the model in a state a careless call could disturb: training mode, a frozen first
    parameter, a populated .grad, forward hooks."""
    model.train()
    params = list(model.parameters())
    if params:
        params[0].requires_grad_(False)
        params[-1].grad = torch.ones_like(params[-1])
    model.register_forward_hook(lambda m, i, o: None)
    model.register_forward_pre_hook(lambda m, i: None)
    return model


def fails(model: nn.Module, shape, error: type[Exception]) -> Exception:
    """analyze raises ``error`` and leaves ``model`` exactly as it was."""
    model = prepared(model)
    snap = ModelSnapshot.of(model)
    with pytest.raises(error) as info:
        rfarith.analyze(model, shape)
    snap.assert_same(model)
    assert isinstance(info.value, rfarith.RFError) or error is TypeError
    return info.value


# ---- tracing ----------------------------------------------------------------------------------
class Gate(nn.Module):
    def forward(self, x):
        if x.mean() > 0:  # data-dependent control flow: torch.fx cannot trace it
            return x * 2
        return x


class WithGate(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3)
        self.body = nn.Sequential(nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4), Gate())

    def forward(self, x):
        return self.body(self.stem(x))


def test_data_dependent_control_flow_is_a_trace_error_naming_the_module():
    err = fails(WithGate(), (1, 3, 16, 16), rfarith.TraceError)
    assert err.module_path == "body.2" and err.module_type == "Gate"
    message = str(err)
    assert "'body.2' (Gate)" in message
    assert "control flow" in message  # FX's reason
    assert "leaf_modules" in message  # the way out


def test_the_trace_error_way_out_works():
    """TraceError says: mark the module a leaf and give it a rule. Gate is elementwise:
    stem 3x3 (r 3, start 1.5), body.0 3x3 (r 5, start 2.5), the gate keeps it."""

    class GateOk(Gate):
        pass

    rfarith.register_neutral(GateOk)
    model = WithGate()
    model.body[2] = GateOk()
    out = rfarith.analyze(model, (1, 3, 16, 16), leaf_modules=["body.2"]).output
    assert out.r == (5, 5) and out.start == (2.5, 2.5)


# ---- unsupported ops --------------------------------------------------------------------------
class CustomOp(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return my_op(self.conv(x))


def test_unknown_custom_function_is_unsupported_naming_node_and_op():
    # fx keeps my_op one call; rfarith traces into it (it has no rule) and names the op inside
    err = fails(CustomOp(), (1, 3, 8, 8), rfarith.UnsupportedOp)
    assert err.node == "my_op.flip" and err.op == "flip"
    message = str(err)
    assert "'my_op.flip'" in message
    assert "register_rule" in message and "hybrid" in message  # the ways out


class Rolled(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(3, 4, 3))

    def forward(self, x):
        return torch.flip(self.block(x), dims=(2,))


def test_torch_function_without_a_rule_is_unsupported():
    """torch.flip reverses the units: on no list, so it is never identity."""
    err = fails(Rolled(), (1, 3, 8, 8), rfarith.UnsupportedOp)
    assert err.node == "flip" and "flip" in err.op


class Windows(nn.Module):
    def forward(self, x):
        windows = x.view(1, 3, 2, 4, 2, 4)  # Swin-style window partition of 8x8 (followed)
        return windows.mean(dim=2)  # a reduction over the windows, the positions inside kept


def test_reduction_over_the_windows_is_unsupported():
    """The window partition is followed (tests/rfarith/test_rules_windows.py), and so is a
    reduction over the positions inside the windows (a window of that width); one over the
    windows themselves, keeping the positions inside apart, is no field: refused."""
    err = fails(Windows(), (1, 3, 8, 8), rfarith.UnsupportedOp)
    assert err.node == "mean"


class UnknownModule(nn.Module):
    def forward(self, x):
        return x


def test_unknown_leaf_module_is_unsupported_naming_its_type():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Sequential(UnknownModule()))
    model = prepared(model)
    snap = ModelSnapshot.of(model)
    with pytest.raises(rfarith.UnsupportedOp) as info:
        rfarith.analyze(model, (1, 3, 8, 8), leaf_modules=[UnknownModule])
    snap.assert_same(model)
    assert info.value.node == "1.0" and info.value.op == "UnknownModule"


# ---- shapes -----------------------------------------------------------------------------------
def three_channel_model() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 3))


def test_wrong_channel_count_is_a_shape_error():
    err = fails(three_channel_model(), (1, 1, 16, 16), rfarith.ShapeError)
    assert err.node == "0"
    message = str(err)
    assert "'0'" in message and "3" in message
    assert "(1, 3, 16, 16)" in message  # what to pass instead


def test_layer_without_units_is_a_shape_error_naming_it():
    """8x8: conv 3x3 -> 6, pool 2 -> 3, conv 3x3 -> 1, pool 2 -> 0 units: layer '3'."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3), nn.MaxPool2d(2))
    err = fails(model, (1, 3, 8, 8), rfarith.ShapeError)
    assert err.node == "3"
    assert "'3'" in str(err) and "MaxPool2d" in str(err)


def test_too_small_input_error_names_the_smallest_input_that_works():
    """The same model: the second pool needs >= 2 units in, so the conv before it >= 4 in,
    so the first pool >= 4 out, i.e. >= 8 in, so the first conv >= 8 out: input >= 10."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3), nn.MaxPool2d(2))
    err = fails(model, (1, 3, 8, 8), rfarith.ShapeError)
    assert "(1, 3, 10, 10)" in str(err)
    assert rfarith.analyze(model, (1, 3, 10, 10)).output.n == (1, 1)


def test_kernel_larger_than_its_input_is_a_shape_error_naming_the_layer():
    """6x6: conv 3x3 s2 -> 2x2; conv 3x3 cannot run on 2x2: layer 'head'."""

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 4, 3, stride=2)
            self.head = nn.Conv2d(4, 4, 3)

        def forward(self, x):
            return self.head(self.stem(x))

    err = fails(Net(), (1, 3, 6, 6), rfarith.ShapeError)
    assert err.node == "head" and "'head'" in str(err)


class EmptySlice(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        return self.conv(x[:, :, 4:])


def test_slice_left_without_units_is_a_shape_error_naming_it():
    """x[:, :, 4:] of a 4-row input has zero rows: the slice `getitem` is named, not the conv."""
    err = fails(EmptySlice(), (1, 3, 4, 8), rfarith.ShapeError)
    assert err.node == "getitem"


@pytest.mark.parametrize(
    "shape",
    [(1, 3), (3, 32), (32,), (), (1, 3, 0, 8), (1, 3, 8, -2), (0, 3, 8, 8), "1x3x8x8", None, (1, 3, "a", 8)],
    ids=repr,
)
def test_bad_input_shapes(shape):
    fails(three_channel_model(), shape, rfarith.ShapeError)


def test_input_of_the_wrong_rank_for_the_model():
    """A 2-D model given (batch, channels, length): PyTorch reads it unbatched and the
    channels do not fit; a 3-D shape for it likewise fails: ShapeError, model untouched."""
    fails(three_channel_model(), (1, 3, 16), rfarith.ShapeError)
    fails(three_channel_model(), (1, 3, 8, 8, 8), rfarith.ShapeError)


def test_not_a_module_is_a_type_error():
    with pytest.raises(TypeError, match="nn.Module"):
        rfarith.analyze(lambda x: x, (1, 3, 8, 8))


class MixedJumps(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1, stride=2)

    def forward(self, x):
        return F.relu(x[:, :, :8, :8]) + self.conv(x)


def test_merge_of_different_jumps_leaves_the_model_untouched():
    err = fails(MixedJumps(), (1, 3, 16, 16), rfarith.UnsupportedOp)
    assert err.node == "add"


def test_every_error_is_an_rferror():
    for cls in (rfarith.UnsupportedOp, rfarith.TraceError, rfarith.ShapeError, rfarith.UnknownNode):
        assert issubclass(cls, rfarith.RFError)


def test_successful_call_leaves_the_model_untouched():
    model = prepared(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.5), nn.ReLU()))
    snap = ModelSnapshot.of(model)
    rfarith.analyze(model, (1, 3, 8, 8))
    snap.assert_same(model)
