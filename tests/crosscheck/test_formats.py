"""crosscheck.formats: typed JSON, numeric CSV and hand-written markdown for result tables."""

from __future__ import annotations

import doctest
import io
import json
import math
import sys
from enum import Enum
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from torch import nn

import rfarith
from crosscheck import formats
from crosscheck.formats import from_json, to_csv, to_json, to_markdown


class Code(str, Enum):
    PIXELS = "pixels_differ"
    UNDERFLOW = "probe_underflow"


class Plain(Enum):
    ONE = 1


def hand_frame() -> pd.DataFrame:
    """Two rows with every kind of cell the real tables hold."""
    frame = pd.DataFrame(
        {
            "op": ["Conv2d", "Up|sample"],
            "count": [np.int64(3), 7],
            "start_h": [1.5, float("nan")],
            "j_h": [Fraction(1, 2), Fraction(4, 1)],
            "r_h": [3, 5],
            "r_w": [3, 5],
            "size": [(7, 7), (Fraction(3, 2), None)],
            "shape": [(1, 3, 9, 9), (1, 4, 12, 12)],
            "centre": [((0, 6), None), None],
            "flags": [frozenset({"holes", "global"}), ("nonuniform",)],
            "reason": [[Code.UNDERFLOW, Code.PIXELS], []],
            "agree": [True, False],
        },
        index=pd.Index(["features.0", "up"], name="node"),
    )
    return frame


@pytest.fixture(scope="module")
def real_table() -> pd.DataFrame:
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.Upsample(scale_factor=3))
    return rfarith.analyze(model, (1, 3, 9, 9)).table


def read_csv(text: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(text), index_col=0)


# ---------------------------------------------------------------------------------------------
# plain values
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        (None, None),
        (float("nan"), None),
        (pd.NA, None),
        (np.float32(0.5), 0.5),
        (np.int64(3), 3),
        (np.bool_(True), True),
        (Fraction(4, 1), 4),
        (Fraction(1, 2), Fraction(1, 2)),
        ([1, [2, 3]], (1, (2, 3))),
        ({"a", "b"}, frozenset({"a", "b"})),
        (np.array([[1, 2], [3, 4]]), ((1, 2), (3, 4))),
        (Code.PIXELS, "pixels_differ"),
        (Plain.ONE, 1),
    ],
)
def test_plain(value, expected):
    got = formats.plain(value)
    assert got == expected
    assert type(got) is type(expected)


