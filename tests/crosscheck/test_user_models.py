"""Models written the way users write them, through report, compare, assert_agree and the CLI.

Each case says what a user must see: no row dropped, no wrong field, ``output`` the model's own
output, and an exit status of 0 only when what was printed is complete and true. The models and
their fields (derived by hand) are in ``models/user_models.py``; every field asserted here is
also checked against a brute-force gradient of one unit (``brute_support``).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import crosscheck
from crosscheck import Reason
from tests.crosscheck.models import user_models as um
from tests.crosscheck.test_cli import rfcheck as cli
from tests.snapshot import ModelSnapshot

ROOT = Path(__file__).resolve().parents[2]
FILE = "tests/crosscheck/models/user_models.py"
SHAPE = (1, 3, 16, 16)


def brute_support(model: nn.Module, shape, unit) -> np.ndarray:
    """The pixels one output unit's gradient reaches, by plain autograd on a float64 copy with
    positive weights, zero biases and a positive input (nothing can cancel)."""
    net = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.copy_(torch.full_like(p, 0.1) if "weight" in name else torch.zeros_like(p))
    x = torch.ones(shape, dtype=torch.float64, requires_grad=True)
    out = net(x)
    out[(0, slice(None), *unit)].sum().backward()
    return (x.grad.abs().sum(1)[0] != 0).numpy()


def box(seen: np.ndarray) -> tuple[tuple[int, int], ...]:
    return tuple((int(np.flatnonzero(seen.any(axis=1 - a))[0]), int(np.flatnonzero(seen.any(axis=1 - a))[-1])) for a in range(2))


def model_arg(factory: str) -> str:
    return f"{FILE}:{factory}"


# ---- control flow on tensor values ---------------------------------------------------------------
def test_control_flow_in_the_forward_report_keeps_the_real_output():
    """fx cannot trace the root's forward: every row is measured, the last row is the model's
    own output (b's map averaged, plus one), r 5, j 1, start 1.5, and the report is complete."""
    model = um.ControlFlow()
    report = crosscheck.hybrid(model, SHAPE)
    assert report.names == ["x", "a", "b", "output"]
    assert report.output.node == "output" and report.complete
    assert (report.output.r, report.output.j, report.output.start) == ((5, 5), (1, 1), (1.5, 1.5))
    assert report.output.bounds((0, 0)) == ((-1, 3), (-1, 3))  # unclipped: a pads by one
    assert report.output.bounds((5, 5)) == box(brute_support(model, SHAPE, (5, 5))) == ((4, 8), (4, 8))
    result = cli("report", model_arg("control_flow"), "--input", "3x16x16")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "output 'output': r 5, j 1, start 1.5" in result.stdout


def test_control_flow_in_the_forward_is_numeric_only_in_compare():
    """Nothing analytic to compare with: every row is kept, not compared, with its code; the
    counts add up; assert_agree fails unless the code is allowed; the CLI exits 1 and says why."""
    model = um.ControlFlow()
    snapshot = ModelSnapshot.of(model)
    frame = crosscheck.compare(model, SHAPE)
    assert list(frame.index) == ["a", "b", "output"]
    assert all(codes == (Reason.NUMERIC_ONLY,) for codes in frame["reason"])
    assert frame.attrs["summary"] == {"nodes": 3, "agree": 0, "disagree": 0, "not_compared": 3}
    assert frame.loc["output", "r_h_num"] == 5 and np.isnan(frame.loc["output", "r_h"])
    with pytest.raises(AssertionError) as info:
        crosscheck.assert_agree(model, SHAPE)
    assert "allow={crosscheck.Reason.NUMERIC_ONLY}" in str(info.value)
    crosscheck.assert_agree(model, SHAPE, allow={Reason.NUMERIC_ONLY})
    snapshot.assert_same(model)
    result = cli("compare", model_arg("control_flow"), "--input", "3x16x16", "--no-progress")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "3 nodes: 0 agree, 0 disagree, 3 not compared (3 numeric_only)" in result.stdout


def test_control_flow_inside_a_submodule_is_measured_and_compared():
    model = um.GatedNet()
    frame = crosscheck.assert_agree(model, SHAPE)
    assert frame.loc["gate", "reason"] == (Reason.MEASURED_OP,)
    assert frame.loc["head", "r_h"] == 7 and frame.loc["head", "j_h"] == 2
    assert crosscheck.hybrid(model, SHAPE).output.real_bounds((0, 0)) == box(brute_support(model, SHAPE, (0, 0)))
    result = cli("compare", model_arg("gated"), "--input", "3x16x16", "--no-progress")
    assert result.returncode == 0, result.stdout + result.stderr


# ---- a forward that accepts one input size --------------------------------------------------------
def test_a_size_assert_is_traced_with_concrete_sizes_and_compared_at_the_user_input():
    """The model refuses any other size. Symbolic fx cannot follow the assert on x.shape; the
    shape-aware trace can (the sizes are numbers there): every row is analysed exactly, d's
    field (r 17) included. The probe cannot grow past 16×16, so d is compared there, clipped,
    and the table says so; `rfcheck report` prints the whole table and exits 0."""
    report = crosscheck.hybrid(um.SizeAssert(), SHAPE)
    assert report.names == ["x", "a", "b", "c", "d"] and report.front_end == "shapes"
    assert report["c"].r == (13, 13) and report["d"].r == (17, 17) and report.complete
    frame = crosscheck.assert_agree(um.SizeAssert(), SHAPE)
    d = frame.loc["d"]
    assert d["compared_at"] == ((16, 16),) and Reason.USER_INPUT_ONLY in d["reason"]
    assert "rejects a larger input" in d["reason_text"]
    result = cli("report", model_arg("size_assert"), "--input", "3x16x16")
    assert result.returncode == 0, result.stdout + result.stderr
    as_json = cli("report", model_arg("size_assert"), "--input", "3x16x16", "--format", "json")
    document = json.loads(as_json.stdout)
    assert [row["node"] for row in document["rows"]] == report.names
    assert document["header"]["complete"] is True and document["rows"][4]["r_h"] == 17


def test_a_size_check_inside_a_submodule_is_compared_at_the_user_input():
    """The check inside a submodule: traced with concrete sizes, the head's conv is a node of
    its own (r 17); the whole model's probe cannot grow past 16×16 (the model refuses), so the
    units are compared there, clipped, and they agree. The table says so; nothing is dropped."""
    model = um.SizeAssertInside()
    frame = crosscheck.assert_agree(model, SHAPE)
    assert list(frame.index) == ["body.0", "body.1", "body.2", "head.conv"]
    head = frame.loc["head.conv"]
    assert head["r_h"] == 17 and head["compared_at"] == ((16, 16),)
    assert Reason.USER_INPUT_ONLY in head["reason"]
    assert head["first"] == box(brute_support(model, SHAPE, (0, 0))) == ((0, 8), (0, 8))
    result = cli("compare", model_arg("size_assert_inside"), "--input", "3x16x16", "--no-progress")
    assert result.returncode == 0, result.stdout + result.stderr


# ---- custom autograd Functions ---------------------------------------------------------------------
@pytest.mark.parametrize("factory, r", [("quantised", 5), ("blurred", 7)])
def test_custom_functions_agree_everywhere(factory, r):
    """A straight-through rounding (r 5) and a box blur with its own backward (r 7): analysed,
    probed through the user's backward, and agreeing on every compared unit."""
    model = getattr(um, factory)()
    frame = crosscheck.assert_agree(model, SHAPE)
    last = frame.index[-1]
    assert frame.loc[last, "r_h"] == r and frame.loc[last, "r_h_num"] == r
    for unit in ((0, 0), (5, 7)):
        rf = crosscheck.hybrid(model, SHAPE).output
        assert np.array_equal(rf.mask(unit), brute_support(model, SHAPE, unit)), unit
    for command in ("report", "compare"):
        result = cli(command, model_arg(factory), "--input", "3x16x16", "--no-progress") if command == "compare" else cli(command, model_arg(factory), "--input", "3x16x16")
        assert result.returncode == 0, result.stdout + result.stderr


# ---- recurrences over a spatial axis ------------------------------------------------------------
@pytest.mark.parametrize("factory", ["row_lstm", "row_bilstm", "raster_gru"])
def test_recurrences_agree_unit_by_unit(factory):
    """A forward LSTM along the rows, a bidirectional one, a GRU over the pixels in raster
    order. Before: the report gave every unit of the forward ones the whole row (or input),
    exit 0, and compare could not check it (the real LSTM's gradient underflowed: 'not
    compared'). Now each unit's exact set agrees with the brute-force gradient, compare agrees
    on every row, and both commands exit 0."""
    model = getattr(um, factory)()
    frame = crosscheck.assert_agree(model, SHAPE)
    assert (frame["status"] == "agree").all()
    rf = crosscheck.hybrid(model, SHAPE).output
    for unit in ((0, 0), (5, 7), (15, 3), (15, 15)):
        assert np.array_equal(rf.mask(unit), brute_support(model, SHAPE, unit)), unit
    for command in ("report", "compare"):
        extra = ("--no-progress",) if command == "compare" else ()
        result = cli(command, model_arg(factory), "--input", "3x16x16", *extra)
        assert result.returncode == 0, result.stdout + result.stderr


def test_a_forward_lstm_is_reported_causal():
    """Unit (5, 7) of the forward LSTM sees columns 0 .. 8, not the whole row; the table says
    global (via lstm), causal, and the compare reason says what causal means."""
    rf = crosscheck.hybrid(um.row_lstm(), SHAPE).output
    assert rf.real_bounds((5, 7)) == ((4, 6), (0, 8))
    assert rf.describe_flags() == "global (via lstm), causal"
    report = cli("report", model_arg("row_lstm"), "--input", "3x16x16")
    assert "global (via lstm), causal" in report.stdout
    compare = cli("compare", model_arg("row_lstm"), "--input", "3x16x16", "--no-progress")
    assert "each of whose units sees the sequence up to its own step" in compare.stdout


@pytest.mark.parametrize("factory", ["row_lstm", "row_bilstm", "raster_gru"])
def test_recurrences_agree_in_full_mode(factory):
    """Mode 'full' follows global paths. Through one recurrence along the rows the full set of
    unit (h, w) is rows h-1 .. h+1 only (the other axis stays local), not the whole input the
    full mode assumed: the bidirectional LSTM disagreed on 4 rows of 8 that way. Now a chain
    through one global op compares its own sets, unit by unit."""
    frame = crosscheck.compare(getattr(um, factory)(), SHAPE, mode="full")
    assert (frame["status"] == "agree").all(), frame[["status", "reason_text"]]


def test_a_forward_recurrence_beside_a_residual_is_not_compared_in_full_mode():
    """x + lstm(x) with a forward LSTM, mode 'full': the local field is the residual's and the
    recurrence's causal sets were left out at the merge: not the whole input either. Those rows
    are not compared (reason causal_beside, naming mode 'local'); the rows before the merge
    agree, and mode 'local' agrees on every row."""

    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = um.RowLSTM()
            self.inner.head = nn.Conv2d(8, 8, 1)
            self.out = nn.Conv2d(8, 4, 3, padding=1)

        def forward(self, x):
            y = torch.relu(self.inner.stem(x))
            return self.out(y + self.inner(x))

    full = crosscheck.compare(Residual(), SHAPE, mode="full")
    beside = full[full["reason"].map(lambda codes: Reason.CAUSAL_BESIDE.value in codes)]
    assert list(beside.index) == ["add", "out"]
    assert (beside["status"] == "not_compared").all()
    assert "mode 'local'" in beside.loc["out", "reason_text"]
    assert (full.drop(beside.index)["status"] == "agree").all()
    assert (crosscheck.compare(Residual(), SHAPE)["status"] == "agree").all()
