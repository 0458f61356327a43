"""Bad inputs at every public entry point: the right error, a one-line message naming the culprit
and a way out, and the user's model exactly as it was afterwards.

Entry points: ``rfarith.analyze``, ``rfnumeric.probe``, ``rfnumeric.sweep``,
``crosscheck.compare`` and ``crosscheck.hybrid``, each on every case it applies to, and the
command line (``crosscheck.cli.main``) for bad usage. The per-package suites
(tests/rfarith/test_errors.py, tests/rfnumeric/test_robustness.py) go deeper into one package;
this one asks the same question of every entry point at once.

Cases that are not errors (models returning tuples, dicts or no tensor; untraceable control
flow for the probe and the hybrid; meta-device, half-precision, frozen and hooked models) check
the answer instead, against fields derived by hand with the guide's recurrences: the input has
``j = 1, r = 1, start = 0.5``; a conv or pool of kernel ``k``, stride ``s``, no padding gives
``j' = j*s``, ``r' = r + (k-1)*j``, ``start' = start + (k-1)/2*j``.

Every model is first put in a state a careless call could disturb (:func:`prepared`: training
mode, BatchNorm statistics, a frozen parameter, a stored .grad, and a forward pre-hook, forward
hook and full backward hook on every module); :func:`untouched` then proves with
``ModelSnapshot`` (tests/snapshot.py) that it is exactly as before, also after a call that
raises. Each case x entry point tried counts once in the summary's ``bad inputs tried``.

What the user's hooks see, as decided and checked here: nothing. No entry point fires them. The
probe runs a hook-free copy; rfarith traces and runs the user's model itself (on fake tensors)
with its hooks set aside, so the hooks of the modules fx traces into (containers, untraceable
modules) and of a leaf run once on zeros do not see fx's Proxies or those zeros. They stay
registered and fire as before when the user runs the model.
"""

from __future__ import annotations

import contextlib

import pytest
import torch
import torch.fx
from torch import nn

import crosscheck
import rfarith
import rfnumeric
from crosscheck import cli
from rfarith.rules.params import Window
from tests import tally
from tests.snapshot import ModelSnapshot

MAX_SIZE = 64  # the probe may grow the input to 64 px at most; every field here is smaller
SHAPE = (1, 3, 16, 16)
# (r, j, start) per axis, from the recurrences above: one conv 3 (r 1 + 2 = 3, j 1,
# start 0.5 + 1 = 1.5) and two in a row (r 3 + 2 = 5, j 1, start 1.5 + 1 = 2.5).
ONE_CONV_FIELD = ((3, 3), (1, 1), (1.5, 1.5))
TWO_CONVS_FIELD = ((5, 5), (1, 1), (2.5, 2.5))

ENTRY_POINTS = {
    "analyze": lambda model, shape, **kw: rfarith.analyze(model, shape, **kw),
    "probe": lambda model, shape, **kw: rfnumeric.probe(model, shape, max_size=MAX_SIZE, **kw),
    "sweep": lambda model, shape, **kw: rfnumeric.sweep(model, shape, max_size=MAX_SIZE, **kw),
    "compare": lambda model, shape, **kw: crosscheck.compare(model, shape, max_size=MAX_SIZE, **kw),
    "hybrid": lambda model, shape, **kw: crosscheck.hybrid(model, shape, **kw),
}
ALL = list(ENTRY_POINTS)
ANALYTIC = ["analyze", "compare", "hybrid"]  # these run rfarith's analysis first


# ---- the harness --------------------------------------------------------------------------------
def prepared(model: nn.Module) -> list[tuple[str, str]]:
    """Put ``model`` in a state a careless call could disturb and return the list its hooks
    append ``(kind, module path)`` to: training mode, BatchNorm statistics away from their
    defaults, the first parameter frozen, a .grad stored on the last, and a forward pre-hook, a
    forward hook and a full backward hook on every module (no .grad on a meta model: it has no
    values to compare)."""
    fired: list[tuple[str, str]] = []
    model.train()
    params = list(model.parameters())
    if params:
        params[0].requires_grad_(False)
        if params[-1].device.type != "meta":  # ModelSnapshot cannot compare a meta .grad
            params[-1].grad = torch.full_like(params[-1], 0.25)
    for path, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.running_mean.fill_(0.5)
            module.running_var.fill_(2.0)
        module.register_forward_pre_hook(lambda m, args, path=path: fired.append(("pre", path)))
        module.register_forward_hook(lambda m, args, out, path=path: fired.append(("forward", path)))
        module.register_full_backward_hook(lambda m, gi, go, path=path: fired.append(("backward", path)))
    return fired


