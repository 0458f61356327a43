"""crosscheck.compare / render / summary / assert_agree on small hand-made nets, in process.

Every expected value is derived by hand with the guide's recurrences (input ``j = 1``, ``r = 1``,
``start = 0.5``; kernel ``k``, stride ``s``, dilation ``d``, left padding ``p``: ``j' = j*s``,
``r' = r + d*(k-1)*j``, ``start' = start + (d*(k-1)/2 - p)*j``; merges take the hull). Unit
``m`` of a map sees ``lo(m) = start + m*j - r/2`` .. ``hi(m) = start + m*j + r/2 - 1``; the
``first`` / ``centre`` / ``last`` columns are units ``0``, ``n//2`` and ``n-1`` on every axis,
and hold what that unit really sees of the input: the pixels inside ``0 .. N-1``, with zero
padding contributing nothing (so a unit whose window lies wholly in padding sees ``None``).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import crosscheck
import rfarith
import rfnumeric
from crosscheck import numeric
from crosscheck.reasons import Reason
from rfnumeric.search import BYTES_PER_ELEMENT
from tests.snapshot import ModelSnapshot


# ---- the nets -----------------------------------------------------------------------------------
def chain() -> nn.Sequential:
    """conv 3x3 p1 -> ReLU -> maxpool 2 -> conv 3x3 dilation 2 p2, on 1x1x8x8.

    '0' conv: n 8, j 1, r 3, start 0.5 + (1 - 1) = 0.5; unit m sees m-1..m+1:
        first 0 -> -1..1 = 0..1, centre 4 -> 3..5, last 7 -> 6..8 = 6..7.
    '1' ReLU: the same.
    '2' pool: n 4, j 2, r 3 + 1*1 = 4, start 0.5 + 0.5 = 1.0; unit m sees 2m-1..2m+2:
        first -1..2 = 0..2, centre 2 -> 3..6, last 3 -> 5..8 = 5..7.
    '3' conv d2: n 4 + 2*2 - 2*2 = 4, j 2, r 4 + 2*2*2 = 12, start 1 + (2 - 2)*2 = 1.0; unit m
        reads pool units m-2, m, m+2 (only 0..3 exist): first -> pool 0, 2 = 0..6; centre 2 ->
        pool 0, 2 = 0..6; last 3 -> pool 1, 3 = 1..4 and 5..7 = 1..7.
    """
    return nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(2, 2, 3, dilation=2, padding=2)
    )


CHAIN = {  # node: (op, n, j, r, start, first, centre, last)
    "0": ("Conv2d", 8, 1, 3, 0.5, (0, 1), (3, 5), (6, 7)),
    "1": ("ReLU", 8, 1, 3, 0.5, (0, 1), (3, 5), (6, 7)),
    "2": ("MaxPool2d", 4, 2, 4, 1.0, (0, 2), (3, 6), (5, 7)),
    "3": ("Conv2d", 4, 2, 12, 1.0, (0, 6), (0, 6), (1, 7)),
}


class Aligned(nn.Module):
    """Issue 2's aligned two-branch net, on 1x1x16x16.

    a: 1x1 s4: n (16-1)//4+1 = 4, j 4, r 1, start 0.5; unit m sees 4m: 0, 8 (centre 2), 12.
    b1: 3x3 s2 p1: n 8, j 2, r 3, start 0.5; unit m sees 2m-1..2m+1: 0..1, 7..9 (4), 13..15 (7).
    b2: 1x1 s2: n 4, j 4, r 3, start 0.5; unit m = b1 unit 2m: 4m-1..4m+1: 0..1, 7..9, 11..13.
    add: hull of 4m and 4m-1..4m+1 = 4m-1..4m+1: r 3, j 4, start 0.5 (effective padding 1).
    """

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 2, 1, stride=4)
        self.b1 = nn.Conv2d(1, 2, 3, stride=2, padding=1)
        self.b2 = nn.Conv2d(2, 2, 1, stride=2)

    def forward(self, x):
        return self.a(x) + self.b2(self.b1(x))


ALIGNED = {
    "a": ("Conv2d", 4, 4, 1, 0.5, (0, 0), (8, 8), (12, 12)),
    "b1": ("Conv2d", 8, 2, 3, 0.5, (0, 1), (7, 9), (13, 15)),
    "b2": ("Conv2d", 4, 4, 3, 0.5, (0, 1), (7, 9), (11, 13)),
    "add": ("add", 4, 4, 3, 0.5, (0, 1), (7, 9), (11, 13)),
}


class Misaligned(nn.Module):
    """Issue 2's misaligned two-branch net, on 1x1x16x16.

    pad (0, 3, 0, 3): n 19, j 1, r 1, start 0.5; unit m sees m if m < 16: 0, 9 (centre 19//2),
        nothing for the last unit 18 (right padding).
    a: 5x5 s2 on 19: n (19-5)//2+1 = 8, j 2, r 5, start 0.5 + 2 = 2.5; unit m sees 2m..2m+4:
        0..4, 8..12 (centre 4), 14..18 = 14..15 (last 7).
    b1: 3x3 s2 p1: n 8, j 2, r 3, start 0.5: 0..1, 7..9, 13..15.
    b2: 3x3 p1: n 8, j 2, r 3 + 2*2 = 7, start 0.5; unit m sees b1 units m-1..m+1 = 2m-3..2m+3:
        first 0..3 (b1 -1 is padding), centre 5..11, last b1 6..7 = 11..15.
    add: hull 2m-3..2m+4: r 8, j 2, start = lo(0) + r/2 = -3 + 4 = 1.0, flag misaligned;
        first 0..4, centre 5..12, last 11..15. In 2-D the union of the two squares leaves the
        corners of its box unseen (row 2m-3 only in b, column 2m+4 only in a): flag holes.
    """

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 2, 5, stride=2)
        self.b1 = nn.Conv2d(1, 2, 3, stride=2, padding=1)
        self.b2 = nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, x):
        return self.a(F.pad(x, (0, 3, 0, 3))) + self.b2(self.b1(x))


MISALIGNED = {
    "pad": ("pad", 19, 1, 1, 0.5, (0, 0), (9, 9), None),
    "a": ("Conv2d", 8, 2, 5, 2.5, (0, 4), (8, 12), (14, 15)),
    "b1": ("Conv2d", 8, 2, 3, 0.5, (0, 1), (7, 9), (13, 15)),
    "b2": ("Conv2d", 8, 2, 7, 0.5, (0, 3), (5, 11), (11, 15)),
    "add": ("add", 8, 2, 8, 1.0, (0, 4), (5, 12), (11, 15)),
}


class SqueezeExcite(nn.Module):
    """conv 3x3 p1, then a squeeze-excite gate (global average pool, two 1x1 convs, sigmoid)
    multiplied back, on 1x1x8x8.

    conv: n 8, j 1, r 3, start 0.5 (as chain's '0').
    pool .. sigmoid: one unit that sees the whole 8x8 input: r 8, start 8/2 = 4, j 0 (a global
        axis has no spacing; DESIGN: j = 0, start = r/2), flag global (via pool).
    mul: the gate is a global side path, so the local field is conv's: r 3, j 1, start 0.5,
        with flag global (via pool).
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(4, 2, 1)
        self.fc2 = nn.Conv2d(2, 4, 1)

    def forward(self, x):
        x = self.conv(x)
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(self.pool(x)))))


