"""The published examples: the guide's AlexNet table and the two Keras examples of the seeds.

The guide's recurrences for a layer with kernel k, stride s, left padding p (dilation 1):

    n' = floor((n + p_l + p_r - k) / s) + 1
    j' = j * s
    r' = r + (k - 1) * j
    start' = start + ((k - 1) / 2 - p) * j

starting from the input's n = N, j = 1, r = 1, start = 0.5.
"""

from __future__ import annotations

from collections import OrderedDict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import rfarith
from tests.snapshot import ModelSnapshot

from .expect import assert_field, square


def guide_alexnet() -> nn.Sequential:
    """The guide's AlexNet: conv 11/4/0, pool 3/2, conv 5/1/2, pool 3/2, conv 3/1/1 x3,
    pool 3/2, fc6 as a 6x6 conv, fc7 as a 1x1 conv (few channels: only geometry matters)."""
    c = 4
    return nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(3, c, 11, stride=4),
            relu1=nn.ReLU(inplace=True),
            pool1=nn.MaxPool2d(3, stride=2),
            conv2=nn.Conv2d(c, c, 5, padding=2),
            relu2=nn.ReLU(inplace=True),
            pool2=nn.MaxPool2d(3, stride=2),
            conv3=nn.Conv2d(c, c, 3, padding=1),
            relu3=nn.ReLU(inplace=True),
            conv4=nn.Conv2d(c, c, 3, padding=1),
            relu4=nn.ReLU(inplace=True),
            conv5=nn.Conv2d(c, c, 3, padding=1),
            relu5=nn.ReLU(inplace=True),
            pool5=nn.MaxPool2d(3, stride=2),
            fc6=nn.Conv2d(c, 8, 6),
            relu6=nn.ReLU(inplace=True),
            fc7=nn.Conv2d(8, 8, 1),
        )
    )


# Derived by hand with the recurrences above, input 227:
#   conv1 k11 s4 p0: n = (227-11)/4+1 = 55, j = 4,  r = 1+10*1 = 11,    start = 0.5+5*1 = 5.5
#   pool1 k3 s2:     n = (55-3)/2+1 = 27,   j = 8,  r = 11+2*4 = 19,    start = 5.5+1*4 = 9.5
#   conv2 k5 s1 p2:  n = 27,                j = 8,  r = 19+4*8 = 51,    start = 9.5+(2-2)*8 = 9.5
#   pool2 k3 s2:     n = (27-3)/2+1 = 13,   j = 16, r = 51+2*8 = 67,    start = 9.5+1*8 = 17.5
#   conv3 k3 s1 p1:  n = 13,                j = 16, r = 67+2*16 = 99,   start = 17.5+(1-1)*16 = 17.5
#   conv4 k3 s1 p1:  n = 13,                j = 16, r = 99+32 = 131,    start = 17.5
#   conv5 k3 s1 p1:  n = 13,                j = 16, r = 131+32 = 163,   start = 17.5
#   pool5 k3 s2:     n = (13-3)/2+1 = 6,    j = 32, r = 163+2*16 = 195, start = 17.5+1*16 = 33.5
#   fc6 k6:          n = (6-6)/1+1 = 1,     j = 32, r = 195+5*32 = 355, start = 33.5+2.5*32 = 113.5
#   fc7 k1:          n = 1,                 j = 32, r = 355,            start = 113.5
# This is the guide's published table.
ALEXNET_TABLE = {
    "conv1": (55, 4, 11, 5.5),
    "pool1": (27, 8, 19, 9.5),
    "conv2": (27, 8, 51, 9.5),
    "pool2": (13, 16, 67, 17.5),
    "conv3": (13, 16, 99, 17.5),
    "conv4": (13, 16, 131, 17.5),
    "conv5": (13, 16, 163, 17.5),
    "pool5": (6, 32, 195, 33.5),
    "fc6": (1, 32, 355, 113.5),
    "fc7": (1, 32, 355, 113.5),
}


@pytest.fixture(scope="module")
def alexnet_report():
    return rfarith.analyze(guide_alexnet(), (1, 3, 227, 227))


@pytest.mark.parametrize("layer", list(ALEXNET_TABLE))
def test_alexnet_matches_the_guide_table(alexnet_report, layer):
    n, j, r, start = ALEXNET_TABLE[layer]
    assert_field(alexnet_report[layer], n=square(n), j=square(j), r=square(r), start=square(start))


