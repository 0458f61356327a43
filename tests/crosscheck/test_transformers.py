"""Transformers end to end: crosscheck.compare agrees on every row, in local and full mode.

A small ViT of the zoo's VisionTransformer (32x32 input, 4x4 patches: 8 x 8 tokens and a class
token) and a hand-written attention block as a user writes it. Expected by hand: a token after
the patch embedding sees its patch (r 4, j 4, start 2.0); in local mode a token after a block
keeps that field (the residual path around the attention), flagged global via the attention;
the attention's own output and the class token see the whole input (r 32, j 0, start 16.0).
In full mode every row after the first attention sees the whole input.
"""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

import crosscheck
import rfarith
from crosscheck.zoo.transformer import VisionTransformer
from rfnumeric import measure

SHAPE = (1, 3, 32, 32)
# The probe places a unit behind a class token only where its seed uses layout.seed_positions
# (rfnumeric/measure.py::_seed_index, owned elsewhere); until then those rows are not compared.
PREFIX_SEEDS = "seed_positions" in inspect.getsource(measure._seed_index)
needs_prefix_seeds = pytest.mark.skipif(
    not PREFIX_SEEDS, reason="rfnumeric.measure does not place seeds with layout.seed_positions yet"
)


class UserAttention(nn.Module):
    """Patch embedding, tokens, one hand-written single-head attention with a residual, back to
    a grid (no class token)."""

    def __init__(self, c: int = 8) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, c, 4, stride=4)
        self.norm = nn.LayerNorm(c)
        self.qkv = nn.Linear(c, 3 * c)
        self.proj = nn.Linear(c, c)

    def forward(self, x):
        b, _, h, w = x.shape
        t = self.patch(x).flatten(2).transpose(1, 2)  # (B, 64, C)
        q, k, v = self.qkv(self.norm(t)).chunk(3, dim=-1)
        att = (q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5).softmax(dim=-1)
        t = t + self.proj(att @ v)
        return t.transpose(1, 2).reshape(b, -1, h // 4, w // 4)


def small_vit() -> nn.Module:
    return VisionTransformer(image_size=32, patch_size=4, num_layers=1, num_heads=2, hidden_dim=16, mlp_dim=32).eval()


def fields(df, node):
    row = df.loc[node]
    return (row["r_h"], row["j_h"], row["start_h"]), (row["r_h_num"], row["j_h_num"], row["start_h_num"])


@pytest.mark.parametrize("mode", ["local", "full"])
def test_hand_written_attention_agrees(mode):
    df = crosscheck.compare(UserAttention(), SHAPE, mode=mode, max_size=64)
    assert (df["status"] == "agree").all(), crosscheck.render(df) if hasattr(crosscheck, "render") else df
    whole = (32, 0, 16.0)
    for node in ("matmul", "softmax", "matmul_1", "proj"):  # q @ k^T onwards: every token
        assert df.loc[node, "n_h"] == 8  # the queries' grid, not one unit
        analytic, numeric = fields(df, node)
        assert analytic == whole and tuple(numeric) == whole
        assert df.loc[node, "global_via"].startswith("matmul")
    # the table's analytic field is the local one in both modes (in full mode the whole input
    # is what is compared for a row flagged global); the probe measures the mode's own field
    analytic, numeric = fields(df, "reshape")
    assert analytic == (4, 4, 2.0)
    assert tuple(numeric) == ((4, 4, 2.0) if mode == "local" else whole)
    assert "global" in df.loc["reshape", "flags"] and "global" in df.loc["reshape", "flags_num"]


def test_small_vit_analysis():
    """The class token no longer hides the grid: the tokens keep the patch field through the
    concatenation; the attention is the cause of global."""
    rep = rfarith.analyze(small_vit(), SHAPE)
    attention = "encoder.layers.encoder_layer_0.self_attention"
    assert (rep["cat"].r, rep["cat"].j, rep["cat"].start) == ((4, 4), (4, 4), (2.0, 2.0))
    assert not rep["cat"].flags
    last = rep["encoder.layers.encoder_layer_0.add_1"]
    assert (last.r, last.j, last.start) == ((4, 4), (4, 4), (2.0, 2.0))
    assert last.global_via == (attention,)
    assert (rep.output.r, rep.output.j) == ((32, 32), (0, 0)) and rep.output.global_via == (attention,)


@needs_prefix_seeds
@pytest.mark.parametrize("mode", ["local", "full"])
def test_small_vit_agrees(mode):
    df = crosscheck.compare(small_vit(), SHAPE, mode=mode)
    assert (df["status"] == "agree").all(), df[["status", "reason"]]
    token = "encoder.layers.encoder_layer_0.add_1"
    analytic, numeric = fields(df, token)
    assert analytic == (4, 4, 2.0)
    assert tuple(numeric) == ((4, 4, 2.0) if mode == "local" else (32, 0, 16.0))


class ClassAttention(nn.Module):
    """CaiT's ending: the class token is computed from the patch tokens by class attention (one
    learned query over every token), then put in front of them: ``cat([cls, tokens])``. The
    patch tokens keep their grid behind an input-dependent class token: r 4, j 4, start 2.0,
    flagged global via the class attention; the class token itself sees the whole input."""

    def __init__(self, c: int = 8) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, c, 4, stride=4)
        self.query = nn.Parameter(torch.randn(1, 1, c))
        self.norm = nn.LayerNorm(c)

    def forward(self, x):
        t = self.patch(x).flatten(2).transpose(1, 2)  # (B, 64, C)
        att = (self.query @ t.transpose(-2, -1)).softmax(dim=-1)  # (B, 1, 64)
        cls = att @ t  # (B, 1, C)
        return self.norm(torch.cat([cls, t], dim=1))


def test_a_class_token_computed_from_the_tokens_keeps_the_grid_behind_it():
    rep = rfarith.analyze(ClassAttention(), SHAPE)
    out = rep.output
    assert (out.r, out.j, out.start) == ((4, 4), (4, 4), (2.0, 2.0)) and "global" in out.flags
    frame = crosscheck.compare(ClassAttention(), SHAPE)
    assert frame["status"].eq("agree").all(), frame[["status", "reason_text"]]
    assert fields(frame, "norm") == ((4, 4, 2.0), (4, 4, 2.0))
