"""Token sequences on their grid: class tokens, hand-written attention, window partitions.

Every expected field is derived by hand in the docstrings. Input 32x32, a 4x4 / stride 4 patch
embedding: 8 x 8 patches, patch (h, w) sees pixels 4h .. 4h+3 along each axis (r 4, j 4,
start 2.0). The attention's field is the whole input, pixels 0 .. 31 (r 32, j 0, start 16.0).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import rfarith
from rfarith.value import TokenDim

from .expect import assert_field, square

PATCH = {"n": square(8), "j": square(4), "r": square(4), "start": square(2.0)}
WHOLE = {"j": square(0), "r": square(32), "start": square(16.0), "flags": {"global"}}
GLOBAL = {"flags": {"global"}}


class Block(nn.Module):
    """Patch embedding, ``prefix`` class tokens in front, one hand-written attention with a
    residual, the grid and the class token read back (as a user writes a ViT block)."""

    def __init__(self, c: int = 8, prefix: int = 1, read_before: bool = False) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, c, 4, stride=4)
        self.cls = nn.Parameter(torch.zeros(1, prefix, c))
        self.qkv = nn.Linear(c, 3 * c)
        self.proj = nn.Linear(c, c)
        self.prefix = prefix
        self.read_before = read_before

    def forward(self, x):
        t = self.patch(x).flatten(2).transpose(1, 2)  # (B, 64, C)
        t = torch.cat([self.cls.expand(t.shape[0], -1, -1), t], dim=1)  # (B, prefix + 64, C)
        if self.read_before:
            return t[:, self.prefix :], t[:, 0]
        q, k, v = self.qkv(t).chunk(3, dim=-1)
        att = (q @ k.transpose(-2, -1)).softmax(-1)
        y = t + self.proj(att @ v)
        return y[:, self.prefix :], y[:, 0]


def test_class_token_keeps_the_grid_and_attention_is_the_cause():
    """cat([cls, tokens], 1): a token dim of 1 + 64 tokens whose grid keeps its axes (the
    patch field, no flag). q @ k^T mixes every token with every token: the scores' rows are the
    queries (n 8 x 8), each sees the whole input, global via that product (not n = 1);
    att @ v keeps the queries' grid, global. The residual t + proj(...): the local field is the
    hull of the paths around the attention: the patch's (r 4, j 4, start 2.0), flagged global
    via matmul. y[:, 1:] is the grid back (the same field); y[:, 0], the class token, sees what
    every token sees together: the whole input, one unit, still via matmul (a read, no mixing)."""
    rep = rfarith.analyze(Block(), (1, 3, 32, 32))
    for node in ("cat", "qkv", "getitem_1", "transpose_1"):
        assert_field(rep[node], **PATCH)
        assert not rep[node].flags
    for node in ("matmul", "softmax", "matmul_1", "proj"):
        assert_field(rep[node], n=square(8), **WHOLE)
        assert rep[node].global_via[0] == "matmul"
    for node in ("add", "getitem_4"):
        assert_field(rep[node], **PATCH, **GLOBAL)
        assert rep[node].global_via[0] == "matmul"
    assert rep.table.loc["getitem_4", "shape"] == (1, 64, 8)
    assert_field(rep["getitem_5"], n=square(1), **WHOLE)
    assert rep["getitem_5"].global_via[0] == "matmul"


def test_register_tokens():
    """Four tokens in front (registers): the same fields; x[:, 4:] is the grid."""
    rep = rfarith.analyze(Block(prefix=4), (1, 3, 32, 32))
    assert_field(rep["cat"], **PATCH)
    assert_field(rep["getitem_4"], **PATCH, **GLOBAL)
    assert rep.table.loc["getitem_4", "shape"] == (1, 64, 8)


def test_class_token_read_before_any_mixing_is_a_constant():
    """Nothing has mixed the tokens yet: the class token is the parameter itself, no field
    (the grid read back is the patch field)."""
    rep = rfarith.analyze(Block(read_before=True), (1, 3, 32, 32))
    assert list(rep.table.index) == ["x", "patch", "flatten", "transpose", "cat", "getitem_1"]
    assert_field(rep["getitem_1"], **PATCH)  # t[:, 1:]; t[:, 0] has no field: no row


class Flattened(nn.Module):
    """A class token, then a reshape that merges the token dim with the features."""

    def __init__(self) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, 8, 4, stride=4)
        self.cls = nn.Parameter(torch.zeros(1, 1, 8))

    def forward(self, x):
        t = self.patch(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls.expand(1, -1, -1), t], dim=1)
        return t.reshape(1, 65 * 8)


def test_reshape_across_a_token_dim_with_a_prefix_is_refused():
    with pytest.raises(rfarith.UnsupportedOp, match="class token"):
        rfarith.analyze(Flattened(), (1, 3, 32, 32))


def test_token_dim_value():
    dim = TokenDim(((0, 8), (1, 8)), 1)
    assert dim.prefix == 1 and tuple(dim) == ((0, 8), (1, 8))
    assert dim[:-1].prefix == 1  # a rule rebuilding it from its factors keeps the prefix
    assert dim != ((0, 8), (1, 8)) and dim == TokenDim(((0, 8), (1, 8)), 1)


class Scores(nn.Module):
    """Hand-written attention on the 8 x 8 grid without a class token (64 tokens)."""

    def __init__(self, c: int = 8) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, c, 4, stride=4)
        self.qkv = nn.Linear(c, 3 * c)

    def forward(self, x):
        t = self.patch(x).flatten(2).transpose(1, 2)
        q, k, v = self.qkv(t).chunk(3, dim=-1)
        att = (q @ k.transpose(-2, -1)).softmax(-1)
        return att @ v


def test_hand_written_attention_keeps_the_queries_grid():
    """att @ v: n 8 x 8 (the queries), every unit the whole input, global via matmul."""
    rep = rfarith.analyze(Scores(), (1, 3, 32, 32))
    assert_field(rep.output, n=square(8), **WHOLE)
    assert rep.output.global_via[0] == "matmul"
    assert rep.table.loc["matmul", "shape"] == (1, 64, 64)
    assert_field(rep["matmul"], n=square(8), **WHOLE)


class Einsum(nn.Module):
    def __init__(self, c: int = 8) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, c, 4, stride=4)

    def forward(self, x):
        t = self.patch(x).flatten(2)  # (B, C, N)
        att = torch.einsum("bci,bcj->bij", t, t).softmax(-1)
        return torch.einsum("bij,bcj->bci", att, t)


def test_einsum_attention_keeps_the_queries_grid():
    rep = rfarith.analyze(Einsum(), (1, 3, 32, 32))
    assert_field(rep.output, n=square(8), **WHOLE)
    assert rep.output.global_via[0] == "einsum"