@pytest.fixture(autouse=True)
def _count_bad_inputs_tried():
    """Every test here tries one case at one entry point (or one command line)."""
    tally.add("bad inputs tried")


@contextlib.contextmanager
def untouched(model: nn.Module, fired: list):
    """The block leaves ``model`` exactly as it was (also when it raises) and fires none of its
    hooks."""
    snapshot = ModelSnapshot.of(model)
    try:
        yield
    finally:
        snapshot.assert_same(model)
        assert fired == [], f"the user's hooks fired during the call: {fired}"


def assert_message(error: BaseException, culprit: list[str], way_out: str) -> str:
    """One line that names every word of ``culprit`` and gives ``way_out``."""
    message = str(error)
    assert "\n" not in message, message
    for word in culprit:
        assert word in message, (word, message)
    assert way_out in message, (way_out, message)
    return message


def fails(call, model: nn.Module, shape, error: type[Exception], culprit: list[str], way_out: str):
    """``call(model, shape)`` raises ``error`` (an RFError unless the contract says ValueError),
    names the culprit and a way out in one line, and leaves the model as it was."""
    fired = prepared(model)
    with untouched(model, fired), pytest.raises(error) as info:
        call(model, shape)
    assert isinstance(info.value, rfarith.RFError) or error is ValueError
    assert_message(info.value, culprit, way_out)
    return info.value


def succeeds(call, model: nn.Module, shape):
    """``call(model, shape)``'s result; the model is left as it was and no hook of its fired."""
    fired = prepared(model)
    with untouched(model, fired):
        return call(model, shape)


def field_of(result, node: str | None = None) -> tuple:
    """(r, j, start) of ``node`` (default: the model output) in any entry point's result."""
    if isinstance(result, rfnumeric.ProbeResult):
        return result.r, result.j, result.start
    if isinstance(result, rfarith.Report):
        rf = result[node] if node else result.output
        return rf.r, rf.j, rf.start
    row = result.loc[node if node else result.index[-1]]
    axes = ("h", "w")
    return tuple(tuple(row[f"{q}_{a}"] for a in axes) for q in ("r", "j", "start"))


def small_net() -> nn.Module:
    """conv 3 -> BatchNorm -> ReLU -> max pool 2 -> conv 3, three input channels.

    '0': r 3, j 1, start 1.5; BatchNorm and ReLU keep it; '3' (pool 2): r 3 + 1 = 4, j 2,
    start 1.5 + 0.5 = 2; '4': r 4 + 2*2 = 8, j 2, start 2 + 1*2 = 4. The smallest input:
    '4' needs 3 units, so the pool's input >= 6, so '0' needs >= 6 + 2 = 8 px.
    """
    return nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3)
    )


SMALL_NET_FIELD = ((8, 8), (2, 2), (4.0, 4.0))


def assert_small_net_answer(entry: str, result) -> None:
    if entry == "compare":
        assert bool(result["agree"].all()), result[["agree", "reason"]]
        assert field_of(result, "4") == SMALL_NET_FIELD
    else:
        assert field_of(result) == SMALL_NET_FIELD


# ---- input shapes -------------------------------------------------------------------------------
@pytest.mark.parametrize("entry", ALL)
def test_wrong_channel_count_names_the_first_layer(entry):
    """A 3-channel model given 1 channel: layer '0' is named with the 3 channels it expects."""
    error = fails(ENTRY_POINTS[entry], small_net(), (1, 1, 16, 16), rfarith.ShapeError, ["'0'", "3 input channels"], "Way out")
    assert error.kind == "channels"


