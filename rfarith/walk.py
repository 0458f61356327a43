"""The analysis: one loop over the traced graph whose value per node is a receptive field.

Like ``torch.fx.Interpreter`` with ``ShapeProp``: every node runs once on fake tensors (shapes
only, no storage, so a 2048x2048 input costs nothing) and its rule maps the fields of its
inputs to the field of its output.
"""

from __future__ import annotations

import logging
import operator
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.fx as fx
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

from .errors import RFError, ShapeError, UnsupportedOp
from .field import ReceptiveField, axis_names
from .guard import hooks_suspended
from .rules.pointwise import SAME_SHAPE_FUNCTIONS, SAME_SHAPE_MODULES
from .rules.registry import Call, describe_target, find_rule
from .tracing import Traced
from .value import Value, input_value


@dataclass(frozen=True)
class Row:
    """One feature map of the report; ``source`` is "rule" or "probe" (measured by a fallback).
    A report of a model torch.fx cannot trace keeps the rows the probe could not measure, with
    ``field`` None and the ``reason``."""

    name: str
    op: str
    shape: tuple[int, ...]
    field: ReceptiveField | None  # None: not computed (only in a measured report; see reason)
    source: str = "rule"
    reason: str = ""  # why ``field`` is None


Fallback = Callable[[Call], Any]


@dataclass(frozen=True)
class WalkResult:
    rows: list[Row]
    outputs: dict[str, str]


def op_label(node: fx.Node, module: nn.Module | None) -> str:
    if node.op == "call_module" and module is not None:
        return type(module).__name__
    if node.op == "call_method":
        return str(node.target)
    if node.op == "placeholder":
        return "input"
    return getattr(node.target, "__name__", str(node.target))


def check_input_shape(input_shape: Any) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in input_shape)
        exact = all(s == int(s) for s in input_shape)
    except (TypeError, ValueError):
        exact = False
    if not exact:
        raise ShapeError(
            f"input_shape {input_shape!r} must be a sequence of ints (batch, channels, *spatial), "
            "e.g. (1, 3, 224, 224)",
            kind="rank",
        )
    if not 3 <= len(shape) <= 5:
        raise ShapeError(
            f"input_shape {shape} has rank {len(shape)}; give (batch, channels, *spatial) with 1 to 3 "
            "spatial axes, e.g. (1, 3, 224, 224), (1, 1, 128) for 1-D or (1, 1, 16, 64, 64) for 3-D",
            kind="rank",
        )
    if any(s <= 0 for s in shape):
        raise ShapeError(f"input_shape {shape} has a size <= 0; every size must be positive", kind="rank")
    return shape


def _reference_tensor(model: nn.Module) -> torch.Tensor | None:
    for t in model.parameters():
        return t
    for t in model.buffers():
        return t
    return None


def _shapes(args: Any) -> str:
    flat: list[torch.Tensor] = []
    fx.node.map_aggregate(args, lambda x: flat.append(x) if isinstance(x, torch.Tensor) else None)
    return ", ".join("x".join(str(s) for s in t.shape) for t in flat) or "no tensors"


