"""Tracing a model with torch.fx, naming nodes as torchvision's feature extraction does.

Node names are qualified: a module call is named by its module path (``features.3``); any other
op by the path of the module whose ``forward`` called it plus the op's name (``layer1.0.add``,
``add`` at the top level); repeats within the same scope get ``_1``, ``_2``, ... (``layer1.0.relu_1``).
So users can pass the names they already know from ``get_graph_node_names``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch.fx as fx
from torch import nn

from .errors import TraceError
from .guard import hooks_suspended
from .rules.registry import has_module_rule

_FX_SUFFIX = re.compile(r"_\d+$")


@dataclass(frozen=True)
class Traced:
    """A traced graph with the qualified name of every node."""

    graph: fx.Graph
    names: dict[fx.Node, str]
    root: nn.Module

    def node_names(self) -> list[str]:
        return [self.names[n] for n in self.graph.nodes if n.op not in ("output", "get_attr")]


class NamingTracer(fx.Tracer):
    """An fx tracer that records torchvision-style qualified names and its own leaves."""

    def __init__(self, leaf_modules: Iterable[str | type] = ()) -> None:
        super().__init__()
        self._leaf_paths = {m for m in leaf_modules if isinstance(m, str)}
        self._leaf_types = tuple(m for m in leaf_modules if isinstance(m, type))
        self._module_stack: list[str] = []
        self.qualnames: dict[fx.Node, str] = {}
        self._counts: dict[str, int] = {}
        self.failed_path: str | None = None

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if module_qualified_name in self._leaf_paths or (self._leaf_types and isinstance(m, self._leaf_types)):
            return True
        if has_module_rule(m):
            return True
        return super().is_leaf_module(m, module_qualified_name)

    def call_module(self, m: nn.Module, forward: Any, args: tuple, kwargs: dict) -> Any:
        path = self.path_of_module(m)
        if self.is_leaf_module(m, path):
            return super().call_module(m, forward, args, kwargs)
        self._module_stack.append(path)
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            if self.failed_path is None:  # the innermost module being traced when it failed
                self.failed_path = path
            raise
        finally:
            self._module_stack.pop()

    def create_proxy(self, kind, target, args, kwargs, name=None, type_expr=None, proxy_factory_fn=None):
        proxy = super().create_proxy(kind, target, args, kwargs, name, type_expr, proxy_factory_fn)
        self.qualnames[proxy.node] = self._qualify(proxy.node)
        return proxy

    def _qualify(self, node: fx.Node) -> str:
        if node.op == "call_module":
            base = node.target
        elif node.op == "placeholder":
            return str(node.target).lstrip("*")
        elif node.op == "output":
            return node.name
        else:
            scope = self._module_stack[-1] if self._module_stack else ""
            op_name = _FX_SUFFIX.sub("", node.name)
            base = f"{scope}.{op_name}" if scope else op_name
        count = self._counts.get(base, 0)
        self._counts[base] = count + 1
        return base if count == 0 else f"{base}_{count}"


class _Root(nn.Module):
    """Holds a model that is itself a leaf (a bare layer with a rule), so fx records one call."""

    def __init__(self, name: str, model: nn.Module) -> None:
        super().__init__()
        self.add_module(name, model)
        self._name = name

    def forward(self, x):
        return getattr(self, self._name)(x)


def root_for_tracing(model: nn.Module, leaf_modules: Iterable[str | type] = ()) -> nn.Module:
    """``model``, or a holder around it when the model itself is a leaf (its node is named after
    its class, lower case, as fx names a function call)."""
    leaf_types = tuple(m for m in leaf_modules if isinstance(m, type))
    if has_module_rule(model) or (leaf_types and isinstance(model, leaf_types)):
        return _Root(type(model).__name__.lower(), model)
    return model


def trace(model: nn.Module, leaf_modules: Iterable[str | type] = ()) -> Traced:
    """Trace ``model`` (never modifying it). Raises :class:`TraceError` naming the module."""
    leaf_modules = tuple(leaf_modules)
    root = root_for_tracing(model, leaf_modules)
    tracer = NamingTracer(leaf_modules)
    try:
        with hooks_suspended(model):  # fx calls the modules it traces into: not the user's hooks
            graph = tracer.trace(root)
    except TraceError:
        raise
    except Exception as e:  # FX raises many types; all mean "could not trace"
        path = tracer.failed_path or ""
        module = root.get_submodule(path) if path else model
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TraceError(path, type(module).__name__, reason) from e
    names = {}
    for node in graph.nodes:
        names[node] = tracer.qualnames.get(node, node.name)
    return Traced(graph, names, root)


def module_outputs(node_names: Sequence[str], module_paths: Iterable[str]) -> dict[str, str]:
    """Each module path that is not itself a node name -> the node its module outputs: the last
    node, in graph order, inside the module (named ``<path>.<...>``), as torchvision's feature
    extraction takes a module path.

    >>> module_outputs(["x", "layer1.0.conv1", "layer1.0.add", "layer1.0.relu", "fc"], ["layer1", "layer1.0", "fc", "head"])
    {'layer1': 'layer1.0.relu', 'layer1.0': 'layer1.0.relu'}
    """
    known = set(node_names)
    outputs = {}
    for path in module_paths:
        if not path or path in known:
            continue
        inside = [name for name in node_names if name.startswith(path + ".")]
        if inside:
            outputs[path] = inside[-1]
    return outputs
