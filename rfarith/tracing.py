"""Tracing a model with torch.fx, naming nodes as torchvision's feature extraction does.

Node names are qualified: a module call is named by its module path (``features.3``); any other
op by the path of the module whose ``forward`` called it plus the op's name (``layer1.0.add``,
``add`` at the top level); repeats within the same scope get ``_1``, ``_2``, ... (``layer1.0.relu_1``).
So users can pass the names they already know from ``get_graph_node_names``.

Two front ends, one naming. ``symbolic``: torch.fx's own tracer, shape-free, the graph valid for
any input size. ``shapes``: when that fails (Python control flow on a size: TF-style 'same'
padding, a window partition that pads to a multiple, a cache keyed by the token count) or meets
a function fx only keeps as a leaf (``torch.fx.wrap``: torchvision's Swin attention), the same
tracer with every proxy carrying a fake tensor of its node, so ``x.shape``, ``x.size()``,
``x.dtype`` are concrete and such code runs as it does for real, and wrapped functions are traced
into. Its graph holds the sizes of one input shape (``Traced.input_shape``) and is valid for
that shape only.
"""

from __future__ import annotations

import contextlib
import operator
import re
import types
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

from .errors import RFError, TraceError
from .fakerun import run_node
from .guard import attributes_restored, hooks_suspended
from .rules.registry import find_rule, has_module_rule

_FX_SUFFIX = re.compile(r"_\d+$")


@dataclass(frozen=True)
class Traced:
    """A traced graph with the qualified name of every node."""

    graph: fx.Graph
    names: dict[fx.Node, str]
    root: nn.Module
    constants: dict[str, Any] = field(default_factory=dict)  # fx's tensor constants, kept off the model
    input_shape: tuple[int, ...] | None = None  # the only input shape the graph holds, or None: any
    front_end: str = "symbolic"  # or "shapes"

    def valid_for(self, shape: Sequence[int]) -> bool:
        return self.input_shape is None or tuple(self.input_shape) == tuple(shape)

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


FAKE = "rfarith_fake"  # node.meta key: the node's value on fake tensors (shape-aware trace)
_UNKNOWN = object()
_CONCRETE_ATTRIBUTES = frozenset({"shape", "dtype", "device", "ndim", "is_cuda", "layout", "is_sparse", "is_quantized"})
_CONCRETE_METHODS = frozenset(
    {"size", "dim", "ndimension", "numel", "nelement", "is_floating_point", "is_complex", "element_size", "get_device"}
)


class ShapeProxy(fx.Proxy):
    """A proxy that answers questions about its tensor's metadata with concrete values."""

    def _fake(self) -> Any:
        return self.node.meta.get(FAKE, _UNKNOWN)

    def __getattr__(self, name: str) -> Any:
        fake = self._fake()
        if isinstance(fake, torch.Tensor) and (name in _CONCRETE_ATTRIBUTES or name in _CONCRETE_METHODS):
            return getattr(fake, name)
        return super().__getattr__(name)

    def __len__(self) -> int:
        fake = self._fake()
        if isinstance(fake, (torch.Tensor, tuple, list)):
            return len(fake)
        return super().__len__()

    def __setitem__(self, key: Any, value: Any) -> None:
        """``mask[a:b, c:d] = k`` on a tensor the model built (Swin's shift mask): one node."""
        self.tracer.create_proxy("call_function", operator.setitem, (self, key, value), {})

    def __iter__(self):
        fake = self._fake()
        if isinstance(fake, (tuple, list)) or (isinstance(fake, torch.Tensor) and fake.dim() > 0):
            return iter([self[i] for i in range(len(fake))])
        return super().__iter__()


class ShapeTracer(NamingTracer):
    """:class:`NamingTracer` whose proxies carry their node's value on fake tensors of one input
    shape, and which traces into ``torch.fx.wrap`` functions that have no rule."""

    def __init__(self, leaf_modules: Iterable[str | type], input_shape: tuple[int, ...], model: nn.Module) -> None:
        super().__init__(leaf_modules)
        self.input_shape = input_shape
        self.fake_mode = FakeTensorMode(allow_non_fake_inputs=True)
        reference = next((t for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()), None)
        self._input_dtype = reference.dtype if reference is not None else torch.float32
        self._input_device = reference.device if reference is not None else torch.device("cpu")
        self._placeholders = 0

    def proxy(self, node: fx.Node) -> fx.Proxy:
        return ShapeProxy(node, self)

    def create_proxy(self, kind, target, args, kwargs, name=None, type_expr=None, proxy_factory_fn=None):
        if kind == "call_function" and _opaque_wrapped(target):
            inlined = self._inline(target, args, kwargs)
            if inlined is not None:
                return inlined
        proxy = super().create_proxy(kind, target, args, kwargs, name, type_expr, proxy_factory_fn)
        proxy.node.meta[FAKE] = self._fake_value(proxy.node)
        return proxy

    def _inline(self, function: Any, args: tuple, kwargs: dict) -> fx.Proxy | None:
        """Trace into a wrapped function whose result is one tensor (its own ops become nodes);
        None to keep it one call (a structured result)."""
        def fake(a: Any) -> Any:
            return self._fake_of(a.node) if isinstance(a, fx.Proxy) else a

        try:
            with _unpatched(), self.fake_mode:
                result = function(*fx.node.map_aggregate(args, fake), **fx.node.map_aggregate(kwargs, fake))
        except Exception:
            return None
        if not isinstance(result, torch.Tensor):
            return None
        scope = self._module_stack[-1] if self._module_stack else ""
        self._module_stack.append(f"{scope}.{function.__name__}" if scope else function.__name__)
        try:  # its nodes are named inside it: 'features.1.0.attn.shifted_window_attention.linear'
            return function(*args, **kwargs)
        finally:
            self._module_stack.pop()

    def _fake_value(self, node: fx.Node) -> Any:
        try:
            if node.op == "placeholder":
                return self._placeholder(node)
            if node.op == "get_attr":
                return _raw_attr(self.root, node.target)
            args = fx.node.map_arg(node.args, self._fake_of)
            kwargs = fx.node.map_arg(node.kwargs, self._fake_of)
            module = self.root.get_submodule(node.target) if node.op == "call_module" else None
            with _unpatched(), self.fake_mode:
                return run_node(node, module, args, kwargs)
        except Exception:  # a value-dependent op: its metadata stays symbolic, as in plain fx
            return _UNKNOWN

    def _fake_of(self, node: fx.Node) -> Any:
        if node.op == "get_attr":
            return _raw_attr(self.root, node.target)
        value = node.meta.get(FAKE, _UNKNOWN)
        if value is _UNKNOWN:
            raise LookupError(node.name)
        return value

    def _placeholder(self, node: fx.Node) -> Any:
        self._placeholders += 1
        if self._placeholders > 1:
            return node.args[0] if node.args else _UNKNOWN
        with self.fake_mode:
            return torch.empty(self.input_shape, dtype=self._input_dtype, device=self._input_device)


