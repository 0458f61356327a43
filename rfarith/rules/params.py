"""Reading layer parameters from modules and functional calls, per spatial axis.

Parameters are read from the module or the call, never inferred from output sizes
(``padding='same'`` and ``F.pad`` are resolved exactly). Everything returns plain tuples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Window:
    """A sliding window along ``nd`` trailing axes: unit m reads ``m*stride - pad_left + dilation*t``."""

    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    pad_left: tuple[int, ...]

    @property
    def nd(self) -> int:
        return len(self.kernel)


def per_axis(value: Any, nd: int, name: str = "parameter") -> tuple[int, ...]:
    """An int or a sequence of ``nd`` ints as a tuple of ``nd`` ints."""
    if isinstance(value, int):
        return (value,) * nd
    values = tuple(int(v) for v in value)
    if len(values) == 1:
        return values * nd
    if len(values) != nd:
        raise ValueError(f"{name} {value!r} has {len(values)} entries, expected {nd}")
    return values


def conv_pad_left(padding: Any, kernel: Sequence[int], dilation: Sequence[int]) -> tuple[int, ...]:
    """Left padding per axis for a convolution's ``padding`` argument (int, tuple, 'same', 'valid')."""
    nd = len(kernel)
    if isinstance(padding, str):
        if padding == "valid":
            return (0,) * nd
        if padding == "same":
            # PyTorch pads total = d*(k-1), the odd pixel on the right.
            return tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation))
        raise ValueError(f"unknown padding {padding!r}")
    return per_axis(padding, nd, "padding")


def pad_pairs(pad: Sequence[int], rank: int) -> dict[int, tuple[int, int]]:
    """``F.pad``'s flat list (last dim first) as {tensor dim: (left, right)}."""
    if len(pad) % 2:
        raise ValueError(f"pad {tuple(pad)} must have an even number of entries")
    return {rank - 1 - i: (int(pad[2 * i]), int(pad[2 * i + 1])) for i in range(len(pad) // 2)}