@pytest.mark.parametrize("entry", ALL)
def test_input_too_small_names_the_layer_without_units(entry):
    """7x7: '0' -> 5, pool -> 2, '4' (3x3) cannot run on 2x2 (small_net: 8 px is the smallest).
    The analysis says which input works; the probe says which input failed."""
    extra = ["(1, 3, 8, 8)"] if entry in ANALYTIC else ["(1, 3, 7, 7)"]
    fails(ENTRY_POINTS[entry], small_net(), (1, 3, 7, 7), rfarith.ShapeError, ["'4'", *extra], "Way out")


WRONG_RANKS = {
    (1, 3, 32): (["'0'", "2 spatial axes"], "Way out"),  # torch would read it as unbatched
    (1, 3, 16, 16, 16): (["'0'", "(1, 3, 16, 16, 16)"], "Way out"),
    (3, 32): (["(3, 32)", "rank 2"], "give (batch, channels, *spatial)"),
}


@pytest.mark.parametrize("shape", list(WRONG_RANKS), ids=str)
@pytest.mark.parametrize("entry", ALL)
def test_wrong_rank(entry, shape):
    culprit, way_out = WRONG_RANKS[shape]
    fails(ENTRY_POINTS[entry], small_net(), shape, rfarith.ShapeError, culprit, way_out)


@pytest.mark.parametrize("shape", [(1, 3, 0, 16), (1, 3, 16, -4), (0, 3, 16, 16), (1, 0, 16, 16)], ids=str)
@pytest.mark.parametrize("entry", ALL)
def test_sizes_that_are_not_positive(entry, shape):
    fails(ENTRY_POINTS[entry], small_net(), shape, rfarith.ShapeError, [str(shape)], "every size must be positive")


# ---- what the model returns ---------------------------------------------------------------------
class ReturnsNoTensor(nn.Module):
    """conv 3 (r 3, j 1, start 1.5), then returns an int, a str or None."""

    def __init__(self, returned) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.returned = returned

    def forward(self, x):
        self.conv(x)
        return self.returned



@pytest.mark.parametrize("returned", [7, "label", None], ids=repr)
@pytest.mark.parametrize("entry", ALL)
def test_output_that_is_not_a_tensor(entry, returned):
    """Nothing to measure at the output, but the feature map inside is there: the analysis and
    the tables give the conv's row; asking for the output (rep.output, probe without a node)
    says so and points to the maps by name; probing the map by name works."""
    model = ReturnsNoTensor(returned)
    if entry == "probe":
        type_name = type(returned).__name__
        fails(ENTRY_POINTS[entry], model, SHAPE, rfarith.ProbeError, [f"returns {type_name}"], "node=")
        assert field_of(succeeds(lambda m, s: rfnumeric.probe(m, s, node="conv"), model, SHAPE)) == ONE_CONV_FIELD
        return
    result = succeeds(ENTRY_POINTS[entry], model, SHAPE)
    if entry == "compare":
        assert list(result.index) == ["conv"] and bool(result["agree"].all())
        return
    assert field_of(result, "conv") == ONE_CONV_FIELD
    if entry == "sweep":
        assert list(result.index) == ["x", "conv"]
        return
    assert result.outputs == {}
    with pytest.raises(ValueError) as info:
        _ = result.output
    assert_message(info.value, ["not a tensor", "conv"], "rep[name]")


class TwoHeads(nn.Module):
    """low = conv 3 (r 3, j 1, start 1.5); high = conv 3 stride 2 on low: r 3 + 2 = 5, j 2,
    start 1.5 + 1 = 2.5. Returned as a tuple or a dict."""

    def __init__(self, as_dict: bool) -> None:
        super().__init__()
        self.as_dict = as_dict
        self.low = nn.Conv2d(3, 4, 3)
        self.high = nn.Conv2d(4, 4, 3, stride=2)

    def forward(self, x):
        low = self.low(x)
        high = self.high(low)
        return {"low": low, "high": high} if self.as_dict else (low, high)


HEAD_FIELDS = {"low": ONE_CONV_FIELD, "high": ((5, 5), (2, 2), (2.5, 2.5))}


