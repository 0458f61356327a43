"""crosscheck.hybrid: the analytic walk, with the probe measuring what has no rule.

Issue 4's acceptance: a model with one custom op without a rule and one untraceable submodule
gets from ``hybrid`` the same table as a hand-written equivalent model that rfarith fully
supports. Every expected value is derived by hand with the guide's recurrences (input ``j = 1``,
``r = 1``, ``start = 0.5``; kernel ``k``, stride ``s``, left padding ``p``: ``j' = j*s``,
``r' = r + (k-1)*j``, ``start' = start + ((k-1)/2 - p)*j``).
"""

from __future__ import annotations

import pandas as pd
import pytest
import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

import crosscheck
import rfarith
from tests.crosscheck.models.user_models import FoldedGRU
from tests.snapshot import ModelSnapshot

SHAPE = (1, 1, 24, 24)
FIELD_COLUMNS = ["n_h", "j_h", "r_h", "start_h", "n_w", "j_w", "r_w", "start_w", "flags"]


def finite(x):
    """A guard that reads values: fx cannot trace a function that calls it, even with concrete
    sizes, so the functions below stay one opaque call each (without it rfarith traces into a
    wrapped function and analyses its ops exactly)."""
    if not torch.isfinite(x).all():
        raise ValueError("non-finite input")
    return x


def blur(x):
    """A custom op without a rule: a 5x5 box filter over reflect padding of 2 (same size out)."""
    x = finite(x)
    return F.avg_pool2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), 5, stride=1)


torch.fx.wrap("blur")  # fx records one call of 'blur' instead of tracing into it


SCRAMBLE = torch.tensor([0, 1, 4, 9, 6, 5, 6, 9, 4, 1])  # m*m % 10: no period, no shift


def scramble(x):
    """Output column m reads input column m*m % 10: no sliding window explains it."""
    return finite(x)[..., SCRAMBLE]


torch.fx.wrap("scramble")


def mix(x, y):
    return finite(x) + y


torch.fx.wrap("mix")


class Moody(nn.Module):
    """Data-dependent control flow (fx cannot trace it); either way a 3x3 conv with padding 1."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        if x.sum() > 0:
            return self.conv(x)
        return self.conv(-x)


class Custom(nn.Module):
    """stem conv 3x3 s2 -> blur (no rule) -> moody (untraceable) -> head conv 3x3."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, stride=2)
        self.moody = Moody()
        self.head = nn.Conv2d(4, 4, 3)

    def forward(self, x):
        return self.head(self.moody(blur(self.stem(x))))


class Equivalent(nn.Module):
    """Custom written with ops rfarith has rules for, module names chosen to match.

    blur -> AvgPool2d(5, stride 1, padding 2): the same window; zero instead of reflect padding
    of 2 changes no unit's pixel set (reflection re-reads pixels 1..2 of the border, which the
    5-wide window at the border already reads). moody -> Conv2d 3x3 padding 1.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, stride=2)
        self.blur = nn.AvgPool2d(5, stride=1, padding=2)
        self.moody = nn.Conv2d(4, 4, 3, padding=1)
        self.head = nn.Conv2d(4, 4, 3)

    def forward(self, x):
        return self.head(self.moody(self.blur(self.stem(x))))


class ReflectEquivalent(Equivalent):
    """The same with blur's own padding: F.pad reflect 2, then AvgPool2d(5, stride 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.blur = nn.AvgPool2d(5, stride=1)

    def forward(self, x):
        return self.head(self.moody(self.blur(F.pad(self.stem(x), (2, 2, 2, 2), mode="reflect"))))


