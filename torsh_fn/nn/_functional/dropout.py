"""nn.functional: dropout and friends.

Randomness comes from an explicit ``key=`` (a JAX PRNG key); when omitted, a key is drawn from
``generator`` or the global generator (``torsh_fn.random.next_key``), which changes its state, so
pass ``key=`` inside ``jit``-compiled functions that do not thread the generator (``torsh_fn.jit``
does). No key is drawn when the op is the identity (``training=False`` or ``p=0``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from torsh_fn import random as _random

__all__ = ["alpha_dropout", "dropout", "dropout1d", "dropout2d", "dropout3d",
           "feature_alpha_dropout"]

_ALPHA_PRIME = -1.7580993408473766  # -selu_scale * selu_alpha: SELU's negative saturation


def _check_p(name: str, p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name}: p must be in [0, 1], got {p}")


def _keep_mask(key: jax.Array, p: float, shape: tuple[int, ...]) -> jax.Array:
    return jax.random.bernoulli(key, 1.0 - p, shape)


def _drop(input: jax.Array, keep: jax.Array, p: float) -> jax.Array:
    scale = jnp.asarray(0.0 if p == 1.0 else 1.0 / (1.0 - p), input.dtype)
    return jnp.where(keep, input * scale, jnp.zeros((), input.dtype))


def dropout(input: jax.Array, p: float = 0.5, training: bool = True, inplace: bool = False, *,
            key: jax.Array | None = None, generator: _random.Generator | None = None
            ) -> jax.Array:
    """Zero each element with probability ``p`` and scale the rest by ``1 / (1 - p)``.

    Example:
        >>> y = dropout(jnp.ones(4), 0.5, key=jax.random.PRNGKey(0))
        >>> bool(((y == 0) | (y == 2)).all())
        True
    """
    _check_p("dropout", p)
    if not training or p == 0.0:
        return input
    keep = _keep_mask(_random.next_key(key, generator), p, input.shape)
    return _drop(input, keep, p)


def _feature_dropout(name: str, input: jax.Array, p: float, training: bool, nd: int, key,
                     generator) -> jax.Array:
    """Drop whole channels of (N, C, *spatial) or (C, *spatial) with ``nd`` spatial dims."""
    _check_p(name, p)
    if input.ndim not in (nd + 1, nd + 2):
        raise ValueError(f"{name}: expected input of rank {nd + 1} (unbatched) or {nd + 2} "
                         f"(batched), got shape {input.shape}")
    if not training or p == 0.0:
        return input
    mask_shape = input.shape[:input.ndim - nd] + (1,) * nd
    keep = _keep_mask(_random.next_key(key, generator), p, mask_shape)
    return _drop(input, keep, p)


def dropout1d(input: jax.Array, p: float = 0.5, training: bool = True, inplace: bool = False, *,
              key: jax.Array | None = None, generator: _random.Generator | None = None
              ) -> jax.Array:
    """Zero whole channels of (N, C, L) or (C, L) with probability ``p``; scale the rest."""
    return _feature_dropout("dropout1d", input, p, training, 1, key, generator)


def dropout2d(input: jax.Array, p: float = 0.5, training: bool = True, inplace: bool = False, *,
              key: jax.Array | None = None, generator: _random.Generator | None = None
              ) -> jax.Array:
    """Zero whole channels of (N, C, H, W) or (C, H, W) with probability ``p``; scale the rest.

    Example:
        >>> y = dropout2d(jnp.ones((2, 3, 4, 4)), key=jax.random.PRNGKey(0))
        >>> bool((y.std(axis=(2, 3)) == 0).all())
        True
    """
    return _feature_dropout("dropout2d", input, p, training, 2, key, generator)


def dropout3d(input: jax.Array, p: float = 0.5, training: bool = True, inplace: bool = False, *,
              key: jax.Array | None = None, generator: _random.Generator | None = None
              ) -> jax.Array:
    """Zero whole channels of (N, C, D, H, W) or (C, D, H, W) with probability ``p``."""
    return _feature_dropout("dropout3d", input, p, training, 3, key, generator)


def _alpha(input: jax.Array, keep: jax.Array, p: float) -> jax.Array:
    """SELU-preserving dropout: dropped units go to SELU's saturation, then an affine fix-up."""
    if p == 1.0:
        return jnp.zeros_like(input)
    a = ((1 - p) * (1 + p * _ALPHA_PRIME ** 2)) ** -0.5
    b = -a * _ALPHA_PRIME * p
    return (jnp.where(keep, input, jnp.asarray(_ALPHA_PRIME, input.dtype)) * a + b).astype(
        input.dtype)


def alpha_dropout(input: jax.Array, p: float = 0.5, training: bool = False,
                  inplace: bool = False, *, key: jax.Array | None = None,
                  generator: _random.Generator | None = None) -> jax.Array:
    """Dropout for SELU networks: keeps zero mean and unit variance. Note ``training=False``
    is PyTorch's default here."""
    _check_p("alpha_dropout", p)
    if not training or p == 0.0:
        return input
    return _alpha(input, _keep_mask(_random.next_key(key, generator), p, input.shape), p)


def feature_alpha_dropout(input: jax.Array, p: float = 0.5, training: bool = False,
                          inplace: bool = False, *, key: jax.Array | None = None,
                          generator: _random.Generator | None = None) -> jax.Array:
    """``alpha_dropout`` of whole channels of (N, C, *spatial)."""
    _check_p("feature_alpha_dropout", p)
    if input.ndim < 2:
        raise ValueError(f"feature_alpha_dropout: expected input of rank 2 or more, got shape "
                         f"{input.shape}")
    if not training or p == 0.0:
        return input
    mask_shape = input.shape[:2] + (1,) * (input.ndim - 2)
    return _alpha(input, _keep_mask(_random.next_key(key, generator), p, mask_shape), p)
