"""A Vision Transformer with torchvision's ``VisionTransformer`` key names; ``vit_tiny`` is
ViT-Ti/16 (192 wide, 12 layers, 3 heads)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .. import nn
from ..nn import init
from ._attention import SelfAttention
from ._layers import Dropout, LayerNorm

__all__ = ["EncoderBlock", "VisionTransformer", "vit_tiny"]


class _MLPBlock(nn.Sequential):
    """``Linear -> GELU -> Dropout -> Linear -> Dropout`` (keys ``mlp.0``, ``mlp.3``)."""

    def __init__(self, dim: int, mlp_dim: int, dropout: float) -> None:
        super().__init__(nn.Linear(dim, mlp_dim), nn.GELU(), Dropout(dropout),
                         nn.Linear(mlp_dim, dim), Dropout(dropout))


class EncoderBlock(nn.Module):
    """Pre-norm transformer block: ``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))``."""

    def __init__(self, num_heads: int, hidden_dim: int, mlp_dim: int, dropout: float) -> None:
        super().__init__()
        self.ln_1 = LayerNorm(hidden_dim, eps=1e-6)
        self.self_attention = SelfAttention(hidden_dim, num_heads)
        self.dropout = Dropout(dropout)
        self.ln_2 = LayerNorm(hidden_dim, eps=1e-6)
        self.mlp = _MLPBlock(hidden_dim, mlp_dim, dropout)

    def forward(self, x: jax.Array) -> jax.Array:
        x = x + self.dropout(self.self_attention(self.ln_1(x)))
        return x + self.mlp(self.ln_2(x))


class _Encoder(nn.Module):
    def __init__(self, seq_length: int, num_layers: int, num_heads: int, hidden_dim: int,
                 mlp_dim: int, dropout: float) -> None:
        super().__init__()
        self.pos_embedding = nn.Parameter(jnp.zeros((1, seq_length, hidden_dim)))
        init.normal_(self.pos_embedding, std=0.02)
        self.dropout = Dropout(dropout)
        self.layers = nn.Sequential()
        for i in range(num_layers):
            self.layers.add_module(f"encoder_layer_{i}",
                                   EncoderBlock(num_heads, hidden_dim, mlp_dim, dropout))
        self.ln = LayerNorm(hidden_dim, eps=1e-6)

    def forward(self, x: jax.Array) -> jax.Array:
        return self.ln(self.layers(self.dropout(x + self.pos_embedding)))


class VisionTransformer(nn.Module):
    """torchvision's ``VisionTransformer``: patch convolution, class token, learned positions,
    pre-norm encoder, linear head on the class token.

    Args:
        image_size, patch_size: square image and patch sides (``image_size % patch_size == 0``).
        num_layers, num_heads, hidden_dim, mlp_dim: encoder sizes.
        num_classes: size of the output.
        in_channels: image channels.
        dropout: dropout probability in the encoder.

    Shapes: ``(N, in_channels, image_size, image_size)`` -> ``(N, num_classes)``.

    Example:
        >>> vit_tiny(image_size=32, patch_size=8, num_classes=10)(jnp.ones((1, 3, 32, 32))).shape
        (1, 10)
    """

    def __init__(self, image_size: int = 224, patch_size: int = 16, num_layers: int = 12,
                 num_heads: int = 3, hidden_dim: int = 192, mlp_dim: int = 768,
                 num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.0) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"VisionTransformer: image_size={image_size} must be divisible by "
                             f"patch_size={patch_size}")
        self.image_size, self.patch_size, self.hidden_dim = image_size, patch_size, hidden_dim
        self.conv_proj = nn.Conv2d(in_channels, hidden_dim, patch_size, stride=patch_size)
        self.class_token = nn.Parameter(jnp.zeros((1, 1, hidden_dim)))
        seq_length = (image_size // patch_size) ** 2 + 1
        self.encoder = _Encoder(seq_length, num_layers, num_heads, hidden_dim, mlp_dim, dropout)
        self.heads = nn.Sequential()
        self.heads.add_module("head", nn.Linear(hidden_dim, num_classes))

    def forward(self, x: jax.Array) -> jax.Array:
        n, _, h, w = x.shape
        if (h, w) != (self.image_size, self.image_size):
            raise ValueError(f"VisionTransformer: expected images of {self.image_size}x"
                             f"{self.image_size}, got {h}x{w}")
        x = self.conv_proj(x).reshape(n, self.hidden_dim, -1).transpose(0, 2, 1)
        x = jnp.concatenate([jnp.broadcast_to(self.class_token, (n, 1, self.hidden_dim)), x], 1)
        return self.heads(self.encoder(x)[:, 0])


def vit_tiny(**kwargs) -> VisionTransformer:
    """ViT-Ti/16 (``hidden_dim=192, num_layers=12, num_heads=3, mlp_dim=768``); ``kwargs`` go to
    :class:`VisionTransformer` (e.g. ``image_size=32, patch_size=4`` for small images)."""
    return VisionTransformer(**kwargs)
