"""A complete snapshot of a model's state, to prove a call left the model exactly as it was."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_state_dict_hooks",
    "_load_state_dict_pre_hooks",
)


@dataclass
class ModelSnapshot:
    """State dict values (bit-exact), dtypes, devices, training flags, requires_grad, hooks."""

    tensors: dict[str, torch.Tensor]
    training: dict[str, bool]
    requires_grad: dict[str, bool]
    hooks: dict[str, tuple]
    grads: dict[str, torch.Tensor | None]

    @classmethod
    def of(cls, model: nn.Module) -> ModelSnapshot:
        return cls(
            tensors={k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()},
            training={name: m.training for name, m in model.named_modules()},
            requires_grad={name: p.requires_grad for name, p in model.named_parameters()},
            hooks={
                f"{name}.{attr}": tuple(getattr(m, attr, {}).items())
                for name, m in model.named_modules()
                for attr in _HOOK_DICTS
            },
            grads={name: None if p.grad is None else p.grad.clone() for name, p in model.named_parameters()},
        )

    def assert_same(self, model: nn.Module) -> None:
        after = ModelSnapshot.of(model)
        assert after.training == self.training, "training flags changed"
        assert after.requires_grad == self.requires_grad, "requires_grad flags changed"
        assert after.hooks == self.hooks, "hooks changed"
        assert self.tensors.keys() == after.tensors.keys(), "state dict keys changed"
        for key, before in self.tensors.items():
            now = after.tensors[key]
            assert now.dtype == before.dtype and now.device == before.device, f"{key}: dtype/device changed"
            if before.device.type != "meta":
                assert torch.equal(now, before), f"{key}: values changed"
        for key, before in self.grads.items():
            now = after.grads[key]
            assert (now is None) == (before is None), f"{key}: .grad changed"
            if before is not None:
                assert torch.equal(now, before), f"{key}: .grad values changed"
