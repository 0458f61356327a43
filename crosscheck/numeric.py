"""What crosscheck asks of the probe: one map's field, and what given units see at a given input.

The one place that talks to rfnumeric, so the comparison reads like the question it asks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

import rfnumeric
from rfnumeric.measure import Request, Session, UnitSpec


@dataclass(frozen=True)
class UnitSupport:
    """What one unit sees of the actual input, per axis: (lo, hi) or None, and the pixels."""

    unit: tuple[int, ...]
    bounds: tuple[tuple[int, int] | None, ...]
    pixels: tuple[tuple[int, ...], ...]


def field(model: nn.Module, input_shape: Sequence[int], node: str, mode: str, size_hint, max_size: int):
    """The probe's field of ``node`` (on an input it grows until the field fits)."""
    return rfnumeric.probe(model, input_shape, node=node, mode=mode, size_hint=size_hint, max_size=max_size)


def global_reach(model: nn.Module, input_shape: Sequence[int], mode: str) -> bool:
    """Whether a global spatial reduction inside ``model`` reaches its output's centre unit."""
    sizes = tuple(input_shape[2:])
    try:
        probe = rfnumeric.probe(model, input_shape, mode=mode, size_hint=sizes, max_size=max(sizes))
    except rfnumeric_errors() as e:  # the field does not fit the input: a local op
        del e
        return False
    return "global" in probe.flags


def rfnumeric_errors() -> tuple[type[Exception], ...]:
    from rfarith.errors import ProbeError

    return (ProbeError,)


def units_at(
    model: nn.Module, input_shape: Sequence[int], node: str | None, units: Sequence[tuple[int, ...]], mode: str
) -> tuple[tuple[int, ...], list[UnitSupport]]:
    """The map's size and what each of ``units`` sees, measured at exactly ``input_shape``."""
    session = Session(model, input_shape, "structural")
    target = session.target(node)  # None: the model output
    requests = [Request(target, UnitSpec("fixed", unit=tuple(u))) for u in units]
    measurement = session.measure(tuple(input_shape[2:]), requests, mode == "local")
    n: tuple[int, ...] = ()
    supports = []
    for element in measurement.elements:
        n = element.n
        if element.unit is None:
            continue
        spans = element.spans
        if any(s is None for s in spans):
            supports.append(UnitSupport(element.unit, (None,) * len(spans), ((),) * len(spans)))
        else:
            supports.append(
                UnitSupport(element.unit, tuple((s.lo, s.hi) for s in spans), tuple(s.pixels() for s in spans))
            )
    return n, supports