class _Walk:
    def __init__(self, model: nn.Module, traced: Traced, shape: tuple[int, ...], fallback: Fallback | None) -> None:
        self.model = model
        self.fallback = fallback
        self.measured: set[fx.Node] = set()
        self.traced = traced
        self.shape = shape
        self.fake: dict[fx.Node, Any] = {}
        self.values: dict[fx.Node, Any] = {}
        self.axes = axis_names(len(shape) - 2)

    def run(self) -> WalkResult:
        mode = FakeTensorMode(allow_non_fake_inputs=True)
        rows: list[Row] = []
        outputs: dict[str, str] = {}
        first_placeholder = True
        for node in self.traced.graph.nodes:
            name = self.traced.names[node]
            if node.op == "placeholder":
                self._placeholder(node, name, mode, first_placeholder)
                if first_placeholder:
                    rows.append(self._row(node, name, None))
                first_placeholder = False
            elif node.op == "get_attr":
                self.fake[node] = _fetch_attr(self.traced.root, node.target)
                self.values[node] = None
            elif node.op == "output":
                outputs = self._outputs(node.args[0])
                if len(outputs) > 1:  # every output gets a row of its own, named by key or index
                    by_name = {row.name: row for row in rows}
                    for key, source in outputs.items():
                        row = by_name[source]
                        alias = f"output[{key}]"
                        rows.append(replace(row, name=alias, op="output", field=replace(row.field, node=alias)))
            else:
                module = self.traced.root.get_submodule(node.target) if node.op == "call_module" else None
                self._call(node, name, module, mode)
                if isinstance(self.values[node], Value) and isinstance(self.fake[node], torch.Tensor):
                    rows.append(self._row(node, name, module))
        return WalkResult(rows, outputs)

    # ---- nodes -------------------------------------------------------------------------------
    def _placeholder(self, node: fx.Node, name: str, mode: FakeTensorMode, first: bool) -> None:
        if not first:
            if node.args:
                self.fake[node] = node.args[0]
                self.values[node] = None
                return
            raise ShapeError(
                f"forward() takes a second input '{name}' without a default; rfarith analyses one "
                "image input. Wrap the model in a module whose forward takes only the image.",
                node=name,
            )
        ref = _reference_tensor(self.model)
        dtype = ref.dtype if ref is not None and ref.is_floating_point() else torch.float32
        device = ref.device if ref is not None else torch.device("cpu")
        with mode:
            self.fake[node] = torch.empty(self.shape, dtype=dtype, device=device)
        self.values[node] = input_value(self.shape)

    def _call(self, node: fx.Node, name: str, module: nn.Module | None, mode: FakeTensorMode) -> None:
        args = fx.node.map_arg(node.args, lambda n: self.fake[n])
        kwargs = fx.node.map_arg(node.kwargs, lambda n: self.fake[n])
        op = op_label(node, module)
        try:
            with mode:
                out = _execute(node, module, args, kwargs)
        except RFError:
            raise
        except Exception as e:
            out = self._run_leaf_for_real(node, module, args, kwargs, mode)
            if out is None and self._needs_rule(node, module):  # a leaf nobody gave a rule
                raise UnsupportedOp(name, op, "a leaf module that fake tensors cannot run") from e
            if out is None:
                raise self._shape_error(name, op, args, e) from e
        self.fake[node] = out
        parent = node.args[0] if node.target in (operator.getitem, getattr) else None
        if isinstance(self.values.get(parent), (tuple, list)):  # picking from split / chunk / max
            picked = _pick(self.values[parent], node.args[1])
            if picked is not _NOT_PICKED:
                self.values[node] = picked
                return
        values = self._input_values(node)
        if not values:
            self.values[node] = None
            return
        if not _is_tensor_result(out):
            self.values[node] = None
            return
        rule = find_rule(node.op, node.target, module)
        call = Call(name, op, node.op, node.target, module, args, kwargs, out, values)
        if rule is not None:
            value = rule(call)
        elif self.fallback is not None:
            value = self.fallback(call)
            self.measured.add(node)
        else:
            raise UnsupportedOp(name, op if node.op != "call_function" else describe_target(node.target))
        self._check_units(name, op, value)
        self.values[node] = value

    def _run_leaf_for_real(self, node, module, args, kwargs, mode: FakeTensorMode) -> Any:
        """Output (as fake tensors) of a leaf whose forward fake tensors cannot run, e.g. one with
        data-dependent control flow that the user marked a leaf and gave a rule. It runs once on
        zeros of the real input shape. None when this is not such a leaf."""
        if node.op != "call_module" or (find_rule(node.op, node.target, module) is None and self.fallback is None):
            return None

        def real(t: Any) -> Any:
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                return torch.zeros(t.shape, dtype=t.dtype, device=t.device)
            return t

        try:
            with torch.no_grad():
                out = module(*fx.node.map_aggregate(args, real), **fx.node.map_aggregate(kwargs, real))
        except Exception:
            return None
        return fx.node.map_aggregate(out, lambda t: mode.from_tensor(t) if isinstance(t, torch.Tensor) else t)

    def _needs_rule(self, node: fx.Node, module: nn.Module | None) -> bool:
        """A module call on the input's path with no rule and no fallback to measure it."""
        return (
            node.op == "call_module"
            and self.fallback is None
            and find_rule(node.op, node.target, module) is None
            and bool(self._input_values(node))
        )

    def _input_values(self, node: fx.Node) -> dict[int, Value]:
        mapping: dict[int, Value] = {}
        for arg in node.all_input_nodes:
            fake, value = self.fake[arg], self.values[arg]
            if isinstance(value, Value):
                mapping[id(fake)] = value
            elif isinstance(value, (tuple, list)) and isinstance(fake, (tuple, list)):
                for f, v in zip(fake, value):
                    if isinstance(v, Value):
                        mapping[id(f)] = v
        return mapping

    def _outputs(self, result: Any) -> dict[str, str]:
        outputs: dict[str, str] = {}

        def visit(obj: Any, path: tuple[str, ...]) -> None:
            if isinstance(obj, fx.Node):
                if isinstance(self.values.get(obj), Value):
                    outputs[".".join(path) or "output"] = self.traced.names[obj]
            elif isinstance(obj, dict):
                for k, v in obj.items():
                    visit(v, (*path, str(k)))
            elif isinstance(obj, (tuple, list)):
                for i, v in enumerate(obj):
                    visit(v, (*path, str(i)))

        visit(result, ())
        return outputs

    # ---- checks and rows -------------------------------------------------------------------
    def _check_units(self, name: str, op: str, value: Any) -> None:
        for v in value if isinstance(value, tuple) else (value,):
            if isinstance(v, Value):
                for axis, n in zip(self.axes, v.n):
                    if n == 0:
                        raise ShapeError(
                            f"layer '{name}' ({op}) has no units along axis {axis} for input shape "
                            f"{self.shape}: the input is too small for this model. Way out: use a larger input.",
                            node=name,
                            kind="too_small",
                        )

    def _shape_error(self, name: str, op: str, args: Any, error: Exception) -> ShapeError:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        kind, hint = "other", "check input_shape (batch, channels, *spatial)"
        channels = re.search(r"to have (\d+) channels", reason)
        rank = re.search(r"([123])d$", op)  # Conv2d, max_pool3d, ...: the spatial axes it works on
        expected = int(rank.group(1)) if rank else None
        if expected is not None and len(self.shape) - 2 != expected:
            kind = "rank"
            hint = (
                f"this layer works on {expected} spatial axes but input_shape {self.shape} has "
                f"{len(self.shape) - 2}: give (batch, channels, *{expected} spatial sizes)"
            )
        elif channels:
            wanted = (self.shape[0], int(channels.group(1)), *self.shape[2:])
            kind = "channels"
            hint = f"this layer expects {channels.group(1)} input channels; if it reads the model input, use input_shape={wanted}"
        elif any(words in reason for words in ("too small", "greater than", "smaller than", "non-positive", "negative", "Output size")):
            kind, hint = "too_small", "the input is too small for this model: use a larger input_shape"
        return ShapeError(
            f"layer '{name}' ({op}) cannot run on input(s) of shape {_shapes(args)} "
            f"(model input {self.shape}): {reason}. Way out: {hint}.",
            node=name,
            kind=kind,
        )

    def _row(self, node: fx.Node, name: str, module: nn.Module | None) -> Row:
        value: Value = self.values[node]
        rf = ReceptiveField(
            node=name,
            axes=self.axes,
            terms=value.terms,
            extent=value.extent,
            global_via=value.global_via,
            extra_flags=value.flags,
        )
        source = "probe" if node in self.measured else "rule"
        return Row(name, op_label(node, module), tuple(self.fake[node].shape), rf, source)


