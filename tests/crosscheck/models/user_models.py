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


class RowLSTM(nn.Module):
    """An LSTM reading each row of a feature map from left to right (batch b*h, sequence w), as a
    user writes a row recurrence: permute, reshape, ``out, _ = lstm(seq)``, back to a map. Unit
    (h, w) sees rows h-1 .. h+1 and columns 0 .. w+1 (the stem's columns of steps 0 .. w)."""

    def __init__(self, bidirectional: bool = False) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.lstm = nn.LSTM(8, 8, batch_first=True, bidirectional=bidirectional)
        self.head = nn.Conv2d(16 if bidirectional else 8, 4, 1)

    def forward(self, x):
        y = torch.relu(self.stem(x))
        b, c, h, w = y.shape
        out, _ = self.lstm(y.permute(0, 2, 3, 1).reshape(b * h, w, c))
        return self.head(out.reshape(b, h, w, -1).permute(0, 3, 1, 2))


class RasterGRU(nn.Module):
    """A GRU over the pixels in raster order (the grid flattened to one sequence of h*w
    tokens): token (h, w) sees rows 0 .. h-1 whole and row h up to w (the stem's pixels)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 6, 3, padding=1)
        self.gru = nn.GRU(6, 6, batch_first=True)

    def forward(self, x):
        y = self.stem(x)
        b, c, h, w = y.shape
        out, _ = self.gru(y.flatten(2).transpose(1, 2))
        return out.transpose(1, 2).reshape(b, c, h, w)


class FoldedGRU(nn.Module):
    """A forward GRU over a sequence that folds the channels into the steps (the sequence is
    c*w, the features h): an order of steps rfarith does not follow."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.rnn = nn.GRU(16, 4, batch_first=True)

    def forward(self, x):
        y = self.conv(x)  # (1, 4, 16, 16)
        return self.rnn(y.permute(0, 1, 3, 2).reshape(1, 64, 16))[0]


def row_lstm() -> nn.Module:
    return RowLSTM()


def row_bilstm() -> nn.Module:
    return RowLSTM(bidirectional=True)


def raster_gru() -> nn.Module:
    return RasterGRU()


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
