"""The probe's private copy: float64, eval mode, hook-free, weights it chooses; the user's model
shares nothing with it."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import rfarith
from rfnumeric.copying import probe_copy
from tests.rfnumeric import nets


def test_structural_copy_has_free_constant_parameters():
    model = nets.Residual().train()
    copy = probe_copy(model, "structural")
    assert not copy.training and all(not m.training for m in copy.modules())
    for (name, p), (_, original) in zip(copy.named_parameters(), model.named_parameters()):
        assert p.dtype == torch.float64 and not p.requires_grad
        assert p.shape == original.shape and p.data_ptr() != original.data_ptr()
        assert set(p.stride()) == {0}  # one stored number, broadcast: no memory per weight
        assert float(p.reshape(-1)[0]) == (0.0 if name.endswith("bias") else 1.0)
    assert copy.bn1.running_var.dtype == torch.float64


def test_real_copy_keeps_values_in_float64():
    torch.manual_seed(0)
    model = nn.Conv2d(2, 3, 3)
    copy = probe_copy(model, "real")
    assert torch.equal(copy.weight, model.weight.double())
    with torch.no_grad():
        copy.weight.add_(1)
    assert not torch.equal(copy.weight, model.weight.double())  # nothing shared


def test_shared_parameters_stay_shared():
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    model[1].weight = model[0].weight
    copy = probe_copy(model, "real")
    assert copy[1].weight is copy[0].weight


def test_hooks_are_left_behind():
    model = nn.Conv2d(1, 1, 3)
    model.register_forward_hook(lambda *a: None)
    model.register_forward_pre_hook(lambda *a: None)
    copy = probe_copy(model, "structural")
    assert not copy._forward_hooks and not copy._forward_pre_hooks
    assert len(model._forward_hooks) == 1 and len(model._forward_pre_hooks) == 1


def test_plain_tensor_attributes_become_float64():
    class Anchored(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.anchor = torch.ones(3)

        def forward(self, x):
            return x * self.anchor

    assert probe_copy(Anchored(), "real").anchor.dtype == torch.float64


def test_uncopyable_models_and_wrong_arguments():
    class Locked(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.file = open(__file__)  # noqa: SIM115  (deepcopy cannot copy an open file)

    model = Locked()
    try:
        with pytest.raises(rfarith.ProbeError, match="cannot copy the model"):
            probe_copy(model, "structural")
    finally:
        model.file.close()
    with pytest.raises(TypeError, match="must be a torch.nn.Module"):
        probe_copy(lambda x: x, "structural")


# ---- the fast module-tree copy gives what copy.deepcopy gives ---------------------------------
class Stateful(nn.Module):
    """Mutable attributes of every kind the fast copy must not share with the original."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1)
        self.shared = self.conv  # the same submodule twice
        self.calls: list[int] = []
        self.table = {"scale": [1.0]}
        self.empty: dict = {}
        self.config = ("same", (3, 3), torch.float32)

    def forward(self, x):
        self.calls.append(1)
        return self.shared(self.conv(x))


class OwnDeepcopy(nn.Module):
    """A module with its own copy protocol: the whole model goes through copy.deepcopy."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3)
        self.copied = 0

    def __deepcopy__(self, memo):
        clone = OwnDeepcopy.__new__(OwnDeepcopy)
        memo[id(self)] = clone
        clone.__dict__.update(copy.deepcopy(self.__dict__, memo))
        clone.copied = self.copied + 1
        return clone

    def forward(self, x):
        return self.conv(x)


def test_fast_copy_shares_nothing_mutable_and_keeps_the_tree():
    from rfnumeric.copying import _plainly_copyable

    model = nn.Sequential(Stateful(), nn.BatchNorm2d(2), nn.ReLU())
    assert _plainly_copyable(model)
    clone = probe_copy(model, "structural")
    original, copied = model[0], clone[0]
    assert [type(m) for m in clone.modules()] == [type(m) for m in model.modules()]
    assert copied.shared is copied.conv and copied.conv is not original.conv
    for name in ("calls", "table", "empty"):
        assert getattr(copied, name) == getattr(original, name)
        assert getattr(copied, name) is not getattr(original, name)
    assert copied.table["scale"] is not original.table["scale"]
    assert copied.config == original.config
    clone(torch.ones(1, 2, 5, 5, dtype=torch.float64))
    assert original.calls == [] and copied.calls == [1]  # the probe's forward leaves the model be
    assert clone[1].running_mean.dtype == torch.float64
    assert original.conv.weight.dtype == torch.float32


def test_a_module_with_its_own_copy_protocol_is_deep_copied():
    from rfnumeric.copying import _plainly_copyable

    model = nn.Sequential(OwnDeepcopy())
    assert not _plainly_copyable(model)
    assert probe_copy(model, "structural")[0].copied == 1
