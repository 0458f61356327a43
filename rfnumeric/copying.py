"""The probe's private copy of a model: the user's model is never touched.

The copy maps every parameter and buffer to its replacement through one memo, so no parameter
is copied twice and nothing is shared with the user's model (a tree of modules that copy the
way ``nn.Module`` does is copied by :func:`_module_tree_copy`, the same result as
``copy.deepcopy`` at a third of its cost; any other model by ``copy.deepcopy`` itself):

- ``weights="structural"``: floating parameters become stride-0 ones (biases zeros), which costs
  no memory; the structural surrogates ignore weight values anyway, and a parameter used as a
  scale or an offset (layer scale, positional embedding, ReZero's alpha) keeps every path open.
- ``weights="real"``: parameters are copied in float64.

Floating buffers and tensors kept as plain attributes are copied in float64. The copy is in
``eval()`` mode, its parameters do not require grad (the probe only needs input gradients),
and it carries none of the user's hooks (they would fire on the probe's tensors).
"""

from __future__ import annotations

import copy
import types
from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from rfarith.errors import ProbeError

_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
)


def _structural_parameter(name: str, p: nn.Parameter) -> nn.Parameter:
    if not p.is_floating_point():
        return nn.Parameter(p.detach().clone(), requires_grad=False)
    fill = 0.0 if name.rsplit(".", 1)[-1].startswith("bias") else 1.0
    data = torch.full((), fill, dtype=torch.float64).expand(p.shape)
    return nn.Parameter(data, requires_grad=False)


def _real_parameter(p: nn.Parameter) -> nn.Parameter:
    dtype = torch.float64 if p.is_floating_point() else p.dtype
    return nn.Parameter(p.detach().to(dtype=dtype, copy=True), requires_grad=False)


def _buffer(b: torch.Tensor) -> torch.Tensor:
    return (
        b.detach().to(dtype=torch.float64, copy=True)
        if b.is_floating_point()
        else b.detach().clone()
    )


# Attribute values ``copy.deepcopy`` would return as they are (immutable), so a copy may share them.
_ATOMIC = (
    int, float, complex, bool, str, bytes, type(None), type, torch.dtype, torch.device,
    torch.Size, torch.memory_format, torch.layout, types.FunctionType, types.BuiltinFunctionType,
)
_COPY_PROTOCOL = ("__deepcopy__", "__reduce_ex__", "__reduce__", "__getstate__", "__setstate__")


def _atomic(value: Any) -> bool:
    if isinstance(value, _ATOMIC):
        return True
    return isinstance(value, (tuple, frozenset)) and all(_atomic(v) for v in value)


def _plainly_copyable(model: nn.Module) -> bool:
    """Whether every module of the tree copies the way ``nn.Module`` does (no copy protocol of
    its own, no ``__slots__``): then :func:`_module_tree_copy` gives what ``copy.deepcopy``
    would, without walking every attribute's value."""
    for m in model.modules():
        cls = type(m)
        if "__slots__" in cls.__dict__ or not all(_plain(cls, name) for name in _COPY_PROTOCOL):
            return False
    return True


def _plain(cls: type, name: str) -> bool:
    """Whether ``cls`` copies like ``nn.Module`` as far as ``name`` goes: its own method, or a
    ``__setstate__`` of torch's layers (they only fill in attributes old pickles lack)."""
    method = getattr(cls, name, None)
    if method is getattr(nn.Module, name, None):
        return True
    return name == "__setstate__" and getattr(method, "__module__", "").startswith("torch.nn.modules.")


def _module_tree_copy(module: nn.Module, memo: dict[int, Any]) -> nn.Module:
    """``copy.deepcopy(module, memo)`` for a tree of plainly copyable modules, faster: the
    parameter and buffer dicts map through ``memo``, submodules are copied the same way,
    immutable attribute values are shared (deepcopy would return them as they are), empty
    containers are made anew, the hook dicts start empty (the probe's copy carries no hooks),
    and anything else is deep-copied with the same memo."""
    done = memo.get(id(module))
    if done is not None:
        return done
    clone = object.__new__(type(module))
    memo[id(module)] = clone
    state: dict[str, Any] = {}
    for key, value in module.__dict__.items():
        if key in ("_parameters", "_buffers"):
            state[key] = {k: None if v is None else memo[id(v)] for k, v in value.items()}
        elif key == "_modules":
            state[key] = {k: None if v is None else _module_tree_copy(v, memo) for k, v in value.items()}
        elif key in _HOOK_DICTS:
            state[key] = type(value)()
        elif _atomic(value):
            state[key] = value
        elif type(value) in (dict, list, set, OrderedDict) and not value:
            state[key] = type(value)()
        else:
            state[key] = copy.deepcopy(value, memo)
    clone.__dict__.update(state)
    return clone


def check_ready(model: nn.Module) -> None:
    """Raise a clear error for models the probe cannot run as they are."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    lazy = [
        path or type(m).__name__
        for path, m in model.named_modules()
        if isinstance(m, nn.modules.lazy.LazyModuleMixin) and m.has_uninitialized_params()
    ]
    if lazy:
        raise ProbeError(
            f"lazy modules are not initialised yet ({', '.join(lazy[:5])}): run the model once on a "
            "real input so they know their shapes, then probe it."
        )


def probe_copy(model: nn.Module, weights: str) -> nn.Module:
    """A float64, eval-mode, hook-free deep copy of ``model`` (see the module docstring)."""
    check_ready(model)
    if weights not in ("structural", "real"):
        raise ValueError(f"weights must be 'structural' or 'real', got {weights!r}")
    if weights == "real":
        meta = [name for name, t in model.state_dict(keep_vars=True).items() if t.device.type == "meta"]
        if meta:
            raise ProbeError(
                f"weights='real' needs the model's values, but {len(meta)} of its tensors are on the meta "
                f"device (no values: {', '.join(meta[:3])}{', ...' if len(meta) > 3 else ''}). Way out: load "
                "real weights first (e.g. model.to_empty(device='cpu') and load_state_dict), or use "
                "weights='structural', which needs no values."
            )
    memo: dict[int, Any] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) not in memo:
            memo[id(p)] = (
                _structural_parameter(name, p) if weights == "structural" else _real_parameter(p)
            )
    for _, b in model.named_buffers(remove_duplicate=False):
        if id(b) not in memo:
            memo[id(b)] = _buffer(b)
    try:
        clone = _module_tree_copy(model, memo) if _plainly_copyable(model) else copy.deepcopy(model, memo)
    except Exception as e:
        raise ProbeError(
            f"cannot copy the model ({type(e).__name__}: {e}). The probe works on a deep copy so that "
            "your model stays untouched; make the model deep-copyable (copy.deepcopy) to probe it."
        ) from e
    for m in clone.modules():
        for attr in _HOOK_DICTS:
            hooks = getattr(m, attr, None)
            if hooks is not None:
                hooks.clear()
        for key, value in list(vars(m).items()):
            if (
                isinstance(value, torch.Tensor)
                and not isinstance(value, nn.Parameter)
                and value.is_floating_point()
            ):
                setattr(m, key, value.detach().to(torch.float64))
    clone.eval()
    return clone
