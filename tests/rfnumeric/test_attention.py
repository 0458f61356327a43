"""Attention in the structural probe: stacks of hand-written attention blocks stay finite
(query-key products are rescaled by a constant), and the field is the attention-free paths'
in local mode, the whole input in full mode."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import rfnumeric
import rfnumeric.surrogates as surrogates
from rfarith.errors import ProbeError


class Block(nn.Module):
    """Attention written by hand, as users write it: q @ k^T, softmax, @ v, a residual."""

    def __init__(self, dim: int = 16) -> None:
        super().__init__()
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, x):
        att = (self.q(x) @ self.k(x).transpose(-2, -1) / 4.0).softmax(-1)
        return x + att @ self.v(x)


class Stack(nn.Module):
    def __init__(self, depth: int) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, 16, 4, 4)
        self.blocks = nn.Sequential(*[Block() for _ in range(depth)])

    def forward(self, x):
        return self.blocks(self.embed(x).flatten(2).transpose(1, 2))


@pytest.mark.parametrize("depth", [6, 48])
def test_deep_attention_stacks_stay_finite(depth):
    probe = rfnumeric.probe(Stack(depth).eval(), (1, 3, 32, 32))
    assert (probe.r, probe.j, probe.start) == ((4, 4), (4, 4), (2.0, 2.0))
    assert "global" in probe.flags and probe.global_via[0] == "blocks.0.matmul"
    full = rfnumeric.probe(Stack(depth).eval(), (1, 3, 32, 32), mode="full")
    assert full.bounds == ((0, 31), (0, 31))


def test_without_the_rescaling_the_stack_overflows(monkeypatch):
    """The test above would fail without the rescaling: the structural values square at every
    query-key product."""
    monkeypatch.setattr(surrogates, "_bounded", lambda value: value)
    with pytest.raises(ProbeError, match="Inf"):
        rfnumeric.probe(Stack(12).eval(), (1, 3, 32, 32))


def test_rescaling_keeps_a_collapsed_product_collapsed():
    base = torch.full((1, 1, 4, 4), 3.0)
    product = base.expand(1, 8, 4, 4)
    from rfnumeric.mode import expanded, value_of

    bounded = surrogates._bounded(expanded(base, (1, 8, 4, 4)))
    assert value_of(bounded).shape == (1, 1, 4, 4)
    assert torch.equal(bounded, product / 3.0)


class LinearAttention(nn.Module):
    """EfficientViT's lightweight attention: q, k, v chunked from one map, relu kernels,
    ``q @ (k^T v)`` over v padded with ones, divided by the last column, in float32. In local
    mode ``k^T v`` sums over every token: global, not followed."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Conv2d(3, 12, 3, padding=1)
        self.proj = nn.Conv2d(4, 4, 1)

    def forward(self, x):
        b, _, h, w = x.shape
        q, k, v = self.qkv(x).reshape(b, 12, h * w).transpose(-1, -2).chunk(3, dim=-1)
        q, k = torch.relu(q), torch.relu(k)
        v = nn.functional.pad(v, (0, 1), mode="constant", value=1.0)  # a row of ones: the normaliser
        q, k, v = q.float(), k.float(), v.float()
        out = q @ (k.transpose(-1, -2) @ v)
        out = out[..., :-1] / (out[..., -1:] + 1e-15)
        return x[:, :1] + self.proj(out.to(x.dtype).transpose(-1, -2).reshape(b, 4, h, w))


def test_linear_attention_keeps_the_query_field_in_local_mode():
    p = rfnumeric.probe(LinearAttention(), (1, 3, 16, 16))
    # k^T v sums over every token: global, not followed; q times it keeps q's 3x3 field
    assert p.r == (3, 3) and "global" in p.flags
