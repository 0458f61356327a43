"""Running one fx node on fake tensors (shapes and dtypes, no storage): the walk does it for
every node, the shape-aware tracer for every op it records."""

from __future__ import annotations

from typing import Any

import torch
import torch.fx as fx
from torch import nn

from .rules.pointwise import SAME_SHAPE_FUNCTIONS, SAME_SHAPE_MODULES


def run_node(node: fx.Node, module: nn.Module | None, args: tuple, kwargs: dict) -> Any:
    """The node's result for ``args`` (fake tensors and constants); ``module`` for a call_module."""
    first = args[0] if args else None
    if isinstance(first, torch.Tensor) and _keeps_shape(node, module):
        return torch.empty_like(first)  # same shape and dtype; running the op would only cost time
    if node.op == "call_module":
        return module.forward(*args, **kwargs)
    if node.op == "call_method":
        return getattr(args[0], node.target)(*args[1:], **kwargs)
    return node.target(*args, **kwargs)


def fetch_attr(root: nn.Module, target: str, constants: dict[str, Any] | None = None) -> Any:
    """A get_attr node's object: a tensor constant the trace recorded, or an attribute path."""
    if constants and target in constants:
        return constants[target]
    obj: Any = root
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _keeps_shape(node: fx.Node, module: nn.Module | None) -> bool:
    if module is not None:
        return isinstance(module, SAME_SHAPE_MODULES)
    if node.op == "call_function":
        try:
            return node.target in SAME_SHAPE_FUNCTIONS
        except TypeError:
            return False
    return False
