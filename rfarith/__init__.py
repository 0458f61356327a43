"""rfarith: exact analytical receptive fields of PyTorch models, through torch.fx.

>>> import torch.nn as nn, rfarith
>>> net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2))
>>> rfarith.analyze(net, (1, 3, 32, 32)).output.r
(5, 5)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from torch import nn

from . import rules as _rules  # noqa: F401  (registers the built-in rules)
from .axisfield import AxisField
from .errors import (
    NotComputed,
    ProbeError,
    RFError,
    ShapeError,
    TraceError,
    UnknownNode,
    UnsupportedOp,
)
from .field import ReceptiveField, axis_names
from .guard import eval_mode
from .report import Report
from .rules.common import map_trailing_axes, require_value, windowed
from .rules.params import Window
from .rules.pointwise import elementwise
from .rules.registry import Call, rule
from .tracing import trace, trace_for
from .walk import check_input_shape, walk

__all__ = [
    "AxisField",
    "Call",
    "NotComputed",
    "ProbeError",
    "RFError",
    "ReceptiveField",
    "Report",
    "ShapeError",
    "TraceError",
    "UnknownNode",
    "UnsupportedOp",
    "analyze",
    "axis_names",
    "node_names",
    "register_neutral",
    "register_rule",
    "register_window",
]


def analyze(
    model: nn.Module,
    input_shape: Iterable[int],
    *,
    leaf_modules: Iterable[str | type] = (),
    title: str = "",
    fallback: Callable[[Call], Any] | None = None,
) -> Report:
    """Receptive field of every feature map of ``model`` for an input of ``input_shape``.

    ``input_shape`` is ``(batch, channels, *spatial)`` with 1 to 3 spatial axes. The model is
    traced with torch.fx and run on fake tensors only; it is never modified. Modules named in
    ``leaf_modules`` (paths or classes) are not traced into and need a rule. ``fallback`` is
    asked for the output value of any op without a rule (crosscheck's hybrid mode measures it
    with the probe); without it such an op raises :class:`UnsupportedOp`. Nothing on the input's
    path is dropped: an op result the walk cannot follow raises :class:`UnsupportedOp`, and a
    model that returns tensors none of which depends on the input raises :class:`NotComputed`
    (a model returning no tensor at all, a label, gives a report whose maps are read by name).

    >>> import torch.nn as nn, rfarith
    >>> rep = rfarith.analyze(nn.Conv2d(3, 8, 5, stride=2), (1, 3, 64, 64))
    >>> rep.output.n, rep.output.j, rep.output.r, rep.output.start
    ((30, 30), (2, 2), (5, 5), (2.5, 2.5))
    """
    shape = check_input_shape(input_shape)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    with eval_mode(model):  # traced and run as in eval mode (`if self.training:` included)
        traced = trace(model, leaf_modules, shape)
        try:
            result = walk(model, traced, shape, fallback)
        except ShapeError as e:
            if e.kind != "too_small":
                raise
            smallest = smallest_input(model, traced, shape, fallback, leaf_modules)
            if smallest is None:
                raise
            raise ShapeError(f"{e} The smallest input that works is {smallest}.", e.node, e.kind) from e
    result.require_output()
    return Report(result.rows, result.outputs, shape, title or type(model).__name__, front_end=traced.front_end)


def smallest_input(
    model: nn.Module, traced, shape: tuple[int, ...], fallback=None, leaf_modules: Iterable[str | type] = (), limit: int = 8192
) -> tuple[int, ...] | None:
    """Smallest input with equal spatial sizes >= the given ones that the model accepts (fake runs)."""

    def works(size: int) -> bool:
        candidate = shape[:2] + tuple(max(s, size) for s in shape[2:])
        try:
            walk(model, trace_for(traced, model, candidate, leaf_modules), candidate, fallback)
        except TraceError:  # a shape-aware trace that fails at this size: too small
            return False
        except ShapeError as e:
            if e.kind == "too_small":
                return False
            raise
        return True

    low = max(shape[2:])
    high = low
    while not works(high):
        if high >= limit:
            return None
        high = min(2 * high, limit)
    while low < high:  # invariant: high works
        middle = (low + high) // 2
        if works(middle):
            high = middle
        else:
            low = middle + 1
    return shape[:2] + tuple(max(s, high) for s in shape[2:])


def node_names(model: nn.Module, input_shape: Iterable[int] | None = None) -> list[str]:
    """Qualified node names of ``model`` (as torchvision's ``get_graph_node_names`` gives them).

    With ``input_shape``, only the nodes that carry a feature map (the report's rows).
    """
    if input_shape is None:
        with eval_mode(model):
            return trace(model).node_names()
    return analyze(model, input_shape).names


def register_rule(*targets: Any, replace: bool = False) -> Callable:
    """Decorator: ``fn(call: rfarith.Call) -> Value`` becomes the rule of each target.

    Targets are module classes, functions, tensor method names (strings), or
    ``rfarith.rules.registry.Named("package.module.function")`` for a function matched by its
    qualified name (its package need not be installed). A rule returns a ``Value`` (or, for an
    op returning a tuple, the same structure with a ``Value`` per tensor and None elsewhere).
    """
    return rule(*targets, replace=replace)


def register_neutral(*targets: Any) -> None:
    """Declare ops that act unit by unit (activations, per-channel affine maps)."""
    rule(*targets)(elementwise)


def register_window(target: type[nn.Module], window: Callable[[nn.Module], Window]) -> None:
    """Declare a module class as a sliding window along its trailing axes.

    ``window(module)`` returns a :class:`rfarith.rules.params.Window` (kernel, stride, dilation,
    left padding per axis), e.g. for a custom pooling layer.
    """

    def window_rule(call: Call):
        w = window(call.module)
        return map_trailing_axes(call, require_value(call), w.nd, windowed(w.kernel, w.stride, w.dilation, w.pad_left))

    rule(target)(window_rule)
