"""The analysis: one loop over the traced graph whose value per node is a receptive field.

Like ``torch.fx.Interpreter`` with ``ShapeProp``: every node runs once on fake tensors (shapes
only, no storage, so a 2048x2048 input costs nothing) and its rule maps the fields of its
inputs to the field of its output.

No silent answers: an op on the input's path is followed by its rule (a structure of Values for
a structured result, an RNN's ``(out, (h, c))``), measured by the fallback, or refused with
:class:`UnsupportedOp`; a result holding something besides tensors needs a rule; an op that
reads tensor values (``.item()``, a mask) is refused; a Python object the fake run produced
without reading values (a shape, a size) carries no field.
"""

from __future__ import annotations

import logging
import operator
import re
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.fx as fx
from torch import nn
from torch._subclasses.fake_tensor import (
    DataDependentOutputException,
    DynamicOutputShapeException,
    FakeTensorMode,
)

from .errors import NotComputed, RFError, ShapeError, UnsupportedOp
from .fakerun import fetch_attr, run_node
from .field import ReceptiveField, axis_names
from .guard import hooks_suspended
from .rules.registry import Call, describe_target, find_rule, leaves
from .tracing import Traced
from .value import Value, has_token_dims, input_value, layout_matches


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
    output_tensors: tuple[str, ...] = ()  # nodes whose tensors the model returns, fields or not

    def require_output(self) -> None:
        """A report must have the field of its output, unless the model returns no tensor at all
        (a label, None: its feature maps are still there by name)."""
        if self.outputs or not self.output_tensors:
            return
        names = ", ".join(f"'{n}'" for n in self.output_tensors)
        maps = [row.name for row in self.rows if row.field is not None][1:9]
        raise NotComputed(
            f"the model returns tensor(s) from {names} whose values do not depend on the model input "
            "(built from its shape only, or from constants), so no output has a receptive field. "
            "Way out: return a feature map computed from the input"
            + (f" (maps with a field here: {', '.join(maps)})" if maps else "")
            + "."
        )


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
        self.output_tensors: tuple[str, ...] = ()

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
                self.fake[node] = fetch_attr(self.traced.root, node.target, self.traced.constants)
                self.values[node] = None
            elif node.op == "output":
                outputs, parts = self._outputs(node.args[0])
                rows.extend(parts)
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
        return WalkResult(rows, outputs, self.output_tensors)

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

    def _measured_after(self, call: Call, refused: UnsupportedOp) -> Value:
        """The fallback's measurement of an op whose rule refused it; if that fails too, both
        reasons (the rule's says what the arithmetic cannot express)."""
        assert self.fallback is not None
        try:
            return self.fallback(call)  # the hybrid measures what the arithmetic refuses
        except UnsupportedOp as failed:
            if failed.node != refused.node or not refused.detail:
                raise
            detail = f"{refused.detail}; measured as a black box: {failed.detail}" if failed.detail else refused.detail
            raise UnsupportedOp(refused.node, refused.op, detail, refused.way_out or failed.way_out) from failed

    def _call(self, node: fx.Node, name: str, module: nn.Module | None, mode: FakeTensorMode) -> None:
        args = fx.node.map_arg(node.args, lambda n: self.fake[n])
        kwargs = fx.node.map_arg(node.kwargs, lambda n: self.fake[n])
        op = op_label(node, module)
        ran_for_real = False
        try:
            with mode:
                out = run_node(node, module, args, kwargs)
        except RFError:
            raise
        except Exception as e:
            out = self._run_leaf_for_real(node, module, args, kwargs, mode)
            ran_for_real = out is not None
            if out is None and self._needs_rule(node, module) and (module is not None or self._gives_tensor(node, args, kwargs)):
                # a leaf nobody gave a rule (a function giving a number read from values: below)
                what = "a leaf module" if module is not None else "a function fx keeps as one call"
                raise UnsupportedOp(name, op, f"{what} that fake tensors cannot run") from e
            if out is None and _data_dependent(e) and self._input_values(node):
                raise UnsupportedOp(
                    name,
                    op if node.op != "call_function" else describe_target(node.target),
                    "it reads the values of an input-dependent tensor (.item(), int(t), a boolean mask, "
                    f"nonzero: {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}), "
                    "so what follows depends on the data, not on the architecture",
                    way_out=DATA_DEPENDENT_WAY_OUT,
                ) from e
            if out is None:
                raise self._shape_error(name, op, args, e) from e
        self.fake[node] = out
        parent = node.args[0] if node.target in (operator.getitem, getattr) else None
        if isinstance(self.values.get(parent), (tuple, list, dict)):  # picking from split / chunk / max
            picked = _pick(self.values[parent], node.args[1])
            if picked is not _NOT_PICKED:
                self.values[node] = picked
                return
        values = self._input_values(node)
        if not values or _empty_piece(node, out):
            self.values[node] = None
            return
        rule = find_rule(node.op, node.target, module)
        if not _holds_tensor(out) and not ran_for_real:
            # Metadata (a shape, a size, a dtype): fake tensors hold no values, so a Python
            # object they produced comes from shapes and constants only (reading a value raises
            # above). Nothing to follow.
            self.values[node] = None
            return
        call = Call(name, op, node.op, node.target, module, args, kwargs, out, values)
        if rule is not None:
            try:
                value = rule(call)
            except UnsupportedOp as refused:
                if self.fallback is None:
                    raise
                value = self._measured_after(call, refused)
                self.measured.add(node)
        elif self.fallback is not None:
            value = self.fallback(call)
            self.measured.add(node)
        elif not _is_tensor_result(out):
            raise UnsupportedOp(
                name,
                op if node.op != "call_function" else describe_target(node.target),
                f"its result {_describe(out)} is neither a tensor nor a tuple of tensors, which rfarith "
                "does not follow without a rule",
                way_out=MIXED_RESULT_WAY_OUT,
            )
        else:
            raise UnsupportedOp(name, op if node.op != "call_function" else describe_target(node.target))
        self._check_units(name, op, value)
        _check_token_layout(call, value)
        self.values[node] = value

    def _run_leaf_for_real(self, node, module, args, kwargs, mode: FakeTensorMode) -> Any:
        """Output (as fake tensors) of a leaf whose forward fake tensors cannot run, e.g. one with
        data-dependent control flow that the user marked a leaf and gave a rule, or a function
        fx keeps as one call that the hybrid measures. It runs once on zeros of the real input
        shape. None when this is not such a leaf."""
        if node.op != "call_module" and not _user_function(node):
            return None  # a torch op that reads what fake tensors cannot: refused by the caller
        if find_rule(node.op, node.target, module) is None and self.fallback is None:
            return None

        try:
            out = _on_zeros(module if module is not None else node.target, args, kwargs)
        except Exception:
            return None
        return fx.node.map_aggregate(out, lambda t: mode.from_tensor(t) if isinstance(t, torch.Tensor) else t)

    @staticmethod
    def _gives_tensor(node: fx.Node, args: tuple, kwargs: dict) -> bool:
        """Whether a function's result, run once on zeros of the real shapes, holds a tensor."""
        try:
            return _holds_tensor(_on_zeros(node.target, args, kwargs))
        except Exception:
            return False

    def _needs_rule(self, node: fx.Node, module: nn.Module | None) -> bool:
        """A module call (or a function fx keeps whole) on the input's path with no rule and no
        fallback to measure it."""
        return (
            (node.op == "call_module" or _user_function(node))
            and self.fallback is None
            and find_rule(node.op, node.target, module) is None
            and bool(self._input_values(node))
        )

    def _input_values(self, node: fx.Node) -> dict[int, Value]:
        mapping: dict[int, Value] = {}

        def add(fake: Any, value: Any) -> None:
            if isinstance(value, Value):
                mapping[id(fake)] = value
            elif isinstance(value, (tuple, list)) and isinstance(fake, (tuple, list)):
                for f, v in zip(fake, value):  # nested too: an LSTM's (out, (h, c))
                    add(f, v)
            elif isinstance(value, dict) and isinstance(fake, dict):
                for k, v in value.items():
                    add(fake.get(k), v)

        for arg in node.all_input_nodes:
            add(self.fake[arg], self.values[arg])
        return mapping

    def _outputs(self, result: Any) -> tuple[dict[str, str], list[Row]]:
        """The model's outputs that have a field, by key, and a row for each tensor returned
        straight from an op with several results (``return self.lstm(x)``), named
        ``node[i]``; notes in ``output_tensors`` every node whose tensor the model returns."""
        outputs: dict[str, str] = {}
        parts: list[Row] = []
        returned: list[str] = []

        def visit(obj: Any, path: tuple[str, ...]) -> None:
            if isinstance(obj, fx.Node):
                name = self.traced.names[obj]
                if _holds_tensor(self.fake.get(obj)):
                    returned.append(name)
                value = self.values.get(obj)
                if isinstance(value, Value):
                    outputs[".".join(path) or "output"] = name
                elif isinstance(value, (tuple, list)):
                    unpack(obj, self.fake[obj], value, name, path)
            elif isinstance(obj, dict):
                for k, v in obj.items():
                    visit(v, (*path, str(k)))
            elif isinstance(obj, (tuple, list)):
                for i, v in enumerate(obj):
                    visit(v, (*path, str(i)))

        def unpack(node: fx.Node, fake: Any, value: Any, name: str, path: tuple[str, ...]) -> None:
            for i, (f, v) in enumerate(zip(fake, value)):
                part = f"{name}[{i}]"
                if isinstance(v, Value) and isinstance(f, torch.Tensor):
                    module = self.traced.root.get_submodule(node.target) if node.op == "call_module" else None
                    parts.append(self._row_of(node, part, v, tuple(f.shape), op_label(node, module)))
                    outputs[".".join((*path, str(i)))] = part
                elif isinstance(v, (tuple, list)) and isinstance(f, (tuple, list)):
                    unpack(node, f, v, part, (*path, str(i)))

        visit(result, ())
        self.output_tensors = tuple(dict.fromkeys(returned))
        return outputs, parts

    # ---- checks and rows -------------------------------------------------------------------
    def _check_units(self, name: str, op: str, value: Any) -> None:
        for v in leaves(value):
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
        return self._row_of(node, name, self.values[node], tuple(self.fake[node].shape), op_label(node, module))

    def _row_of(self, node: fx.Node, name: str, value: Value, shape: tuple[int, ...], op: str) -> Row:
        rf = ReceptiveField(
            node=name,
            axes=self.axes,
            terms=value.terms,
            extent=value.extent,
            global_via=value.global_via,
            extra_flags=value.flags,
        )
        source = "probe" if node in self.measured else "rule"
        return Row(name, op, shape, rf, source)