def test_alexnet_relus_pass_fields_through(alexnet_report):
    """A ReLU is neutral: relu5 reads exactly what conv5 reads."""
    assert_field(alexnet_report["relu5"], n=square(13), j=square(16), r=square(163), start=square(17.5))


def test_alexnet_table_rows_and_output(alexnet_report):
    table = alexnet_report.table
    layers = list(ALEXNET_TABLE)
    # the input row first, named after forward's argument (nn.Sequential calls it `input`)
    assert [name for name in table.index if not name.startswith("relu")] == ["input", *layers]
    for layer, (n, j, r, start) in ALEXNET_TABLE.items():
        row = table.loc[layer]
        for a in ("h", "w"):
            assert (row[f"n_{a}"], row[f"j_{a}"], row[f"r_{a}"], row[f"start_{a}"]) == (n, j, r, start)
    assert alexnet_report.output.node == "fc7"


def test_alexnet_effective_padding_and_offsets(alexnet_report):
    """Converters of DESIGN.md: offset = lo(0) = start - r/2; centre0 = start - 0.5.

    pool5: lo(0) = 33.5 - 195/2 = -64 (64 pixels of effective padding), centre0 = 33.
    fc6: lo(0) = 113.5 - 355/2 = -64, hi(0) = 113.5 + 177.5 - 1 = 290 (past the 227 input).
    """
    assert alexnet_report["pool5"].offset == (-64, -64)
    assert alexnet_report["pool5"].centre0 == (33.0, 33.0)
    assert alexnet_report["fc6"].bounds((0, 0)) == ((-64, 290), (-64, 290))


def test_alexnet_is_left_unchanged():
    model = guide_alexnet().train()
    snap = ModelSnapshot.of(model)
    rfarith.analyze(model, (1, 3, 227, 227))
    snap.assert_same(model)


def keras_minimal() -> nn.Sequential:
    """seeds/002, 'Keras minimal': Conv2D 7x7, Conv2D 5x5, AvgPool2D(), Conv2D 5x5 named
    feature_grid, AvgPool2D(); Keras defaults: padding 'valid', pool size 2, stride = pool size."""
    return nn.Sequential(
        OrderedDict(
            conv2d_1=nn.Conv2d(3, 4, 7),
            conv2d_2=nn.Conv2d(4, 4, 5),
            average_pooling2d_1=nn.AvgPool2d(2),
            feature_grid=nn.Conv2d(4, 8, 5),
            average_pooling2d_2=nn.AvgPool2d(2),
        )
    )


def test_keras_minimal_example():
    """Published (input 64): feature map 23x23, size 20, stride 2, offset 10.0 (our start).

    conv 7:  n = 64-6 = 58, j = 1, r = 7,           start = 0.5+3 = 3.5
    conv 5:  n = 54,        j = 1, r = 7+4 = 11,    start = 3.5+2 = 5.5
    pool 2:  n = 27,        j = 2, r = 11+1 = 12,   start = 5.5+0.5 = 6.0
    conv 5:  n = 23,        j = 2, r = 12+4*2 = 20, start = 6.0+2*2 = 10.0   <- feature_grid
    pool 2:  n = 11,        j = 4, r = 20+1*2 = 22, start = 10.0+0.5*2 = 11.0
    """
    rep = rfarith.analyze(keras_minimal(), (1, 3, 64, 64))
    assert_field(rep["feature_grid"], n=square(23), j=square(2), r=square(20), start=square(10.0))
    assert_field(rep.output, n=square(11), j=square(4), r=square(22), start=square(11.0))
    # their offset is the centre of unit 0's field, i.e. pixels 0 .. 19
    assert rep["feature_grid"].bounds((0, 0)) == ((0, 19), (0, 19))


def keras_detailed() -> nn.Sequential:
    """seeds/002 and 003, 'Keras more detailed': padding 'valid' everywhere."""
    return nn.Sequential(
        OrderedDict(
            conv2d_1=nn.Conv2d(3, 4, 5),
            conv2d_2=nn.Conv2d(4, 4, 3),
            average_pooling2d_1=nn.AvgPool2d(2),
            conv2d_3=nn.Conv2d(4, 4, 3),
            conv2d_4=nn.Conv2d(4, 4, 3),
            average_pooling2d_2=nn.AvgPool2d(2),
            conv2d_5=nn.Conv2d(4, 4, 3),
            feature_grid=nn.Conv2d(4, 8, 3),
        )
    )


