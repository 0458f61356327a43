"""Finding the probed feature map: node names, module paths, the model output.

A node is named as everywhere in rfcheck (torchvision's qualified names, from
:func:`rfarith.tracing.trace`), or by a module path, which needs no trace at all: a forward
hook on that module captures its output (``path_1`` is its second call). So models that
``torch.fx`` cannot trace can still be probed at any module. ``node=None`` is the model output.

Two executors run the probe's copy and capture the requested tensors, stopping as soon as the
last one is produced:

- :class:`EagerRun` calls the model itself, with capture hooks on modules;
- :class:`GraphRun` interprets the traced graph node by node (for names fx gives to function
  calls, such as ``add`` or ``layer1.0.relu_1``).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from rfarith.errors import ProbeError, RFError, UnknownNode
from rfarith.tracing import Traced, module_outputs, trace, trace_for

from .mode import Naming, Stop, note_input, settled

_REPEAT = re.compile(r"^(.*)_(\d+)$")


@dataclass(frozen=True)
class Locator:
    """Where a feature map comes from. ``kind`` is 'output', 'input' (the model input itself),
    'module' (``path`` and ``call``, 0 for the first call) or 'graph' (``node`` of the traced
    graph)."""

    name: str
    kind: str
    path: str = ""
    call: int = 0
    node: fx.Node | None = None


class Resolver:
    """Turns user-facing node names into :class:`Locator` objects for one model copy."""

    def __init__(self, model: nn.Module, input_shape: Sequence[int] | None = None) -> None:
        self.model = model
        self.input_shape = None if input_shape is None else tuple(input_shape)
        self.modules = dict(model.named_modules())
        self._traced: Traced | None = None
        self._traced_at: dict[tuple[int, ...], Traced] = {}
        self._trace_error: RFError | None = None
        self._by_name: dict[str, fx.Node] | None = None

    @property
    def traced(self) -> Traced | None:
        """The fx trace (named as rfarith names nodes), or None if the model cannot be traced.
        A model that fx traces only with concrete sizes is traced at the user's input shape."""
        if self._traced is None and self._trace_error is None:
            try:
                self._traced = trace(self.model, (), self.input_shape)
            except RFError as e:
                self._trace_error = e
        return self._traced

    def traced_at(self, shape: Sequence[int]) -> Traced:
        """The trace to run an input of ``shape`` through: the one trace, or, for a graph that
        holds the sizes of one input, a trace at ``shape`` (same node names)."""
        traced = self.traced
        assert traced is not None
        shape = tuple(shape)
        if shape not in self._traced_at:
            self._traced_at[shape] = trace_for(traced, self.model, shape)
        return self._traced_at[shape]

    def graph_nodes(self) -> dict[str, fx.Node]:
        if self._by_name is None:
            traced = self.traced
            self._by_name = (
                {}
                if traced is None
                else {
                    traced.names[n]: n
                    for n in traced.graph.nodes
                    if n.op not in ("output", "get_attr")
                }
            )
        return self._by_name

    def resolve(self, name: str | None) -> Locator:
        """The locator for ``name``; raises :class:`UnknownNode` with close names."""
        if name is None:
            return Locator("output", "output")
        if not isinstance(name, str):
            raise TypeError(
                f"node must be a node name or module path (str), got {type(name).__name__}"
            )
        if name and name in self.modules:
            return Locator(name, "module", path=name)
        nodes = self.graph_nodes()
        if name in nodes:
            return Locator(name, "graph", node=nodes[name])
        inside = module_outputs(list(nodes), [name]).get(name)
        if inside is not None:  # a function fx keeps whole that rfarith traced into: its last node
            return Locator(name, "graph", node=nodes[inside])
        repeat = _REPEAT.match(name)
        if repeat and repeat.group(1) in self.modules and not nodes:
            return Locator(name, "module", path=repeat.group(1), call=int(repeat.group(2)))
        known = list(nodes) or [p for p in self.modules if p]
        error = UnknownNode(name, known)
        if self._trace_error is not None:
            note = (
                f" (torch.fx cannot trace this model, so only module paths are known: "
                f"{self._trace_error}; '<path>_<k>' names the k-th repeat call of a module.)"
            )
            error.args = (error.args[0] + note,)
        raise error

    def input_name(self) -> str:
        """The name of the model input (the first placeholder, or forward's first parameter)."""
        traced = self.traced
        if traced is not None:
            for n in traced.graph.nodes:
                if n.op == "placeholder":
                    return traced.names[n]
        try:
            params = [p for p in inspect.signature(self.model.forward).parameters.values()]
            return params[0].name if params else "input"
        except (TypeError, ValueError):
            return "input"