def _check_token_layout(call: Call, value: Any) -> None:
    """A rule that met a token dim (prefix tokens in front of a grid) and does not know about
    it would misplace every token by the prefix: where an input or the result holds such a dim,
    the result's dims must have the output's sizes, or the op is refused."""
    if not any(has_token_dims(v) for v in call.values.values()) and not any(
        isinstance(v, Value) and has_token_dims(v) for v in leaves(value)
    ):
        return
    for v, t in zip(leaves(value), leaves(call.out)):
        if isinstance(v, Value) and isinstance(t, torch.Tensor) and not layout_matches(v, tuple(t.shape)):
            raise UnsupportedOp(
                call.node,
                call.op,
                "its rule does not follow a token dimension with extra tokens in front of the grid "
                f"(a class token): layout {v.dims} for an output of shape {tuple(t.shape)}",
            )


_NOT_PICKED = object()
_NAMED_FIELDS = {"values": 0, "indices": 1, "mean": 1, "std": 0, "min": 0, "max": 1}


def _pick(values: tuple | list | dict, key: Any) -> Any:
    """``values[key]`` (an index, a slice, a dict key), or a named-tuple field of a reduction's
    result (``.values``, ``.indices``)."""
    if isinstance(values, dict):
        return values[key] if key in values else _NOT_PICKED
    if isinstance(key, (int, slice)):
        return values[key]
    if isinstance(key, str) and key in _NAMED_FIELDS and _NAMED_FIELDS[key] < len(values):
        return values[_NAMED_FIELDS[key]]
    return _NOT_PICKED


