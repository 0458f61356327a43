"""No silent answers: every op result the walk meets is followed or refused with UnsupportedOp.

Cases (issue 16): an RNN's ``(out, (h, c))`` (followed: a recurrence along a spatial axis is a
global mixing op, global via the module; a unidirectional one is causal, each unit exact), an op returning ``(Tensor, int)`` (refused without a
rule, followed with one), a Python number read from tensor values (refused), a model whose
output has no field (an error), and models with several or dict outputs (still working).

Every model starts with conv 3x3 padding 1 on 16x16 (node ``conv``): n 16, j 1, r 3,
start 0.5 + (3-1)/2 - 1 = 0.5 per axis.
"""

from __future__ import annotations

import pytest
import torch
import torch.fx
from torch import nn

import rfarith
from rfarith.rules import registry
from rfarith.rules.layout import regroup
from tests.crosscheck.models.user_models import FoldedGRU
from tests.ground_truth import seen_by_autograd

from .expect import assert_field, square

SHAPE = (1, 3, 16, 16)
CONV = {"n": square(16), "j": square(1), "r": square(3), "start": square(0.5)}
# a field every unit sees alike along an axis: the hull of all 16 units of the conv map,
# pixels -1 .. 16 clipped to the input 0 .. 15: r 16, j 0, start 8
WHOLE = {"j": 0, "r": 16, "start": 8.0}


