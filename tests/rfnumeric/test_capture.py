"""Finding the probed map: node names, module paths and repeated calls, chosen outputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import rfarith
from rfnumeric.capture import Resolver, select_output
from tests.rfnumeric import nets


def test_names_resolve_to_module_hooks_or_graph_nodes():
    resolver = Resolver(nets.Residual())
    assert resolver.resolve(None).kind == "output"
    assert resolver.resolve("conv1").kind == "module"  # a module path needs no trace
    add = resolver.resolve("add")
    assert add.kind == "graph" and add.node is not None
    assert resolver.resolve("relu_1").kind == "graph"  # fx's name of the second relu call
    assert resolver.input_name() == "x"


def test_untraceable_models_resolve_repeat_calls_by_suffix():
    resolver = Resolver(nets.DataDependent())
    assert resolver.traced is None
    loc = resolver.resolve("b_1")
    assert (loc.kind, loc.path, loc.call) == ("module", "b", 1)
    with pytest.raises(rfarith.UnknownNode, match="cannot trace"):
        resolver.resolve("c")


def test_select_output():
    t = torch.zeros(1, 2, 3)
    assert select_output(t, None, "x") is t
    assert select_output((t, None), 0, "x") is t
    assert select_output((None, t), "1", "x") is t  # rfarith's output[1] row name
    assert select_output({"a": t}, "a", "x") is t
    with pytest.raises(ValueError, match="single tensor"):
        select_output(t, 0, "node 'x'")
    with pytest.raises(ValueError, match=r"output 0 of node 'x' is NoneType"):
        select_output((None, t), 0, "node 'x'")
    with pytest.raises(ValueError, match=r"2 outputs \(0: NoneType, 1: tensor 1x2x3\)"):
        select_output((None, t), None, "node 'x'")


def test_module_path_nodes_of_a_traceable_model_need_no_graph():
    """A non-leaf module (a whole block) is a node by its path too, through a hook."""
    model = nn.Sequential(nets.Residual(), nn.Conv2d(3, 3, 3))
    assert Resolver(model).resolve("0").kind == "module"