MIXED_RESULT_WAY_OUT = (
    "give the op a rule with rfarith.register_rule that returns the same structure (tuple or "
    "dict), with a Value for each tensor and None for everything else (a name, a function of a package that is not "
    "installed, can be registered with rfarith.rules.registry.Named('module.function')), or probe "
    "the model with rfnumeric.probe, which needs no graph"
)
DATA_DEPENDENT_WAY_OUT = (
    "analyse the model with sizes that do not come from tensor values (pass them in, or compute "
    "them from shapes), or probe it with rfnumeric.probe, which runs it for real"
)


_CONCATENATIONS = (torch.cat, torch.concat, torch.concatenate)


def _empty_piece(node: fx.Node, out: Any) -> bool:
    """An empty tensor that is only concatenated with others (``x[:, :0]``, the rotary embedding
    of no prefix tokens): it holds no element that could see a pixel. An empty map used
    otherwise (a slice that leaves no rows) is an input too small, which the rule reports."""
    if not isinstance(out, torch.Tensor) or out.numel() != 0 or not node.users:
        return False
    return all(user.op == "call_function" and user.target in _CONCATENATIONS for user in node.users)


def _data_dependent(error: BaseException | None) -> bool:
    """Whether fake tensors refused an op because it needs tensor values (``.item()``, a mask)."""
    seen = 0
    while error is not None and seen < 8:
        if isinstance(error, (DataDependentOutputException, DynamicOutputShapeException)):
            return True
        error = error.__cause__ or error.__context__
        seen += 1
    return False


