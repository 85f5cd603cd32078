"""Dropout patterns drawn inside kernels: counter-based hashes of a seed and element positions.

A kernel that drops elements hashes each element's position with a seed instead of reading a
stored mask, and its backward (or the ``jax.numpy`` reference) hashes the same positions again
to get the same pattern: no mask is ever written. ``bias_act`` hashes the flat element index,
attention the (query, key) position pair of one head: ``query_bits`` of each query once, then
``attention_keeps`` of those with each key's ``key_bits``, so that a kernel hashes its rows once
per tile and its keys' positions once per key block.

Example:
    >>> bits = mix32(jnp.arange(4, dtype=jnp.uint32))
    >>> bits.dtype, keeps(bits, 0.0).all()
    (dtype('uint32'), Array(True, dtype=bool))
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["attention_keeps", "key_bits", "keeps", "mix32", "query_bits"]


def mix32(h: jax.Array) -> jax.Array:
    """Wellons' lowbias32: a bijection of uint32 in which every input bit moves every output
    bit about half the time."""
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x7FEB352D)
    h = h ^ (h >> 15)
    h = h * jnp.uint32(0x846CA68B)
    return h ^ (h >> 16)


def keeps(bits: jax.Array, p: float) -> jax.Array:
    """Where dropout with probability ``p`` keeps an element whose hash is ``bits`` (uniform
    uint32): True with probability ``1 - p``."""
    return bits >= jnp.uint32(min(int(p * 2.0**32), 2**32 - 1))


def query_bits(seed: jax.Array, q_pos: jax.Array) -> jax.Array:
    """The uint32 hash of each query position (int32) with its head's uint32 ``seed``:
    ``attention_keeps``' first operand."""
    return mix32(seed ^ (q_pos.astype(jnp.uint32) * jnp.uint32(0x9E3779B1)))


def key_bits(k_pos: jax.Array) -> jax.Array:
    """Each key position (int32) spread over uint32: ``attention_keeps``' second operand."""
    return k_pos.astype(jnp.uint32) * jnp.uint32(0x85EBCA77)


def attention_keeps(queries: jax.Array, keys: jax.Array, p: float) -> jax.Array:
    """Where dropout with probability ``p`` keeps the attention weight of each (query, key)
    pair, from their ``query_bits`` and ``key_bits`` (arrays that broadcast).

    Example:
        >>> keep = attention_keeps(query_bits(jnp.uint32(7), jnp.arange(64))[:, None],
        ...                        key_bits(jnp.arange(64)), 0.25)
        >>> keep.shape, 0.7 < float(keep.mean()) < 0.8
        ((64, 64), True)
    """
    return keeps(mix32(queries ^ keys), p)