WHOLE = (0, 7)
SQUEEZE_EXCITE = {
    "conv": ("Conv2d", 8, 1, 3, 0.5, (0, 1), (3, 5), (6, 7)),
    "pool": ("AdaptiveAvgPool2d", 1, 0, 8, 4.0, WHOLE, WHOLE, WHOLE),
    "fc1": ("Conv2d", 1, 0, 8, 4.0, WHOLE, WHOLE, WHOLE),
    "relu": ("relu", 1, 0, 8, 4.0, WHOLE, WHOLE, WHOLE),
    "fc2": ("Conv2d", 1, 0, 8, 4.0, WHOLE, WHOLE, WHOLE),
    "sigmoid": ("sigmoid", 1, 0, 8, 4.0, WHOLE, WHOLE, WHOLE),
    "mul": ("mul", 8, 1, 3, 0.5, (0, 1), (3, 5), (6, 7)),
}


def line() -> nn.Sequential:
    """1-D: Conv1d k4 s2 p1 on 1x1x10: n (10+2-4)//2+1 = 5, j 2, r 4, start 0.5 + (1.5-1) = 1.0;
    unit m sees 2m-1..2m+2: first 0..2, centre 2 -> 3..6, last 4 -> 7..10 = 7..9.
    Then MaxPool1d 2: n 2, j 4, r 4 + 2 = 6, start 1 + 0.5*2 = 2.0; unit m sees 4m-1..4m+4:
    first 0..4, centre 1 (= 2//2) -> 3..8, last 1 -> 3..8."""
    return nn.Sequential(nn.Conv1d(1, 2, 4, stride=2, padding=1), nn.MaxPool1d(2))


