"""rfnumeric.sweep: every feature map in one table with rfarith's columns and the same answers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import rfarith
import rfnumeric
from tests.rfnumeric import nets
from tests.rfnumeric.test_surrogates import Dense, UpAndConcat

MODELS = {
    "residual": (nets.Residual, (1, 3, 16, 16)),
    "squeeze-excite": (
        lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nets.SqueezeExcite()),
        (1, 3, 16, 16),
    ),
    "classifier": (nets.Classifier, (1, 3, 20, 20)),
    "dense": (Dense, (1, 3, 16, 16)),
    "decoder": (UpAndConcat, (1, 2, 16, 16)),
    "geometry": (nets.Geometry, (2, 2, 40, 40)),
}


def comparable(flags: str) -> str:
    """rfarith's flags without the ones a probe cannot see (misaligned branches, and the holes
    rfarith adds for them)."""
    parts = [f for f in flags.split(", ") if f and f not in ("misaligned",)]
    return ", ".join(parts)


@pytest.mark.parametrize("name", list(MODELS))
def test_sweep_reproduces_rfarith_table(name):
    factory, shape = MODELS[name]
    model = factory().eval()
    table = rfnumeric.sweep(model, shape)
    reference = rfarith.analyze(model, shape).table
    columns = [c for c in reference.columns if not c.startswith("phases_")]
    assert list(table.columns) == columns
    assert list(table.index) == list(reference.index)
    for node in reference.index:
        for column in columns[:-1]:
            assert table.at[node, column] == reference.at[node, column], (node, column)
        assert table.at[node, "flags"] == comparable(reference.at[node, "flags"]), node


def test_sweep_of_an_untraceable_model_covers_every_module_call():
    table = rfnumeric.sweep(nets.DataDependent().eval(), (1, 3, 32, 32))
    assert list(table.index) == ["x", "a", "b"]
    assert list(table["op"]) == ["input", "Conv2d", "Conv2d"]
    assert list(table["r_h"]) == [1, 3, 7] and list(table["j_w"]) == [1, 1, 2]
    assert table.at["b", "shape"] == (1, 4, 13, 13) and table.at["b", "n_h"] == 13


def test_listed_nodes_in_the_given_order():
    table = rfnumeric.sweep(nets.Residual(), (1, 3, 16, 16), nodes=["relu_1", "conv1"])
    assert list(table.index) == ["relu_1", "conv1"]
    assert list(table["r_h"]) == [5, 3]


def test_models_with_several_outputs_get_a_row_per_output():
    from tests.rfnumeric.test_robustness import TwoHeads

    table = rfnumeric.sweep(TwoHeads(as_dict=True), (1, 1, 16, 16))
    assert table.loc["output[low]", "r_h"] == 3 and table.loc["output[high]", "r_h"] == 5
    assert table.loc["output[high]", "op"] == "output"


def test_patch_tokens_behind_a_class_token_are_located_and_measured():
    """The concatenation puts the class token in front of the patch grid: the layout records
    the prefix, the seeds skip it (``layout.seed_positions``), so the patch tokens keep their
    field (they were reported unmeasured before)."""

    class ClassToken(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.patch = nn.Conv2d(1, 4, 4, stride=4)
            self.cls = nn.Parameter(torch.zeros(1, 1, 4))

        def forward(self, x):
            tokens = self.patch(x).flatten(2).transpose(1, 2)
            tokens = torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], dim=1)
            return tokens[:, 0]

    table = rfnumeric.sweep(ClassToken(), (1, 1, 16, 16))
    assert table.at["patch", "r_h"] == 4
    assert (table.at["cat", "r_h"], table.at["cat", "j_h"], table.at["cat", "r_w"]) == (4, 4, 4)
    assert "getattr" not in table.index and "size" not in table.index  # not tensors


def test_sweep_in_full_mode_follows_global_paths():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nets.SqueezeExcite())
    table = rfnumeric.sweep(model, (1, 3, 16, 16), mode="full")
    assert table.at["0", "r_h"] == 3 and table.at["0", "flags"] == ""
    assert table.at["1.conv", "r_h"] == 5 and table.at["1.conv", "flags"] == ""
    assert table.at["1.mul", "r_h"] == 16 and table.at["1.mul", "j_h"] == 0
    assert table.at["1.mul", "flags"] == "global (via 1.pool)"


def test_sweep_of_a_model_that_mixes_the_batch():
    """With several images the survey runs one (the model mixes batch elements); the probes run
    one unit at a time."""
    table = rfnumeric.sweep(nets.BatchMean(), (4, 1, 16, 16))
    assert list(table["r_h"]) == [1, 3, 3, 3]
    assert table.at["conv", "shape"] == (1, 2, 14, 14)


class Activations(nn.Module):
    """Identities of every kind between convolutions: in-place ReLU, BatchNorm, dropout,
    GELU, and a ReLU applied twice to one map (one tensor, three nodes)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(2, 4, 3, stride=2)
        self.bn = nn.BatchNorm2d(4)
        self.relu = nn.ReLU(inplace=True)
        self.drop = nn.Dropout(0.5)
        self.b = nn.Conv2d(4, 4, 3, dilation=2)

    def forward(self, x):
        y = self.drop(self.relu(self.bn(self.a(x))))
        return self.b(torch.nn.functional.gelu(self.relu(y))) + 0 * y.mean()


SHARING_CASES = {**MODELS, "activations": (Activations, (1, 2, 24, 24))}


@pytest.mark.parametrize("name", list(SHARING_CASES))
def test_maps_shared_by_identities_are_measured_once_with_the_same_answer(name, monkeypatch):
    """SHARE_IDENTICAL_MAPS is a shortcut: the table must be exactly the one measuring every
    node on its own gives."""
    import importlib

    sweep_module = importlib.import_module("rfnumeric.sweep")
    factory, shape = SHARING_CASES[name]
    model = factory().eval()
    monkeypatch.setattr(sweep_module, "SHARE_IDENTICAL_MAPS", False)
    alone = rfnumeric.sweep(model, shape)
    monkeypatch.setattr(sweep_module, "SHARE_IDENTICAL_MAPS", True)
    shared = rfnumeric.sweep(model, shape)
    assert alone.astype(str).equals(shared.astype(str))


def test_identities_share_the_map_they_return():
    import importlib

    from rfnumeric.measure import Session

    sweep_module = importlib.import_module("rfnumeric.sweep")
    rows = sweep_module._survey(Session(Activations().eval(), (1, 2, 24, 24)), None, True)
    shared = {row.name: row.same_as for row in rows if row.same_as}
    assert shared == {"bn": "a", "relu": "a", "drop": "a", "relu_1": "a", "gelu": "a"}
