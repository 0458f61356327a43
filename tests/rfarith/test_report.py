"""The report (rfarith/report.py): table layout, lookups, outputs, bounds, text rendering."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch
from torch import nn

import rfarith

from .expect import check_bounds_formula
from .test_branches import Aligned, DenseNetLike, Inception, Misaligned, OneBlock, SENet
from .test_guide import guide_alexnet, keras_detailed, keras_minimal


class TwoBranches(nn.Module):
    """Branch `a` is registered first but computed second: rows follow the graph."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(3, 4, 5, padding=2)

    def forward(self, x):
        b = self.b(x)
        a = self.a(x)
        return torch.relu(a + b)


def test_columns_in_order_for_2d():
    rep = rfarith.analyze(TwoBranches(), (1, 3, 8, 8))
    assert list(rep.table.columns) == [
        "op", "shape",
        "n_h", "j_h", "r_h", "start_h",
        "n_w", "j_w", "r_w", "start_w",
        "flags",
    ]  # fmt: skip
    assert rep.table.index.name == "node"


def test_columns_for_1d_and_3d():
    one = rfarith.analyze(nn.Sequential(nn.Conv1d(2, 2, 3)), (1, 2, 10)).table
    assert list(one.columns) == ["op", "shape", "n_l", "j_l", "r_l", "start_l", "flags"]
    three = rfarith.analyze(nn.Sequential(nn.Conv3d(1, 1, 3)), (1, 1, 5, 6, 7)).table
    per_axis = [f"{q}_{a}" for a in "dhw" for q in ("n", "j", "r", "start")]
    assert list(three.columns) == ["op", "shape", *per_axis, "flags"]


def test_periodic_fields_add_a_period_column():
    """After an upsampling the table says how many phases each axis has (2 here)."""
    rep = rfarith.analyze(nn.Sequential(nn.Conv2d(3, 3, 3), nn.Upsample(scale_factor=2)), (1, 3, 8, 8))
    table = rep.table
    assert list(table.columns[:10]) == [
        "op", "shape", "n_h", "j_h", "r_h", "start_h", "n_w", "j_w", "r_w", "start_w",
    ]  # fmt: skip
    assert "flags" in table.columns
    assert (table.loc["1", "phases_h"], table.loc["1", "phases_w"]) == (2, 2)
    assert (table.loc["0", "phases_h"], table.loc["input", "phases_w"]) == (1, 1)
    assert table.loc["1", "j_h"] == Fraction(1, 2)


def test_input_row_first_then_graph_order():
    """8x8: b (5x5 p2: r 5, start 0.5), a (3x3 p1: r 3), add (hull r 5), relu."""
    rep = rfarith.analyze(TwoBranches(), (1, 3, 8, 8))
    table = rep.table
    assert list(table.index) == ["x", "b", "a", "add", "relu"]
    first = table.iloc[0]
    assert first["op"] == "input" and first["shape"] == (1, 3, 8, 8)
    assert (first["n_h"], first["j_h"], first["r_h"], first["start_h"]) == (8, 1, 1, 0.5)
    assert first["flags"] == ""
    assert table.loc["b", "op"] == "Conv2d" and table.loc["b", "shape"] == (1, 4, 8, 8)
    assert table.loc["add", "r_w"] == 5 and table.loc["relu", "r_h"] == 5


def test_table_agrees_with_the_fields():
    rep = rfarith.analyze(SENet(), (1, 3, 8, 8))
    for name, row in rep.table.iterrows():
        rf = rep[name]
        assert rf.node == name
        for i, a in enumerate(rep.axes):
            assert (row[f"n_{a}"], row[f"j_{a}"], row[f"r_{a}"], row[f"start_{a}"]) == (rf.n[i], rf.j[i], rf.r[i], rf.start[i])
        assert row["flags"] == rf.describe_flags()
    assert rep.table.loc["se.mul", "flags"] == "global (via se.pool)"


def test_lookup_output_and_outputs():
    rep = rfarith.analyze(TwoBranches(), (1, 3, 8, 8))
    assert isinstance(rep["a"], rfarith.ReceptiveField)
    assert rep.output == rep["relu"]
    assert rep.outputs == {"output": rep["relu"]}
    assert len(rep) == 5 and [rf.node for rf in rep] == rep.names


