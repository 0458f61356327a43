"""The ``rfcheck`` command, run as users run it: ``python -m crosscheck ...`` in a subprocess.

Exit status: 0 when what was printed is complete and true, 1 when analytic and numeric
disagree or a row could not be compared or computed, 2 on bad usage with one line on standard
error (``rfcheck: error: ...``) and no traceback unless ``--debug``, 3 on an internal error.

Expected numbers are derived by hand with the guide's recurrences (input ``j = 1``, ``r = 1``,
``start = 0.5``; conv/pool of kernel ``k``, stride ``s``, padding ``p``: ``j' = j*s``,
``r' = r + (k-1)*j``, ``start' = start + ((k-1)/2 - p)*j``). The small models live in
``tests/crosscheck/models/nets.py``; the zoo is used only for ``alexnet`` and ``keras_minimal``.

The golden file ``golden/report_alexnet.txt`` holds the exact text of ``rfcheck report
alexnet``. After an intended change of the table's layout, regenerate it with
``RFCHECK_UPDATE_GOLDEN=1 python -m pytest tests/crosscheck/test_cli.py -k golden`` and check the
numbers by hand against the guide's table before committing it.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
from functools import cache
from pathlib import Path

import pandas as pd
import pytest

from crosscheck import cli, zoo

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "golden" / "report_alexnet.txt"
NETS_FILE = "tests/crosscheck/models/nets.py"  # relative to ROOT, where the commands run
NETS_MODULE = "tests.crosscheck.models.nets"
SMALL = ("--input", "3x16x16")  # the test nets' input (their default would be 3x224x224)

# The guide's AlexNet, n / j / r / start per layer (227x227 input): conv 11/4/0, pool 3/2,
# conv 5/1/2, pool 3/2, conv 3/1/1 x3, pool 3/2, fc6 a 6x6 conv, fc7 a 1x1 conv.
#   conv1: n (227-11)/4+1 = 55, j 4, r 11, start 0.5 + 5 = 5.5
#   pool1: n (55-3)//2+1 = 27, j 8, r 11 + 2*4 = 19, start 5.5 + 1*4 = 9.5
#   conv2: n 27, j 8, r 19 + 4*8 = 51, start 9.5 + (2-2)*8 = 9.5
#   pool2: n 13, j 16, r 51 + 2*8 = 67, start 9.5 + 8 = 17.5
#   conv3..5: n 13, j 16, r 67 + 32 = 99, 131, 163, start 17.5
#   pool5: n 6, j 32, r 163 + 2*16 = 195, start 17.5 + 16 = 33.5
#   fc6: n 1, j 32, r 195 + 5*32 = 355, start 33.5 + 2.5*32 = 113.5; fc7 (1x1): the same.
GUIDE = {
    "conv1": (55, 4, 11, 5.5),
    "pool1": (27, 8, 19, 9.5),
    "conv2": (27, 8, 51, 9.5),
    "pool2": (13, 16, 67, 17.5),
    "conv3": (13, 16, 99, 17.5),
    "conv4": (13, 16, 131, 17.5),
    "conv5": (13, 16, 163, 17.5),
    "pool5": (6, 32, 195, 33.5),
    "fc6": (1, 32, 355, 113.5),
    "fc7": (1, 32, 355, 113.5),
}
ALEXNET_ROWS = 17  # input + 16 layers (conv/relu/pool ... fc6, relu6, fc7)

# keras_minimal on 3x64x64 (conv 7, conv 5, avgpool 2, conv 5 'feature_grid', avgpool 2):
#   conv2d_1 n 58 r 7 start 3.5; conv2d_2 n 54 r 11 start 5.5; pool n 27 j 2 r 12 start 6;
#   feature_grid n 23 j 2 r 12 + 4*2 = 20 start 6 + 2*2 = 10 (the seed's 20 / 2 / 10.0);
#   average_pooling2d_2 n 11 j 4 r 20 + 1*2 = 22 start 10 + 0.5*2 = 11.
KERAS_MINIMAL = {
    "conv2d_1": (58, 1, 7, 3.5),
    "conv2d_2": (54, 1, 11, 5.5),
    "average_pooling2d_1": (27, 2, 12, 6.0),
    "feature_grid": (23, 2, 20, 10.0),
    "average_pooling2d_2": (11, 4, 22, 11.0),
}


@cache
def rfcheck(*args: str) -> subprocess.CompletedProcess:
    """Run ``python -m crosscheck ARGS`` from the repository root (results cached per command)."""
    env = {**os.environ, "PYTHONUTF8": "1", "MPLBACKEND": "Agg"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "crosscheck", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, encoding="utf-8", timeout=300,
    )


def assert_usage_error(result: subprocess.CompletedProcess, *words: str) -> str:
    """Exit 2, nothing on stdout, one line on stderr naming the problem, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("rfcheck: error: "), lines[0]
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert result.stdout == ""
    return lines[0]