# ---- executors ------------------------------------------------------------------------------
def _ignore(_name: str) -> None:
    return None


class EagerRun:
    """Runs the model copy and captures module outputs (or the model output) by forward hooks.
    ``mark(name)`` is called as each value is captured (the session notes the cost so far)."""

    def __init__(
        self, model: nn.Module, naming: Naming, mark: Callable[[str], None] = _ignore
    ) -> None:
        self.model = model
        self.naming = naming
        self.mark = mark

    def run(self, x: torch.Tensor, locators: Sequence[Locator]) -> dict[str, Any]:
        captured: dict[str, Any] = {loc.name: x for loc in locators if loc.kind == "input"}
        note_input(self.naming, x)
        wanted = [loc for loc in locators if loc.kind == "module"]
        if not wanted and not any(loc.kind == "output" for loc in locators):
            return captured
        needs_output = any(loc.kind == "output" for loc in locators)
        calls: dict[str, int] = {}
        handles = []

        def capture(path: str):
            def hook(_module, _args, output):
                count = calls.get(path, 0)
                calls[path] = count + 1
                for loc in wanted:
                    if loc.path == path and loc.call == count:
                        captured[loc.name] = settled(self.naming, output, f"node '{loc.name}'")
                        self.mark(loc.name)
                if not needs_output and all(loc.name in captured for loc in wanted):
                    raise Stop

            return hook

        for path in {loc.path for loc in wanted}:
            handles.append(self.model.get_submodule(path).register_forward_hook(capture(path)))
        try:
            output = self.model(x)
            for loc in locators:
                if loc.kind == "output":
                    captured[loc.name] = settled(self.naming, output, "the model output")
        except Stop:
            pass
        finally:
            for h in handles:
                h.remove()
        return captured

    def calls(self, x: torch.Tensor, paths: Sequence[str]) -> list[tuple[str, str, Any]]:
        """Every call of the modules at ``paths``, in call order: (name, path, output), the name
        being the path with ``_1``, ``_2`` for repeated calls."""
        found: list[tuple[str, str, Any]] = []
        counts: dict[str, int] = {}

        def record(path: str):
            def hook(_module, _args, output):
                count = counts.get(path, 0)
                counts[path] = count + 1
                name = path if count == 0 else f"{path}_{count}"
                found.append((name, path, output))
                self.mark(name)

            return hook

        handles = [self.model.get_submodule(p).register_forward_hook(record(p)) for p in paths]
        note_input(self.naming, x)
        try:
            self.model(x)
        finally:
            for h in handles:
                h.remove()
        return found


class _CapturingInterpreter(fx.Interpreter):
    def __init__(
        self,
        module: nn.Module,
        traced: Traced,
        wanted: dict[fx.Node, str],
        naming: Naming,
        mark: Callable[[str], None],
    ) -> None:
        super().__init__(module, garbage_collect_values=True, graph=traced.graph)
        self.extra_traceback = False  # errors keep their own one-line message (no fx node dump)
        self.constants = traced.constants
        self.names = traced.names
        self.wanted = wanted
        self.naming = naming
        self.mark = mark
        self.captured: dict[str, Any] = {}

    def fetch_attr(self, target: str) -> Any:
        if target in self.constants:  # fx's tensor constants live beside the graph, not on the model
            return self.constants[target]
        return super().fetch_attr(target)

    def run_node(self, n: fx.Node) -> Any:
        self.naming.node = self.names.get(n, n.name)
        try:
            result = super().run_node(n)
        finally:
            self.naming.node = None
        if n in self.wanted:
            name = self.wanted[n]
            self.captured[name] = settled(self.naming, result, f"node '{name}'")
            self.mark(self.wanted[n])
            if len(self.captured) == len(self.wanted):
                raise Stop
        return result


