"""One table from op to rule. A rule is a small function of one :class:`Call` returning the
:class:`~rfarith.value.Value` of the op's output (or a tuple of them for ops returning several
tensors). Modules, functions and tensor methods are registered alike::

    @rule(nn.Conv2d, F.conv2d, torch.conv2d)
    def conv(call): ...

Registration refuses duplicates; users extend the table through :func:`register_rule`,
:func:`register_neutral` and :func:`register_window` (see ``rfarith/__init__.py``).

A function of a package that is not installed (``torchvision.ops.stochastic_depth``) is
registered by its qualified name, :class:`Named`, and matched by ``__module__`` and
``__qualname__`` when a graph calls it; nothing is imported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch
from torch import nn
from torch.fx.operator_schemas import normalize_function

from ..value import Value

RuleFn = Callable[["Call"], Any]

_MODULE_RULES: dict[type, RuleFn] = {}
_FUNCTION_RULES: dict[Any, RuleFn] = {}
_METHOD_RULES: dict[str, RuleFn] = {}
_NAMED_RULES: dict[str, RuleFn] = {}

_MISSING = object()


@dataclass(frozen=True)
class Named:
    """A function registered by its qualified name ``module.qualname``, e.g.
    ``Named("torchvision.ops.stochastic_depth.stochastic_depth")``: it matches any function
    object with that ``__module__`` and ``__qualname__``, so its package need not be installed."""

    qualified: str


def qualified_name(target: Any) -> str | None:
    module, qualname = getattr(target, "__module__", None), getattr(target, "__qualname__", None)
    return f"{module}.{qualname}" if module and qualname else None


def _table_for(target: Any) -> tuple[dict, Any]:
    if isinstance(target, type) and issubclass(target, nn.Module):
        return _MODULE_RULES, target
    if isinstance(target, str):
        return _METHOD_RULES, target
    if isinstance(target, Named):
        return _NAMED_RULES, target.qualified
    if callable(target):
        return _FUNCTION_RULES, target
    raise TypeError(f"cannot register a rule for {target!r}: give a module class, function or method name")


def rule(*targets: Any, replace: bool = False) -> Callable[[RuleFn], RuleFn]:
    """Register ``fn`` as the rule of every target (module class, function, or method name)."""

    def register(fn: RuleFn) -> RuleFn:
        for target in dict.fromkeys(targets):  # aliases (F.relu_ is torch.relu_) count once
            table, key = _table_for(target)
            if key in table and not replace:
                raise ValueError(f"a rule for {describe_target(target)} is already registered")
            table[key] = fn
        return fn

    return register


def find_rule(kind: str, target: Any, module: nn.Module | None) -> RuleFn | None:
    """The rule for one graph node, or None. Module rules match subclasses that keep forward."""
    if kind == "call_module" and module is not None:
        for cls in type(module).__mro__:
            if cls in _MODULE_RULES:
                # a subclass that rewrites forward (LayerNorm2d permuting to channels-last) is
                # not the op the rule describes: it is traced into instead
                overridden = getattr(type(module), "forward", None) is not getattr(cls, "forward", None)
                return None if overridden else _MODULE_RULES[cls]
        return None
    if kind == "call_method":
        return _METHOD_RULES.get(target)
    if kind == "call_function":
        try:
            found = _FUNCTION_RULES.get(target)
        except TypeError:  # unhashable callables
            found = None
        if found is None and _NAMED_RULES:
            found = _NAMED_RULES.get(qualified_name(target) or "")
        return found
    return None


def entries() -> Iterator[tuple[str, Any, RuleFn]]:
    """Every registered rule as ``(kind, target, rule)``, kind one of "module", "function",
    "method", "named" (the op inventory reads the table through this)."""
    for kind, table in (("module", _MODULE_RULES), ("function", _FUNCTION_RULES), ("method", _METHOD_RULES), ("named", _NAMED_RULES)):
        for target, fn in table.items():
            yield kind, target, fn


def has_module_rule(module: nn.Module) -> bool:
    return find_rule("call_module", None, module) is not None


def describe_target(target: Any) -> str:
    if isinstance(target, type):
        return target.__name__
    if isinstance(target, str):
        return f"Tensor.{target}"
    if isinstance(target, Named):
        return target.qualified
    return getattr(target, "__name__", repr(target))


# Tensor methods whose torch function of the same name orders its parameters differently
# (``x.where(c, y)`` is ``torch.where(c, x, y)``): not read through the function's signature.
_METHOD_ORDER_DIFFERS = frozenset({"where"})


@dataclass
class Call:
    """One op application as a rule sees it: parameters, input values, output shape."""

    node: str
    op: str
    kind: str
    target: Any
    module: nn.Module | None
    args: tuple
    kwargs: dict
    out: Any
    values: dict[int, Value] = field(default_factory=dict)

    def value(self, obj: Any) -> Value | None:
        """The Value of a tensor argument, or None if it does not depend on the input."""
        return self.values.get(id(obj))

    def arg(self, index: int, name: str, default: Any = _MISSING) -> Any:
        """A parameter of a functional call or tensor method, by name.

        Read through one normalisation (:attr:`params`: the call bound to the op's signature,
        defaults filled in); ``index``, the parameter's position, is used only for ops whose
        signature torch cannot tell (a ``Tensor.permute(*dims)``-style call, a Python function
        without a schema)."""
        if name in self.kwargs:
            return self.kwargs[name]
        params = self.params
        if params is not None and name in params:
            return params[name]
        if index < len(self.args):
            return self.args[index]
        if default is _MISSING:
            raise TypeError(f"{self.op} at node '{self.node}' is missing its argument '{name}'")
        return default

    @cached_property
    def params(self) -> dict[str, Any] | None:
        """Every parameter of the call by name, positional ones included and defaults filled in
        (``torch.fx.operator_schemas.normalize_function``); None where the signature is unknown
        or ambiguous. A tensor method is read through the ``torch`` function of the same name."""
        target = self.target
        if self.kind == "call_method":
            if self.target in _METHOD_ORDER_DIFFERS:
                return None
            target = getattr(torch, self.target, None) if isinstance(self.target, str) else None
        elif self.kind != "call_function":
            return None
        if not callable(target):
            return None
        try:
            found = normalize_function(
                target,
                tuple(self.args),
                dict(self.kwargs),
                arg_types=tuple(type(a) for a in self.args),
                kwarg_types={k: type(v) for k, v in self.kwargs.items()},
                normalize_to_only_use_kwargs=True,
            )
        except Exception:  # no schema, an ambiguous one, or arguments it cannot bind
            return None
        return dict(found.kwargs) if found is not None else None

    @property
    def input(self) -> Any:
        """The first positional argument (the tensor most ops act on)."""
        return self.args[0] if self.args else next(iter(self.kwargs.values()))

    def tensors(self) -> Iterator[tuple[torch.Tensor, Value | None]]:
        """Every tensor among the arguments (nested in lists too), with its Value."""
        for obj in leaves((self.args, self.kwargs)):
            if isinstance(obj, torch.Tensor):
                yield obj, self.value(obj)

    @property
    def out_shape(self) -> tuple[int, ...]:
        """Shape of the output (of the first output for ops returning several tensors)."""
        out = self.out[0] if isinstance(self.out, (tuple, list)) else self.out
        return tuple(out.shape)


def leaves(obj: Any) -> Iterator[Any]:
    """The leaves of a nested value: tuples, lists and dicts opened."""
    if isinstance(obj, (list, tuple)):
        for item in obj:
            yield from leaves(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from leaves(item)
    else:
        yield obj
