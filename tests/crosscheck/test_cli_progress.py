"""The progress bar of the ``rfcheck`` commands: on a terminal only, after 2 seconds of work,
on standard error only, erased before the result prints; nothing of it when piped, nor with
``--no-progress``.

The models need the probe: ``ControlFlow`` branches on a tensor's value in its own forward (fx
cannot trace it: every map is measured by ``rfnumeric.sweep``), ``Gated`` does so in a
submodule (hybrid measures that black box). They are written to a file, as users give them.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch.nn as nn

import rfnumeric
from crosscheck import cli, commands
from crosscheck.commands import ProgressBar

ROOT = Path(__file__).resolve().parents[2]
SMALL = ("--input", "3x16x16")
MODELS = '''
import torch.nn as nn


class ControlFlow(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 4, 3)

    def forward(self, x):
        y = self.a(x)
        y = y * 2 if y.mean() > 0 else -y
        return self.b(y)


class Gate(nn.Module):
    def forward(self, x):
        return x if x.sum() > 0 else -x


class Gated(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3)
        self.gate = Gate()
        self.head = nn.Conv2d(4, 4, 3)

    def forward(self, x):
        return self.head(self.gate(self.stem(x)))


def control_flow():
    return ControlFlow()


def gated():
    return Gated()
'''
ERASED = "\r" + " "  # the bar's line blanked: a carriage return, then spaces


class Terminal(io.StringIO):
    """Standard error as a terminal shows it to rfcheck."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("progress") / "user_nets.py"
    path.write_text(MODELS)
    return path


def erased_at_the_end(text: str) -> bool:
    """The last thing written blanks the bar's line and leaves the cursor at its start."""
    return text.endswith("\r") and text[text.rindex("\r", 0, len(text) - 1) :].strip() == ""


# ---- the bar itself -------------------------------------------------------------------------
def test_nothing_is_drawn_on_a_pipe_even_past_the_delay():
    pipe = io.StringIO()
    bar = ProgressBar(pipe, delay=0.0, tick=0.01)
    assert bar.callback is None  # the work need not report to it
    with bar.working("analysing", "model"):
        bar(1, 4, "conv1")
        time.sleep(0.05)
        bar(4, 4, "conv4")
    bar(4, 4, "again, outside working")
    assert pipe.getvalue() == ""


def test_nothing_is_drawn_on_a_terminal_before_the_delay():
    tty = Terminal()
    bar = ProgressBar(tty, delay=60.0, tick=0.01)
    with bar.working("probing"):
        for done in range(5):
            bar(done, 4, f"conv{done}")
        time.sleep(0.05)
    bar(4, 4, "finished quickly")  # done == total does not force a bar either
    assert tty.getvalue() == ""


def test_the_default_delay_is_two_seconds_from_the_command_start():
    tty = Terminal()
    assert ProgressBar(tty).delay == commands.PROGRESS_DELAY == 2.0
    young = ProgressBar(tty, started=time.monotonic() - 1.0)
    young(1, 2, "conv1")
    assert tty.getvalue() == ""
    old = ProgressBar(tty, started=time.monotonic() - 2.5)  # e.g. importing torch took 2.5 s
    old(1, 2, "conv1")
    assert tty.getvalue().startswith("\rprobing [###############---------------] 1/2 conv1 (")


def test_on_a_terminal_the_bar_follows_the_work_and_is_erased_after_it():
    tty = Terminal()
    bar = ProgressBar(tty, delay=0.0, width=10, tick=0.01)
    assert bar.callback is bar
    with bar.working("analysing", "control_flow"):
        time.sleep(0.05)  # nothing reported yet: the thread draws an unknown total
        bar(2, 4, "conv2")
    text = tty.getvalue()
    assert "analysing [" in text and "<=>" in text and "control_flow" in text
    assert "analysing [#####-----] 2/4 conv2 (0 s)" in text
    assert "\n" not in text and erased_at_the_end(text)


def test_a_warning_erases_the_bar_before_it_prints(monkeypatch):
    tty = Terminal()
    monkeypatch.setattr(sys, "stderr", tty)
    bar = ProgressBar(delay=0.0, tick=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        # printed as outside pytest (which records warnings instead)
        warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: sys.stderr.write(
            warnings.formatwarning(message, category, filename, lineno, line)
        )
        with bar.working("probing"):
            bar(1, 3, "conv1")
            warnings.warn("the field changes with the input size", UserWarning, stacklevel=1)
            time.sleep(0.05)  # the bar comes back below the warning
    text = tty.getvalue()
    before, warning = text.split("UserWarning", 1)
    last_line = before[before.rindex("\r", 0, before.rindex("\r")) :]
    assert last_line.startswith(ERASED) and "1/3" not in before.rsplit("\r", 2)[-1], repr(before[-80:])
    assert "the field changes with the input size\n" in warning and "\rprobing [" in warning.rsplit("\n", 1)[1]
    assert erased_at_the_end(text)


def test_the_line_fits_a_narrow_terminal(monkeypatch):
    monkeypatch.setattr(commands, "_columns", lambda stream: 50)
    tty = Terminal()
    bar = ProgressBar(tty, delay=0.0)
    bar(3, 40, "a.very.long.module.path.that.goes.on.and.on.conv3")
    line = tty.getvalue().lstrip("\r")
    assert len(line) <= 49 and line.startswith("probing [") and line.endswith("...and.on.conv3 (0 s)"), line


def test_sweep_reports_progress_and_measures_the_same():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=2))
    calls = []
    table = rfnumeric.sweep(net, (1, 3, 16, 16), progress=lambda *call: calls.append(call))
    assert table.equals(rfnumeric.sweep(net, (1, 3, 16, 16)))
    total = calls[0][1]
    assert calls[0] == (0, total, "") and calls[-1][:2] == (total, total) and total >= 3


