"""Finding one's way with ``rfcheck``: discovery (list, nodes, --version, help), the names users
know (module paths, their own files and packages), the questions they ask (bounds, sees, reach,
fits, erf), their usual mistakes, and the set-up the README promises.

Most commands run in process through ``crosscheck.cli.main`` (what the console script calls);
those whose point is the process itself (no torch imported, the console script's sys.path, a
torchvision on the path) run in a subprocess. Expected numbers are derived by hand with the
guide's recurrences (input j 1, r 1, start 0.5; kernel k, stride s, padding p: j' = j*s,
r' = r + (k-1)*j, start' = start + ((k-1)/2 - p)*j; unit m sees start + m*j - r/2 ..
start + m*j + r/2 - 1).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import rfarith
import rfnumeric
from crosscheck import cli, zoo
from crosscheck.loading import zoo_catalogue
from tests.crosscheck.test_cli import assert_usage_error, run_main

ROOT = Path(__file__).resolve().parents[2]
CONSOLE_SCRIPT = Path(sys.executable).with_name("rfcheck")

# Small models, as users write them, for the tests below (written to a temporary folder).
MODELS = '''
import torch.nn as nn


def two_strided():
    """conv k3 s2 p1 twice: j 2 then 4, r 3 then 3 + 2*2 = 7, start 0.5 then 0.5."""
    return nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.Conv2d(4, 4, 3, stride=2, padding=1))


class Cross(nn.Module):
    """A 1x5 and a 5x1 branch added: each unit sees a plus sign, not its 5x5 box."""

    def __init__(self):
        super().__init__()
        self.row = nn.Conv2d(1, 1, (1, 5), padding=(0, 2))
        self.col = nn.Conv2d(1, 1, (5, 1), padding=(2, 0))

    def forward(self, x):
        return self.row(x) + self.col(x)


class Nested(nn.Module):
    """stem: conv k3 (r 3, j 1, start 1.5); body: conv k3 s2 (r 5, j 2, start 2.5), ReLU."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(4, 4, 3, stride=2), nn.ReLU())

    def forward(self, x):
        return self.body(self.stem(x))


def with_batchnorm():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())


def needs_width(width):
    return nn.Conv2d(3, width, 3)
