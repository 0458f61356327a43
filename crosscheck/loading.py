"""Turning the CLI's MODEL and --input strings into a model and an input shape.

Importing this module does not import torch: ``rfcheck list`` reads the zoo's catalogue from
its source (:func:`zoo_catalogue`), and torch is imported when a model is loaded.
"""

from __future__ import annotations

import ast
import difflib
import importlib
import importlib.util
import inspect
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

DEFAULT_INPUT = (1, 3, 224, 224)
INPUT_SYNTAX = "channels and spatial sizes joined by 'x', batch implied, e.g. 3x227x227 (2-D), 1x128 (1-D) or 1x16x64x64 (3-D)"
ZOO_FOLDER = Path(__file__).resolve().parent / "zoo"


@dataclass(frozen=True)
class LoadedModel:
    """A model from the command line, in eval mode (as rfcheck analyses every model).
    ``training_module`` names the first module that came in training mode and acts otherwise
    in eval mode (normalisation, dropout), with its type: 'stem.1: BatchNorm2d'; '' if none."""

    model: nn.Module
    input_shape: tuple[int, ...]
    title: str
    training_module: str = ""


@dataclass(frozen=True)
class ZooListing:
    """One zoo model as ``rfcheck list`` shows it."""

    name: str
    input_shape: tuple[int, ...]
    description: str


# ---- --input ------------------------------------------------------------------------------------
def parse_input(text: str) -> tuple[int, ...]:
    """'3x227x227' -> (1, 3, 227, 227): channels first, batch implied."""
    cleaned = text.strip().lower()
    if "," in cleaned or " " in cleaned:
        joined = "x".join(p for p in re.split(r"[,\s]+", cleaned) if p)
        raise ValueError(f"bad --input '{text}': join the sizes with 'x', not commas or spaces: --input {joined}")
    parts = re.split(r"[x×]", cleaned)
    if len(parts) < 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"bad --input '{text}': give {INPUT_SYNTAX}; every size a positive integer")
    return (1, *(int(p) for p in parts))


def batch_hint(text: str | None) -> str:
    """A hint for an --input that may include the batch (``1x3x227x227``); '' for others."""
    if not text:
        return ""
    parts = re.split(r"[x×]", text.strip().lower())
    if len(parts) < 4 or not parts[0].isdigit():
        return ""
    rest = "x".join(parts[1:])
    return (
        f" If {parts[0]} in --input {text} is a batch size, leave it out: the batch is implied, "
        f"so give --input {rest}."
    )


# ---- MODEL --------------------------------------------------------------------------------------
def load_model(spec: str) -> LoadedModel:
    """A model from a zoo name, ``torchvision:NAME``, ``file.py:factory`` or ``pkg.module:factory``."""
    if spec.startswith("torchvision:"):
        return _torchvision(spec.split(":", 1)[1])
    if ":" not in spec:
        if _looks_like_a_file(spec):
            raise ValueError(_factory_needed(spec))
        from . import zoo

        return LoadedModel(zoo.build(spec), zoo.input_shape(spec), spec)
    where, factory_name = spec.rsplit(":", 1)
    module = _import(where)
    factory = getattr(module, factory_name, None)
    if factory is None or not callable(factory):
        raise ValueError(f"'{where}' has no callable '{factory_name}'{_factories_text(module)}; give {where}:NAME, {FACTORY}")
    return _built(factory, spec, factory_name)


def _built(factory, spec: str, title: str) -> LoadedModel:
    from torch import nn

    try:
        model = factory()
    except Exception as e:
        raise ValueError(f"factory '{spec}' raised {type(e).__name__}: {e}") from e
    if not isinstance(model, nn.Module):
        raise ValueError(f"factory '{spec}' returned {type(model).__name__}, not a torch.nn.Module")
    training_module = _first_training_module(model)
    return LoadedModel(model.eval(), DEFAULT_INPUT, title, training_module)


def _first_training_module(model: nn.Module) -> str:
    """'path: Type' of the first module in training mode whose eval mode differs (batch
    statistics, dropout), '' if none: the other modules act alike in both modes."""
    from torch.nn.modules.batchnorm import _NormBase
    from torch.nn.modules.dropout import _DropoutNd

    for path, module in model.named_modules():
        if module.training and isinstance(module, (_NormBase, _DropoutNd)):
            return f"{path or 'the model'}: {type(module).__name__}"
    return ""


def _looks_like_a_file(spec: str) -> bool:
    return spec.endswith(".py") or "/" in spec or os.sep in spec