LINE = {
    "0": ("Conv1d", 5, 2, 4, 1.0, (0, 2), (3, 6), (7, 9)),
    "1": ("MaxPool1d", 2, 4, 6, 2.0, (0, 4), (3, 8), (3, 8)),
}

CASES = {
    "chain": (chain, (1, 1, 8, 8), CHAIN),
    "aligned": (Aligned, (1, 1, 16, 16), ALIGNED),
    "misaligned": (Misaligned, (1, 1, 16, 16), MISALIGNED),
    "squeeze_excite": (SqueezeExcite, (1, 1, 8, 8), SQUEEZE_EXCITE),
    "line": (line, (1, 1, 10), LINE),
}
def cases():
    return [pytest.param(name, id=name) for name in CASES]


_FRAMES: dict[str, pd.DataFrame] = {}


def frame_of(name: str) -> pd.DataFrame:
    """compare() of a case, computed once per session (the probe is the slow part)."""
    if name not in _FRAMES:
        factory, shape, _ = CASES[name]
        torch.manual_seed(0)
        _FRAMES[name] = crosscheck.compare(factory(), shape)
    return _FRAMES[name]


def axes_of(shape) -> tuple[str, ...]:
    return rfarith.axis_names(len(shape) - 2)


def per_axis(bounds, axes):
    return None if bounds is None else tuple(bounds for _ in axes)


# ---- compare: the analytic side equals the hand-derived values ---------------------------------
@pytest.mark.parametrize("name", cases())
def test_rows_in_graph_order(name):
    _, _, expected = CASES[name]
    frame = frame_of(name)
    assert list(frame.index) == list(expected)
    assert frame["op"].tolist() == [row[0] for row in expected.values()]


@pytest.mark.parametrize("name", cases())
def test_analytic_columns_are_the_hand_derived_values(name):
    _, shape, expected = CASES[name]
    frame = frame_of(name)
    for node, (_, n, j, r, start, *_units) in expected.items():
        row = frame.loc[node]
        for a in axes_of(shape):
            assert (row[f"n_{a}"], row[f"j_{a}"], row[f"r_{a}"], row[f"start_{a}"]) == (n, j, r, start), (node, a)


@pytest.mark.parametrize("name", cases())
def test_unit_bounds_are_the_hand_derived_real_bounds(name):
    _, shape, expected = CASES[name]
    frame = frame_of(name)
    axes = axes_of(shape)
    for node, (*_, first, centre, last) in expected.items():
        row = frame.loc[node]
        for key, bounds in (("first", first), ("centre", centre), ("last", last)):
            want = per_axis(bounds, axes) or (None,) * len(axes)
            assert row[key] == want, (node, key)
            assert row[f"{key}_num"] == want, (node, f"{key}_num")  # what the probe measured


