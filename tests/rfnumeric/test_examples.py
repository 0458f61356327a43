"""The runnable examples in rfnumeric's docstrings stay true."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "rfnumeric",
    "rfnumeric.probe",
    "rfnumeric.sweep",
    "rfnumeric.effective",
    "rfnumeric.layout",
    "rfnumeric.fitting",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has no example"
    assert result.failed == 0