class GraphRun:
    """Interprets the traced graph and captures node values, stopping after the last one."""

    def __init__(
        self,
        model: nn.Module,
        traced: Traced,
        naming: Naming,
        mark: Callable[[str], None] = _ignore,
        located_in: Traced | None = None,
    ) -> None:
        self.model = model
        self.traced = traced
        self.naming = naming
        self.mark = mark
        self.located_in = located_in or traced  # the trace the locators' nodes come from
        self._by_name: dict[str, fx.Node] | None = None

    def run(self, x: torch.Tensor, locators: Sequence[Locator]) -> dict[str, Any]:
        wanted = {self._node(loc): loc.name for loc in locators if loc.kind == "graph"}
        interpreter = _CapturingInterpreter(self.model, self.traced, wanted, self.naming, self.mark)
        note_input(self.naming, x)
        try:
            interpreter.run(x)
        except Stop:
            pass
        return interpreter.captured

    def _node(self, loc: Locator) -> fx.Node:
        """The locator's node in this run's trace (a trace at another size names it alike)."""
        if self.located_in is self.traced:
            return loc.node
        name = self.located_in.names[loc.node]
        if self._by_name is None:
            self._by_name = {other: node for node, other in self.traced.names.items()}
        if name in self._by_name:
            return self._by_name[name]
        raise ProbeError(
            f"node '{name}' is not in the graph traced at input shape {self.traced.input_shape}: the "
            "model's graph changes with the input size. Way out: probe a module path instead"
        )


def select_output(value: Any, output: int | str | None, where: str) -> torch.Tensor:
    """The tensor to probe in a node's (or the model's) value, choosing with ``output``."""
    if isinstance(value, torch.Tensor):
        if output is not None:
            raise ValueError(
                f"output={output!r} was given but {where} returns a single tensor; leave output=None"
            )
        return value
    if isinstance(value, dict):
        keys: list[Any] = list(value)
        items = value
    elif isinstance(value, (tuple, list)):
        keys = list(range(len(value)))
        items = dict(enumerate(value))
        if isinstance(output, str) and output.isdigit():
            output = int(output)
    else:
        raise ProbeError(
            f"{where} returns {type(value).__name__}, not a tensor: nothing to probe. Way out: probe "
            "one of its feature maps with node=<module path or node name> (rfarith.node_names(model) "
            "lists them)"
        )
    described = ", ".join(f"{k!r}: {_describe(items[k])}" for k in keys)
    if output is None:
        way = "choose one with output=<key or index>"
        if where == "the model":  # the model's outputs are nodes too, as rfarith's report names them
            way += f", or name it as a node: node='output[{keys[-1]}]' (CLI: --node 'output[{keys[-1]}]')"
        raise ValueError(f"{where} returns {len(keys)} outputs ({described}); {way}")
    if output not in items:
        raise ValueError(f"output={output!r} is not one of the outputs of {where} ({described})")
    chosen = items[output]
    if not isinstance(chosen, torch.Tensor):
        raise ValueError(f"output {output!r} of {where} is {type(chosen).__name__}, not a tensor")
    return chosen


def _describe(v: Any) -> str:
    if isinstance(v, torch.Tensor):
        return "tensor " + "x".join(str(s) for s in v.shape)
    return type(v).__name__


def leaf_module_calls(model: nn.Module) -> Iterable[str]:
    """Module paths of the leaf modules (the nodes of an untraceable model), in definition order."""
    return [path for path, m in model.named_modules() if path and next(m.children(), None) is None]