@pytest.mark.parametrize("name", cases())
def test_numeric_columns_equal_the_analytic_ones(name):
    _, shape, expected = CASES[name]
    frame = frame_of(name)
    for node in expected:
        row = frame.loc[node]
        for a in axes_of(shape):
            for q in ("n", "j", "r", "start"):
                assert row[f"{q}_{a}_num"] == row[f"{q}_{a}"], (node, q, a)


@pytest.mark.parametrize("name", cases())
def test_every_row_agrees(name):
    frame = frame_of(name)
    assert frame["agree"].tolist() == [True] * len(frame), crosscheck.render(frame)
    assert frame.attrs["summary"] == {"nodes": len(frame), "agree": len(frame), "disagree": 0, "not_compared": 0}
    assert all(n > 0 for n in frame["units_compared"])


def test_misaligned_flags():
    """The hull merge is exact and flagged, not an error (see Misaligned's docstring)."""
    frame = frame_of("misaligned")
    assert frame.loc["add", "flags"] == ("holes", "misaligned")
    for node in ("pad", "a", "b1", "b2"):
        assert frame.loc[node, "flags"] == ()


def test_squeeze_excite_states_the_global_path():
    frame = frame_of("squeeze_excite")
    for node in ("pool", "fc1", "relu", "fc2", "sigmoid", "mul"):
        assert frame.loc[node, "flags"] == ("global",) and frame.loc[node, "global_via"] == "pool", node
        assert frame.loc[node, "reason"] == (Reason.GLOBAL,), node
        assert frame.loc[node, "reason_text"] == "global: every unit sees the whole input (via pool)", node
        assert bool(frame.loc[node, "agree"]), node  # a note: the verdict is the sets'
        assert "global" in frame.loc[node, "flags_num"]
    assert frame.loc["conv", "reason"] == () and frame.loc["conv", "flags"] == ()


def test_columns():
    frame = frame_of("chain")
    for column in ("op", "n_h", "j_h", "r_h", "start_h", "n_w", "j_w", "r_w", "start_w",
                   "n_h_num", "j_h_num", "r_h_num", "start_h_num", "first", "centre", "last",
                   "first_num", "centre_num", "last_num", "flags", "flags_num", "global_via",
                   "units_compared", "compared_at", "status", "agree", "reason", "reason_text"):
        assert column in frame.columns, column
    assert frame.index.name == "node"
    assert frame.attrs["input_shape"] == (1, 1, 8, 8) and frame.attrs["mode"] == "local"


# ---- summary and render ------------------------------------------------------------------------
def test_summary_counts():
    frame = frame_of("chain")
    assert crosscheck.summary(frame) == frame.attrs["summary"] == {
        "nodes": 4, "agree": 4, "disagree": 0, "not_compared": 0,
    }
    assert crosscheck.summary(pd.DataFrame()) == {"nodes": 0, "agree": 0, "disagree": 0, "not_compared": 0}


def test_summary_adds_up_and_reads_codes_only():
    """Counts come from the codes (the words may say anything) and always add up."""
    frame = frame_of("chain").copy()
    frame["reason"] = [(), (Reason.PIXELS_DIFFER.value,), (Reason.PROBE_FAILED.value, Reason.GLOBAL.value), (Reason.PIXELS_DIFFER.value, Reason.NUMERIC_ONLY.value)]
    frame["reason_text"] = ["unexplained", "", "agree", "pixels_differ"]
    counts = crosscheck.summary(frame)
    assert counts == {"nodes": 4, "agree": 1, "disagree": 2, "not_compared": 1}
    assert counts["agree"] + counts["disagree"] + counts["not_compared"] == counts["nodes"]
    assert all(v >= 0 for v in counts.values())