# Custom on 1x1x24x24, both axes:
#   x:     n 24, j 1, r 1, start 0.5
#   stem:  3x3 s2 p0: n (24-3)//2+1 = 11, j 2, r 3, start 0.5 + 1 = 1.5
#   blur:  5x5 s1, 2 each side: n 11, j 2, r 3 + 4*2 = 11, start 1.5 + (2 - 2)*2 = 1.5
#   moody: 3x3 p1: n 11, j 2, r 11 + 2*2 = 15, start 1.5
#   head:  3x3 p0: n 9, j 2, r 15 + 2*2 = 19, start 1.5 + 1*2 = 3.5
EXPECTED = {
    "x": (24, 1, 1, 0.5, "rule"),
    "stem": (11, 2, 3, 1.5, "rule"),
    "blur": (11, 2, 11, 1.5, "probe"),
    "moody": (11, 2, 15, 1.5, "probe"),
    "head": (9, 2, 19, 3.5, "rule"),
}
# Output units (head), per axis: lo(m) = 3.5 + 2m - 9.5, hi(m) = 3.5 + 2m + 9.5 - 1.
#   unit 0: -6..12 -> pixels 0..12 of the input;  unit 4 (centre): 2..20;
#   unit 8: 10..28, but stem's last unit (10) sees 20..22 and pixel 23 is never read
#   ((24-3) is odd: stride 2 drops it) -> 10..22.
OUTPUT_BOUNDS = {0: (0, 12), 4: (2, 20), 8: (10, 22)}


@pytest.fixture(scope="module")
def custom_report() -> rfarith.Report:
    torch.manual_seed(0)
    return crosscheck.hybrid(Custom(), SHAPE)


def test_plain_rfarith_cannot_analyse_it():
    with pytest.raises(rfarith.TraceError) as info:
        rfarith.analyze(Custom(), SHAPE)
    assert "moody" in str(info.value)


def test_hybrid_table_is_the_hand_derived_one(custom_report):
    table = custom_report.table
    assert list(table.index) == list(EXPECTED)
    for node, (n, j, r, start, source) in EXPECTED.items():
        for a in ("h", "w"):
            assert tuple(table.loc[node, [f"n_{a}", f"j_{a}", f"r_{a}", f"start_{a}"]]) == (n, j, r, start), (node, a)
        assert table.loc[node, "source"] == source, node
        assert table.loc[node, "flags"] == ""
    assert table.loc["blur", "op"] == "blur" and table.loc["moody", "op"] == "Moody"


@pytest.mark.parametrize("equivalent", [Equivalent, ReflectEquivalent])
def test_hybrid_gives_the_equivalent_models_table(custom_report, equivalent):
    """Row by row, aligned by position (ReflectEquivalent has an extra 'pad' row, dropped)."""
    theirs = rfarith.analyze(equivalent(), SHAPE).table
    theirs = theirs[theirs["op"] != "pad"]
    mine = custom_report.table
    assert len(mine) == len(theirs)
    pd.testing.assert_frame_equal(
        mine[FIELD_COLUMNS].reset_index(drop=True), theirs[FIELD_COLUMNS].reset_index(drop=True)
    )
    assert list(mine.index) == list(theirs.index)  # the equivalents' modules share the names


@pytest.mark.parametrize("equivalent", [Equivalent, ReflectEquivalent])
def test_hybrid_units_see_what_the_equivalent_units_see(custom_report, equivalent):
    """Corner and centre output units by hand; every unit of every map against the equivalent."""
    out = custom_report.output
    for (mh, bh) in OUTPUT_BOUNDS.items():
        for (mw, bw) in OUTPUT_BOUNDS.items():
            assert out.real_bounds((mh, mw)) == (bh, bw), (mh, mw)
    theirs = rfarith.analyze(equivalent(), SHAPE)
    for node in ("stem", "blur", "moody", "head"):
        mine, other = custom_report[node], theirs[node]
        for unit in ((m, k) for m in range(mine.n[0]) for k in range(mine.n[1])):
            assert mine.real_seen(unit) == other.real_seen(unit), (node, unit)


def test_hybrid_render_says_from_probe(custom_report):
    text = custom_report.render()
    header = next(line for line in text.splitlines() if line.startswith("Node"))
    assert "from" in header.split()
    for node in ("blur", "moody"):
        row = next(line for line in text.splitlines() if line.startswith(node + " "))
        assert " probe " in row
    assert "output 'head': r 19, j 2, start 3.5" in text


def test_hybrid_of_a_traceable_model_is_rfarith():
    """Nothing measured: the same table as rfarith.analyze, without a 'source' column."""
    model = Equivalent()
    mine, theirs = crosscheck.hybrid(model, SHAPE).table, rfarith.analyze(model, SHAPE).table
    assert "source" not in mine.columns
    pd.testing.assert_frame_equal(mine, theirs)