@pytest.mark.parametrize("as_dict", [False, True], ids=["tuple", "dict"])
@pytest.mark.parametrize("entry", ALL)
def test_several_outputs_give_one_answer_per_output(entry, as_dict):
    """Not an error: the report and the sweep have a row per output (``output[key]``), the probe
    takes ``output=key`` and, without it, lists the keys to choose from."""
    keys = {"low": "low", "high": "high"} if as_dict else {"low": "0", "high": "1"}
    model = TwoHeads(as_dict)
    if entry == "probe":
        fails(ENTRY_POINTS[entry], model, SHAPE, ValueError, ["2 outputs", repr(keys["high"] if as_dict else 1)], "output=")
        for head, key in keys.items():
            chosen = key if as_dict else int(key)
            result = succeeds(lambda m, s, chosen=chosen: rfnumeric.probe(m, s, output=chosen), model, SHAPE)
            assert field_of(result) == HEAD_FIELDS[head]
        return
    result = succeeds(ENTRY_POINTS[entry], model, SHAPE)
    if entry == "compare":
        assert list(result.index) == ["low", "high"] and bool(result["agree"].all())
        return
    for head, key in keys.items():
        assert field_of(result, f"output[{key}]") == HEAD_FIELDS[head]
    if entry == "sweep":
        return
    assert {key: (rf.r, rf.j, rf.start) for key, rf in result.outputs.items()} == {
        key: HEAD_FIELDS[head] for head, key in keys.items()
    }
    with pytest.raises(ValueError) as info:
        _ = result.output
    assert_message(info.value, ["2 outputs", *keys.values()], "rep.outputs[key]")


# ---- models the analysis cannot read --------------------------------------------------------------
class Gate(nn.Module):
    """Data-dependent control flow (torch.fx cannot trace it); elementwise either way."""

    def forward(self, x):
        if x.sum() > 0:
            return x * 2
        return x


class Gated(nn.Module):
    """stem conv 3 (r 3, start 1.5), gate (keeps it), head conv 3: r 5, j 1, start 2.5."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3)
        self.gate = Gate()
        self.head = nn.Conv2d(4, 4, 3)

    def forward(self, x):
        return self.head(self.gate(self.stem(x)))



@pytest.mark.parametrize("entry", ALL)
def test_untraceable_control_flow(entry):
    """rfarith names the module fx could not trace, fx's reason and the ways out; the probe needs
    no trace; the hybrid measures the gate and computes the rest; compare says which row is
    numeric only."""
    model = Gated()
    if entry == "analyze":
        error = fails(ENTRY_POINTS[entry], model, SHAPE, rfarith.TraceError, ["'gate' (Gate)", "control flow"], "leaf_modules=['gate']")
        assert error.module_path == "gate" and "crosscheck.hybrid" in str(error)
        return
    result = succeeds(ENTRY_POINTS[entry], model, SHAPE)
    if entry == "compare":
        assert bool(result["agree"].all()), result[["agree", "reason"]]
        assert result.loc["gate", "reason"] == (crosscheck.Reason.MEASURED_OP,)
        assert result.loc["gate", "reason_text"] == "no analytic rule for Gate: measured by the probe as a black box"
        return
    assert field_of(result) == TWO_CONVS_FIELD
    if entry == "sweep":
        assert list(result.index) == ["x", "stem", "gate", "head"]
        assert field_of(result, "gate") == ONE_CONV_FIELD
    if entry == "hybrid":
        assert dict(result.table["source"]) == {"x": "rule", "stem": "rule", "gate": "probe", "head": "rule"}


class RootGate(nn.Module):
    """The root itself is untraceable: conv 3 (r 3, j 1, start 1.5), then a sign chosen by data."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        y = self.conv(x)
        return y if y.sum() > 0 else -y


class RootGateWithRule(RootGate):
    """The same module, given a rule as TraceError's way out says: a 3x3 window."""


rfarith.register_window(RootGateWithRule, lambda m: Window((3, 3), (1, 1), (1, 1), (0, 0)))


