"""Embedded model zoo: architectures built by name, no torchvision and no download.

>>> from crosscheck import zoo
>>> net = zoo.build("alexnet")
>>> zoo.input_shape("alexnet")
(1, 3, 227, 227)

Weights are random: these are architectures, for receptive fields. Each entry records the
input shape its receptive field fits in, which the CLI and the tests use by default.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from rfarith.errors import RFError


@dataclass(frozen=True)
class ZooEntry:
    name: str
    factory: Callable[[], nn.Module]
    input_shape: tuple[int, ...]
    description: str


_REGISTRY: dict[str, ZooEntry] = {}


class UnknownModel(RFError, KeyError):
    """A zoo name that does not exist."""

    def __init__(self, name: str) -> None:
        close = difflib.get_close_matches(name, names(), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        super().__init__(f"unknown zoo model '{name}'.{hint} Zoo models: {', '.join(names())}.")

    def __str__(self) -> str:
        return str(self.args[0])


def register(name: str, input_shape: tuple[int, ...], description: str) -> Callable:
    """Decorator adding a factory to the zoo under ``name``."""

    def add(factory: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"zoo model '{name}' is already registered")
        _REGISTRY[name] = ZooEntry(name, factory, tuple(input_shape), description)
        return factory

    return add


def names() -> list[str]:
    """Every zoo model name: by family in ``models.FAMILIES`` order, then in registration order
    (a family module imported on its own first, as a test may do, does not move its models)."""
    _load()
    from .models import FAMILIES

    rank = {f"{__name__}.{family}": i for i, family in enumerate(FAMILIES)}
    return sorted(_REGISTRY, key=lambda name: rank.get(_REGISTRY[name].factory.__module__, len(rank)))


def entry(name: str) -> ZooEntry:
    _load()
    if name not in _REGISTRY:
        raise UnknownModel(name)
    return _REGISTRY[name]


def build(name: str) -> nn.Module:
    """A fresh instance of zoo model ``name`` (random weights, eval mode)."""
    return entry(name).factory().eval()


def input_shape(name: str) -> tuple[int, ...]:
    """The input shape ``name`` is analysed at by default (its field fits inside)."""
    return entry(name).input_shape


def _load() -> None:
    from . import models  # noqa: F401  (registers the zoo on first use)