class TwoHeads(nn.Module):
    def __init__(self, as_dict):
        super().__init__()
        self.as_dict = as_dict
        self.stem = nn.Conv2d(3, 4, 3)
        self.head = nn.Conv2d(4, 4, 3, stride=2)

    def forward(self, x):
        y = self.stem(x)
        z = self.head(y)
        return {"fine": y, "coarse": z} if self.as_dict else (y, z)


@pytest.mark.parametrize("as_dict, keys", [(True, ["fine", "coarse"]), (False, ["0", "1"])])
def test_several_outputs(as_dict, keys):
    """9x9: stem 3x3: r 3, j 1; head 3x3 s2: r 5, j 2. rep.output refuses to pick one."""
    rep = rfarith.analyze(TwoHeads(as_dict), (1, 3, 9, 9))
    assert list(rep.outputs) == keys
    assert rep.outputs[keys[0]].r == (3, 3) and rep.outputs[keys[1]].r == (5, 5)
    with pytest.raises(ValueError, match="outputs"):
        _ = rep.output


MODELS = {
    "alexnet": (guide_alexnet, (1, 3, 227, 227)),
    "keras_minimal": (keras_minimal, (1, 3, 64, 64)),
    "keras_detailed": (keras_detailed, (1, 3, 96, 96)),
    "aligned": (Aligned, (1, 3, 16, 16)),
    "misaligned": (Misaligned, (1, 3, 16, 16)),
    "inception": (Inception, (1, 3, 17, 17)),
    "densenet": (DenseNetLike, (1, 3, 8, 8)),
    "bottleneck": (OneBlock, (1, 4, 16, 16)),
    "se": (SENet, (1, 3, 8, 8)),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_bounds_agree_with_the_formula_on_every_row(name):
    """lo(m) = start + m*j - r/2 and hi(m) = start + m*j + r/2 - 1, for every feature map."""
    build, shape = MODELS[name]
    rep = rfarith.analyze(build(), shape)
    for rf in rep:
        check_bounds_formula(rf)
        assert all(not math.isnan(s) for s in rf.start)


# ---- text ---------------------------------------------------------------------------------------
def cells(line: str) -> list[str]:
    """A rendered row split at runs of two or more spaces (cells may hold single spaces)."""
    return [c for c in line.strip().split("  ") if c.strip()] if line.strip() else []


def rows_of(text: str) -> dict[str, list[str]]:
    out = {}
    for line in text.splitlines():
        parts = [c.strip() for c in cells(line)]
        if parts:
            out[parts[0]] = parts
    return out


def test_text_rendering_of_the_guide_alexnet():
    rep = rfarith.analyze(guide_alexnet(), (1, 3, 227, 227))
    text = rep.render()
    assert text == str(rep)
    first = text.splitlines()[0]
    assert "Sequential" in first and "227" in first
    rows = rows_of(text)
    assert rows["Node"] == ["Node", "Op", "Output shape", "n", "j", "r", "start", "Flags"]
    assert rows["input"] == ["input", "input", "1×3×227×227", "227", "1", "1", "0.5", "--"]
    assert rows["conv1"] == ["conv1", "Conv2d", "1×4×55×55", "55", "4", "11", "5.5", "--"]
    assert rows["pool5"] == ["pool5", "MaxPool2d", "1×4×6×6", "6", "32", "195", "33.5", "--"]
    assert rows["fc7"] == ["fc7", "Conv2d", "1×8×1×1", "1", "32", "355", "113.5", "--"]
    names = [line.split()[0] for line in text.splitlines() if line.split() and line.split()[0] in rep.names]
    assert names == rep.names  # every row, in graph order


def test_text_rendering_per_axis_values_fractions_and_flags():
    """Inception: r differs per axis (7 x 15). Upsampled: j 1/2. SE: the global flag names its node."""
    inception = rows_of(rfarith.analyze(Inception(), (1, 3, 17, 17)).render())
    assert inception["cat"][3:7] == ["8", "2", "7×15", "1.5"]
    up = rfarith.analyze(nn.Sequential(nn.Conv2d(3, 3, 3), nn.Upsample(scale_factor=2)), (1, 3, 8, 8))
    assert rows_of(up.render())["1"][4] == "1/2"
    se = rows_of(rfarith.analyze(SENet(), (1, 3, 8, 8)).render())
    assert se["se.mul"][-1] == "global (via se.pool)"
