"""Tracing (rfarith/tracing.py): torchvision-style qualified node names, leaves, bare layers.

Naming, as torchvision's ``get_graph_node_names`` gives it: a module call is named by its
module path (``features.3``); any other op by the path of the module whose forward called it
plus the op's name (``layer1.0.add``, ``flatten`` at the top); repeats in the same scope get
``_1``, ``_2`` (``layer1.0.relu_1`` for a ReLU module called twice). The input is named after
forward's argument.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import rfarith
from rfarith.rules.params import Window
from tests.snapshot import ModelSnapshot

from .expect import assert_field, square


class BasicBlock(nn.Module):
    """torchvision's BasicBlock: one ReLU module called twice, an in-place residual add."""

    def __init__(self, c):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class MiniResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = nn.Sequential(BasicBlock(4), BasicBlock(4))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 10)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


# What torchvision's get_graph_node_names(resnet18()) lists, cut down to one stage of two blocks.
BLOCK = ["conv1", "bn1", "relu", "conv2", "bn2", "add", "relu_1"]
RESNET_NAMES = (
    ["x", "conv1", "bn1", "relu", "maxpool"]
    + [f"layer1.{b}.{op}" for b in (0, 1) for op in BLOCK]
    + ["avgpool", "flatten", "fc"]
)


def test_qualified_names_like_torchvision():
    assert rfarith.node_names(MiniResNet()) == RESNET_NAMES


def test_report_rows_use_the_same_names():
    """Every node here carries a feature map (fc's output is global), so the rows are the
    names in graph order."""
    rep = rfarith.analyze(MiniResNet(), (1, 3, 32, 32))
    assert rep.names == RESNET_NAMES
    assert list(rep.table.index) == RESNET_NAMES
    assert rfarith.node_names(MiniResNet(), (1, 3, 32, 32)) == RESNET_NAMES


def test_names_resolve_to_the_expected_fields():
    """32x32 input.
    conv1 7x7 s2 p3: n = 16, j = 2, r = 7, start = 0.5+(3-3) = 0.5
    maxpool 3 s2 p1: n = 8, j = 4, r = 7+2*2 = 11, start = 0.5+(1-1)*2 = 0.5
    layer1.0.conv1 3x3 p1: r = 11+2*4 = 19; layer1.0.conv2: r = 27; add (identity r 11): 27
    layer1.0.relu_1: 27; layer1.1.add: 27+16 = 43, start 0.5 throughout."""
    rep = rfarith.analyze(MiniResNet(), (1, 3, 32, 32))
    assert_field(rep["maxpool"], n=square(8), j=square(4), r=square(11), start=square(0.5))
    assert_field(rep["layer1.0.conv1"], n=square(8), j=square(4), r=square(19), start=square(0.5))
    assert_field(rep["layer1.0.relu"], n=square(8), j=square(4), r=square(19), start=square(0.5))
    assert_field(rep["layer1.0.add"], n=square(8), j=square(4), r=square(27), start=square(0.5))
    assert_field(rep["layer1.0.relu_1"], n=square(8), j=square(4), r=square(27), start=square(0.5))
    assert_field(rep["layer1.1.relu_1"], n=square(8), j=square(4), r=square(43), start=square(0.5))
    assert rep["layer1.1.relu_1"].node == "layer1.1.relu_1"