# Input 96 (the published model.summary() gives the n column):
#   conv 5: n 92, j 1, r 5,  start 2.5
#   conv 3: n 90, j 1, r 7,  start 3.5
#   pool 2: n 45, j 2, r 8,  start 4.0
#   conv 3: n 43, j 2, r 12, start 6.0
#   conv 3: n 41, j 2, r 16, start 8.0
#   pool 2: n 20, j 4, r 18, start 9.0
#   conv 3: n 18, j 4, r 26, start 13.0
#   conv 3: n 16, j 4, r 34, start 17.0   published: size 34, stride 4, offset 17.0, 16x16
KERAS_DETAILED = {
    "conv2d_1": (92, 1, 5, 2.5),
    "conv2d_2": (90, 1, 7, 3.5),
    "average_pooling2d_1": (45, 2, 8, 4.0),
    "conv2d_3": (43, 2, 12, 6.0),
    "conv2d_4": (41, 2, 16, 8.0),
    "average_pooling2d_2": (20, 4, 18, 9.0),
    "conv2d_5": (18, 4, 26, 13.0),
    "feature_grid": (16, 4, 34, 17.0),
}


def test_keras_detailed_example():
    rep = rfarith.analyze(keras_detailed(), (1, 3, 96, 96))
    for layer, (n, j, r, start) in KERAS_DETAILED.items():
        assert_field(rep[layer], n=square(n), j=square(j), r=square(r), start=square(start))
    assert rep.output.node == "feature_grid"
    assert rep.table.loc["feature_grid", "shape"] == (1, 8, 16, 16)


# ---- random stacks ------------------------------------------------------------------------------
@st.composite
def stack(draw):
    """1 to 4 layers: Conv1d (any k, s, d, p), MaxPool1d (p <= k/2, optional ceil_mode),
    AvgPool1d (p <= k/2, optional ceil_mode), with the guide's parameters alongside."""
    layers = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["conv", "max", "avg"]))
        k, s = draw(st.integers(1, 5)), draw(st.integers(1, 3))
        d = draw(st.integers(1, 3)) if kind != "avg" else 1
        p = draw(st.integers(0, 3)) if kind == "conv" else draw(st.integers(0, k // 2))
        ceil = draw(st.booleans()) if kind != "conv" else False
        layers.append((kind, k, s, d, p, ceil))
    return layers


def build(layers) -> nn.Sequential:
    modules = []
    for kind, k, s, d, p, ceil in layers:
        if kind == "conv":
            modules.append(nn.Conv1d(2, 2, k, stride=s, padding=p, dilation=d))
        elif kind == "max":
            modules.append(nn.MaxPool1d(k, stride=s, padding=p, dilation=d, ceil_mode=ceil))
        else:
            modules.append(nn.AvgPool1d(k, stride=s, padding=p, ceil_mode=ceil))
    return nn.Sequential(*modules)


def expected(layers, length: int):
    """The guide, with PyTorch's output size: n' = floor or ceil((n + 2p - d(k-1) - 1)/s) + 1,
    where with ceil_mode a last window starting in the right padding is dropped."""
    n, j, r, start = length, 1, 1, 0.5
    for _, k, s, d, p, ceil in layers:
        span = n + 2 * p - d * (k - 1) - 1
        out = (-(-span // s) if ceil else span // s) + 1
        if ceil and (out - 1) * s >= n + p:
            out -= 1
        n, j, r, start = out, j * s, r + d * (k - 1) * j, start + (d * (k - 1) / 2 - p) * j
        if n < 1:
            return None
    return n, j, r, start


@settings(max_examples=30, deadline=None)
@given(stack())
def test_random_stacks_follow_the_guide(layers):
    want = expected(layers, 96)
    if want is None:
        return  # the input is too small for this stack (tested in test_errors.py)
    rf = rfarith.analyze(build(layers), (1, 2, 96)).output
    assert_field(rf, n=(want[0],), j=(want[1],), r=(want[2],), start=(want[3],), flags=rf.flags)