@pytest.mark.parametrize("entry", ALL)
def test_untraceable_root(entry):
    """The model itself cannot be traced: TraceError names the class as the leaf to declare (a
    class, since the root has no path), and that way out works once the class has a rule; the
    probe-based entry points measure the module calls."""
    if entry == "analyze":
        fails(ENTRY_POINTS[entry], RootGate(), SHAPE, rfarith.TraceError, ["the model (RootGate)"], "leaf_modules=[RootGate] (the class)")
        fails(
            lambda m, s: rfarith.analyze(m, s, leaf_modules=[RootGate]),
            RootGate(), SHAPE, rfarith.UnsupportedOp, ["'rootgate'", "RootGate"], "register_rule",
        )  # the way out, half taken: a leaf without a rule
        result = succeeds(lambda m, s: rfarith.analyze(m, s, leaf_modules=[RootGateWithRule]), RootGateWithRule(), SHAPE)
        assert field_of(result) == ONE_CONV_FIELD
        return
    result = succeeds(ENTRY_POINTS[entry], RootGate(), SHAPE)
    if entry == "compare":
        # every row measured, the model's own output included; nothing analytic to compare with
        assert list(result.index) == ["conv", "output"]
        assert all(codes == (crosscheck.Reason.NUMERIC_ONLY,) for codes in result["reason"])
        assert result.attrs["summary"]["not_compared"] == 2
        return
    assert field_of(result) == ONE_CONV_FIELD


class FourierMix(nn.Module):
    """conv 3, then a 2-D FFT over the map: every unit of its output sees the whole input."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return torch.fft.fft2(self.stem(x)).real


class SortedRows(nn.Module):
    """conv 3, then sorted along the width (torch.sort returns values and indices)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return torch.sort(self.stem(x), dim=-1).values


