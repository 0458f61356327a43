"""Turning the CLI's MODEL and --input strings into a model and an input shape."""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from pathlib import Path

from torch import nn

from . import zoo

DEFAULT_INPUT = (1, 3, 224, 224)


def parse_input(text: str) -> tuple[int, ...]:
    """'3x227x227' -> (1, 3, 227, 227): channels first, batch implied."""
    parts = re.split(r"[x×,]", text.strip().lower())
    if len(parts) < 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError(
            f"bad --input '{text}': give channels and spatial sizes as positive integers joined by 'x', "
            "e.g. 3x227x227 (2-D), 1x128 (1-D) or 1x16x64x64 (3-D)"
        )
    return (1, *(int(p) for p in parts))


def load_model(spec: str) -> tuple[nn.Module, tuple[int, ...], str]:
    """A model from a zoo name, ``torchvision:NAME``, ``file.py:factory`` or ``pkg.module:factory``."""
    if spec.startswith("torchvision:"):
        return _torchvision(spec.split(":", 1)[1])
    if ":" not in spec:
        return zoo.build(spec), zoo.input_shape(spec), spec
    where, factory_name = spec.rsplit(":", 1)
    module = _import(where)
    factory = getattr(module, factory_name, None)
    if factory is None or not callable(factory):
        defined = [
            n for n, v in vars(module).items()
            if callable(v) and not n.startswith("_") and getattr(v, "__module__", None) == module.__name__
        ]
        listed = f" (it defines: {', '.join(defined)})" if defined else ""
        raise ValueError(
            f"'{where}' has no callable '{factory_name}'{listed}; give {where}:NAME for a function NAME "
            "that returns a torch.nn.Module"
        )
    try:
        model = factory()
    except Exception as e:
        raise ValueError(f"factory '{spec}' raised {type(e).__name__}: {e}") from e
    if not isinstance(model, nn.Module):
        raise ValueError(f"factory '{spec}' returned {type(model).__name__}, not a torch.nn.Module")
    return model.eval(), DEFAULT_INPUT, factory_name


def _import(where: str):
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_file():
            raise FileNotFoundError(
                f"model file '{where}' does not exist; give MODEL as path/to/file.py:factory with a "
                "path that exists (relative to the current folder), or a zoo name"
            )
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules.setdefault(path.stem, module)
        try:
            spec.loader.exec_module(module)
        except Exception as e:
            raise ValueError(f"importing '{where}' raised {type(e).__name__}: {e}") from e
        return module
    try:
        return importlib.import_module(where)
    except ModuleNotFoundError as e:
        raise ImportError(f"cannot import module '{where}': {e}") from e


def _torchvision(name: str) -> tuple[nn.Module, tuple[int, ...], str]:
    try:
        import torchvision.models as models
    except Exception as e:  # ImportError, or a torchvision built for another torch
        raise ImportError(
            f"torchvision is not usable here ({e}); install it with pip install 'rfcheck[torchvision]'"
        ) from e
    try:
        model = models.get_model(name, weights=None)
    except Exception as e:
        raise ValueError(f"torchvision has no model '{name}' ({e})") from e
    shape = (1, 3, 299, 299) if "inception" in name else DEFAULT_INPUT
    return model.eval(), shape, f"torchvision:{name}"
