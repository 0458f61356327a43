"""The probe's private copy of a model: the user's model is never touched.

``copy.deepcopy`` runs with a memo that maps every parameter and buffer to its replacement, so
no parameter is copied twice and nothing is shared with the user's model:

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
        clone = copy.deepcopy(model, memo)
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