class Doubled(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x * 2

    @staticmethod
    def backward(ctx, grad):
        return grad * 2


def doubled(x):
    """A custom autograd Function behind a function fx keeps as one call (torch.fx.wrap); its
    guard reads values, so rfarith cannot trace into it even with concrete sizes."""
    if not bool(torch.isfinite(x).all()):
        raise ValueError("non-finite input")
    return Doubled.apply(x)


torch.fx.wrap("doubled")


class CustomFunction(nn.Module):
    """stem conv 3, a custom autograd Function (elementwise), head conv 3: r 5, j 1, start 2.5.
    ``wrapped``: called through ``doubled`` (one fx node without a rule); else fx traces into
    the Function's forward and sees its ``mul``."""

    def __init__(self, wrapped: bool) -> None:
        super().__init__()
        self.wrapped = wrapped
        self.stem = nn.Conv2d(3, 4, 3)
        self.head = nn.Conv2d(4, 4, 3)

    def forward(self, x):
        y = self.stem(x)
        return self.head(doubled(y) if self.wrapped else Doubled.apply(y))


UNKNOWN_OPS = {
    "fft": (FourierMix, "fft_fft2"),
    "sort": (SortedRows, "sort"),
    "custom Function": (lambda: CustomFunction(wrapped=True), "doubled"),
}


@pytest.mark.parametrize("case", list(UNKNOWN_OPS))
def test_unknown_op_is_unsupported_naming_node_op_and_ways_out(case):
    """An op with no rule (not on the neutral list either): UnsupportedOp with the node, the op
    and both ways out, a rule or the hybrid."""
    make, node = UNKNOWN_OPS[case]
    error = fails(ENTRY_POINTS["analyze"], make(), SHAPE, rfarith.UnsupportedOp, [f"'{node}'"], "Way out")
    assert error.node == node and node in error.op
    assert "register_rule" in str(error) and "crosscheck.hybrid" in str(error)


@pytest.mark.parametrize("entry", ["hybrid", "compare"])
def test_hybrid_measures_an_op_without_a_rule(entry):
    """The FFT: measured as a black box, every unit sees all 16 px (start 8), global via it."""
    result = succeeds(ENTRY_POINTS[entry], FourierMix(), SHAPE)
    if entry == "compare":
        assert bool(result.loc["stem", "agree"])
        assert crosscheck.Reason.MEASURED_OP in result.loc["fft_fft2", "reason"]
        assert "no analytic rule for fft_fft2: measured by the probe" in result.loc["fft_fft2", "reason_text"]
        return
    rf = result["fft_fft2"]
    assert rf.r == (16, 16) and rf.start == (8.0, 8.0) and "global" in rf.flags
    assert rf.global_via == ("fft_fft2",)
    assert result.row("fft_fft2").source == "probe" and result.row("stem").source == "rule"


def test_hybrid_measures_a_custom_function():
    """``doubled`` is measured (elementwise: the stem's field) and the head computed on it."""
    result = succeeds(ENTRY_POINTS["hybrid"], CustomFunction(wrapped=True), SHAPE)
    assert result.row("doubled").source == "probe"
    assert field_of(result, "doubled") == ONE_CONV_FIELD
    assert field_of(result) == TWO_CONVS_FIELD


@pytest.mark.parametrize("entry", ["hybrid", "compare"])
def test_hybrid_cannot_measure_an_op_returning_a_tuple(entry):
    """torch.sort returns (values, indices): the black box needs one tensor of its input's rank,
    so the hybrid refuses it by name and points to a rule or the probe."""
    fails(ENTRY_POINTS[entry], SortedRows(), SHAPE, rfarith.UnsupportedOp, ["'sort'", "input's rank"], "rfnumeric.probe")


@pytest.mark.parametrize("entry", ["analyze", "hybrid"])
def test_a_custom_function_fx_traces_into_is_analysed(entry):
    """Called directly, fx runs the Function's forward on its Proxy and records the ``mul``
    inside: no black box, the exact field."""
    result = succeeds(ENTRY_POINTS[entry], CustomFunction(wrapped=False), SHAPE)
    assert "mul" in result.names
    assert field_of(result) == TWO_CONVS_FIELD


@pytest.mark.parametrize("wrapped", [False, True], ids=["direct", "wrapped"])
def test_probe_through_a_custom_function(wrapped):
    """The Function's forward runs without gradient; the probe follows its backward and places
    its output where its input was (same shape): the two convs' field."""
    result = succeeds(ENTRY_POINTS["probe"], CustomFunction(wrapped), SHAPE)
    assert field_of(result) == TWO_CONVS_FIELD


# ---- node names ---------------------------------------------------------------------------------
class Named(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.ReLU())
        self.head = nn.Conv2d(4, 2, 1)

    def forward(self, x):
        return self.head(self.features(x))


UNKNOWN_NODE_CALLS = {
    "analyze": lambda m, s: rfarith.analyze(m, s)["featurs.3"],
    "probe": lambda m, s: rfnumeric.probe(m, s, node="featurs.3", max_size=MAX_SIZE),
    "sweep": lambda m, s: rfnumeric.sweep(m, s, nodes=["features.0", "featurs.3"], max_size=MAX_SIZE),
    "compare": lambda m, s: crosscheck.compare(m, s, nodes=["featurs.3"], max_size=MAX_SIZE),
}


@pytest.mark.parametrize("entry", list(UNKNOWN_NODE_CALLS))
def test_unknown_node_name_suggests_close_names(entry):
    """'featurs.3' (a typo): UnknownNode (also a KeyError) naming it, the close names first, and
    how to list them all. crosscheck.hybrid takes no node name."""
    error = fails(UNKNOWN_NODE_CALLS[entry], Named(), SHAPE, rfarith.UnknownNode, ["'featurs.3'", "Close names: features.3"], "rfarith.node_names(model")
    assert isinstance(error, KeyError)


# ---- values the model computes ------------------------------------------------------------------
class DivByZero(nn.Module):
    def forward(self, x):
        return x / 0  # Inf in the forward


class LogOfNegative(nn.Module):
    def forward(self, x):
        return torch.log(-x.abs() - 1)  # NaN in the forward


class SqrtAtZero(nn.Module):
    def forward(self, x):
        return torch.sqrt(x - x)  # 0 in the forward, an infinite gradient in the backward


class WithBad(nn.Module):
    """stem conv 3, ``bad`` (elementwise), head conv 3: r 5, j 1, start 2.5."""

    def __init__(self, bad: nn.Module) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3)
        self.bad = bad
        self.head = nn.Conv2d(4, 4, 3)

    def forward(self, x):
        return self.head(self.bad(self.stem(x)))