def _unpatched() -> Any:
    """fx's patches (``Module.__getattr__`` answering parameters with proxies, wrapped
    functions) set aside while a node runs on fake tensors in the middle of a trace."""
    revert = getattr(fx._symbolic_trace, "_maybe_revert_all_patches", None)
    return revert() if revert is not None else contextlib.nullcontext()


def _raw_attr(root: nn.Module, target: str) -> Any:
    """An attribute path read past fx's patched ``Module.__getattr__`` (which, while tracing,
    answers a parameter with a new proxy)."""
    obj: Any = root
    for part in target.split("."):
        inner = getattr(obj, "__dict__", {})
        for store in ("_parameters", "_buffers", "_modules"):
            if part in inner.get(store, {}):
                obj = inner[store][part]
                break
        else:
            obj = inner[part] if part in inner else object.__getattribute__(obj, part)
    return obj


def _wrapped_functions() -> dict:
    """fx's registry of ``torch.fx.wrap`` functions ((id(globals), name) -> globals)."""
    return getattr(fx._symbolic_trace, "_wrapped_fns_to_patch", {})


def _opaque_wrapped(target: Any) -> bool:
    """A ``torch.fx.wrap`` Python function with no rfarith rule (fx keeps it one opaque call)."""
    return (
        isinstance(target, types.FunctionType)
        and (id(target.__globals__), target.__name__) in _wrapped_functions()
        and find_rule("call_function", target, None) is None
    )


def _opaque_wrapped_calls(traced: Traced) -> bool:
    return any(n.op == "call_function" and _opaque_wrapped(n.target) for n in traced.graph.nodes)


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


def trace(
    model: nn.Module, leaf_modules: Iterable[str | type] = (), input_shape: Sequence[int] | None = None
) -> Traced:
    """Trace ``model`` (never modifying it). Raises :class:`TraceError` naming the module.

    With ``input_shape``, a model torch.fx cannot trace symbolically, or whose graph keeps a
    ``torch.fx.wrap`` function without a rule as one opaque call, is traced again with concrete
    shapes (the module docstring). When both fail, the error names the module that fails even
    with concrete sizes (said so in its reason); an opaque call whose function cannot be traced
    into keeps the symbolic graph.
    """
    leaf_modules = tuple(leaf_modules)
    try:
        traced = _trace(model, leaf_modules, NamingTracer(leaf_modules))
    except TraceError:
        if input_shape is None:
            raise
        try:
            return _trace(model, leaf_modules, ShapeTracer(leaf_modules, tuple(input_shape), model))
        except TraceError as shaped:  # the module that fails even with concrete sizes
            raise TraceError(shaped.module_path, shaped.module_type, f"{shaped.reason} (also with concrete shapes)") from shaped
    if input_shape is not None and _opaque_wrapped_calls(traced):
        try:
            return _trace(model, leaf_modules, ShapeTracer(leaf_modules, tuple(input_shape), model))
        except TraceError:
            return traced  # the opaque call then meets its rule, the hybrid or UnsupportedOp
    return traced


def trace_for(traced: Traced, model: nn.Module, shape: Sequence[int], leaf_modules: Iterable[str | type] = ()) -> Traced:
    """``traced``, or a new trace at ``shape`` when ``traced`` holds the sizes of another input."""
    return traced if traced.valid_for(shape) else trace(model, leaf_modules, shape)


def _trace(model: nn.Module, leaf_modules: tuple, tracer: NamingTracer) -> Traced:
    root = root_for_tracing(model, leaf_modules)
    before = set(root.__dict__)
    try:
        with hooks_suspended(model), attributes_restored(root):  # fx calls the modules it traces into
            graph = tracer.trace(root)
            constants = {k: root.__dict__[k] for k in root.__dict__ if k not in before}
    except RFError:
        raise
    except Exception as e:  # FX raises many types; all mean "could not trace"
        path = tracer.failed_path or ""
        module = root.get_submodule(path) if path else model
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TraceError(path, type(module).__name__, reason) from e
    names = {node: tracer.qualnames.get(node, node.name) for node in graph.nodes}
    if isinstance(tracer, ShapeTracer):
        return Traced(graph, names, root, constants, tracer.input_shape, "shapes")
    return Traced(graph, names, root, constants)


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
