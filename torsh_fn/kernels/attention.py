"""Scaled dot-product attention, PyTorch's semantics, with dispatch.

    scores = q @ k^T * scale + bias        (bias: a float mask; -inf where a bool mask is False)
    out    = dropout(softmax(scores)) @ v

Shapes: ``q`` (..., L, E), ``k`` (..., S, E), ``v`` (..., S, Ev); leading dims broadcast. Rows
whose every score is ``-inf`` (fully masked) give zeros, as PyTorch's math path does. Scores and
softmax are taken in float32 for low-precision inputs.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from ._dispatch import resolve_impl

__all__ = ["attention", "attention_reference"]


def _safe_softmax(scores: jax.Array) -> jax.Array:
    row_max = jnp.max(scores, axis=-1, keepdims=True)
    dead = jnp.isneginf(row_max)
    e = jnp.exp(scores - jnp.where(dead, 0.0, row_max))
    return jnp.where(dead, 0.0, e / jnp.sum(e, axis=-1, keepdims=True))


def attention_reference(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None = None,
                        *, is_causal: bool = False, scale: float | None = None,
                        dropout_p: float = 0.0, key: jax.Array | None = None) -> jax.Array:
    """Attention of ``q`` over ``k``/``v`` in ``jax.numpy``; returns (..., L, Ev) in q's dtype.

    ``mask`` broadcasts to (..., L, S): bool (True takes part) or float (added to the scores).
    ``is_causal`` masks key positions after the query's (top-left aligned, as PyTorch).
    ``key`` is required when ``dropout_p > 0``.

    Example:
        >>> q = k = v = jnp.ones((1, 2, 4))
        >>> attention_reference(q, k, v).shape
        (1, 2, 4)
    """
    ct = jnp.promote_types(q.dtype, jnp.float32)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = jnp.einsum("...le,...se->...ls", q.astype(ct), k.astype(ct),
                        precision=jax.lax.Precision.HIGHEST) * scale
    if is_causal:
        length, source = scores.shape[-2:]
        scores = jnp.where(jnp.tril(jnp.ones((length, source), bool)), scores, -jnp.inf)
    if mask is not None:
        scores = (jnp.where(mask, scores, -jnp.inf) if mask.dtype == jnp.bool_
                  else scores + mask.astype(ct))
    weights = _safe_softmax(scores)
    if dropout_p > 0.0:
        keep = jax.random.bernoulli(key, 1.0 - dropout_p, weights.shape)
        weights = jnp.where(keep, weights / (1.0 - dropout_p), 0.0)
    out = jnp.einsum("...ls,...se->...le", weights, v.astype(ct),
                     precision=jax.lax.Precision.HIGHEST)
    return out.astype(q.dtype)


def attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None = None, *,
              is_causal: bool = False, scale: float | None = None, dropout_p: float = 0.0,
              key: jax.Array | None = None, impl: str = "auto") -> jax.Array:
    """Attention (see ``attention_reference``); ``impl`` is "auto" or "xla" (no Pallas yet)."""
    resolve_impl("attention", impl, None)
    return attention_reference(q, k, v, mask, is_causal=is_causal, scale=scale,
                               dropout_p=dropout_p, key=key)
