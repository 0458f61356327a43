"""Shared fixtures and helpers for the test suite."""

from __future__ import annotations

import os

import pytest
import torch

# Deterministic, quiet, CPU-only: the suite must behave the same on every machine.
torch.manual_seed(0)
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