NON_FINITE = {
    "x / 0": (DivByZero, ["Inf first at 'bad' (DivByZero)"], "check that layer"),
    "log of negative": (LogOfNegative, ["NaN first at 'bad' (LogOfNegative)"], "check that layer"),
    "sqrt at 0": (SqrtAtZero, ["NaN or Inf", "gradient of 'bad'"], "probe an earlier node"),
}


@pytest.mark.parametrize("case", list(NON_FINITE))
@pytest.mark.parametrize("entry", ALL)
def test_nan_producing_module_with_structural_weights(entry, case):
    """The analysis computes no values, and the structural probe measures the architecture (its
    surrogates keep values positive and finite): every entry point gives the field."""
    make, _, _ = NON_FINITE[case]
    result = succeeds(ENTRY_POINTS[entry], WithBad(make()), SHAPE)
    if entry == "compare":
        assert bool(result["agree"].all()), result[["agree", "reason"]]
        assert field_of(result, "head") == TWO_CONVS_FIELD
    else:
        assert field_of(result) == TWO_CONVS_FIELD


@pytest.mark.parametrize("case", list(NON_FINITE))
def test_nan_producing_module_with_real_weights_is_named(case):
    """weights='real' runs the model's own values: the probe stops at the first node whose
    forward (or backward) is not finite, 'bad', not the head that inherits it."""
    make, culprit, way_out = NON_FINITE[case]
    probe_real = lambda m, s: rfnumeric.probe(m, s, weights="real", max_size=MAX_SIZE)  # noqa: E731
    fails(probe_real, WithBad(make()), SHAPE, rfarith.ProbeError, culprit, way_out)


# ---- how the model is held ----------------------------------------------------------------------
@pytest.mark.parametrize("entry", ALL)
def test_model_on_the_meta_device(entry):
    """No values, only shapes: the analysis and the structural probe need nothing more."""
    assert_small_net_answer(entry, succeeds(ENTRY_POINTS[entry], small_net().to("meta"), SHAPE))


def test_meta_model_with_real_weights_is_refused_by_name():
    probe_real = lambda m, s: rfnumeric.probe(m, s, weights="real", max_size=MAX_SIZE)  # noqa: E731
    fails(probe_real, small_net().to("meta"), SHAPE, rfarith.ProbeError, ["meta device", "0.weight"], "weights='structural'")


@pytest.mark.parametrize("entry", ALL)
def test_training_mode_with_batchnorm(entry):
    """The model stays in training mode and its BatchNorm statistics (set away from their
    defaults by prepared) are bit-identical after the call; the answer is eval mode's."""
    model = small_net()
    result = succeeds(ENTRY_POINTS[entry], model, SHAPE)
    assert all(m.training for m in model.modules())
    assert bool((model[1].running_mean == 0.5).all()) and int(model[1].num_batches_tracked) == 0
    assert_small_net_answer(entry, result)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("entry", ALL)
def test_half_precision_model(entry, dtype):
    model = small_net().to(dtype)
    assert_small_net_answer(entry, succeeds(ENTRY_POINTS[entry], model, SHAPE))
    assert all(p.dtype == dtype for p in model.parameters())


@pytest.mark.parametrize("entry", ALL)
def test_parameters_that_do_not_require_grad(entry):
    """Every parameter frozen: the probe needs only input gradients; the flags stay False."""
    model = small_net().requires_grad_(False)
    assert_small_net_answer(entry, succeeds(ENTRY_POINTS[entry], model, SHAPE))
    assert not any(p.requires_grad for p in model.parameters())