class RowLSTM(nn.Module):
    """Sequencer-style: every row of the feature map is a sequence along w (batch b*h), run
    through a bidirectional LSTM, mapped back to channels and added to the input."""

    def __init__(self, residual: bool = True, rnn: type[nn.Module] = nn.LSTM, bidirectional: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.rnn = rnn(4, 4, batch_first=True, bidirectional=bidirectional)
        self.fc = nn.Linear(8 if bidirectional else 4, 4)
        self.residual = residual

    def forward(self, x):
        x = self.conv(x)
        b, c, h, w = x.shape
        rows = x.permute(0, 2, 3, 1).reshape(b * h, w, c)
        y, _ = self.rnn(rows)
        y = self.fc(y).reshape(b, h, w, c).permute(0, 3, 1, 2)
        return x + y if self.residual else y


@pytest.mark.parametrize("rnn", [nn.LSTM, nn.GRU, nn.RNN], ids=lambda c: c.__name__)
def test_rnn_over_rows_is_global_along_the_row(rnn):
    """The sequence is w, the batch b*h. Unit (h, w) of the RNN's output depends on every step
    of row h (forward steps 0..w, backward steps w..15): along w every unit sees the hull of
    all units (WHOLE), along h nothing changes (r 3, j 1, start 0.5). Flag global via 'rnn'."""
    rep = rfarith.analyze(RowLSTM(residual=False, rnn=rnn), SHAPE)
    rf = rep.output
    assert (rf.n, rf.j, rf.r, rf.start) == ((16, 16), (1, WHOLE["j"]), (3, WHOLE["r"]), (0.5, WHOLE["start"]))
    assert rf.flags == {"global"} and rf.global_via == ("rnn",)


def test_lstm_over_rows_beside_a_residual_keeps_the_local_field():
    """x + lstm(x): the LSTM path passes a global mixing op, a side path; the local field is the
    residual's, the conv's, flagged global via the LSTM (as a squeeze-excite gate is)."""
    rep = rfarith.analyze(RowLSTM(), SHAPE)
    assert_field(rep.output, **CONV, flags={"global"})
    assert rep.output.global_via == ("rnn",)


class TokenGRU(nn.Module):
    """Every position of the map is one step: the (h, w) grid flattened into a sequence of 256
    tokens (B, H*W, C), a unidirectional GRU, back to the grid; also returns the last state."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.rnn = nn.GRU(4, 4, batch_first=True)

    def forward(self, x):
        x = self.conv(x)
        b, c, h, w = x.shape
        out, state = self.rnn(x.flatten(2).transpose(1, 2))
        return {"map": out.transpose(1, 2).reshape(b, c, h, w), "state": state}


def test_gru_over_flattened_tokens_is_causal_in_raster_order():
    """The sequence holds both axes, h outer (raster order): token (i, t) sees rows 0 .. i-1
    whole and row i up to t (a union of two products). Summary: unit i along h sees rows
    0 .. i+1 (the conv's 3 rows), the hull 0 .. 15 (r 16, j 0, start 8), and so along w.
    Every unit's exact set agrees with autograd on the real GRU (before: every unit saw the
    whole input). The final state (1, B, 4): one unit that saw the whole sequence."""
    model = TokenGRU()
    rep = rfarith.analyze(model, SHAPE)
    out = rep.outputs["map"]
    # not assert_field: its formula check reads units outside the map, where the row term of a
    # raster recurrence has no periodic meaning (unit -1 of the identity along h sees -2 .. 0)
    assert (out.n, out.j, out.r, out.start) == ((16, 16), (0, 0), (16, 16), (8.0, 8.0))
    assert out.flags == {"global", "causal"}
    assert out.real_bounds((0, 0)) == ((0, 1), (0, 1))  # conv: rows and columns 0 .. 1
    assert out.real_bounds((1, 0)) == ((0, 2), (0, 15))  # row 0 whole, row 1 up to column 1
    for unit in [(0, 0), (0, 7), (0, 15), (1, 0), (5, 3), (9, 15), (15, 0), (15, 15)]:
        assert (out.mask(unit) == seen_by_autograd(model, SHAPE, unit, lambda out: out["map"])).all(), unit
    assert_field(rep.outputs["state"], n=square(1), j=square(0), r=square(16), start=square(8.0), flags={"global"})
    assert out.global_via == ("rnn",) == rep.outputs["state"].global_via


@pytest.mark.parametrize("rnn", [nn.LSTM, nn.GRU, nn.RNN], ids=lambda c: c.__name__)
def test_a_forward_rnn_over_rows_is_causal(rnn):
    """Unidirectional along w: unit (h, w) sees rows h-1 .. h+1 and columns 0 .. w+1 (the
    conv's columns of steps 0 .. w), exactly, not the whole row. Summary along w: the hull
    (r 16, j 0, start 8), flagged causal; along h the conv's (r 3, j 1, start 0.5)."""
    model = RowLSTM(residual=False, rnn=rnn, bidirectional=False)
    rf = rfarith.analyze(model, SHAPE).output
    assert (rf.n, rf.j, rf.r, rf.start) == ((16, 16), (1, 0), (3, 16), (0.5, 8.0))
    assert rf.flags == {"global", "causal"} and rf.global_via == ("rnn",)
    for unit in [(0, 0), (4, 0), (4, 1), (8, 7), (15, 15)]:
        h, w = unit
        assert rf.real_bounds(unit) == ((max(h - 1, 0), min(h + 1, 15)), (0, min(w + 1, 15)))
        assert (rf.mask(unit) == seen_by_autograd(model, SHAPE, unit)).all(), unit


def test_a_forward_lstm_beside_a_residual_keeps_the_local_field():
    """x + lstm(x), unidirectional: the recurrence is a side path as the bidirectional one is;
    the local field is the conv's, flagged global via the LSTM, and causal."""
    rf = rfarith.analyze(RowLSTM(bidirectional=False), SHAPE).output
    assert_field(rf, **CONV, flags={"global", "causal"})
    assert rf.global_via == ("rnn",)


def test_a_forward_rnn_over_channels_and_a_spatial_axis_is_refused():
    """A sequence that folds the channels into the steps (B, C*W, H): its order is not a
    raster of input axes; refused, naming the recurrence and the probe as the way out."""
    with pytest.raises(rfarith.UnsupportedOp, match="unidirectional recurrence") as info:
        rfarith.analyze(FoldedGRU(), SHAPE)
    assert "rfnumeric.probe" in str(info.value)


class ReturnsLSTM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.rnn = nn.LSTM(4, 4, batch_first=True)

    def forward(self, x):
        b, c, h, w = x.shape
        return self.rnn(self.conv(x).permute(0, 2, 3, 1).reshape(b * h, w, 4))


def test_a_model_returning_the_lstm_result_has_a_row_per_tensor():
    """return lstm(x): (out, (h_n, c_n)) straight from one node. Each tensor is an output of its
    own, named by its place in the tuple. out (B*H, W, 4): h as the conv (r 3), w global; the
    states (1, B*H, 4): the sequence w summarised (one unit), h as the conv."""
    rep = rfarith.analyze(ReturnsLSTM(), SHAPE)
    assert list(rep.outputs) == ["0", "1.0", "1.1"]
    assert rep.outputs["0"].node == "rnn[0]" and "output[0]" in rep and "rnn[1][0]" in rep
    out = rep.outputs["0"]
    assert (out.n, out.j, out.r, out.start) == ((16, 16), (1, 0), (3, 16), (0.5, 8.0))
    for key in ("1.0", "1.1"):
        state = rep.outputs[key]
        assert (state.n, state.j, state.r, state.start) == ((16, 1), (1, 0), (3, 16), (0.5, 8.0))
        assert state.global_via == ("rnn",)


def test_an_rnn_with_an_input_dependent_initial_state_is_refused():
    """h0 computed from the input reaches every step; refused rather than guessed."""

    class Seeded(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.rnn = nn.GRU(4, 4, batch_first=True)

        def forward(self, x):
            seq = self.conv(x).flatten(2).transpose(1, 2)
            return self.rnn(seq, seq.mean(1).unsqueeze(0))[0]

    with pytest.raises(rfarith.UnsupportedOp, match="initial state"):
        rfarith.analyze(Seeded(), SHAPE)


# ---- an op returning (Tensor, int) -------------------------------------------------------------
def doubled_with_rank(x):
    """A user function that returns a tensor and a Python int, kept whole by torch.fx.wrap."""
    return x * 2, x.dim()


def doubled_with_rank_known(x):
    return x * 2, x.dim()


def mvit_unsqueeze(x, target_dim, expand_dim):
    """torchvision.models.video.mvit._unsqueeze, verbatim, under torchvision's qualified name."""
    tensor_dim = x.dim()
    if tensor_dim == target_dim - 1:
        x = x.unsqueeze(expand_dim)
    elif tensor_dim != target_dim:
        raise ValueError(f"Unsupported input dimension {x.shape}")
    return x, tensor_dim


mvit_unsqueeze.__module__ = "torchvision.models.video.mvit"
mvit_unsqueeze.__qualname__ = "_unsqueeze"

torch.fx.wrap("doubled_with_rank")
torch.fx.wrap("doubled_with_rank_known")
torch.fx.wrap("mvit_unsqueeze")


@rfarith.register_rule(doubled_with_rank_known, replace=True)
def _doubled_rule(call: rfarith.Call):
    """x * 2 is neutral; the int carries no field."""
    return rfarith.require_value(call), None


class PairUser(nn.Module):
    """Calls the wrapped function by its global name (fx patches the module's globals)."""

    def __init__(self, known: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.known = known

    def forward(self, x):
        y = self.conv(x)
        y, rank = doubled_with_rank_known(y) if self.known else doubled_with_rank(y)
        return y


def test_an_op_returning_a_tensor_and_an_int_is_refused_without_a_rule():
    """Before: dropped without a word (the report had the input row only). Now refused, naming
    the node, the op, what it returned and the way out (a rule for the structure)."""
    with pytest.raises(rfarith.UnsupportedOp) as info:
        rfarith.analyze(PairUser(known=False), SHAPE)
    message = str(info.value)
    assert info.value.node == "doubled_with_rank" and info.value.op == "doubled_with_rank"
    for words in ("(Tensor, int)", "register_rule", "None for everything else", "rfnumeric.probe"):
        assert words in message
    assert "hybrid" not in message  # the hybrid's black boxes need a tensor result


def test_an_op_returning_a_tensor_and_an_int_is_followed_with_a_rule():
    """The rule returns (Value, None): the tensor's field is the conv's (x * 2 is neutral)."""
    rep = rfarith.analyze(PairUser(known=True), SHAPE)
    assert_field(rep.output, **CONV)


def test_torchvision_mvit_unsqueeze_is_followed_by_name():
    """MViT's _unsqueeze(x, 4, 1) adds a size-1 dim to a 3-D tensor and returns (x, 3); matched
    by its qualified name (torchvision is not installed) and followed as a reshape."""

    class Tokens(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            t = self.conv(x).flatten(2).transpose(1, 2)  # (B, H*W, C)
            t, dim = mvit_unsqueeze(t, 4, 1)  # (B, 1, H*W, C)
            return t.squeeze(1).transpose(1, 2).unflatten(2, (16, 16))

    assert registry.find_rule("call_function", mvit_unsqueeze, None) is not None
    rep = rfarith.analyze(Tokens(), SHAPE)
    assert_field(rep.output, **CONV)


def test_registering_by_name_matches_module_and_qualname():
    """registry.Named('module.qualname') matches any function with that __module__ and
    __qualname__, and only those."""

    def local(x):
        return x

    name = f"{local.__module__}.{local.__qualname__}"
    assert registry.find_rule("call_function", local, None) is None
    registry.rule(registry.Named(name), replace=True)(lambda call: regroup(call, rfarith.require_value(call), call.out_shape))
    assert registry.find_rule("call_function", local, None) is not None

    def other(x):
        return x

    assert registry.find_rule("call_function", other, None) is None


class DictLeaf(nn.Module):
    """A leaf module (not traced into) whose result is a dict of tensors."""

    def forward(self, x):
        return {"double": x * 2, "rank": x.dim()}


class DictLeafKnown(DictLeaf):
    pass


@rfarith.register_rule(DictLeafKnown, replace=True)
def _dict_leaf_rule(call: rfarith.Call):
    """x * 2 is neutral; the int carries no field: the same dict, Values for tensors."""
    return {"double": rfarith.require_value(call), "rank": None}


class DictUser(nn.Module):
    def __init__(self, leaf: nn.Module) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.leaf = leaf

    def forward(self, x):
        return self.leaf(self.conv(x))["double"]


def test_a_leaf_returning_a_dict_is_refused_without_a_rule_and_followed_with_one():
    with pytest.raises(rfarith.UnsupportedOp) as info:
        rfarith.analyze(DictUser(DictLeaf()), SHAPE, leaf_modules=[DictLeaf])
    assert "{'double': Tensor, 'rank': int}" in str(info.value) and info.value.node == "leaf"
    rep = rfarith.analyze(DictUser(DictLeafKnown()), SHAPE)
    assert_field(rep.output, **CONV)


# ---- Python numbers read from tensor values ----------------------------------------------------
def count_positive(x):
    """A Python int read from the tensor's values (torch.fx.wrap keeps the call whole)."""
    return int((x > 0).sum())


torch.fx.wrap("count_positive")


def value_dependent_models():
    conv = nn.Conv2d(3, 4, 3, padding=1)
    return {
        "int(...) as a size": lambda y: y[:, :, : count_positive(y)],
        ".item() as a scale": lambda y: y * y.mean().item(),
        "boolean mask": lambda y: y[y > 0],
        "nonzero": lambda y: y.nonzero(),
    }, conv


@pytest.mark.parametrize("case", ["int(...) as a size", ".item() as a scale", "boolean mask", "nonzero"])
def test_a_number_read_from_tensor_values_is_refused(case):
    """Fake tensors have no values: reading one raises, and the walk says so as UnsupportedOp
    (it used to be reported as a ShapeError, or dropped), pointing to the probe."""
    fns, conv = value_dependent_models()
    fn = fns[case]

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = conv

        def forward(self, x):
            return fn(self.conv(x))

    with pytest.raises(rfarith.UnsupportedOp) as info:
        rfarith.analyze(Model(), SHAPE)
    assert "reads the values" in str(info.value) and "rfnumeric.probe" in str(info.value)


def test_numbers_read_from_shapes_are_followed():
    """y[:, :, : H // 2] with H read from y.shape: a size from the shape, not the values.
    Rows 0 .. 7 of the conv map keep their fields: n 8 x 16, j 1, r 3, start 0.5."""

    class Half(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            y = self.conv(x)
            return y[:, :, : y.shape[2] // 2] * y.dim()

    assert_field(rfarith.analyze(Half(), SHAPE).output, n=(8, 16), j=square(1), r=square(3), start=square(0.5))


# ---- a report without an output field ----------------------------------------------------------
@pytest.mark.parametrize(
    ("case", "node"),
    [("zeros_like", "zeros_like"), ("parameter", "bias"), ("arange", "arange")],
)
def test_a_model_whose_tensors_do_not_depend_on_the_input_is_an_error(case, node):
    """The model returns a tensor, but none that depends on the input: no output field. Before,
    analyze returned a report whose .output raised later; now analyze says so at once, naming
    the node and the maps that have a field."""

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.bias = nn.Parameter(torch.zeros(4))

        def forward(self, x):
            y = self.conv(x)
            if case == "zeros_like":
                return torch.zeros_like(y)
            if case == "parameter":
                return self.bias
            return torch.arange(y.shape[2])

    with pytest.raises(rfarith.NotComputed) as info:
        rfarith.analyze(Model(), SHAPE)
    assert f"'{node}'" in str(info.value) and "conv" in str(info.value)


def test_a_model_returning_no_tensor_keeps_its_maps():
    """A label is not a tensor: the report stays (its maps are read by name), as before."""

    class Label(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            self.conv(x)
            return "label"

    rep = rfarith.analyze(Label(), SHAPE)
    assert rep.outputs == {} and not rep.complete
    assert_field(rep["conv"], **CONV)


def test_dict_outputs_keep_working():
    """{'low': conv, 'high': conv 3 stride 2 on it, 'size': an int from the shape}: two fields
    (the int is not a tensor); high: r 3 + 2 = 5, j 2, start 0.5 + 1 = 1.5, n 7."""

    class Heads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.down = nn.Conv2d(4, 4, 3, stride=2)

        def forward(self, x):
            low = self.conv(x)
            return {"low": low, "high": self.down(low), "size": low.shape[-1]}

    rep = rfarith.analyze(Heads(), SHAPE)
    assert list(rep.outputs) == ["low", "high"]
    assert_field(rep.outputs["low"], **CONV)
    assert_field(rep.outputs["high"], n=square(7), j=square(2), r=square(5), start=square(1.5))
