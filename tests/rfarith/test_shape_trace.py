"""The shape-aware front end: models torch.fx cannot trace symbolically, traced with concrete
sizes; torch.fx.wrap functions traced into; the user's model left exactly as it was.

Fields derived by hand (guide's recurrences): input j 1, r 1, start 0.5; kernel k, stride s,
left padding p: j' = j*s, r' = r + (k-1)*j, start' = start + ((k-1)/2 - p)*j.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

import crosscheck
import rfarith
from rfarith.tracing import trace
from rfarith.walk import walk


class Conv2dSame(nn.Conv2d):
    """TensorFlow 'same' padding computed from the runtime size (timm's Conv2dSame): Python
    arithmetic and an ``if`` on ``x.size()``, which symbolic tracing cannot follow."""

    def forward(self, x):
        ih, iw = x.size()[-2:]
        kh, kw = self.weight.size()[-2:]
        ph = max((math.ceil(ih / self.stride[0]) - 1) * self.stride[0] + (kh - 1) * self.dilation[0] + 1 - ih, 0)
        pw = max((math.ceil(iw / self.stride[1]) - 1) * self.stride[1] + (kw - 1) * self.dilation[1] + 1 - iw, 0)
        if ph > 0 or pw > 0:
            x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class CachedScale(nn.Module):
    """Caches a tensor keyed by the width on first use, as attention modules cache their
    relative-position indices."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = None
        self.by_width: dict[int, torch.Tensor] = {}

    def forward(self, x):
        if self.scale is None or self.scale.shape[0] != x.shape[-1]:
            self.scale = torch.ones(x.shape[-1])
        self.by_width[x.shape[-1]] = self.scale
        return x * self.scale


def same_net() -> nn.Module:
    # 33 -> conv 3 s2 'same' (pad 1 each side: ceil(33/2)=17, total 2) -> 17
    #    -> conv 5 s2 'same' (ceil(17/2)=9, total (9-1)*2+5-17 = 4: 2 each side) -> 9
    return nn.Sequential(Conv2dSame(3, 8, 3, stride=2), nn.ReLU(), Conv2dSame(8, 8, 5, stride=2), CachedScale())


def test_tf_same_padding_is_traced_with_concrete_sizes():
    with pytest.raises(rfarith.TraceError):
        trace(same_net())  # symbolic: the size arithmetic needs values
    traced = trace(same_net(), (), (1, 3, 33, 33))
    assert traced.front_end == "shapes" and traced.input_shape == (1, 3, 33, 33)
    rep = rfarith.analyze(same_net(), (1, 3, 33, 33))
    assert rep.front_end == "shapes" and "traced with concrete sizes" in rep.render()
    out = rep.output
    # conv 3 s2 p1: j 2, r 3, start 0.5 + (1 - 1) = 0.5; conv 5 s2 p2: j 4, r 3 + 4*2 = 11, start 0.5
    assert out.n == (9, 9) and out.j == (4, 4) and out.r == (11, 11) and out.start == (0.5, 0.5)


def test_the_model_keeps_its_attributes_after_a_shape_trace():
    model = same_net()
    before = {name: dict(m.__dict__) for name, m in model.named_modules()}
    rfarith.analyze(model, (1, 3, 33, 33))
    for name, m in model.named_modules():
        assert set(m.__dict__) == set(before[name]), name
    assert model[3].scale is None and model[3].by_width == {}  # the cache the trace filled is gone


def test_fx_tensor_constants_stay_off_the_model():
    class WithConstant(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3)

        def forward(self, x):
            return self.conv(x) * torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1, 1)

    model = WithConstant()
    keys = set(model.__dict__)
    rep = rfarith.analyze(model, (1, 3, 16, 16))
    assert set(model.__dict__) == keys and not hasattr(model, "_tensor_constant0")
    assert rep.output.r == (3, 3)
    assert crosscheck.compare(model, (1, 3, 16, 16))["status"].eq("agree").all()


def test_a_shape_traced_model_is_compared_node_by_node():
    """The probe runs the graph at its own input sizes: it retraces there, same node names."""
    frame = crosscheck.compare(same_net(), (1, 3, 33, 33))
    assert list(frame.index) == ["0.pad", "0.conv2d", "1", "2.pad", "2.conv2d", "3.mul"]
    assert frame["status"].eq("agree").all(), frame[["status", "reason_text"]]


def test_a_graph_traced_for_one_shape_is_not_walked_at_another():
    model = same_net()
    traced = trace(model, (), (1, 3, 33, 33))
    with pytest.raises(ValueError, match="traced for input shape"):
        walk(model, traced, (1, 3, 65, 65))


def pad_to_multiple(x, multiple):
    """Pads the right and bottom to a multiple of ``multiple`` (a window partition's first
    step): fx keeps it one call (torch.fx.wrap), its sizes come from the shape."""
    h, w = x.shape[-2:]
    return F.pad(x, (0, (multiple - w % multiple) % multiple, 0, (multiple - h % multiple) % multiple))


torch.fx.wrap("pad_to_multiple")


class Windowed(nn.Module):
    """conv 3 (r 3, start 1.5), pad to a multiple of 4, 4x4 average windows (r 3 + 3 = 6, j 4,
    start 1.5 + 1.5 = 3)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return F.avg_pool2d(pad_to_multiple(self.conv(x), 4), 4)


def test_a_wrapped_function_is_traced_into_and_named_inside_it():
    rep = rfarith.analyze(Windowed(), (1, 3, 18, 18))  # conv: 16 -> no padding needed
    assert "pad_to_multiple.pad" in rep.names
    assert rep.output.r == (6, 6) and rep.output.j == (4, 4) and rep.output.start == (3.0, 3.0)
    frame = crosscheck.compare(Windowed(), (1, 3, 19, 19))  # conv: 17 -> padded to 20
    assert frame["status"].eq("agree").all(), frame[["status", "reason_text"]]


def labelled(x):
    """A wrapped function whose result is not one tensor: it stays one call."""
    return x.flip(-1), "flipped"


torch.fx.wrap("labelled")


def test_a_wrapped_function_with_a_structured_result_stays_one_call():
    class Labelled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return labelled(self.conv(x))[0]

    with pytest.raises(rfarith.UnsupportedOp) as info:
        rfarith.analyze(Labelled(), (1, 3, 16, 16))
    assert info.value.node == "labelled"


def test_data_dependent_control_flow_still_fails_with_both_front_ends():
    class Gate(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x

    with pytest.raises(rfarith.TraceError, match="also with concrete shapes"):
        rfarith.analyze(nn.Sequential(nn.Conv2d(3, 4, 3), Gate()), (1, 3, 16, 16))
