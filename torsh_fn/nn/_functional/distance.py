"""nn.functional: distances and similarities between vectors."""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["cosine_similarity", "pairwise_distance", "pdist"]


def vector_norm(x: jax.Array, p: float = 2.0, dim=-1, keepdim: bool = False) -> jax.Array:
    """The ``p``-norm over ``dim``, with gradient 0 (not NaN) where the vector is zero, as PyTorch.

    ``p`` may be any positive float, ``inf`` or 0 (the count of non-zeros).
    """
    a = jnp.abs(x)
    if p == float("inf"):
        return jnp.max(a, axis=dim, keepdims=keepdim)
    if p == 0:
        return jnp.sum(a != 0, axis=dim, keepdims=keepdim).astype(x.dtype)
    if p == 1:
        return jnp.sum(a, axis=dim, keepdims=keepdim)
    total = jnp.sum(a ** p, axis=dim, keepdims=keepdim)
    zero = total == 0
    return jnp.where(zero, 0.0, jnp.where(zero, 1.0, total) ** (1.0 / p)).astype(x.dtype)


def pairwise_distance(x1: jax.Array, x2: jax.Array, p: float = 2.0, eps: float = 1e-6,
                      keepdim: bool = False) -> jax.Array:
    """``||x1 - x2 + eps||_p`` over the last dim; inputs broadcast.

    Example:
        >>> pairwise_distance(jnp.zeros((2, 3)), jnp.ones((2, 3)), eps=0.0)
        Array([1.7320508, 1.7320508], dtype=float32)
    """
    dim = -1 if max(x1.ndim, x2.ndim) > 0 else 0
    return vector_norm(x1 - x2 + eps, p, dim, keepdim)


def cosine_similarity(x1: jax.Array, x2: jax.Array, dim: int = 1, eps: float = 1e-8
                      ) -> jax.Array:
    """``sum(x1 / max(||x1||, eps) * x2 / max(||x2||, eps))`` along ``dim``; inputs broadcast.

    As PyTorch, the clamp to ``eps`` changes the value but not the gradient path of each norm.

    Example:
        >>> cosine_similarity(jnp.array([[1.0, 0.0]]), jnp.array([[1.0, 1.0]]))
        Array([0.70710677], dtype=float32)
    """
    x1, x2 = jnp.broadcast_arrays(x1, x2)
    return jnp.sum(_unit(x1, dim, eps) * _unit(x2, dim, eps), axis=dim)


def _unit(x: jax.Array, dim: int, eps: float) -> jax.Array:
    norm = vector_norm(x, 2.0, dim, keepdim=True)
    clamped = norm + jax.lax.stop_gradient(jnp.maximum(norm, eps) - norm)
    return x / clamped


def pdist(input: jax.Array, p: float = 2.0) -> jax.Array:
    """``p``-norm distances between all pairs of rows of (N, M): the upper triangle, (N(N-1)/2,).

    Example:
        >>> pdist(jnp.array([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0]]))
        Array([5.       , 1.       , 4.2426405], dtype=float32)
    """
    if input.ndim != 2:
        raise ValueError(f"pdist: expected input of shape (N, M), got shape {input.shape}")
    i, j = jnp.triu_indices(input.shape[0], k=1)
    return vector_norm(input[i] - input[j], p, -1)
