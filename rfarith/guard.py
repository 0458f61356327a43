"""Leaving the user's model exactly as it was, whatever happens."""

from __future__ import annotations

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