def test_hybrid_leaves_the_model_as_it_was():
    model = Custom().train()
    model.stem.weight.requires_grad_(False)
    model.moody.conv.register_forward_hook(lambda module, args, out: None)
    snapshot = ModelSnapshot.of(model)
    crosscheck.hybrid(model, SHAPE)
    snapshot.assert_same(model)


# ---- the root itself is untraceable ------------------------------------------------------------
class MoodyRoot(nn.Module):
    """Control flow in the root forward: conv 3x3, maybe a ReLU, conv 3x3 stride 2.

    On 1x1x24x24: a: n 22, j 1, r 3, start 1.5; b: n (22-3)//2+1 = 10, j 2, r 3 + 2 = 5,
    start 1.5 + 1 = 2.5.
    """

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 2, 3)
        self.b = nn.Conv2d(2, 2, 3, stride=2)

    def forward(self, x):
        x = self.a(x)
        if x.mean() > 0:
            x = F.relu(x)
        return self.b(x)


def test_untraceable_root_still_gets_a_table():
    report = crosscheck.hybrid(MoodyRoot(), SHAPE)
    out = report.output
    assert (out.n, out.j, out.r, out.start) == ((10, 10), (2, 2), (5, 5), (2.5, 2.5))
    assert "probe" in set(report.table["source"])


# ---- black boxes the probe cannot describe ------------------------------------------------------
class Scrambled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)

    def forward(self, x):
        return scramble(self.conv(x))  # 12x12 -> conv 10x10 -> scramble 10x10


class Mixed(Scrambled):
    def forward(self, x):
        y = self.conv(x)
        return mix(y, y * 2)


def test_a_black_box_without_a_periodic_map_raises_unsupported_op():
    with pytest.raises(rfarith.UnsupportedOp) as info:
        crosscheck.hybrid(Scrambled(), (1, 1, 12, 12))
    assert info.value.node == "scramble"
    message = str(info.value)
    assert "'scramble'" in message and "black box" in message and "axis 1" in message


def test_a_black_box_of_two_inputs_raises_unsupported_op():
    with pytest.raises(rfarith.UnsupportedOp) as info:
        crosscheck.hybrid(Mixed(), (1, 1, 12, 12))
    assert info.value.node == "mix"
    assert "'mix'" in str(info.value) and "one input-dependent tensor" in str(info.value)


class MixingBlock(nn.Module):
    """A block whose inside the probe cannot measure op by op: ``mix`` takes two tensors (as an
    attention over patches does, MobileViT's), but the block takes one: 3x3 conv, then mix."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        return mix(y, y * 2)


class WithMixingBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 2, 3)
        self.block = MixingBlock()
        self.head = nn.Conv2d(2, 2, 3, stride=2)

    def forward(self, x):
        return self.head(self.block(self.stem(x)))


def test_an_op_the_probe_cannot_measure_is_measured_with_its_block():
    """`mix` alone has two inputs; hybrid measures the block around it instead (one tensor in,
    one out: a 3x3 window), the stem and head analytically: r 3, 5, then 5 + 2 = 7, j 2."""
    report = crosscheck.hybrid(WithMixingBlock(), SHAPE)
    assert report.table.loc["block", "source"] == "probe"
    assert report["block"].r == (5, 5) and (report.output.r, report.output.j) == ((7, 7), (2, 2))
    frame = crosscheck.compare(WithMixingBlock(), SHAPE)
    assert frame["status"].eq("agree").all(), frame[["status", "reason_text"]]


# ---- compare on models hybrid had to measure ---------------------------------------------------
class StemMoody(nn.Module):
    """stem conv 3x3 s2 then moody: on 24x24 stem n 11, j 2, r 3, start 1.5; moody (3x3 p1)
    n 11, j 2, r 3 + 2*2 = 7, start 1.5."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, stride=2)
        self.moody = Moody()

    def forward(self, x):
        return self.moody(self.stem(x))