def test_render_has_the_header_and_a_line_per_node():
    frame = frame_of("aligned")
    text = crosscheck.render(frame, "Aligned")
    lines = text.splitlines()
    assert lines[0].startswith("Analytic vs numeric receptive fields: Aligned")
    assert "input 1×1×16×16" in lines[0] and "mode local" in lines[0]
    header = next(line for line in lines if line.startswith("Node"))
    assert header.split() == ["Node", "Op", "n", "j", "r", "start", "agree", "Reason"]
    body = lines[lines.index(next(line for line in lines if set(line) == {"-"})) + 1 : -2]  # rule .. rule
    assert len(body) == len(ALIGNED)
    for (node, (op, n, j, r, start, *_)), line in zip(ALIGNED.items(), body):
        # one number per quantity when both axes and both sides agree; start 0.5 prints as 0.5
        assert line.split() == [node, op, str(n), str(j), str(r), f"{start:g}", "yes", "--"]
    assert set(lines[-2]) == {"="}
    assert lines[-1] == "4 nodes: 4 agree, 0 disagree, 0 not compared"


# ---- assert_agree ------------------------------------------------------------------------------
def test_assert_agree_passes_and_returns_the_frame():
    torch.manual_seed(0)
    frame = crosscheck.assert_agree(chain(), (1, 1, 8, 8))
    pd.testing.assert_frame_equal(frame, frame_of("chain"))


@pytest.mark.parametrize("name", cases())
def test_assert_agree_passes_on_every_net(name):
    factory, shape, expected = CASES[name]
    assert list(crosscheck.assert_agree(factory(), shape).index) == list(expected)


@pytest.fixture
def doctored_probe(monkeypatch):
    """The probe, except that on chain's pool ('2') every measured unit sees one more pixel
    along h (see _widened)."""
    real = numeric.Prober.units

    def units(self, sizes, wanted, local):
        for name, found in real(self, sizes, wanted, local):
            if name == "2" and isinstance(found, numeric.UnitsAt):
                found = dataclasses.replace(found, supports={u: _widened(s) for u, s in found.supports.items()})
            yield name, found

    monkeypatch.setattr(numeric.Prober, "units", units)


def _widened(support, size=8):
    """One more pixel seen along h: after the box, or before it at the input's end."""
    origin, pattern = support
    grown = np.zeros((pattern.shape[0] + 1, *pattern.shape[1:]), dtype=bool)
    if origin[0] + pattern.shape[0] < size:
        grown[:-1], grown[-1, 0] = pattern, True
        return origin, grown
    grown[1:], grown[0, 0] = pattern, True
    return (origin[0] - 1, *origin[1:]), grown


def test_a_unit_seeing_other_pixels_disagrees(doctored_probe):
    frame = crosscheck.compare(chain(), (1, 1, 8, 8))
    assert frame["agree"].tolist() == [True, True, False, True]
    assert frame.loc["2", "reason"] == (Reason.PIXELS_DIFFER,)
    assert frame.loc["2", "status"] == "disagree"
    assert frame.loc["2", "reason_text"].startswith("unit (0, 0) at input 8×8: analytic 0..2×0..2 vs numeric 0..3×0..2 (1 pixels seen by one side only)")
    assert frame.attrs["summary"] == {"nodes": 4, "agree": 3, "disagree": 1, "not_compared": 0}
    row = next(line for line in crosscheck.render(frame).splitlines() if line.startswith("2 "))
    assert "NO" in row and "unit (0, 0)" in row


def test_assert_agree_raises_with_the_table(doctored_probe):
    with pytest.raises(AssertionError) as info:
        crosscheck.assert_agree(chain(), (1, 1, 8, 8))
    message = str(info.value)
    assert "do not agree on 1 of 4 nodes" in message
    assert "Analytic vs numeric receptive fields: Sequential" in message
    assert "Node  Op" in message
    row = next(line for line in message.splitlines() if line.startswith("2 "))
    assert "MaxPool2d" in row and "analytic 0..2×0..2 vs numeric 0..3×0..2" in row
    assert not any(line.startswith(("0 ", "1 ", "3 ")) for line in message.splitlines())  # agreeing rows left out


