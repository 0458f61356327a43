"""A small Swin Transformer: attention inside windows, shifted windows, patch merging.

Patch embedding 4x4 (stride 4), two stages of two blocks (window 7 tokens; the second block of
each stage shifts the windows by 3 tokens with ``torch.roll`` and masks the attention between
tokens that the roll brought together, with a constant additive mask of -100 as Swin does),
patch merging (2x2 neighbouring tokens concatenated, LayerNorm, Linear) between the stages, dim
48. Input (1, 3, 112, 112): 28x28 tokens in stage 1, 14x14 in stage 2.

Window attention is local: a token sees its window, exactly (the window partition keeps the
grid; ``rfarith`` gives every unit the window's field, period 7). The shifted windows wrap
around the border (``torch.roll`` is circular): a token of a window that wraps sees tokens at
both borders, a field with holes. The additive mask leaves every token of the shifted window
connected to every other (exp(-100) is not zero), so it does not shrink the field.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import register


def window_partition(x: torch.Tensor, w: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * H//w * W//w, w*w, C): the windows, each a row-major w x w block."""
    B, H, W, C = x.shape
    return x.view(B, H // w, w, W // w, w, C).permute(0, 1, 3, 2, 4, 5).reshape(-1, w * w, C)


def window_reverse(windows: torch.Tensor, w: int, H: int, W: int) -> torch.Tensor:
    """The inverse of :func:`window_partition`: (B * nW, w*w, C) -> (B, H, W, C)."""
    C = windows.shape[-1]
    B = windows.shape[0] // ((H // w) * (W // w))
    return windows.view(B, H // w, W // w, w, w, C).permute(0, 1, 3, 2, 4, 5).reshape(B, H, W, C)


def shift_mask(H: int, W: int, w: int, s: int) -> torch.Tensor:
    """Swin's attention mask for windows shifted by ``s``: (nW, w*w, w*w), 0 between tokens of
    the same region, -100 between tokens the cyclic shift brought into one window."""
    img = torch.zeros(1, H, W, 1)
    count = 0
    for hs in (slice(0, -w), slice(-w, -s), slice(-s, None)):
        for ws in (slice(0, -w), slice(-w, -s), slice(-s, None)):
            img[:, hs, ws, :] = count
            count += 1
    windows = window_partition(img, w).squeeze(-1)  # (nW, w*w)
    mask = windows.unsqueeze(1) - windows.unsqueeze(2)
    return mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside each window: hand-written ``softmax(q k^T) v`` or
    ``F.scaled_dot_product_attention`` (``sdpa=True``), with an optional constant mask."""

    def __init__(self, dim: int, heads: int, sdpa: bool = False) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.sdpa = sdpa
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        B_, N, C = x.shape
        qkv = self.qkv(x).reshape(B_, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        if self.sdpa:
            attn_mask = None
            if mask is not None:
                attn_mask = mask.unsqueeze(1).repeat(B_ // mask.shape[0], 1, 1, 1)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        else:
            attn = (q * self.scale) @ k.transpose(-2, -1)
            if mask is not None:
                nW = mask.shape[0]
                attn = attn.view(B_ // nW, nW, self.heads, N, N) + mask.unsqueeze(1).unsqueeze(0)
                attn = attn.view(-1, self.heads, N, N)
            out = attn.softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(B_, N, C))


class SwinBlock(nn.Module):
    """LayerNorm, (shifted) window attention, residual; LayerNorm, MLP, residual. Tokens (B, H*W, C)."""

    def __init__(self, dim: int, heads: int, resolution: int, window: int = 7, shift: int = 0, sdpa: bool = False) -> None:
        super().__init__()
        self.resolution = resolution
        self.window = window
        self.shift = shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, heads, sdpa=sdpa)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        if shift:
            self.register_buffer("attn_mask", shift_mask(resolution, resolution, window, shift), persistent=False)
        else:
            self.attn_mask = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, C = x.shape
        H = W = self.resolution
        y = self.norm1(x).view(B, H, W, C)
        if self.shift:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
        windows = self.attn(window_partition(y, self.window), self.attn_mask)
        y = window_reverse(windows, self.window, H, W)
        if self.shift:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + y.reshape(B, H * W, C)
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    """2x2 neighbouring tokens concatenated (4C), LayerNorm, Linear to 2C: half the resolution."""

    def __init__(self, dim: int, resolution: int) -> None:
        super().__init__()
        self.resolution = resolution
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, C = x.shape
        H = W = self.resolution
        x = x.view(B, H, W, C)
        x0 = x[:, 0::2, 0::2, :]
        x1 = x[:, 1::2, 0::2, :]
        x2 = x[:, 0::2, 1::2, :]
        x3 = x[:, 1::2, 1::2, :]
        x = torch.cat([x0, x1, x2, x3], -1).view(B, -1, 4 * C)
        return self.reduction(self.norm(x))


class SwinTiny(nn.Module):
    """Patch embed 4x4, stage 1 (2 blocks, 28x28 tokens), patch merging, stage 2 (2 blocks,
    14x14 tokens), LayerNorm, tokens back to a (B, C, 14, 14) feature map."""

    def __init__(self, dim: int = 48, image: int = 112, window: int = 7, heads: tuple[int, int] = (3, 6), sdpa: bool = False) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, kernel_size=4, stride=4)
        self.embed_norm = nn.LayerNorm(dim)
        r1 = image // 4
        self.stage1 = nn.Sequential(
            SwinBlock(dim, heads[0], r1, window, 0, sdpa), SwinBlock(dim, heads[0], r1, window, window // 2, sdpa)
        )
        self.merge = PatchMerging(dim, r1)
        r2 = r1 // 2
        self.stage2 = nn.Sequential(
            SwinBlock(2 * dim, heads[1], r2, window, 0, sdpa), SwinBlock(2 * dim, heads[1], r2, window, window // 2, sdpa)
        )
        self.norm = nn.LayerNorm(2 * dim)
        self.out_resolution = r2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = self.stage2(self.merge(self.stage1(self.embed_norm(x))))
        x = self.norm(x)
        B, L, C = x.shape
        return x.transpose(1, 2).reshape(B, C, self.out_resolution, self.out_resolution)


@register("swin_tiny_style", (1, 3, 112, 112), "Swin-style (patch 4, dim 48, window 7, shift 3 in odd blocks), 2 stages of 2 blocks; a token sees its (shifted) window")
def swin_tiny_style() -> nn.Module:
    return SwinTiny()