def test_every_command_that_loads_a_model_takes_no_progress():
    action = next(a for a in cli.build_parser()._actions if a.dest == "command")
    with_it = {name for name, sub in action.choices.items() if any(a.dest == "no_progress" for a in sub._actions)}
    assert with_it == set(action.choices) - {"list"}


# ---- the commands, on a terminal (in process) -------------------------------------------------
def run_on_terminal(monkeypatch, *argv: str) -> tuple[int, str, str]:
    """``rfcheck ARGV`` with standard error a terminal and no delay: status, stdout, stderr."""
    tty, out = Terminal(), io.StringIO()
    monkeypatch.setattr(commands, "PROGRESS_DELAY", 0.0)
    monkeypatch.setattr(sys, "stderr", tty)
    with contextlib.redirect_stdout(out):
        status = cli.main(list(argv))
    return status, out.getvalue(), tty.getvalue()


@pytest.mark.parametrize(
    "argv, shown",
    [
        (("report", "{models}:control_flow", *SMALL), "analysing [##############################] 4/4 output"),
        (("plot", "{models}:control_flow", *SMALL, "--kind", "heatmap", "--out", "{tmp}/heat.png"), "1/2 effective heat map"),
        (("bounds", "{models}:gated", *SMALL), "analysing ["),
        (("erf", "{models}:control_flow", *SMALL, "--samples", "2"), "effective field, 2 inputs"),
    ],
    ids=["report", "plot-heatmap", "bounds", "erf"],
)
def test_the_bar_shows_on_a_terminal_and_never_on_stdout(monkeypatch, tmp_path, models, argv, shown):
    argv = tuple(a.format(models=models, tmp=tmp_path) for a in argv)
    status, stdout, stderr = run_on_terminal(monkeypatch, *argv)
    assert status == 0, (stdout, stderr)
    assert shown in stderr, stderr[-600:]
    assert erased_at_the_end(stderr)
    assert "\r" not in stdout and "[" + "-" * 5 not in stdout and "<=>" not in stdout


def test_a_plot_of_a_black_box_model_shows_each_probed_unit(monkeypatch, tmp_path, models):
    status, stdout, stderr = run_on_terminal(monkeypatch, "plot", f"{models}:gated", *SMALL, "--out", str(tmp_path / "g"))
    assert status == 0 and stdout == f"wrote {tmp_path / 'g.png'}\n"
    for unit in ("0/3 unit top-left", "plotting [##########--------------------] 1/3 unit centre", "2/3 unit bottom-right"):
        assert unit in stderr, unit
    assert erased_at_the_end(stderr) and "\r" not in stdout
    assert " gate " in stderr  # the black box, while hybrid measures it


def test_no_progress_silences_the_bar_on_a_terminal(monkeypatch, tmp_path, models):
    for argv in (
        ("report", f"{models}:control_flow", *SMALL, "--no-progress"),
        ("plot", f"{models}:gated", *SMALL, "--out", str(tmp_path / "g.png"), "--no-progress"),
    ):
        status, stdout, stderr = run_on_terminal(monkeypatch, *argv)
        assert status == 0 and stdout and stderr == "", (argv, stderr)


def test_an_error_starts_on_a_clean_line(monkeypatch, models):
    status, stdout, stderr = run_on_terminal(monkeypatch, "bounds", f"{models}:gated", *SMALL, "--node", "nowhere")
    assert status == 2 and stdout == ""
    bar, error = stderr.split("rfcheck: error:", 1)
    assert erased_at_the_end(bar) and "'nowhere'" in error


# ---- the commands as processes: piped, and on a real terminal ---------------------------------
NO_DELAY = (
    "import sys, crosscheck.commands as c; c.PROGRESS_DELAY = 0.0; from crosscheck.cli import main; "
    "status = [main(a.split('|')) for a in sys.argv[1:]]; sys.exit(max(status))"
)


def environment() -> dict[str, str]:
    env = {**os.environ, "PYTHONUTF8": "1", "MPLBACKEND": "Agg"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def test_piped_nothing_of_the_bar_is_written(tmp_path, models):
    """``rfcheck report`` and ``rfcheck plot`` with standard error a pipe, the delay at 0 so a
    bar would show if the pipe were mistaken for a terminal: standard error stays empty."""
    commands_ = [f"report|{models}:control_flow|--input|3x16x16", f"plot|{models}:gated|--input|3x16x16|--out|{tmp_path / 'g.png'}"]
    result = subprocess.run(
        [sys.executable, "-c", NO_DELAY, *commands_], cwd=ROOT, env=environment(), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith("Receptive fields: control_flow") and f"wrote {tmp_path / 'g.png'}" in result.stdout


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_on_a_real_terminal_the_bar_goes_to_stderr_only(models):
    """Standard error a pseudo-terminal, standard output a pipe: the bar on the terminal, erased
    at the end; the table alone on standard output."""
    master, slave = os.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-c", NO_DELAY, f"report|{models}:control_flow|--input|3x16x16"],
            cwd=ROOT, env=environment(), stdout=subprocess.PIPE, stderr=slave,
        )
    finally:
        os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the other end closed
            break
        if not chunk:
            break
        seen += chunk
    stdout = process.stdout.read().decode()
    process.stdout.close()
    assert process.wait(timeout=300) == 0
    os.close(master)
    stderr = seen.decode()
    assert "analysing [" in stderr and "4/4 output" in stderr and erased_at_the_end(stderr), stderr[-300:]
    assert stdout.startswith("Receptive fields: control_flow") and "\r" not in stdout