def test_a_field_too_wide_to_grow_is_compared_at_the_user_input():
    """max_size=8: chain's '3' has r 12 > 8, so the probe may not grow the input enough; its
    units are compared, clipped, at the user's input (they agree), and the row says so."""
    torch.manual_seed(0)
    frame = crosscheck.assert_agree(chain(), (1, 1, 8, 8), max_size=8)
    assert frame["agree"].all()
    assert frame.loc["3", "reason"] == (Reason.USER_INPUT_ONLY,)
    assert "field is wider than the largest input the probe may use (max_size=8)" in frame.loc["3", "reason_text"]
    assert frame.loc["3", "compared_at"] == ((8, 8),)
    assert frame.attrs["summary"] == {"nodes": 4, "agree": 4, "disagree": 0, "not_compared": 0}
    # the unit bounds are measured at the user's input: '3' (first) sees 0..6
    assert frame.loc["3", "first_num"] == ((0, 6), (0, 6))


def test_a_field_that_does_not_fit_is_compared_again_where_the_probe_grew():
    """chain's '3' (r 12) does not fit 8×8: its units are compared at 8×8 and again at the
    larger input the probe grew to, with rfarith analysed there."""
    frame = frame_of("chain")
    sizes = frame.loc["3", "compared_at"]
    assert sizes[0] == (8, 8) and len(sizes) == 2 and min(sizes[1]) > 12