class Repeats(nn.Module):
    """Functional ops repeated at the top level and inside a Sequential named `features`."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3))
        self.act = nn.ReLU()

    def forward(self, image):
        y = self.features(image)
        y = self.act(y) + y
        y = F.relu(y) + self.act(y)
        return y + 1


def test_module_paths_and_repeated_ops():
    assert rfarith.node_names(Repeats()) == [
        "image",
        "features.0", "features.1", "features.2", "features.3",
        "act", "add", "relu", "act_1", "add_1", "add_2",
    ]  # fmt: skip


def test_unknown_node_name_lists_close_names():
    rep = rfarith.analyze(Repeats(), (1, 3, 16, 16))
    with pytest.raises(rfarith.UnknownNode) as info:
        rep["featurs.3"]
    err = info.value
    assert isinstance(err, KeyError) and isinstance(err, rfarith.RFError)
    message = str(err)
    assert "'featurs.3'" in message
    assert "Close names: features.3" in message  # the closest first
    assert "node_names" in message  # how to list them all


def test_unknown_node_name_for_a_repeat_that_does_not_exist():
    rep = rfarith.analyze(MiniResNet(), (1, 3, 32, 32))
    with pytest.raises(KeyError, match=r"layer1\.0\.relu_1"):
        rep["layer1.0.relu_2"]
    assert "layer1.0.relu_2" not in rep and "layer1.0.relu_1" in rep


# ---- leaves and user rules --------------------------------------------------------------------
class Blur(nn.Module):
    """A 3x3 blur with Python control flow on sizes, which torch.fx cannot trace."""

    def forward(self, x):
        if x.shape[-1] > 1:
            return F.avg_pool2d(x, 3, 1, 1)
        return x


rfarith.register_window(Blur, lambda m: Window((3, 3), (1, 1), (1, 1), (1, 1)))


class Swish(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(x) if x.dim() > 0 else x


rfarith.register_neutral(Swish)


class WithCustomLayers(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2)
        self.blur = Blur()
        self.act = Swish()

    def forward(self, x):
        return self.act(self.blur(self.conv(x)))


def test_registered_window_and_neutral_modules_are_leaves():
    """9x9: conv 3x3 s2: n 4, j 2, r 3, start 1.5. Blur registered as a 3x3 p1 window:
    r = 3+2*2 = 7, start 1.5. Swish registered as neutral: unchanged."""
    rep = rfarith.analyze(WithCustomLayers(), (1, 3, 9, 9))
    assert rep.names == ["x", "conv", "blur", "act"]
    assert rep.table.loc["blur", "op"] == "Blur"
    assert_field(rep.output, n=square(4), j=square(2), r=square(7), start=square(1.5))


def test_register_rule_refuses_duplicates():
    with pytest.raises(ValueError, match="already registered"):
        rfarith.register_neutral(Swish)


class Plain(nn.Module):
    def forward(self, x):
        return F.max_pool2d(x, 2)


class HasPlain(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = Plain()

    def forward(self, x):
        return self.inner(x)


def test_leaf_modules_without_a_rule_raise_unsupported_op():
    """Traced into, `inner.max_pool2d` is a 2x2 pool (r 2, j 2, start 1.0); marked a leaf by
    path or by class it has no rule: UnsupportedOp naming the node `inner` and `Plain`."""
    rep = rfarith.analyze(HasPlain(), (1, 3, 8, 8))
    assert rep.names == ["x", "inner.max_pool2d"]
    assert_field(rep.output, n=square(4), j=square(2), r=square(2), start=square(1.0))
    for leaf in ("inner", Plain):
        with pytest.raises(rfarith.UnsupportedOp) as info:
            rfarith.analyze(HasPlain(), (1, 3, 8, 8), leaf_modules=[leaf])
        assert info.value.node == "inner" and "Plain" in str(info.value)


# ---- bare layers and the model's mode ---------------------------------------------------------
# (layer, n, r, start) on 8x8, derived as everywhere: k3 p1 keeps n 8, r 3, start 0.5;
# a pad of 1: n 10, r 1, start 0.5-1 = -0.5; a transposed k3 s1 p1 reads units o-1 .. o+1.
BARE = [
    (nn.Conv2d(3, 3, 3, padding=1), 8, 3, 0.5),
    (nn.MaxPool2d(3, 1, 1), 8, 3, 0.5),
    (nn.ReflectionPad2d(1), 10, 1, -0.5),
    (nn.ReLU(), 8, 1, 0.5),
    (nn.ConvTranspose2d(3, 3, 3, padding=1), 8, 3, 0.5),
    (nn.BatchNorm2d(3), 8, 1, 0.5),
    (nn.InstanceNorm2d(3), 8, 1, 0.5),
]
if hasattr(nn, "CircularPad2d"):
    BARE.append((nn.CircularPad2d(1), 10, 1, -0.5))


@pytest.mark.parametrize("layer, n, r, start", BARE, ids=[type(b[0]).__name__ for b in BARE])
def test_a_bare_layer_is_a_model(layer, n, r, start):
    """analyze(layer, ...) works for any single layer with a rule, as for nn.Conv2d in the
    package docstring."""
    out = rfarith.analyze(layer, (1, 3, 8, 8)).output
    assert (out.n, out.j, out.r, out.start) == (square(n), square(1), square(r), square(start))


class TrainOnlyBranch(nn.Module):
    """Torchvision-style models hide training-only code behind `if self.training`."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.extra = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        x = self.conv(x)
        if self.training:
            x = self.extra(x)
        return x


def test_model_in_eval_mode_is_read_in_eval_mode():
    model = TrainOnlyBranch().eval()
    assert_field(rfarith.analyze(model, (1, 3, 8, 8)).output, n=square(8), j=square(1), r=square(3), start=square(0.5))


def test_model_in_training_mode_is_read_in_eval_mode():
    """The analysis reads the model as it runs in eval mode (guard.eval_mode): conv only,
    r = 3, not r = 5 through the training-only conv; the model stays in training mode."""
    model = TrainOnlyBranch().train()
    snap = ModelSnapshot.of(model)
    out = rfarith.analyze(model, (1, 3, 8, 8)).output
    snap.assert_same(model)
    assert_field(out, n=square(8), j=square(1), r=square(3), start=square(0.5))
