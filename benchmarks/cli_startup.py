"""How long the ``rfcheck`` command takes to answer when it needs no model.

    .venv/bin/python benchmarks/cli_startup.py [--repeats 7]

Runs each command as a user does (a fresh process of the console script, or ``python -m
crosscheck`` where the script is not installed) and prints the median wall time. ``--help``,
``--version`` and ``list`` must not import torch (target: well under 1 s); ``nodes alexnet``
imports torch and traces a model, and is shown for contrast. The last column says whether
torch was imported, from ``python -X importtime``. Nothing here is a test: it prints what it
measured.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = (("--help",), ("--version",), ("list",), ("nodes", "alexnet"))


def entry_point() -> list[str]:
    """The installed console script next to this Python, else ``python -m crosscheck``."""
    script = Path(sys.executable).with_name("rfcheck")
    return [str(script)] if script.exists() else [sys.executable, "-m", "crosscheck"]


def wall_time(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, capture_output=True, check=True)
    return time.perf_counter() - start


def imports_torch(args: tuple[str, ...]) -> bool:
    """Whether ``python -m crosscheck ARGS`` imports torch (read from -X importtime)."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "crosscheck", *args], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return any(line.split("|")[-1].strip() == "torch" for line in result.stderr.splitlines())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="runs per command; the median is printed (default 7)")
    repeats = parser.parse_args().repeats
    program = entry_point()
    print(f"{' '.join(Path(p).name for p in program)}: median of {repeats} runs, fresh process each")
    print(f"{'command':<24}{'median s':>10}{'min s':>8}  imports torch")
    for args in COMMANDS:
        wall_time([*program, *args])  # warm the file cache
        times = [wall_time([*program, *args]) for _ in range(repeats)]
        label = "rfcheck " + " ".join(args)
        print(f"{label:<24}{statistics.median(times):>10.3f}{min(times):>8.3f}  {'yes' if imports_torch(args) else 'no'}")


if __name__ == "__main__":
    main()
