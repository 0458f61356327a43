"""Small models written the way users write them, for the cross-check's end-to-end tests.

Fields are derived by hand with the guide's recurrences (input ``j = 1``, ``r = 1``,
``start = 0.5``; conv of kernel ``k``, padding ``p``: ``r' = r + (k-1)``,
``start' = start + (k-1)/2 - p``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ControlFlow(nn.Module):
    """Control flow on a tensor's value in the model's own forward: torch.fx cannot trace it.
    a: conv 3 pad 1 (r 3, start 0.5); b: conv 3 (r 5, start 1.5); the output is b's map
    averaged over channels, plus one (not a module call): r 5, j 1, start 1.5."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 4, 3)

    def forward(self, x):
        y = self.a(x)
        y = y * 2 if y.mean() > 0 else -y
        return self.b(y).mean(1, keepdim=True) + 1


class Gate(nn.Module):
    def forward(self, x):
        return x if x.sum() > 0 else -x


class GatedNet(nn.Module):
    """The same control flow inside a submodule: hybrid makes it a leaf and measures it.
    conv 3 stride 2 (r 3, j 2, start 1.5), gate, conv 3 (r 7, j 2, start 3.5)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, stride=2)
        self.gate = Gate()
        self.head = nn.Conv2d(4, 4, 3)

    def forward(self, x):
        return self.head(self.gate(self.stem(x)))


class SizeAssert(nn.Module):
    """A forward that accepts one input size only (16×16), four convs of 5: r 5, 9, 13, 17.
    The last field does not fit 16×16 and the model refuses any larger input."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 5, padding=2)
        self.b = nn.Conv2d(4, 4, 5, padding=2)
        self.c = nn.Conv2d(4, 4, 5, padding=2)
        self.d = nn.Conv2d(4, 4, 5, padding=2)

    def forward(self, x):
        assert x.shape[-2:] == (16, 16), f"expects a 16x16 input, got {tuple(x.shape)}"
        return self.d(self.c(self.b(self.a(x))))


class FixedSizeHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 5, padding=2)

    def forward(self, x):
        if x.shape[-1] != 16:
            raise ValueError(f"FixedSizeHead expects 16 columns, got {x.shape[-1]}")
        return self.conv(x)


class SizeAssertInside(nn.Module):
    """The size check inside a submodule: fx makes it a leaf, hybrid measures it at the size it
    receives. conv 5 pad 2 ×3 then the head's conv 5 pad 2: r 5, 9, 13, 17 (start 0.5)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(*[nn.Conv2d(3 if i == 0 else 4, 4, 5, padding=2) for i in range(3)])
        self.head = FixedSizeHead()

    def forward(self, x):
        return self.head(self.body(x))


class RoundSTE(torch.autograd.Function):
    """A straight-through quantiser: rounds forward, passes the gradient unchanged."""

    @staticmethod
    def forward(ctx, x):
        return x.round()

    @staticmethod
    def backward(ctx, grad):
        return grad


class Quantised(nn.Module):
    """conv 3, a straight-through rounding, conv 3: r 5, j 1, start 2.5."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3)
        self.head = nn.Conv2d(4, 4, 3)

    def forward(self, x):
        return self.head(RoundSTE.apply(self.stem(x)))


class BoxBlur(torch.autograd.Function):
    """A 3×3 box blur (zero padding, divisor 9) with its own backward: the adjoint of the blur
    is the same blur of the gradient."""

    @staticmethod
    def forward(ctx, x):
        return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=True)

    @staticmethod
    def backward(ctx, grad):
        return F.avg_pool2d(grad, 3, stride=1, padding=1, count_include_pad=True)


class Blurred(nn.Module):
    """conv 3 (r 3, start 1.5), the blur (r 5, start 1.5), conv 3 (r 7, start 2.5)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3)
        self.head = nn.Conv2d(4, 4, 3)

    def forward(self, x):
        return self.head(BoxBlur.apply(self.stem(x)))


def control_flow() -> nn.Module:
    return ControlFlow()


def gated() -> nn.Module:
    return GatedNet()


def size_assert() -> nn.Module:
    return SizeAssert()


def size_assert_inside() -> nn.Module:
    return SizeAssertInside()


def quantised() -> nn.Module:
    return Quantised()


def blurred() -> nn.Module:
    return Blurred()