def test_parameters_that_do_not_require_grad_with_real_weights():
    """The same with the model's own weights, on two convs (no ReLU or max pool to block a
    path): conv 3 then conv 3, r 5, j 1, start 2.5."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3)).requires_grad_(False)
    probe_real = lambda m, s: rfnumeric.probe(m, s, weights="real", max_size=MAX_SIZE)  # noqa: E731
    assert field_of(succeeds(probe_real, model, SHAPE)) == TWO_CONVS_FIELD
    assert not any(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("make", [small_net, Gated], ids=["traceable", "untraceable"])
@pytest.mark.parametrize("entry", ALL)
def test_hooks_do_not_fire_during_a_call_and_fire_afterwards(entry, make):
    """No hook fires during the call (untouched checks it), including those of the containers fx
    traces into and of the untraceable gate the hybrid runs for real; afterwards each is still
    registered and fires once per module when the user runs the model and backpropagates.
    (small_net's first weight is frozen, but its bias is not: every module's output needs grad.)"""
    model = make()
    fired = prepared(model)
    with untouched(model, fired), contextlib.suppress(rfarith.TraceError):  # analyze on Gated
        ENTRY_POINTS[entry](model, SHAPE)
    model(torch.ones(SHAPE, requires_grad=True)).sum().backward()
    paths = sorted(path for path, _ in model.named_modules())
    for kind in ("pre", "forward", "backward"):
        assert sorted(path for k, path in fired if k == kind) == paths, kind


# ---- the command line ---------------------------------------------------------------------------
FACTORY_FILE = "rfcheck_bad_inputs_models.py"  # written to a temporary folder by the test


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """``crosscheck.cli.main(args)``: exit status (argparse's SystemExit too), stdout, stderr."""
    try:
        code = cli.main(list(args))
    except SystemExit as e:
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


CLI_CASES = {
    "unknown zoo model": (("report", "alexnett"), ["'alexnett'"], "Did you mean alexnet"),
    "input with a zero": (("report", "keras_minimal", "--input", "3x0x10"), ["'3x0x10'", "positive"], "e.g. 3x227x227"),
    "input not a size": (("report", "keras_minimal", "--input", "abc"), ["'abc'"], "e.g. 3x227x227"),
    "input one axis short": (("report", "keras_minimal", "--input", "3x64"), ["'conv2d_1'", "2 spatial axes"], "Way out"),
    "input wrong channels": (("report", "keras_minimal", "--input", "1x64x64"), ["'conv2d_1'", "3 input channels"], "Way out"),
    # keras_minimal (conv 7, conv 5, pool 2, conv 5, pool 2): 7 px leave conv2d_1 1 unit, and
    # conv2d_2 (5x5) cannot run; the last pool needs 2 units in, so 6 before the conv, 12 before
    # the pool, 16 before conv2d_2 and 22 before conv2d_1.
    "input too small": (("report", "keras_minimal", "--input", "3x7x7"), ["'conv2d_2'"], "(1, 3, 22, 22)"),
    "unknown node (report)": (("report", "keras_minimal", "--nodes", "conv2d_9"), ["'conv2d_9'", "Close names: conv2d_2"], "rfarith.node_names"),
    "unknown node (compare)": (("compare", "keras_minimal", "--nodes", "conv2d_9", "--no-progress"), ["'conv2d_9'", "Close names: conv2d_2"], "rfarith.node_names"),
    "missing model file": (("report", "{folder}/no_such_file.py:tiny"), ["no_such_file.py", "does not exist"], "path/to/file.py:factory"),
    "missing factory": (("report", "{folder}/" + FACTORY_FILE + ":nothing_here"), ["'nothing_here'", "it defines: tiny"], "returns a torch.nn.Module"),
}


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_cli_bad_usage_exits_2_with_one_line(case, capsys, tmp_path):
    """Exit status 2, nothing on stdout, one line on stderr naming the problem and a way out,
    no traceback."""
    args, culprit, way_out = CLI_CASES[case]
    (tmp_path / FACTORY_FILE).write_text("from torch import nn\n\n\ndef tiny():\n    return nn.Conv2d(3, 4, 3)\n")
    code, out, err = run_cli(capsys, *(a.format(folder=tmp_path) for a in args))
    assert code == 2, (code, out, err)
    assert out == "" and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rfcheck: error: "), err
    for word in [*culprit, way_out]:
        assert word in lines[0], (word, lines[0])