'''


@pytest.fixture
def models(tmp_path) -> str:
    """Path of a file holding MODELS."""
    path = tmp_path / "user_models.py"
    path.write_text(MODELS)
    return str(path)


def subprocess_env(*paths: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONUTF8": "1", "MPLBACKEND": "Agg"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [*map(str, paths), str(ROOT), env.get("PYTHONPATH")]))
    return env


def python_m(*args: str, cwd: Path = ROOT, env: dict | None = None, python_flags: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """``python -m crosscheck ARGS`` in a subprocess."""
    return subprocess.run(
        [sys.executable, *python_flags, "-m", "crosscheck", *args],
        cwd=cwd, env=env or subprocess_env(), capture_output=True, text=True, encoding="utf-8", timeout=300,
    )


def console_script(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The installed ``rfcheck`` script: its sys.path starts with its own folder, not ``cwd``."""
    if not CONSOLE_SCRIPT.exists():
        pytest.skip("the rfcheck console script is not installed next to this Python")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [str(CONSOLE_SCRIPT), *args], cwd=cwd, env={**env, "PYTHONUTF8": "1"},
        capture_output=True, text=True, encoding="utf-8", timeout=300,
    )


def answer(capsys, *args: str) -> dict:
    """The ``--format json`` document of a command that must exit 0."""
    result = run_main(capsys, *args, "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# ---- discovery -----------------------------------------------------------------------------------
@pytest.mark.parametrize("args", [("--help",), ("list",), ("--version",)], ids=["help", "list", "version"])
def test_help_list_and_version_do_not_import_torch(args):
    """The real entry point, with python -X importtime: torch is never imported (the times
    themselves are measured by benchmarks/cli_startup.py, not here)."""
    result = python_m(*args, python_flags=("-X", "importtime"))
    assert result.returncode == 0, result.stderr
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert "crosscheck.cli" in imported
    assert not imported & {"torch", "pandas", "rfarith", "numpy"}, sorted(imported & {"torch", "pandas", "rfarith", "numpy"})


def test_version_names_the_installed_release():
    import crosscheck

    result = python_m("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"rfcheck {crosscheck.__version__}"
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", crosscheck.__version__)


def test_list_shows_every_zoo_model_with_its_input_and_description(capsys):
    result = run_main(capsys, "list")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"{len(zoo.names())} zoo models")
    for name, line in zip(zoo.names(), lines[1:]):
        entry = zoo.entry(name)
        assert line.split()[:2] == [name, "x".join(map(str, entry.input_shape[1:]))], line
        assert line.endswith(entry.description)
    assert "file.py:factory" in lines[-1]
    rows = answer(capsys, "list")["rows"]
    assert [r["name"] for r in rows] == zoo.names()
    assert rows[0] == {"name": "alexnet", "input": "3x227x227", "input_shape": [1, 3, 227, 227], "description": zoo.entry("alexnet").description}


def test_the_catalogue_read_without_torch_is_the_zoo():
    """``rfcheck list`` reads the zoo's source; it must say what the registry holds."""
    assert [(m.name, m.input_shape, m.description) for m in zoo_catalogue()] == [
        (e.name, e.input_shape, e.description) for e in map(zoo.entry, zoo.names())
    ]


def all_subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_option_of_every_command_has_help():
    parser = cli.build_parser()
    commands = all_subparsers(parser)
    assert {"list", "nodes", "report", "compare", "plot", "bounds", "sees", "reach", "fits", "erf"} <= set(commands)
    for name, sub in [("rfcheck", parser), *commands.items()]:
        for action in sub._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help and action.help != argparse.SUPPRESS, (name, action.dest)
    formats = [a for sub in commands.values() for a in sub._actions if a.dest in ("format", "kind", "mode")]
    assert len(formats) >= 12 and all(len(a.help) > 20 for a in formats)


def test_help_names_the_exit_statuses_and_the_first_commands(capsys):
    result = run_main(capsys, "--help")
    assert result.returncode == 0
    text = result.stdout
    for code in "0123":
        assert re.search(rf"^\s+{code}\s+\w", text, re.M), code
    assert "internal error" in text and "bad usage" in text
    for command in ("rfcheck list", "rfcheck nodes", "rfcheck bounds"):
        assert command in text


def test_nodes_lists_names_ops_shapes_and_module_paths(capsys):
    """resnet18 at 64x64: the rows of the analysis in graph order; a BasicBlock's output is its
    second ReLU call, so layer4 (and layer4.1) name layer4.1.relu_1."""
    expected = rfarith.analyze(zoo.build("resnet18"), (1, 3, 64, 64))
    result = run_main(capsys, "nodes", "resnet18", "--input", "3x64x64")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Feature maps of resnet18 (input 1×3×64×64)")
    rows = lines[2:-1]
    assert [line.split()[0] for line in rows] == expected.names
    assert rows[-1].split() == ["fc", "Linear", "1×1000"]
    assert next(line for line in rows if line.startswith("layer4.1.relu_1 ")).split() == ["layer4.1.relu_1", "ReLU", "1×512×2×2", "layer4,", "layer4.1"]
    assert lines[-1].startswith(f"{len(expected.names)} feature maps")
    document = answer(capsys, "nodes", "resnet18", "--input", "3x64x64")
    by_node = {r["node"]: r for r in document["rows"]}
    assert by_node["layer1.0.relu_1"] == {"node": "layer1.0.relu_1", "op": "ReLU", "shape": [1, 64, 16, 16], "module_paths": ["layer1.0"]}
    assert by_node["conv1"]["module_paths"] == []


# ---- names users know ----------------------------------------------------------------------------
def test_a_module_path_names_its_modules_output_node(capsys):
    """--nodes layer4 is resnet18's layer4.1.relu_1: r 435, j 32 (the zoo entry's numbers)."""
    result = run_main(capsys, "report", "resnet18", "--input", "3x64x64", "--nodes", "layer4", "--format", "csv")
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(io.StringIO(result.stdout), index_col="node")
    assert list(table.index) == ["layer4.1.relu_1"]
    assert (table.loc["layer4.1.relu_1", "r_h"], table.loc["layer4.1.relu_1", "j_h"]) == (435, 32)


def test_compare_takes_a_module_path_on_both_sides(capsys, models):
    """Nested at 3x16x16: body -> body.1; analytic and probe both give r 5, j 2, start 2.5."""
    result = run_main(capsys, "compare", f"{models}:Nested", "--input", "3x16x16", "--nodes", "body,stem", "--format", "csv", "--no-progress")
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(io.StringIO(result.stdout), index_col="node", dtype={"node": str})
    assert list(table.index) == ["stem.1", "body.1"]  # graph order
    row = table.loc["body.1"]
    assert (row["r_h"], row["j_h"], row["start_h"]) == (row["r_h_num"], row["j_h_num"], row["start_h_num"]) == (5, 2, 2.5)
    assert bool(row["agree"])


def test_an_unknown_node_points_to_rfcheck_nodes(capsys):
    line = assert_usage_error(run_main(capsys, "bounds", "alexnet", "--node", "conv9"), "conv9", "conv5")
    assert "List them all with rfcheck nodes alexnet" in line


def test_a_file_importing_its_sibling_module_loads_under_the_console_script(tmp_path):
    """models/net.py does `from blocks import block`: the file's folder goes on sys.path."""
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "blocks.py").write_text("import torch.nn as nn\n\ndef block():\n    return nn.Conv2d(3, 4, 3)\n")
    (folder / "net.py").write_text("from blocks import block\n\ndef build():\n    return block()\n")
    result = console_script("bounds", "models/net.py:build", "--input", "3x8x8", "--unit", "0,0", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "sees of the input:  h 0..2, w 0..2" in result.stdout  # conv k3: unit 0 sees 0..2


def test_a_package_module_factory_loads_from_the_project_root(tmp_path):
    """pkg.nets:build run from the folder holding pkg/ by the console script (whose sys.path
    starts with its own folder): the current folder goes on sys.path, as `python -m` has it."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "nets.py").write_text("import torch.nn as nn\n\ndef build():\n    return nn.Conv2d(3, 4, 5)\n")
    result = console_script("reach", "pkg.nets:build", "--input", "3x8x8", "--size", "5", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("conv2d is the first feature map whose field reaches 5 pixels")


def test_a_misspelt_torchvision_model_gets_close_names(tmp_path):
    """A stand-in torchvision on the path (the real one is not installed here)."""
    package = tmp_path / "torchvision" / "models"
    package.mkdir(parents=True)
    (tmp_path / "torchvision" / "__init__.py").write_text("")
    (package / "__init__.py").write_text(
        "def list_models():\n    return ['resnet18', 'resnet50', 'resnet152', 'vgg16']\n\n"
        "def get_model(name, weights=None):\n    raise AssertionError('not reached')\n"
    )
    result = python_m("report", "torchvision:resnet5", env=subprocess_env(tmp_path))
    line = assert_usage_error(result, "torchvision", "resnet5", "Did you mean", "resnet50")
    assert "vgg16" not in line


def test_a_file_without_factory_lists_its_candidate_factories(capsys, models):
    line = assert_usage_error(run_main(capsys, "report", models), "names a file but no factory", f"give {models}:NAME")
    listed = line.split("(it defines: ", 1)[1].split(", callable without arguments)")[0].split(", ")
    assert listed == ["two_strided", "Cross", "Nested", "with_batchnorm"]  # not needs_width


# ---- queries -------------------------------------------------------------------------------------
def test_bounds_of_a_unit_through_a_subprocess():
    """alexnet conv2 (r 51, j 8, start 9.5), unit (0, 0): 9.5 - 25.5 = -16 .. 9.5 + 25.5 - 1 =
    34 unclipped; of the 227x227 input it sees 0..34."""
    result = python_m("bounds", "alexnet", "--node", "conv2", "--unit", "0,0")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "conv2, unit (0, 0) of 27×27 units (r 51, j 8, start 9.5)",
        "field, unclipped:   h -16..34, w -16..34  (51×51 pixels)",
        "sees of the input:  h 0..34, w 0..34  (35×35 pixels)",
    ]


def test_bounds_as_json_and_the_centre_unit_by_default(capsys):
    """Unit 13 (27 // 2) of conv2: 9.5 + 13*8 - 25.5 = 88 .. 138, inside the input."""
    result = answer(capsys, "bounds", "alexnet", "--node", "conv2", "--unit", "0,0")["result"]
    assert (result["unit"], result["field"], result["seen"], result["seen_pixels"]) == ([0, 0], [[-16, 34], [-16, 34]], [[0, 34], [0, 34]], 35 * 35)
    centre = answer(capsys, "bounds", "alexnet", "--node", "conv2")["result"]
    assert centre["unit"] == [13, 13] and centre["field"] == centre["seen"] == [[88, 138], [88, 138]]


def test_bounds_counts_the_pixels_a_cross_shaped_field_leaves_out(capsys, models):
    """Cross at 1x9x9, unit (4, 4): box rows 2..6 x cols 2..6, seen: row 4 (5) + col 4 (5) - 1."""
    result = run_main(capsys, "bounds", f"{models}:Cross", "--input", "1x9x9", "--unit", "4,4")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "sees of the input:  h 2..6, w 2..6  (5×5 pixels; it sees 9 of them)"


def test_sees_lists_the_units_seeing_a_pixel(capsys):
    """alexnet conv2, pixel (100, 50): unit m sees 8m - 16 .. 8m + 34, so h: 8m - 16 <= 100 <=
    8m + 34 -> m 9..14; w: 8m - 16 <= 50 <= 8m + 34 -> m 2..8; 6 x 7 = 42 units."""
    result = run_main(capsys, "sees", "alexnet", "--node", "conv2", "--pixel", "100,50")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "input pixel (100, 50) is seen by 42 of the 729 units of conv2 (27×27): h 9..14 × w 2..8\n"
    document = answer(capsys, "sees", "alexnet", "--node", "conv2", "--pixel", "100,50")["result"]
    assert document["count"] == 42 and document["boxes"] == [[list(range(9, 15)), list(range(2, 9))]]


def test_sees_is_exact_for_a_field_that_is_not_a_box(capsys, models):
    """Cross at 1x9x9: pixel (4, 4) is seen by row 4's units 2..6 and column 4's units 2..6,
    9 units (not the 25 of the box), as rfarith's exact mask of every unit says too."""
    document = answer(capsys, "sees", f"{models}:Cross", "--input", "1x9x9", "--pixel", "4,4")["result"]
    assert document["count"] == 9
    assert sorted(document["boxes"]) == sorted([[[4], [2, 3, 4, 5, 6]], [[2, 3, 4, 5, 6], [4]]])
    rf = rfarith.analyze(_load(models, "Cross"), (1, 1, 9, 9)).output
    brute = {(a, b) for a in range(9) for b in range(9) if rf.mask((a, b))[4, 4]}
    listed = {(a, b) for rows, cols in document["boxes"] for a in rows for b in cols}
    assert listed == brute


def test_reach_finds_the_first_map_as_large_as_asked(capsys):
    """alexnet: pool1 r 19, conv2 r 51 -> conv2 for 50 (row 5 of 17); nothing reaches 356
    (fc6 and fc7: r 355): exit 1."""
    result = run_main(capsys, "reach", "alexnet", "--size", "50")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("conv2 is the first feature map whose field reaches 50 pixels on every axis: r 51, j 8")
    assert "(row 5 of 17)" in result.stdout
    none = run_main(capsys, "reach", "alexnet", "--size", "356")
    assert none.returncode == 1
    assert none.stdout.startswith("no feature map's field reaches 356 pixels") and "fc6 (r 355" in none.stdout
    document = json.loads(run_main(capsys, "reach", "alexnet", "--size", "356", "--format", "json").stdout)
    assert document["header"]["complete"] is False and document["result"]["node"] is None


def test_fits_finds_the_smallest_input_holding_the_centre_units_field(capsys, models):
    """two_strided (j 4, r 7, start 0.5: unit m sees 4m - 3 .. 4m + 3). At side S the maps have
    n1 = (S - 1) // 2 + 1 and n2 = (n1 - 1) // 2 + 1 units; the centre unit c = n2 // 2 needs
    4c - 3 >= 0 (c >= 1, S >= 5) and 4c + 3 <= S - 1: S = 5, 6, 7 give c = 1 and fail the
    second, S = 8 gives n1 4, n2 2, c 1 and 1..7 inside 0..7."""
    result = run_main(capsys, "fits", f"{models}:two_strided", "--input", "3x32x32")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "--input 3x8x8 is the smallest input whose centre unit of 1 sees its whole field, unclipped:"
    document = answer(capsys, "fits", f"{models}:two_strided", "--input", "3x32x32")["result"]
    assert document["input_shape"] == [1, 3, 8, 8]
    assert document["centre"]["unit"] == [1, 1] and document["centre"]["field"] == [[1, 7], [1, 7]]


def test_fits_respects_the_smallest_input_the_model_accepts(capsys):
    """keras_minimal's feature_grid (r 20, j 2, start 10) would fit 20x20 (n 1), but the last
    2x2 average pool needs 2 units of it: 22x22, where unit 1 sees 10 + 2 - 10 = 2 .. 21."""
    document = answer(capsys, "fits", "keras_minimal", "--node", "feature_grid")["result"]
    assert document["input_shape"] == [1, 3, 22, 22] and document["centre"]["field"] == [[2, 21], [2, 21]]


USER_MODELS = "tests/crosscheck/models/user_models.py"


def test_fits_scans_only_the_axes_a_field_steps_along(capsys):
    """A forward LSTM along the rows (j 1 along h, 0 along w): along h the centre unit's 3 rows
    fit from 3 rows up; along w the field follows the input (the last step sees every column),
    so no width is the smallest: it keeps 16 and says so. resnet18's fc (global on both axes):
    no input is the smallest. Before: '--input 3x3x16 is the smallest input', and 3x224x224 for
    resnet18, both false (any width holds those fields)."""
    result = run_main(capsys, "fits", f"{USER_MODELS}:row_lstm", "--input", "3x16x16")
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert first.startswith("--input 3x3x16 is the smallest input whose centre unit of head sees its whole field, unclipped, along h; along w its field follows the input")
    assert "(kept: w 16)" in first
    document = answer(capsys, "fits", f"{USER_MODELS}:row_lstm", "--input", "3x16x16")["result"]
    assert document["follows_input"] == ["w"] and document["input_shape"] == [1, 3, 3, 16]
    resnet = run_main(capsys, "fits", "resnet18")
    assert resnet.stdout.startswith("no input is the smallest for fc: along h, w its field follows the input")


def test_bounds_of_a_causal_unit_are_its_own_steps(capsys):
    """Unit (5, 7) of the forward LSTM sees columns 0 .. 8: its field is that, not the hull of
    every step (0 .. 15, which the command printed as its unclipped field beside 0 .. 8)."""
    result = run_main(capsys, "bounds", f"{USER_MODELS}:row_lstm", "--input", "3x16x16", "--unit", "5,7")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1].startswith("field, unclipped:   h 4..6, w 0..8")
    assert lines[2].startswith("sees of the input:  h 4..6, w 0..8")


def test_erf_prints_the_radii_rfnumeric_effective_gives(capsys):
    """The zoo's random weights are seeded by --seed, so the numbers are those of
    rfnumeric.effective on the model built after torch.manual_seed(seed)."""
    result = run_main(capsys, "erf", "keras_minimal", "--node", "feature_grid", "--samples", "4")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines[2:5]] == [f"radius holding {q} % of it" for q in (50, 90, 99)]
    document = answer(capsys, "erf", "keras_minimal", "--node", "feature_grid", "--samples", "4")["result"]
    torch.manual_seed(0)
    erf = rfnumeric.effective(zoo.build("keras_minimal"), (1, 3, 64, 64), node="feature_grid", n_inputs=4, seed=0)
    assert document["radii"] == {f"{q:g}": list(r) for q, r in sorted(erf.radii.items())}
    assert document["structural_r"] == [20, 20] and document["unit"] == list(erf.unit)
    radii = np.array([document["radii"][q] for q in ("0.5", "0.9", "0.99")])
    assert (np.diff(radii, axis=0) >= 0).all() and (radii[-1] <= 20).all()


def test_a_model_with_several_outputs_needs_node(capsys):
    assert_usage_error(run_main(capsys, "bounds", "fpn"), "p2", "p5", "--node")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("bounds", "alexnet", "--node", "conv2", "--unit", "27,0"), ("--unit", "27", "0..26")),
        (("bounds", "alexnet", "--node", "conv2", "--unit", "3"), ("--unit", "2 axes", "--unit 13,13")),
        (("bounds", "alexnet", "--node", "conv2", "--unit", "a,b"), ("--unit", "'a,b'")),
        (("sees", "alexnet", "--node", "conv2", "--pixel", "227,0"), ("--pixel", "227", "0..226")),
        (("sees", "alexnet", "--node", "conv2"), ("--pixel",)),
        (("reach", "alexnet", "--size", "0"), ("--size", "'0'")),
    ],
    ids=["unit-outside", "unit-one-axis", "unit-not-numbers", "pixel-outside", "pixel-missing", "size-zero"],
)
def test_query_usage_errors(capsys, args, words):
    assert_usage_error(run_main(capsys, *args), *words)


def test_an_internal_error_in_a_query_exits_3(monkeypatch, capsys):
    from crosscheck import queries

    def broken(*args, **kwargs):
        raise RuntimeError("an invariant broke")

    monkeypatch.setattr(queries, "unit_bounds", broken)
    result = run_main(capsys, "bounds", "alexnet", "--node", "conv2")
    assert result.returncode == 3
    assert result.stderr.startswith("rfcheck: internal error: RuntimeError: an invariant broke")


# ---- mistakes ------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", [("compare", "keras_minimal"), ("fits", "keras_minimal"), ("erf", "keras_minimal")])
@pytest.mark.parametrize("size", ["0", "-3"])
def test_max_size_must_be_positive(capsys, command, size):
    assert_usage_error(run_main(capsys, *command, f"--max-size={size}"), "--max-size", size)


def test_input_with_commas_is_refused_with_the_syntax(capsys):
    assert_usage_error(run_main(capsys, "report", "alexnet", "--input", "3,227,227"), "'3,227,227'", "--input 3x227x227")


def test_input_with_the_batch_says_the_batch_is_implied(capsys):
    line = assert_usage_error(run_main(capsys, "report", "alexnet", "--input", "1x3x227x227"), "conv1")
    assert "the batch is implied" in line and "--input 3x227x227" in line


def test_a_model_in_training_mode_is_analysed_in_eval_mode_with_a_note(capsys, models):
    result = run_main(capsys, "report", f"{models}:with_batchnorm", "--input", "3x8x8")
    assert result.returncode == 0
    assert result.stderr == "rfcheck: note: the model is in training mode (1: BatchNorm2d); it is analysed in eval mode\n"
    quiet = run_main(capsys, "report", f"{models}:two_strided", "--input", "3x8x8")  # no layer acts otherwise
    assert quiet.returncode == 0 and quiet.stderr == ""


# ---- the set-up the README promises ------------------------------------------------------------
def test_the_torchvision_environment_is_its_own_and_the_default_stays_cpu():
    """`make -n -B` prints the commands without running them (they download GBs), whether or
    not the environment exists already."""
    dry = subprocess.run(["make", "-n", "-B", "zoo-venv"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    assert "-m venv .venv-zoo" in dry.stdout
    assert "torch==2.14.1 torchvision==0.29.1 timm" in dry.stdout
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^TORCH \?= torch==2\.13\.0$", makefile, re.M)
    assert ".venv-zoo/" in (ROOT / ".gitignore").read_text().splitlines()
    readme = (ROOT / "README.md").read_text()
    assert "make zoo-venv" in readme and "6 GB" in readme


def readme_first_block() -> str:
    text = (ROOT / "README.md").read_text()
    return re.search(r"^```\w*\n(.*?)^```$", text, re.S | re.M).group(1)


def test_the_readmes_first_screen_shows_list_nodes_bounds_and_prints_what_it_shows(capsys):
    """Each `.venv/bin/rfcheck` line of the README's first code block, run, prints the lines
    below it (`...` matches anything), as the docs test checks docs/."""
    import doctest

    block = readme_first_block()
    commands: list[tuple[list[str], list[str]]] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            commands.append((shlex.split(line[2:], comments=True), []))
        elif commands:
            commands[-1][1].append(line)
    shown = [argv for argv, _ in commands if argv[0].endswith("rfcheck")]
    assert [argv[1] for argv in shown] == ["list", "nodes", "bounds"]
    checker = doctest.OutputChecker()
    for argv, expected in commands:
        if not argv[0].endswith("rfcheck"):
            continue
        got = io.StringIO()
        with contextlib.redirect_stdout(got), contextlib.redirect_stderr(got):
            assert cli.main(argv[1:]) == 0
        want = "\n".join(expected) + "\n"
        assert checker.check_output(want, got.getvalue(), doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE), (argv, got.getvalue())


def _load(path: str, name: str):
    namespace: dict = {}
    exec(compile(textwrap.dedent(Path(path).read_text()), path, "exec"), namespace)
    return namespace[name]()


# ---- a torchinfo-like view of a long report ------------------------------------------------------
def test_report_depth_folds_blocks_into_their_output_row(capsys):
    """--depth 1 on resnet18: each layerK shows one row, its last node (the block's output),
    the stem and head stay; the output line is kept."""
    from tests.crosscheck.test_cli import run_main

    result = run_main(capsys, "report", "resnet18", "--depth", "1", "--format", "csv")
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(io.StringIO(result.stdout), index_col="node")
    assert list(table.index) == ["x", "conv1", "bn1", "relu", "maxpool", "layer1.1.relu_1", "layer2.1.relu_1", "layer3.1.relu_1", "layer4.1.relu_1", "avgpool", "flatten", "fc"]
    assert table.loc["layer4.1.relu_1", "r_h"] == 435
    text = run_main(capsys, "report", "resnet18", "--depth", "1").stdout
    assert "output 'fc': r 224, j 0, start 112, global (via avgpool)" in text


def test_report_changes_only_hides_rows_that_pass_the_field_on(capsys):
    from tests.crosscheck.test_cli import run_main

    result = run_main(capsys, "report", "resnet18", "--changes-only", "--format", "csv")
    table = pd.read_csv(io.StringIO(result.stdout), index_col="node")
    assert "bn1" not in table.index and "relu" not in table.index and "conv1" in table.index
    fields = [" ".join(map(str, row)) for row in table[["n_h", "j_h", "r_h", "start_h", "flags"]].fillna("").itertuples(index=False)]
    assert all(a != b for a, b in zip(fields[:-2], fields[1:-1]))  # every row shown changes the field
    assert table.index[-1] == "fc"  # the output is always kept
