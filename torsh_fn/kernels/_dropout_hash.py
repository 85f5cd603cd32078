"""Dropout patterns drawn inside kernels: counter-based hashes of a seed and element positions.

A kernel that drops elements hashes each element's position with a seed instead of reading a
stored mask, and its backward (or the ``jax.numpy`` reference) hashes the same positions again
to get the same pattern: no mask is ever written. ``bias_act`` hashes the flat element index,
attention the (query, key) position pair of one head.

Example:
    >>> bits = mix32(jnp.arange(4, dtype=jnp.uint32))
    >>> bits.dtype, keeps(bits, 0.0).all()
    (dtype('uint32'), Array(True, dtype=bool))
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["keeps", "mix32"]


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