def guide_columns(table: pd.DataFrame) -> None:
    for name, (n, j, r, start) in GUIDE.items():
        for a in ("h", "w"):
            row = table.loc[name]
            assert (row[f"n_{a}"], row[f"j_{a}"], row[f"r_{a}"], row[f"start_{a}"]) == (n, j, r, start), name


# ---- report alexnet: every format ---------------------------------------------------------------
def test_report_table_is_the_golden_file():
    """``rfcheck report alexnet`` prints exactly golden/report_alexnet.txt.

    With RFCHECK_UPDATE_GOLDEN=1 in the environment the test rewrites the golden file from the
    command's output instead of comparing (then check its numbers against GUIDE by hand).
    """
    result = rfcheck("report", "alexnet")
    assert result.returncode == 0, result.stderr
    if os.environ.get("RFCHECK_UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(result.stdout, encoding="utf-8")
    assert result.stdout == GOLDEN.read_text(encoding="utf-8")


def test_golden_file_holds_the_guides_table():
    """The golden file itself, read back: each row's n / j / r / start are the guide's."""
    rows = {}
    for line in GOLDEN.read_text(encoding="utf-8").splitlines():
        cells = line.split()
        if cells and cells[0] in GUIDE:
            rows[cells[0]] = (int(cells[3]), int(cells[4]), int(cells[5]), float(cells[6]))
    assert rows == GUIDE
    text = GOLDEN.read_text(encoding="utf-8")
    assert "output 'fc7': r 355, j 32, start 113.5" in text
    assert f"{ALEXNET_ROWS} feature maps" in text


def test_report_csv_parses():
    result = rfcheck("report", "alexnet", "--format", "csv")
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(io.StringIO(result.stdout), index_col="node")
    assert len(table) == ALEXNET_ROWS
    assert table.index[0] == "input" and table.index[-1] == "fc7"
    guide_columns(table)
    assert tuple(table.loc["input", ["shape_0", "shape_1", "shape_2", "shape_3"]]) == (1, 3, 227, 227)
    numeric = [c for c in table.columns if c[:2] in ("n_", "j_", "r_", "st")]
    assert all(pd.api.types.is_numeric_dtype(table[c]) for c in numeric), table.dtypes


def test_report_json_parses():
    result = rfcheck("report", "alexnet", "--format", "json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    header, records = document["header"], document["rows"]
    assert header["input_shape"] == [1, 3, 227, 227] and header["complete"] is True
    assert set(header["versions"]) == {"rfcheck", "torch"}
    assert isinstance(records, list) and len(records) == ALEXNET_ROWS
    table = pd.DataFrame.from_records(records).set_index("node")
    guide_columns(table)
    assert table.loc["input", "shape"] == [1, 3, 227, 227] and table.loc["fc7", "flags"] == []


def test_report_markdown_has_the_header_row():
    result = rfcheck("report", "alexnet", "--format", "markdown")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header[:3] == ["node", "op", "shape"]
    assert {"n_h", "j_h", "r_h", "start_h", "n_w", "r_w", "flags"} <= set(header)
    assert set(lines[1]) <= set("|:- ")  # the separator row
    assert len(lines) == 2 + ALEXNET_ROWS
    conv1 = [c.strip() for c in next(line for line in lines if line.startswith("| conv1")).strip("|").split("|")]
    row = dict(zip(header, conv1))
    assert (row["n_h"], row["j_h"], row["r_h"], row["start_h"]) == ("55", "4", "11", "5.5")


def test_report_nodes_restricts_the_table(capsys):
    result = run_main(capsys, "report", "alexnet", "--nodes", "conv2,pool5", "--format", "csv")
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(io.StringIO(result.stdout), index_col="node")
    assert list(table.index) == ["conv2", "pool5"]
    assert tuple(table.loc["pool5", ["n_h", "j_h", "r_h", "start_h"]]) == GUIDE["pool5"]


# ---- compare ------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_compare_keras_minimal_agrees(fmt):
    result = rfcheck("compare", "keras_minimal", "--format", fmt)
    assert result.returncode == 0, result.stderr
    if fmt == "csv":
        table = pd.read_csv(io.StringIO(result.stdout), index_col="node")
    else:
        document = json.loads(result.stdout)
        assert document["header"]["summary"] == {"nodes": 5, "agree": 5, "disagree": 0, "not_compared": 0}
        assert document["header"]["mode"] == "local"
        table = pd.DataFrame.from_records(document["rows"]).set_index("node")
    assert list(table.index) == list(KERAS_MINIMAL)
    assert table["agree"].tolist() == [True] * len(KERAS_MINIMAL)
    for name, (n, j, r, start) in KERAS_MINIMAL.items():
        row = table.loc[name]
        assert (row["n_h"], row["j_h"], row["r_h"], row["start_h"]) == (n, j, r, start)
        assert (row["n_h_num"], row["j_h_num"], row["r_h_num"], row["start_h_num"]) == (n, j, r, start)
    # unit 0 of feature_grid sees pixels 0..19 (lo = 10 - 20/2 = 0) on both axes
    if fmt == "csv":
        row = table.loc["feature_grid"]
        assert [row[f"first{side}_{edge}_{a}"] for side in ("", "_num") for a in "hw" for edge in ("lo", "hi")] == [0, 19] * 4
        assert pd.api.types.is_integer_dtype(table["first_lo_h"]) and pd.api.types.is_integer_dtype(table["units_compared"])
    else:
        assert table.loc["feature_grid", "first"] == table.loc["feature_grid", "first_num"] == [[0, 19], [0, 19]]
        assert table.loc["feature_grid", "reason"] == [] and table.loc["feature_grid", "compared_at"][0] == document["header"]["input_shape"][2:]


def test_compare_disagreement_exits_1():
    """nets.disagree: a Conv2d whose attributes say dilation 1 but which convolves with
    dilation 2 (k 3, padding 2, 16x16 input, 16 output units). Analytic (attributes): r 3,
    start 0.5 + (1 - 2) = -0.5; real: r 1 + 2*2 = 5, start 0.5 + (2 - 2) = 0.5."""
    result = rfcheck("compare", f"{NETS_FILE}:disagree", *SMALL, "--format", "csv")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    table = pd.read_csv(io.StringIO(result.stdout), index_col="node", dtype={"node": str})
    row = table.loc["0"]
    assert not row["agree"]
    assert (row["r_h"], row["start_h"], row["r_h_num"], row["start_h_num"]) == (3, -0.5, 5, 0.5)
    assert row["reason"] == "pixels_differ" and row["status"] == "disagree"
    # unit (0, 0) sees pixels -2..0 by the attributes (0 of the input) and 0, 2 really
    assert "unit (0, 0) at input 16×16: analytic 0..0×0..0 vs numeric 0..2×0..2" in row["reason_text"]


# ---- loading models -----------------------------------------------------------------------------
def test_file_factory_loads_and_output_writes_the_file(tmp_path):
    """nets.good on 3x16x16: conv 3 -> n 14, r 3, start 1.5; conv 3 stride 2 -> n (14-3)//2+1
    = 6, j 2, r 3 + 2 = 5, start 1.5 + 1 = 2.5 (rows '0', '1' (ReLU), '2')."""
    out = tmp_path / "report.csv"
    result = rfcheck("report", f"{NETS_FILE}:good", *SMALL, "--format", "csv", "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    table = pd.read_csv(out, index_col="node", dtype={"node": str})
    assert list(table.index) == ["input", "0", "1", "2"]  # nn.Sequential.forward(input)
    assert tuple(table.loc["0", ["n_h", "j_h", "r_h", "start_h"]]) == (14, 1, 3, 1.5)
    assert tuple(table.loc["2", ["n_w", "j_w", "r_w", "start_w"]]) == (6, 2, 5, 2.5)


def test_module_factory_loads_and_output_writes_the_file(tmp_path):
    out = tmp_path / "compare.json"
    result = rfcheck("compare", f"{NETS_MODULE}:good", *SMALL, "--format", "json", "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    records = json.loads(out.read_text())["rows"]
    assert [r["node"] for r in records] == ["0", "1", "2"]
    assert all(r["agree"] for r in records)
    assert (records[-1]["r_h"], records[-1]["j_h"], records[-1]["start_h"]) == (5, 2, 2.5)


def test_plot_writes_a_png(tmp_path):
    out = tmp_path / "rf.png"
    result = rfcheck("plot", "keras_minimal", "--out", str(out), "--no-numeric")
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 1000


# ---- usage errors through a subprocess: exit 2, one line, no traceback -------------------------
def test_missing_model_file():
    assert_usage_error(rfcheck("report", "no/such/file.py:build"), "no/such/file.py", "does not exist")


def test_factory_that_raises():
    assert_usage_error(rfcheck("report", f"{NETS_FILE}:raises"), "raises", "RuntimeError", "weights file is missing")


def test_bad_input_string():
    assert_usage_error(rfcheck("report", "alexnet", "--input", "3xab"), "--input", "3xab", "3x227x227")


def test_unknown_zoo_name_lists_the_zoo():
    line = assert_usage_error(rfcheck("report", "alexnett"), "alexnett", "Did you mean alexnet")
    for name in zoo.names():
        assert name in line


def test_input_too_small():
    """alexnet at 20x20: conv1 n (20-11)//4+1 = 3, pool1 n 1, conv2 n 1, pool2 (3x3 on 1x1) has
    no units: a ShapeError naming pool2, on one line."""
    assert_usage_error(rfcheck("report", "alexnet", "--input", "3x20x20"), "pool2", "too small")


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is not None, reason="torchvision is importable here")
def test_torchvision_without_torchvision_says_how_to_install():
    line = assert_usage_error(rfcheck("report", "torchvision:resnet18"), "torchvision")
    assert "pip install" in line


def test_debug_shows_the_traceback():
    result = rfcheck("--debug", "report", "alexnett")
    assert result.returncode != 0
    assert "Traceback" in result.stderr
    assert "UnknownModel" in result.stderr


# ---- in process: the same entry point (crosscheck.cli.main), for the many other usage errors -----
def run_main(capsys, *args: str) -> subprocess.CompletedProcess:
    """``crosscheck.cli.main(args)`` as a CompletedProcess; argparse's SystemExit becomes the code.

    An exception escaping main() fails the test: that is the traceback a user would see."""
    try:
        code = cli.main(list(args))
    except SystemExit as e:
        code = e.code
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, captured.out, captured.err)


NETS_PATH = str(ROOT / NETS_FILE)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ((f"{NETS_PATH}:not_a_module",), ("not_a_module", "list", "nn.Module")),
        ((f"{NETS_PATH}:nothing_here",), ("nothing_here",)),
        (("no_such_package.models:build",), ("no_such_package",)),
        (("alexnet", "--input", "0x10x10"), ("--input", "0x10x10", "positive")),  # zero channels
        (("alexnet", "--input", "3x-5x5"), ("--input", "3x-5x5")),
        (("alexnet", "--input", ""), ("--input",)),
        (("alexnet", "--input", "3x22"), ("2 spatial",)),  # one spatial size for a 2-D model
        (("alexnet", "--input", "1x227x227"), ("conv1", "3 input channels")),  # conv1 wants 3
        (("alexnet", "--nodes", "conv9"), ("conv9", "conv1", "conv5")),  # close names listed
        (("alexnet", "--format", "xml"), ("xml",)),
        (("alexnet", "--frobnicate"), ("--frobnicate",)),
    ],
    ids=[
        "non-module", "no-such-factory", "no-such-module", "input-zero", "input-negative",
        "input-empty", "input-1d-for-2d", "input-channels", "unknown-node", "bad-format", "unknown-option",
    ],
)
def test_report_usage_errors(capsys, args, words):
    assert_usage_error(run_main(capsys, "report", *args), *words)