def test_fields_that_fit_are_compared_at_the_user_input_alone():
    """Every field here fits 16x16 (r 3, 5, and the pooling's global 16): no search starts
    larger. The head start used to add room to each hint (5 + 4 jumps + 8, up to 32) and the
    global map's (16 + 8), so every row was measured, and compared again, at 32x32."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.AdaptiveAvgPool2d(1))
    frame = crosscheck.assert_agree(net, (1, 1, 16, 16))
    assert set(frame["compared_at"]) == {((16, 16),)}


# ---- nodes ---------------------------------------------------------------------------------------
def test_nodes_restricts_the_rows():
    frame = crosscheck.compare(chain(), (1, 1, 8, 8), nodes=["0", "2"])
    assert list(frame.index) == ["0", "2"]
    assert frame.attrs["summary"]["nodes"] == 2
    assert frame.loc["2", "r_h"] == 4 and bool(frame.loc["2", "agree"])


def test_nodes_by_qualified_name():
    frame = crosscheck.compare(Aligned(), (1, 1, 16, 16), nodes=["add"])
    assert list(frame.index) == ["add"] and frame.loc["add", "r_w"] == 3


def test_unknown_node_raises_with_close_names():
    with pytest.raises(rfarith.UnknownNode) as info:
        crosscheck.compare(Aligned(), (1, 1, 16, 16), nodes=["b3"])
    message = str(info.value)
    assert "'b3'" in message and "b1" in message and "b2" in message
    with pytest.raises(rfarith.UnknownNode):
        crosscheck.assert_agree(Aligned(), (1, 1, 16, 16), nodes=["add", "nope"])


# ---- the model is left as it was ---------------------------------------------------------------
def _busy_model() -> nn.Module:
    """SqueezeExcite in training mode, with a frozen parameter, a hook and a stored gradient."""
    model = SqueezeExcite().train()
    model.fc1.weight.requires_grad_(False)
    model.conv.register_forward_hook(lambda module, args, out: None)
    model.conv.weight.grad = torch.ones_like(model.conv.weight)
    return model


def test_model_unchanged_after_compare():
    model = _busy_model()
    snapshot = ModelSnapshot.of(model)
    crosscheck.compare(model, (1, 1, 8, 8))
    snapshot.assert_same(model)
    assert model.training


def test_model_unchanged_after_a_failing_assert_agree(doctored_probe):
    model = chain().train()
    model[0].weight.requires_grad_(False)
    snapshot = ModelSnapshot.of(model)
    with pytest.raises(AssertionError):
        crosscheck.assert_agree(model, (1, 1, 8, 8))
    snapshot.assert_same(model)
    with pytest.raises(rfarith.UnknownNode):
        crosscheck.compare(model, (1, 1, 8, 8), nodes=["9"])
    snapshot.assert_same(model)


def test_nodes_sharing_one_tensor_are_measured_once_with_the_same_answer(monkeypatch):
    """crosscheck measures a map once when several nodes hold the same tensor in the probe's
    forward (BatchNorm and ReLU after a conv): the table must equal measuring each node."""
    from crosscheck import numeric, zoo

    model, shape = zoo.build("resnet18"), zoo.input_shape("resnet18")
    nodes = ["conv1", "bn1", "relu", "maxpool", "layer1.0.conv1", "layer1.0.bn1", "layer1.0.relu", "layer1.0.add", "layer1.0.relu_1"]
    session = numeric.Session(model, shape, "structural")
    shared = numeric.identical_maps(session, {n: session.target(n) for n in nodes}, local=True)
    assert shared == {"bn1": "conv1", "relu": "conv1", "layer1.0.bn1": "layer1.0.conv1", "layer1.0.relu": "layer1.0.conv1", "layer1.0.relu_1": "layer1.0.add"}
    together = crosscheck.compare(model, shape, nodes=nodes)
    monkeypatch.setattr(numeric, "identical_maps", lambda *args: {})
    alone = crosscheck.compare(model, shape, nodes=nodes)
    assert together.astype(str).equals(alone.astype(str))
    assert together["agree"].all()


def test_unit_measurements_are_budgeted_at_what_the_searches_measured(monkeypatch):
    """A 40-conv stack produces about 40 tensor elements per input pixel per probe, five times
    the default estimate (8) a measurement of units was budgeted at whatever the searches had
    measured. Now the units are split to fit the budget at the measured cost."""
    from crosscheck import numeric

    net = nn.Sequential(*[nn.Conv2d(1, 1, 3, padding=1) for _ in range(40)])
    prober = numeric.Prober(net, (1, 1, 16, 16), "local", 4096)
    fitted = prober.fields({"39": ((16, 16), frozenset())})
    assert isinstance(fitted["39"], rfnumeric.ProbeResult) and prober.session.elements_per_pixel >= 40
    units = [(i, i) for i in range(9)]
    budget = 9 * numeric.ELEMENTS_PER_PIXEL * 256 * BYTES_PER_ELEMENT  # 9 probes at the default estimate
    monkeypatch.setattr(numeric, "MEMORY_BUDGET", budget)
    forwards = []
    measure = prober.session.measure

    def counted(sizes, requests, local):
        forwards.append(len(requests))
        return measure(sizes, requests, local)

    monkeypatch.setattr(prober.session, "measure", counted)
    ((name, found),) = list(prober.units((16, 16), {"39": units}, {"39": True}))
    assert name == "39" and set(found.supports) == set(units)
    assert sum(forwards) == 9 and max(forwards) * prober.session.elements_per_pixel * 256 * BYTES_PER_ELEMENT <= budget


def test_one_forward_never_mixes_graph_nodes_with_module_calls(monkeypatch):
    """Module calls beside functional ops: every
    measurement reaches its maps one way (mixed, the forward failed, and the session went on
    one unit per forward: a U-Net's compare ran 2,395 forwards instead of 86)."""
    from rfnumeric.measure import Session

    class ModulesAndFunctions(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1, self.conv2 = nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3)

        def forward(self, x):
            return self.conv2(F.max_pool2d(F.relu(self.conv1(x)), 2))

    calls = []
    original = Session._measure

    def spy(self, sizes, requests, local):
        calls.append(({r.target.locator.kind == "graph" for r in requests}, self.batched, len(requests)))
        return original(self, sizes, requests, local)

    monkeypatch.setattr(Session, "_measure", spy)
    frame = crosscheck.compare(ModulesAndFunctions().eval(), (1, 3, 24, 24))
    assert frame.attrs["summary"]["agree"] == frame.attrs["summary"]["nodes"]
    assert {False} in [kinds for kinds, _, _ in calls] and {True} in [kinds for kinds, _, _ in calls]
    assert all(len(kinds) == 1 for kinds, _, _ in calls)
    assert all(batched for _, batched, _ in calls)