def _factory_needed(spec: str) -> str:
    """The message for a MODEL that names a file but no factory."""
    path = Path(spec)
    if not path.is_file():
        return (
            f"model file '{spec}' does not exist, and MODEL needs a factory anyway: give it as "
            f"path/to/file.py:NAME, {FACTORY}"
        )
    module = _import(spec)
    return f"MODEL '{spec}' names a file but no factory{_factories_text(module)}; give {spec}:NAME, {FACTORY}"


FACTORY = "NAME a function there that takes no arguments and returns a torch.nn.Module"


def _factories_text(module) -> str:
    """' (it defines: a, b, callable without arguments)': the candidate factories ('' if none)."""
    candidates = factory_candidates(module)
    return f" (it defines: {', '.join(candidates)}, callable without arguments)" if candidates else ""


def factory_candidates(module) -> list[str]:
    """Public functions and classes defined in ``module`` that can be called without arguments."""
    return [
        name
        for name, value in vars(module).items()
        if callable(value)
        and not name.startswith("_")
        and getattr(value, "__module__", None) == module.__name__
        and _callable_without_arguments(value)
    ]


def _callable_without_arguments(value) -> bool:
    try:
        parameters = inspect.signature(value).parameters.values()
    except (TypeError, ValueError):
        return False
    return all(
        p.default is not inspect.Parameter.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        for p in parameters
    )


def _import(where: str):
    if where.endswith(".py"):
        return _import_file(Path(where))
    _put_first_on_path(os.getcwd())  # as `python -m` does: pkg.module from the project root
    try:
        return importlib.import_module(where)
    except ModuleNotFoundError as e:
        raise ImportError(
            f"cannot import module '{where}': {e}; give package.module:factory importable from the "
            "current folder (or installed), or path/to/file.py:factory"
        ) from e


def _import_file(path: Path):
    if not path.is_file():
        raise FileNotFoundError(
            f"model file '{path}' does not exist; give MODEL as path/to/file.py:factory with a "
            "path that exists (relative to the current folder), or a zoo name (rfcheck list)"
        )
    _put_first_on_path(str(path.resolve().parent))  # the file may import its sibling modules
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(path.stem, module)
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        raise ValueError(f"importing '{path}' raised {type(e).__name__}: {e}") from e
    return module


def _put_first_on_path(folder: str) -> None:
    if folder not in sys.path:
        sys.path.insert(0, folder)


def _torchvision(name: str) -> LoadedModel:
    try:
        import torchvision.models as models
    except Exception as e:  # ImportError, or a torchvision built for another torch
        raise ImportError(
            f"torchvision is not usable here ({e}); install it with pip install 'rfcheck[torchvision]' in an environment whose torch it matches, or from a clone run make zoo-venv (an environment of its own, about 6 GB) and use .venv-zoo/bin/rfcheck"
        ) from e
    known = list(models.list_models())
    if name not in known:
        close = difflib.get_close_matches(name, known, n=5, cutoff=0.6)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(
            f"torchvision has no model '{name}'.{hint} Give torchvision:NAME with a name from "
            "torchvision.models.list_models()"
        )
    try:
        model = models.get_model(name, weights=None)
    except Exception as e:
        raise ValueError(f"torchvision could not build '{name}' ({type(e).__name__}: {e})") from e
    shape = (1, 3, 299, 299) if "inception" in name else DEFAULT_INPUT
    return LoadedModel(model.eval(), shape, f"torchvision:{name}")


# ---- the zoo's catalogue, without importing torch ------------------------------------------------
def zoo_catalogue() -> list[ZooListing]:
    """Every zoo model, in ``zoo.names()`` order, with its default input and description.

    Read from the zoo's source (its ``@register(name, input_shape, description)`` decorators
    and ``models.FAMILIES``), so that ``rfcheck list`` needs no torch; a registration that is
    not written with literals makes it import the zoo instead.
    """
    try:
        families = _literal_assignment(ZOO_FOLDER / "models.py", "FAMILIES")
        return [listing for family in families for listing in _registrations(ZOO_FOLDER / f"{family}.py")]
    except (OSError, SyntaxError, ValueError):
        from . import zoo

        return [ZooListing(e.name, e.input_shape, e.description) for e in map(zoo.entry, zoo.names())]


def _literal_assignment(path: Path, name: str):
    for statement in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(statement, ast.Assign) and any(getattr(t, "id", None) == name for t in statement.targets):
            return ast.literal_eval(statement.value)
    raise ValueError(f"{path} assigns no {name}")


def _registrations(path: Path) -> list[ZooListing]:
    listings = []
    for statement in ast.parse(path.read_text(encoding="utf-8")).body:
        for decorator in getattr(statement, "decorator_list", []):
            if isinstance(decorator, ast.Call) and getattr(decorator.func, "id", None) == "register":
                name, shape, description = (ast.literal_eval(a) for a in decorator.args)
                listings.append(ZooListing(name, tuple(shape), description))
    return listings
