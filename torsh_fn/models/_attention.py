"""Multi-head self-attention with ``torch.nn.MultiheadAttention``'s keys (``in_proj_weight``,
``in_proj_bias``, ``out_proj``), batch first."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .. import kernels, nn
from ..nn import init

__all__ = ["SelfAttention", "split_heads", "merge_heads"]


def split_heads(x: jax.Array, heads: int) -> jax.Array:
    """``(N, L, E)`` -> ``(N, heads, L, E // heads)``."""
    n, length, e = x.shape
    return x.reshape(n, length, heads, e // heads).transpose(0, 2, 1, 3)


def merge_heads(x: jax.Array) -> jax.Array:
    """``(N, heads, L, D)`` -> ``(N, L, heads * D)``."""
    n, h, length, d = x.shape
    return x.transpose(0, 2, 1, 3).reshape(n, length, h * d)


class SelfAttention(nn.Module):
    """Self-attention of ``(N, L, embed_dim)`` inputs, as ``MultiheadAttention(embed_dim,
    num_heads, batch_first=True)`` called with ``(x, x, x, need_weights=False)``.

    Example:
        >>> SelfAttention(8, 2)(jnp.ones((1, 5, 8))).shape
        (1, 5, 8)
    """

    def __init__(self, embed_dim: int, num_heads: int) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"SelfAttention: embed_dim={embed_dim} must be divisible by "
                             f"num_heads={num_heads}")
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.in_proj_weight = nn.Parameter(jnp.zeros((3 * embed_dim, embed_dim)))
        self.in_proj_bias = nn.Parameter(jnp.zeros(3 * embed_dim))
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        init.xavier_uniform_(self.in_proj_weight)  # torch's MultiheadAttention defaults
        init.zeros_(self.out_proj.bias)

    def forward(self, x: jax.Array) -> jax.Array:
        qkv = x @ self.in_proj_weight.data.T + self.in_proj_bias.data
        q, k, v = (split_heads(t, self.num_heads) for t in jnp.split(qkv, 3, axis=-1))
        return self.out_proj(merge_heads(kernels.attention(q, k, v)))
