"""crosscheck: analytic and numeric receptive fields side by side.

>>> import torch.nn as nn, crosscheck
>>> net = nn.Sequential(nn.Conv2d(3, 8, 5, stride=2), nn.ReLU(), nn.Conv2d(8, 8, 3))
>>> crosscheck.assert_agree(net, (1, 3, 32, 32))   # raises AssertionError with the table if not

The public names are imported on first use (module ``__getattr__``), so that the command line
tool answers ``rfcheck --help`` and ``rfcheck list`` without importing torch.
"""

from __future__ import annotations

import importlib
import sys
import types

# public name -> (submodule, attribute); None: the submodule itself
_PUBLIC = {
    "Reason": ("reasons", "Reason"),
    "assert_agree": ("compare", "assert_agree"),
    "compare": ("compare", "compare"),
    "hybrid": ("hybrid", "hybrid"),
    "render": ("compare", "render"),
    "summary": ("compare", "summary"),
    "zoo": ("zoo", None),
}
# Submodules that share their name with the function they export: importing the submodule
# must not replace the function on the package (``crosscheck.compare(...)`` stays callable).
_SHADOWED = {"compare", "hybrid"}

__all__ = ["Reason", "assert_agree", "compare", "hybrid", "render", "summary", "zoo"]


def __getattr__(name: str):
    if name == "__version__":
        value = _installed_version()
    elif name in _PUBLIC:
        submodule, attribute = _PUBLIC[name]
        module = importlib.import_module(f"{__name__}.{submodule}")
        value = module if attribute is None else getattr(module, attribute)
    else:
        raise AttributeError(f"module '{__name__}' has no attribute '{name}'")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC, "__version__"})


def _installed_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rfcheck")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree not installed
        return "0+unknown"


class _Package(types.ModuleType):
    """The package module: keeps the functions ``compare`` and ``hybrid`` bound to their names
    when the submodules of the same names are imported (the import system sets a submodule as
    an attribute of its package)."""

    def __setattr__(self, name: str, value) -> None:
        if name in _SHADOWED and isinstance(value, types.ModuleType):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