def _on_zeros(call: Callable, args: tuple, kwargs: dict) -> Any:
    """``call`` run for real, without gradients, on zeros of its (fake) tensor arguments' shapes."""

    def real(t: Any) -> Any:
        if isinstance(t, torch.Tensor) and t.device.type != "meta":
            return torch.zeros(t.shape, dtype=t.dtype, device=t.device)
        return t

    with torch.no_grad():
        return call(*fx.node.map_aggregate(args, real), **fx.node.map_aggregate(kwargs, real))


def _user_function(node: fx.Node) -> bool:
    """A call of a Python function outside torch (one fx keeps whole: ``torch.fx.wrap``)."""
    target = node.target
    return (
        node.op == "call_function"
        and isinstance(target, types.FunctionType)
        and not (getattr(target, "__module__", "") or "").startswith("torch")
    )


def _holds_tensor(out: Any) -> bool:
    return any(isinstance(o, torch.Tensor) for o in leaves(out))


def _describe(out: Any) -> str:
    """``(Tensor, int)``, ``(Tensor, (Tensor, Tensor))``: the structure of an op's result."""
    if isinstance(out, (tuple, list)):
        return "(" + ", ".join(_describe(o) for o in out) + ("," if len(out) == 1 else "") + ")"
    if isinstance(out, dict):
        return "{" + ", ".join(f"{k!r}: {_describe(v)}" for k, v in out.items()) + "}"
    return "Tensor" if isinstance(out, torch.Tensor) else type(out).__name__


def _is_tensor_result(out: Any) -> bool:
    if isinstance(out, torch.Tensor):
        return True
    if isinstance(out, (tuple, list)) and out:
        return all(isinstance(o, torch.Tensor) or o is None for o in out) and any(isinstance(o, torch.Tensor) for o in out)
    return False


def walk(model: nn.Module, traced: Traced, shape: tuple[int, ...], fallback: Fallback | None = None) -> WalkResult:
    """Run the analysis. ``fallback(call)`` is asked for ops without a rule (hybrid mode)."""
    if not traced.valid_for(shape):  # its sizes are baked in: walking it at another shape would lie
        raise ValueError(f"a graph traced for input shape {traced.input_shape} cannot be walked at {shape}: trace it at that shape")
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