def test_compare_unknown_node_lists_close_names(capsys):
    line = assert_usage_error(run_main(capsys, "compare", "keras_minimal", "--nodes", "conv2d_3"), "conv2d_3")
    assert "conv2d_1" in line and "conv2d_2" in line


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("frobnicate", "alexnet"), ("frobnicate", "report", "compare", "plot")),
        (("report",), ("model",)),
        ((), ("command",)),
        (("plot", "keras_minimal"), ("--out",)),
    ],
    ids=["unknown-subcommand", "no-model", "no-subcommand", "plot-without-out"],
)
def test_argument_errors(capsys, args, words):
    assert_usage_error(run_main(capsys, *args), *words)


def test_missing_output_folder(capsys, tmp_path):
    target = tmp_path / "missing" / "out.csv"
    assert_usage_error(run_main(capsys, "report", f"{NETS_PATH}:good", *SMALL, "--output", str(target)), "does not exist")


def test_debug_raises_in_process(capsys):
    with pytest.raises(zoo.UnknownModel):
        cli.main(["--debug", "report", "alexnett"])


def test_main_returns_0_and_writes_stdout(capsys):
    result = run_main(capsys, "report", f"{NETS_PATH}:good", *SMALL, "--format", "csv")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("node,op,shape")


def test_compare_table_format_ends_with_the_summary(capsys):
    result = run_main(capsys, "compare", "keras_minimal", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Analytic vs numeric receptive fields: keras_minimal")
    assert result.stdout.rstrip().endswith("5 nodes: 5 agree, 0 disagree, 0 not compared")
    for name in KERAS_MINIMAL:
        assert any(line.startswith(name + " ") for line in result.stdout.splitlines()), name


def test_compare_disagreement_table_says_no(capsys):
    """nets.disagree as a table: the row reads '3 | 5' (analytic | numeric r), 'NO', and the
    first unit whose pixels differ; the footer says the output is not all true."""
    result = run_main(capsys, "compare", f"{NETS_PATH}:disagree", *SMALL)
    assert result.returncode == 1, result.stderr
    assert "1 nodes: 0 agree, 1 disagree, 0 not compared; INCOMPLETE OR DISAGREEING" in result.stdout
    row = next(line for line in result.stdout.splitlines() if line.startswith("0 "))
    assert "3 | 5" in row and "-0.5 | 0.5" in row and "NO" in row and "unit (0, 0)" in row


def test_main_exit_1_on_a_reported_disagreement(monkeypatch, capsys):
    """The exit status follows the comparison's summary: a patched compare that returns a frame
    whose summary counts one disagreement, or one row not compared, makes ``rfcheck compare``
    exit 1."""
    import crosscheck.commands as commands

    for code, counts in (("pixels_differ", (0, 1, 0)), ("probe_failed", (0, 0, 1))):

        def fake_compare(model, shape, nodes, mode, max_size, progress, code=code, counts=counts):
            frame = pd.DataFrame({"op": ["Conv2d"], "agree": [False], "reason": [(code,)], "reason_text": ["words"]}, index=["0"])
            frame.attrs["summary"] = dict(zip(("nodes", "agree", "disagree", "not_compared"), (1, *counts)))
            frame.attrs["input_shape"] = (1, 3, 16, 16)
            return frame

        monkeypatch.setattr(commands, "compare", fake_compare)
        result = run_main(capsys, "compare", f"{NETS_PATH}:good", *SMALL, "--format", "csv", "--no-progress")
        assert result.returncode == 1, code
        assert code in result.stdout


def test_progress_bar_draws_only_on_a_terminal():
    from crosscheck.commands import ProgressBar

    class Tty(io.StringIO):
        def isatty(self):
            return True

    pipe, tty = io.StringIO(), Tty()
    for stream in (pipe, tty):
        bar = ProgressBar(stream, delay=0.0, width=10)
        bar(0, 4, "conv1")
        bar(2, 4, "conv2")
        bar(4, 4, "")
    assert pipe.getvalue() == ""
    text = tty.getvalue()
    assert "probing [#####-----] 2/4 conv2" in text  # 10 * 2 // 4 = 5 filled
    assert text.endswith("\n") and "[##########] 4/4" in text


def test_an_internal_error_exits_3_and_asks_for_a_report(monkeypatch, capsys):
    """A bug (not the user's input) is told apart from a usage error: exit 3, one line."""
    import crosscheck.commands as commands

    def broken(*args, **kwargs):
        raise RuntimeError("an invariant broke")

    monkeypatch.setattr(commands, "compare", broken)
    result = run_main(capsys, "compare", f"{NETS_PATH}:good", *SMALL, "--no-progress")
    assert result.returncode == 3
    assert result.stderr.startswith("rfcheck: internal error: RuntimeError: an invariant broke")
    assert "--debug" in result.stderr and "Traceback" not in result.stderr
