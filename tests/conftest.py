"""Shared fixtures and helpers for the test suite, and the summary of what it tried."""

from __future__ import annotations

import os
from collections import Counter

import pytest
import torch

from tests import tally

# Deterministic, quiet, CPU-only: the suite must behave the same on every machine.
torch.manual_seed(0)
os.environ.setdefault("MPLBACKEND", "Agg")

_GATHERED: Counter[str] = Counter()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


def pytest_sessionfinish(session):
    """On an xdist worker: hand this worker's counts to the controller."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["tally"] = dict(tally.COUNTS)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """On the xdist controller: add up the counts of a worker that finished."""
    _GATHERED.update(getattr(node, "workeroutput", {}).get("tally", {}))


def pytest_terminal_summary(terminalreporter):
    counts = _GATHERED + tally.COUNTS
    if counts:
        terminalreporter.write_sep("-", "what the suite tried")
        for line in tally.lines(counts):
            terminalreporter.write_line(line)
