"""Post-2020 designs: a ConvNeXt-Tiny and a small Vision Transformer, in torchvision's layouts.

ConvNeXt mixes space only in its 7x7 depthwise convs; its LayerNorms act on the channels of one
position at a time. The ViT's self-attention lets every token see every patch: after the first
block a token's local field is its patch (r 16, j 16, start 8: the residual path around the
attention), flagged global via ``encoder.layers.encoder_layer_0.self_attention``; the class
token in front of the patch tokens keeps them on their grid, and the class token read by the
head sees the whole input.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from . import register
from .layers import ConvNormActivation, LayerNorm2d, Permute


class CNBlock(nn.Module):
    """ConvNeXt block: 7x7 depthwise conv, channels-last LayerNorm, Linear 4C, GELU, Linear C, scale, residual.

    ``block`` keeps torchvision's indices (``block.0`` the depthwise conv, ``block.2`` the
    LayerNorm, ``block.3`` / ``block.5`` the pointwise Linears). Stochastic depth, the identity
    at inference, is left out.
    """

    def __init__(self, dim: int, layer_scale: float = 1e-6) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim, bias=True),
            Permute([0, 2, 3, 1]),
            nn.LayerNorm(dim, eps=1e-6),
            nn.Linear(dim, 4 * dim, bias=True),
            nn.GELU(),
            nn.Linear(4 * dim, dim, bias=True),
            Permute([0, 3, 1, 2]),
        )
        self.layer_scale = nn.Parameter(torch.ones(dim, 1, 1) * layer_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.layer_scale * self.block(x)
        result += x
        return result


class ConvNeXt(nn.Module):
    """ConvNeXt (Liu et al., 2022) as torchvision builds it.

    ``features.0`` is the 4x4 / stride 4 patchify stem with a LayerNorm2d; odd ``features``
    entries are the stages (Sequentials of CNBlocks), even ones after the stem the downsampling
    layers (LayerNorm2d, then a 2x2 conv with stride 2). The classifier normalises the pooled
    features, flattens them and applies a Linear layer.
    """

    def __init__(self, depths: tuple[int, ...] = (3, 3, 9, 3), dims: tuple[int, ...] = (96, 192, 384, 768), num_classes: int = 1000) -> None:
        super().__init__()
        norm_layer = partial(LayerNorm2d, eps=1e-6)
        layers: list[nn.Module] = [
            ConvNormActivation(3, dims[0], kernel_size=4, stride=4, padding=0, norm_layer=norm_layer, activation_layer=None, bias=True)
        ]
        for i, (depth, dim) in enumerate(zip(depths, dims, strict=True)):
            layers.append(nn.Sequential(*(CNBlock(dim) for _ in range(depth))))
            if i + 1 < len(dims):
                layers.append(nn.Sequential(norm_layer(dim), nn.Conv2d(dim, dims[i + 1], kernel_size=2, stride=2)))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(norm_layer(dims[-1]), nn.Flatten(1), nn.Linear(dims[-1], num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        return self.classifier(x)


@register("convnext_tiny", (1, 3, 224, 224), "ConvNeXt-Tiny (depths 3-3-9-3, widths 96..768) as torchvision; features.7: r 1688, j 32")
def convnext_tiny() -> nn.Module:
    return ConvNeXt()


class MLPBlock(nn.Sequential):
    """Linear, GELU, Dropout, Linear, Dropout: the transformer block's MLP, torchvision's indices."""

    def __init__(self, in_dim: int, mlp_dim: int, dropout: float = 0.0) -> None:
        super().__init__(nn.Linear(in_dim, mlp_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(mlp_dim, in_dim), nn.Dropout(dropout))


class EncoderBlock(nn.Module):
    """Pre-norm transformer block: LayerNorm, self-attention, residual; LayerNorm, MLP, residual."""

    def __init__(self, num_heads: int, hidden_dim: int, mlp_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(hidden_dim, eps=1e-6)
        self.self_attention = nn.MultiheadAttention(hidden_dim, num_heads, dropout=dropout, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.ln_2 = nn.LayerNorm(hidden_dim, eps=1e-6)
        self.mlp = MLPBlock(hidden_dim, mlp_dim, dropout)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        x = self.ln_1(input)
        x, _ = self.self_attention(x, x, x, need_weights=False)
        x = self.dropout(x)
        x = x + input
        y = self.mlp(self.ln_2(x))
        return x + y


class Encoder(nn.Module):
    """Position embedding (a learned parameter), ``layers.encoder_layer_i`` blocks, final LayerNorm."""

    def __init__(self, seq_length: int, num_layers: int, num_heads: int, hidden_dim: int, mlp_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.pos_embedding = nn.Parameter(torch.empty(1, seq_length, hidden_dim).normal_(std=0.02))
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.Sequential()
        for i in range(num_layers):
            self.layers.add_module(f"encoder_layer_{i}", EncoderBlock(num_heads, hidden_dim, mlp_dim, dropout))
        self.ln = nn.LayerNorm(hidden_dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos_embedding
        return self.ln(self.layers(self.dropout(x)))


class VisionTransformer(nn.Module):
    """Vision Transformer (Dosovitskiy et al., 2021) with torchvision's ``VisionTransformer`` names.

    ``conv_proj`` embeds 16x16 patches (a conv with stride 16), the patch grid is reshaped to a
    token sequence, the ``class_token`` is prepended, then the ``encoder`` (position embedding,
    ``layers.encoder_layer_i``, ``ln``); ``heads.head`` reads the class token. As in
    torchvision, the input must be ``image_size`` square (the position embedding has one entry
    per patch).
    """

    def __init__(
        self,
        image_size: int = 224,
        patch_size: int = 16,
        num_layers: int = 2,
        num_heads: int = 3,
        hidden_dim: int = 192,
        mlp_dim: int = 768,
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        self.image_size = image_size
        self.patch_size = patch_size
        self.hidden_dim = hidden_dim
        self.conv_proj = nn.Conv2d(3, hidden_dim, kernel_size=patch_size, stride=patch_size)
        self.class_token = nn.Parameter(torch.zeros(1, 1, hidden_dim))
        seq_length = (image_size // patch_size) ** 2 + 1
        self.encoder = Encoder(seq_length, num_layers, num_heads, hidden_dim, mlp_dim)
        self.heads = nn.Sequential()
        self.heads.add_module("head", nn.Linear(hidden_dim, num_classes))

    def _process_input(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        p = self.patch_size
        torch._assert(h == self.image_size, f"Wrong image height! Expected {self.image_size} but got {h}!")
        torch._assert(w == self.image_size, f"Wrong image width! Expected {self.image_size} but got {w}!")
        n_h = h // p
        n_w = w // p
        x = self.conv_proj(x)  # (n, hidden_dim, n_h, n_w)
        x = x.reshape(n, self.hidden_dim, n_h * n_w)
        return x.permute(0, 2, 1)  # (n, tokens, hidden_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._process_input(x)
        n = x.shape[0]
        batch_class_token = self.class_token.expand(n, -1, -1)
        x = torch.cat([batch_class_token, x], dim=1)
        x = self.encoder(x)
        x = x[:, 0]
        return self.heads(x)


@register("vit_tiny", (1, 3, 224, 224), "ViT-Tiny widths (patch 16, dim 192, 3 heads), 2 encoder blocks; conv_proj: r 16, j 16")
def vit_tiny() -> nn.Module:
    return VisionTransformer()