def test_compare_still_compares_rows_measured_as_black_boxes():
    """The black box is measured alone and composed analytically; the row is still compared
    with the whole model's probe (and agrees), with a note saying how its field was made."""
    frame = crosscheck.compare(StemMoody(), SHAPE)
    assert list(frame.index) == ["stem", "moody"]
    assert frame["agree"].all()
    assert frame.loc["moody", "reason"] == (crosscheck.Reason.MEASURED_OP,)
    assert frame.loc["moody", "reason_text"] == "no analytic rule for Moody: measured by the probe as a black box"
    assert tuple(frame.loc["moody", ["n_h", "j_h", "r_h", "start_h"]]) == (11, 2, 7, 1.5)
    assert tuple(frame.loc["moody", ["j_h_num", "r_h_num", "start_h_num"]]) == (2, 7, 1.5)
    assert frame.attrs["summary"] == {"nodes": 2, "agree": 2, "disagree": 0, "not_compared": 0}
    crosscheck.assert_agree(StemMoody(), SHAPE)


def test_compare_on_the_custom_model_gives_a_row_per_node():
    frame = crosscheck.compare(Custom(), SHAPE)
    assert list(frame.index) == ["stem", "blur", "moody", "head"]
    assert frame.attrs["summary"]["disagree"] == 0


def weighted(x, weight):
    """A function given its own weight tensor (as torchvision's Swin attention is): the black
    box keeps that tensor, which is no parameter of the box the probe converts to float64."""
    return F.conv2d(finite(x), weight, padding=1)


torch.fx.wrap("weighted")


class Weighted(nn.Module):
    """conv 3 (r 3, start 1.5), the measured function: a 3x3 conv with padding 1 (r 5, start
    1.5 + (1 - 1) = 1.5)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3)
        self.weight = nn.Parameter(torch.randn(4, 4, 3, 3))

    def forward(self, x):
        return weighted(self.stem(x), self.weight)


def test_a_black_box_with_a_weight_argument_is_measured_in_the_probes_dtype():
    """It failed with 'expected scalar type Double but found Float'."""
    report = crosscheck.hybrid(Weighted(), SHAPE)
    assert report.row("weighted").source == "probe"
    assert report.output.r == (5, 5) and report.output.start == (1.5, 1.5)


class TokenBlock(nn.Module):
    """Tokens (B, N, C) into a block the probe cannot measure op by op (``mix`` of two
    tensors) inside a module taking tokens; the module around it takes the map."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = TokenMix()
        self.conv = nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, x):
        b, c, h, w = x.shape
        tokens = self.inner(self.conv(x).flatten(2).transpose(1, 2))
        return tokens.transpose(1, 2).reshape(b, c, h, w)


class TokenMix(nn.Module):
    def forward(self, t):
        return mix(t, t * 2)


def test_a_black_box_of_tokens_is_measured_by_the_map_module_around_it():
    """The probe measures a black box along its last dims as spatial axes: a module taking
    (B, N, C) tokens is not measured (its 'axis' would be the channels); the module around it,
    taking the (B, C, H, W) map, is: r 3 there, 3 + 2 = 5 after the stem."""
    model = nn.Sequential(nn.Conv2d(1, 2, 3), TokenBlock())
    report = crosscheck.hybrid(model, SHAPE)
    assert report.table.loc["1", "source"] == "probe" and report.output.r == (5, 5)
    frame = crosscheck.compare(model, SHAPE)
    assert frame["status"].eq("agree").all(), frame[["status", "reason_text"]]


def test_a_rule_refusal_the_probe_cannot_measure_keeps_both_reasons():
    """A forward GRU over a sequence that folds channels into the steps: the rule refuses (an
    order rfarith does not follow) and the black box fails too (its output is a tuple). The
    error says both, and the rule's way out; before, only the black box's reason was left."""

    with pytest.raises(rfarith.UnsupportedOp) as info:
        crosscheck.hybrid(FoldedGRU(), (1, 3, 16, 16))
    message = str(info.value)
    assert info.value.node == "rnn"
    assert "unidirectional recurrence" in message and "measured as a black box" in message
    assert "rfnumeric.probe" in message