def _execute(node: fx.Node, module: nn.Module | None, args: tuple, kwargs: dict) -> Any:
    first = args[0] if args else None
    if isinstance(first, torch.Tensor) and _keeps_shape(node, module):
        return torch.empty_like(first)  # same shape and dtype; running the op would only cost time
    if node.op == "call_module":
        return module.forward(*args, **kwargs)
    if node.op == "call_method":
        return getattr(args[0], node.target)(*args[1:], **kwargs)
    return node.target(*args, **kwargs)


_NOT_PICKED = object()
_NAMED_FIELDS = {"values": 0, "indices": 1, "mean": 1, "std": 0, "min": 0, "max": 1}


def _pick(values: tuple | list, key: Any) -> Any:
    """``values[key]``, or a named-tuple field of a reduction's result (``.values``, ``.indices``)."""
    if isinstance(key, int):
        return values[key]
    if isinstance(key, str) and key in _NAMED_FIELDS and _NAMED_FIELDS[key] < len(values):
        return values[_NAMED_FIELDS[key]]
    return _NOT_PICKED


def _keeps_shape(node: fx.Node, module: nn.Module | None) -> bool:
    if module is not None:
        return isinstance(module, SAME_SHAPE_MODULES)
    if node.op == "call_function":
        try:
            return node.target in SAME_SHAPE_FUNCTIONS
        except TypeError:
            return False
    return False


def _is_tensor_result(out: Any) -> bool:
    if isinstance(out, torch.Tensor):
        return True
    if isinstance(out, (tuple, list)) and out:
        return all(isinstance(o, torch.Tensor) or o is None for o in out) and any(isinstance(o, torch.Tensor) for o in out)
    return False


def _fetch_attr(model: nn.Module, target: str) -> Any:
    obj: Any = model
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def walk(model: nn.Module, traced: Traced, shape: tuple[int, ...], fallback: Fallback | None = None) -> WalkResult:
    """Run the analysis. ``fallback(call)`` is asked for ops without a rule (hybrid mode)."""
    with _quiet_fake_tensor_log(), hooks_suspended(model):  # a leaf may run for real on zeros
        return _Walk(model, traced, shape, fallback).run()


@contextmanager
def _quiet_fake_tensor_log() -> Iterator[None]:
    """Fake tensors log every failing op at ERROR level; rfarith turns those failures into its
    own errors (a too small input, a channel mismatch), so the log would only repeat them."""
    logger = logging.getLogger("torch._subclasses.fake_tensor")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)
