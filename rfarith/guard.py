"""Leaving the user's model exactly as it was, whatever happens."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run with every module in eval mode, then restore each module's own ``training`` flag.

    The analysis reads the model as it runs in eval mode (BatchNorm per-channel affine,
    dropout off) and must not update running statistics; the flags are restored even when
    the body raises.
    """
    flags = [(m, m.training) for m in model.modules()]
    try:
        for m, _ in flags:
            m.training = False
        yield model
    finally:
        for m, training in flags:
            m.training = training


_HOOKS = ("_forward_pre_hooks", "_forward_hooks", "_backward_pre_hooks", "_backward_hooks")


@contextmanager
def hooks_suspended(model: nn.Module) -> Iterator[nn.Module]:
    """Run with the user's module hooks set aside, then put the very same hook dicts back.

    Tracing calls the modules it traces into, and a leaf that fake tensors cannot run is run
    once on zeros: the user's hooks must not see those Proxy or placeholder values (the probe
    likewise runs a hook-free copy). Handles stay valid: the dicts are restored, not rebuilt.
    """
    saved = []
    try:
        for m in model.modules():
            for attr in _HOOKS:
                hooks = getattr(m, attr, None)
                if hooks:
                    saved.append((m, attr, hooks))
                    setattr(m, attr, OrderedDict())
        yield model
    finally:
        for m, attr, hooks in saved:
            setattr(m, attr, hooks)


@contextmanager
def attributes_restored(model: nn.Module) -> Iterator[nn.Module]:
    """Run, then give every module exactly the attributes it had: tracing executes the model's
    Python code, and a forward that caches (``self.rel_indices = ...``, or a proxy stored in a
    dict, as timm's LeViT caches its attention biases), or fx's own tensor constants
    (``_tensor_constant0``), would otherwise stay on the user's model. Dicts and lists held by
    a module (its parameters, buffers and submodules among them) get their contents back."""
    saved = []
    for m in model.modules():
        contents = [(v, v.copy()) for v in m.__dict__.values() if isinstance(v, (dict, list))]
        saved.append((m, dict(m.__dict__), contents))
    try:
        yield model
    finally:
        for m, attributes, contents in saved:
            for key in [k for k in m.__dict__ if k not in attributes]:
                del m.__dict__[key]
            m.__dict__.update(attributes)
            for container, content in contents:
                container.clear()
                container.update(content) if isinstance(container, dict) else container.extend(content)