def test_docstring_examples():
    result = doctest.testmod(formats, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


# ---------------------------------------------------------------------------------------------
# JSON
# ---------------------------------------------------------------------------------------------


def test_json_values_by_type():
    doc = json.loads(to_json(hand_frame(), {}))
    first, second = doc["rows"]
    assert first["node"] == "features.0" and second["node"] == "up"
    assert first["count"] == 3 and isinstance(first["count"], int)
    assert first["start_h"] == 1.5 and second["start_h"] is None
    assert first["j_h"] == {"value": 0.5, "exact": "1/2", "fraction": [1, 2]}
    assert second["j_h"] == 4 and isinstance(second["j_h"], int)
    assert first["size"] == [7, 7]
    assert second["size"] == [{"value": 1.5, "exact": "3/2", "fraction": [3, 2]}, None]
    assert first["shape"] == [1, 3, 9, 9]
    assert first["centre"] == [[0, 6], None] and second["centre"] is None
    assert first["flags"] == ["global", "holes"] and second["flags"] == ["nonuniform"]
    assert first["reason"] == ["probe_underflow", "pixels_differ"] and second["reason"] == []
    assert first["agree"] is True and second["agree"] is False
    assert first["op"] == "Conv2d"


def test_json_header_is_converted():
    header = {
        "input_shape": (1, 3, 9, 9),
        "mode": "local",
        "summary": {"nodes": np.int64(2), "disagree": 0},
        "jump": Fraction(2, 3),
        "versions": {"torch": "2.13"},
        "axes": ("h", "w"),
    }
    text = to_json(hand_frame(), header)
    doc = json.loads(text)
    assert doc["header"]["input_shape"] == [1, 3, 9, 9]
    assert doc["header"]["summary"] == {"nodes": 2, "disagree": 0}
    assert doc["header"]["jump"]["exact"] == "2/3"
    back, _ = from_json(text)
    assert back["input_shape"] == (1, 3, 9, 9)
    assert back["jump"] == Fraction(2, 3)
    assert back["summary"] == {"nodes": 2, "disagree": 0}


def test_json_is_strict_json():
    frame = pd.DataFrame({"x": [float("inf"), float("nan"), 1.0]}, index=list("abc"))
    text = to_json(frame, {})
    doc = json.loads(text, parse_constant=lambda name: pytest.fail(f"non-standard {name}"))
    assert [row["x"] for row in doc["rows"]] == [None, None, 1.0]


class Opaque:
    def __str__(self) -> str:
        return "opaque"


def test_json_other_values_become_strings():
    frame = pd.DataFrame({"x": [Opaque()], "y": [complex(1, 2)]}, index=["a"])
    row = json.loads(to_json(frame, {}))["rows"][0]
    assert row["x"] == "opaque" and row["y"] == "(1+2j)"


def test_json_rejects_a_node_column():
    frame = pd.DataFrame({"node": [1]}, index=["a"])
    with pytest.raises(ValueError, match="node"):
        to_json(frame, {})


def test_json_round_trip_hand_frame():
    frame = hand_frame()
    header, back = from_json(to_json(frame, {"mode": "local"}))
    assert header == {"mode": "local"}
    assert back.index.name == "node"
    assert list(back.index) == list(frame.index)
    assert list(back.columns) == list(frame.columns)
    for column in ("count", "j_h", "r_h", "size", "shape", "centre", "agree", "op"):
        assert list(back[column]) == [formats.plain(v) for v in frame[column]], column
    assert back.loc["features.0", "start_h"] == 1.5 and math.isnan(back.loc["up", "start_h"])
    assert back.loc["features.0", "j_h"] == Fraction(1, 2)
    assert type(back.loc["up", "j_h"]) is int
    # sets come back as sorted tuples, enums as their values
    assert list(back["flags"]) == [("global", "holes"), ("nonuniform",)]
    assert list(back["reason"]) == [("probe_underflow", "pixels_differ"), ()]


def test_json_round_trip_real_table(real_table):
    header, back = from_json(to_json(real_table, {"input_shape": (1, 3, 9, 9)}))
    assert header == {"input_shape": (1, 3, 9, 9)}
    assert back.loc["1", "j_h"] == Fraction(2, 3)
    pd.testing.assert_frame_equal(back, real_table, check_dtype=False)
    for column in real_table.columns:
        assert list(back[column]) == list(real_table[column]), column


def test_json_empty_frame():
    frame = pd.DataFrame({"a": []}, index=pd.Index([], name="node"))
    doc = json.loads(to_json(frame, {"x": 1}))
    assert doc == {"header": {"x": 1}, "rows": []}
    header, back = from_json(to_json(frame, {}))
    assert header == {} and back.empty and back.index.name == "node"


# ---------------------------------------------------------------------------------------------
# CSV
# ---------------------------------------------------------------------------------------------


def test_csv_columns_hand_frame():
    loaded = read_csv(to_csv(hand_frame()))
    assert list(loaded.columns) == [
        "op", "count", "start_h", "j_h", "j_h_exact", "r_h", "r_w",
        "size_h", "size_h_exact", "size_w",
        "shape_0", "shape_1", "shape_2", "shape_3",
        "centre_lo_h", "centre_hi_h", "centre_lo_w", "centre_hi_w",
        "flags", "reason", "agree",
    ]  # fmt: skip


def test_csv_values_hand_frame():
    loaded = read_csv(to_csv(hand_frame()))
    first, second = loaded.loc["features.0"], loaded.loc["up"]
    assert loaded.index.name == "node"
    assert loaded["count"].dtype == np.int64 and list(loaded["count"]) == [3, 7]
    assert loaded["start_h"].dtype == np.float64 and math.isnan(second["start_h"])
    assert loaded["j_h"].dtype == np.float64 and list(loaded["j_h"]) == [0.5, 4.0]
    assert list(loaded["j_h_exact"]) == ["1/2", "4"]
    assert loaded["size_h"].dtype == np.float64 and list(loaded["size_h"]) == [7.0, 1.5]
    assert list(loaded["size_h_exact"]) == ["7", "3/2"]
    assert first["size_w"] == 7 and math.isnan(second["size_w"])
    assert "size_w_exact" not in loaded  # only integers there
    for i, expected in enumerate([(1, 1), (3, 4), (9, 12), (9, 12)]):
        assert loaded[f"shape_{i}"].dtype == np.int64
        assert tuple(loaded[f"shape_{i}"]) == expected
    assert (first["centre_lo_h"], first["centre_hi_h"]) == (0, 6)
    for column in ("centre_lo_h", "centre_hi_h", "centre_lo_w", "centre_hi_w"):
        assert loaded[column].dtype == np.float64
    assert math.isnan(first["centre_lo_w"]) and math.isnan(second["centre_lo_h"])
    assert first["flags"] == "global;holes" and second["flags"] == "nonuniform"
    assert first["reason"] == "probe_underflow;pixels_differ" and pd.isna(second["reason"])
    assert list(loaded["agree"]) == [True, False]
    assert first["op"] == "Conv2d" and second["op"] == "Up|sample"


def test_csv_has_no_tuple_strings():
    text = to_csv(hand_frame())
    assert "(" not in text and "frozenset" not in text and "Code." not in text


def test_csv_real_table(real_table):
    loaded = read_csv(to_csv(real_table))
    expected = ["op", "shape_0", "shape_1", "shape_2", "shape_3"]
    for axis in ("h", "w"):
        expected += [f"n_{axis}", f"j_{axis}", f"j_{axis}_exact", f"r_{axis}", f"start_{axis}"]
    expected += ["phases_h", "phases_w", "flags"]
    assert list(loaded.columns) == expected
    text_columns = {"op", "flags", "j_h_exact", "j_w_exact"}
    for column in set(loaded.columns) - text_columns:
        assert loaded[column].dtype in (np.int64, np.float64), column
    assert loaded["n_h"].dtype == np.int64 and loaded["j_h"].dtype == np.float64
    assert loaded.loc["1", "j_h"] == pytest.approx(2 / 3)
    assert list(loaded["j_w_exact"]) == ["1", "2", "2/3"]
    assert list(loaded["shape_3"]) == [9, 4, 12]


def test_csv_compare_like_frame_uses_attrs_axes():
    frame = pd.DataFrame(
        {
            "first": [((0, 2), (0, 2)), ((4, 6), None)],
            "first_num": [((0, 2), (0, 2)), None],
            "n": [(4, 4), (12, 12)],
            "shape": [(1, 10), (1, 10)],
        },
        index=pd.Index(["0", "1"], name="node"),
    )
    frame.attrs["axes"] = ("y", "x")
    loaded = read_csv(to_csv(frame))
    assert list(loaded.columns) == [
        "first_lo_y", "first_hi_y", "first_lo_x", "first_hi_x",
        "first_num_lo_y", "first_num_hi_y", "first_num_lo_x", "first_num_hi_x",
        "n_y", "n_x",
        "shape_y", "shape_x",
    ]  # fmt: skip
    assert list(loaded["first_lo_y"]) == [0, 4] and loaded["first_lo_y"].dtype == np.int64
    assert loaded["first_num_hi_x"].dtype == np.float64


def test_csv_axes_fall_back_to_numbers():
    frame = pd.DataFrame({"b": [((0, 1), (2, 3), (4, 5))], "v": [(1, 2, 3)]}, index=["a"])
    loaded = read_csv(to_csv(frame))
    assert list(loaded.columns) == [
        "b_lo_a0", "b_hi_a0", "b_lo_a1", "b_hi_a1", "b_lo_a2", "b_hi_a2", "v_0", "v_1", "v_2",
    ]  # fmt: skip
    assert formats.axis_names(pd.DataFrame(columns=["r_h", "r_w", "r_h_num", "rr_x"])) == (
        "h",
        "w",
    )


def test_csv_rejects_clashing_names():
    frame = pd.DataFrame({"v": [(1, 2)], "v_0": [3]}, index=["a"])
    with pytest.raises(ValueError, match="v_0"):
        to_csv(frame)


def test_csv_numpy_cells():
    frame = pd.DataFrame(
        {"arr": [np.array([1, 2]), np.array([3, 4])], "x": np.array([1.0, np.nan])},
        index=["a", "b"],
    )
    loaded = read_csv(to_csv(frame))
    assert list(loaded.columns) == ["arr_0", "arr_1", "x"]
    assert loaded["arr_0"].dtype == np.int64 and loaded["x"].dtype == np.float64


# ---------------------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def no_tabulate(monkeypatch):
    monkeypatch.setitem(sys.modules, "tabulate", None)
    with pytest.raises(ImportError):
        import tabulate  # noqa: F401


def split_row(line: str) -> list[str]:
    """The cells of one pipe-table line, honouring escaped pipes."""
    assert line.startswith("| ") and line.endswith(" |")
    cells = line[2:-2].replace("\\|", "\0").split(" | ")
    return [c.replace("\0", "|") for c in cells]


def test_markdown_hand_frame(no_tabulate):
    frame = hand_frame()
    lines = to_markdown(frame).splitlines()
    assert len(lines) == len(frame) + 2
    assert split_row(lines[0]) == ["node", *frame.columns]
    rule = split_row(lines[1])
    assert rule[0] == "---" and set(rule) <= {"---", "---:"}
    assert rule[list(frame.columns).index("count") + 1] == "---:"
    assert rule[list(frame.columns).index("op") + 1] == "---"
    first = dict(zip(["node", *frame.columns], split_row(lines[2])))
    second = dict(zip(["node", *frame.columns], split_row(lines[3])))
    assert first["node"] == "features.0"
    assert first["count"] == "3" and first["start_h"] == "1.5" and second["start_h"] == "--"
    assert first["j_h"] == "1/2" and second["j_h"] == "4"
    assert first["size"] == "7×7" and second["size"] == "3/2×--"
    assert first["shape"] == "1×3×9×9"
    assert first["centre"] == "0..6, --" and second["centre"] == "--"
    assert first["flags"] == "global, holes" and second["flags"] == "nonuniform"
    assert first["reason"] == "probe_underflow, pixels_differ" and second["reason"] == ""
    assert first["agree"] == "True"
    assert second["op"] == "Up|sample" and "Up\\|sample" in lines[3]


def test_markdown_real_table(no_tabulate, real_table):
    text = to_markdown(real_table)
    lines = text.splitlines()
    assert text.endswith("\n") and len(lines) == len(real_table) + 2
    assert all(line.count(" | ") == len(real_table.columns) for line in lines)
    row = dict(zip(["node", *real_table.columns], split_row(lines[4])))
    assert row["node"] == "1" and row["j_h"] == "2/3" and row["start_h"] == "1.5"
    assert row["shape"] == "1×4×12×12" and row["r_h"] == "3"


@pytest.mark.parametrize(
    "value, text",
    [
        (3.0, "3"),
        (-2.0, "-2"),
        (0.25, "0.25"),
        (2 / 3, "0.666667"),
        (float("nan"), "--"),
        (None, "--"),
        (Fraction(1, 2), "1/2"),
        (Fraction(6, 3), "2"),
        ((7, 7), "7×7"),
        (((0, 6), (0, 6)), "0..6, 0..6"),
        (((-1, None), None), "-1..--, --"),
        (frozenset({"b", "a"}), "a, b"),
        (("b", "a"), "b, a"),
        ([Code.PIXELS], "pixels_differ"),
        ("", ""),
    ],
)
def test_markdown_cells(value, text):
    assert formats.markdown_cell(value) == text


def test_markdown_escapes_line_breaks():
    frame = pd.DataFrame({"x": ["a\nb|c"]}, index=pd.Index(["n|1"], name="node"))
    lines = to_markdown(frame).splitlines()
    assert lines[2] == "| n\\|1 | a b\\|c |"
