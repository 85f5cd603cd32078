"""Softmax and log-softmax along one dim, with dispatch.

    softmax(x)     = exp(x - max) / sum(exp(x - max))
    log_softmax(x) = (x - max) - log(sum(exp(x - max)))

Low-precision inputs are computed in float32 and cast back, as PyTorch does. ``softmax_reference``
is the ``jax.numpy`` path (``impl="xla"``); ``impl="pallas"`` runs the Pallas row kernel, which
``"auto"`` picks only where the dispatch table measured it faster for that row length.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._dispatch import measured_faster, resolve_impl
from ._explicit_sharding import typed_like
from ._pallas_softmax import softmax_pallas

__all__ = ["log_softmax", "softmax", "softmax_reference"]


def _compute_dtype(dtype: jnp.dtype) -> jnp.dtype:
    return jnp.promote_types(dtype, jnp.float32)


def softmax_reference(x: jax.Array, dim: int = -1, *, log: bool = False) -> jax.Array:
    """(Log-)softmax of ``x`` along ``dim`` in ``jax.numpy``; output has ``x``'s shape and dtype.

    Example:
        >>> softmax_reference(jnp.array([0.0, 0.0]))
        Array([0.5, 0.5], dtype=float32)
    """
    z = x.astype(_compute_dtype(x.dtype))
    out = jax.nn.log_softmax(z, axis=dim) if log else jax.nn.softmax(z, axis=dim)
    return out.astype(x.dtype)


def _dispatch(op: str, x: jax.Array, dim: int, log: bool, impl: str) -> jax.Array:
    if x.ndim == 0:
        raise ValueError(f"{op}: expected an array with at least one dim, got a scalar")
    n = x.shape[dim]
    if resolve_impl(op, impl, lambda: measured_faster(op, x.dtype, n)) == "pallas":
        return typed_like(lambda x: softmax_reference(x, dim, log=log),
                          lambda x: softmax_pallas(x, dim, log=log), x)
    return softmax_reference(x, dim, log=log)


def softmax(x: jax.Array, dim: int = -1, *, impl: str = "auto") -> jax.Array:
    """Softmax of ``x`` (any shape) along ``dim``; ``impl`` is "auto", "pallas" or "xla"."""
    return _dispatch("softmax", x, dim, False, impl)


def log_softmax(x: jax.Array, dim: int = -1, *, impl: str = "auto") -> jax.Array:
    """Log-softmax of ``x`` (any shape) along ``dim``; finite for logits of +-1e4."""
    return _dispatch("log_softmax", x, dim, True, impl)
