"""Layer norm and RMS norm over the trailing dims, with dispatch.

    layer_norm(x) = (x - mean) / sqrt(var + eps) * weight + bias     (biased variance)
    rms_norm(x)   = x / sqrt(mean(x ** 2) + eps) * weight

Statistics are taken in float32 (float64 for float64 input); the output has ``x``'s dtype.
``*_reference`` are the ``jax.numpy`` paths (``impl="xla"``); ``impl="pallas"`` runs the Pallas
row kernels, which ``"auto"`` picks only where the dispatch table measured them faster.
``add_layer_norm`` fuses the residual add of a transformer block into the norm.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from ._dispatch import measured_faster, resolve_impl
from ._explicit_sharding import typed_like
from ._pallas_norm import add_layer_norm_pallas, layer_norm_pallas, rms_norm_pallas

__all__ = [
    "add_layer_norm", "add_layer_norm_reference", "layer_norm", "layer_norm_reference",
    "rms_norm", "rms_norm_reference",
]


def _axes(x: jax.Array, normalized_ndim: int) -> tuple[int, ...]:
    return tuple(range(x.ndim - normalized_ndim, x.ndim))


def _affine(y: jax.Array, weight: jax.Array | None, bias: jax.Array | None) -> jax.Array:
    if weight is not None:
        y = y * weight.astype(y.dtype)
    if bias is not None:
        y = y + bias.astype(y.dtype)
    return y


def layer_norm_reference(x: jax.Array, normalized_ndim: int = 1, weight: jax.Array | None = None,
                         bias: jax.Array | None = None, eps: float = 1e-5) -> jax.Array:
    """Layer norm over the last ``normalized_ndim`` dims of ``x`` (..., *normalized).

    ``weight`` and ``bias`` have shape ``normalized`` or are None.

    Example:
        >>> layer_norm_reference(jnp.array([[1.0, 3.0]]))
        Array([[-0.999995,  0.999995]], dtype=float32)
    """
    z = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    axes = _axes(x, normalized_ndim)
    mean = jnp.mean(z, axis=axes, keepdims=True)
    var = jnp.mean(jnp.square(z - mean), axis=axes, keepdims=True)
    y = (z - mean) * jax.lax.rsqrt(var + eps)
    return _affine(y, weight, bias).astype(x.dtype)


def rms_norm_reference(x: jax.Array, normalized_ndim: int = 1, weight: jax.Array | None = None,
                       eps: float = 1e-6) -> jax.Array:
    """RMS norm over the last ``normalized_ndim`` dims of ``x``; ``weight`` as in layer norm."""
    z = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    ms = jnp.mean(jnp.square(z), axis=_axes(x, normalized_ndim), keepdims=True)
    return _affine(z * jax.lax.rsqrt(ms + eps), weight, None).astype(x.dtype)


def _pallas_chosen(op: str, impl: str, x: jax.Array, normalized_ndim: int) -> bool:
    n = math.prod(x.shape[x.ndim - normalized_ndim:])
    return resolve_impl(op, impl, lambda: measured_faster(op, x.dtype, n)) == "pallas"


def layer_norm(x: jax.Array, normalized_ndim: int = 1, weight: jax.Array | None = None,
               bias: jax.Array | None = None, eps: float = 1e-5, *, impl: str = "auto"
               ) -> jax.Array:
    """Layer norm (see ``layer_norm_reference``); ``impl`` is "auto", "pallas" or "xla"."""
    if _pallas_chosen("layer_norm", impl, x, normalized_ndim):
        return typed_like(
            lambda *a: layer_norm_reference(a[0], normalized_ndim, *a[1:], eps),
            lambda *a: layer_norm_pallas(*a, eps, normalized_ndim), x, weight, bias)
    return layer_norm_reference(x, normalized_ndim, weight, bias, eps)


def rms_norm(x: jax.Array, normalized_ndim: int = 1, weight: jax.Array | None = None,
             eps: float = 1e-6, *, impl: str = "auto") -> jax.Array:
    """RMS norm (see ``rms_norm_reference``); ``impl`` is "auto", "pallas" or "xla"."""
    if _pallas_chosen("rms_norm", impl, x, normalized_ndim):
        return typed_like(lambda x, w: rms_norm_reference(x, normalized_ndim, w, eps),
                          lambda x, w: rms_norm_pallas(x, w, eps, normalized_ndim), x, weight)
    return rms_norm_reference(x, normalized_ndim, weight, eps)


def _check_residual(x: jax.Array, residual: jax.Array) -> None:
    if residual.shape != x.shape:
        raise ValueError(f"add_layer_norm: residual must have x's shape {x.shape}, "
                         f"got {residual.shape}")


def add_layer_norm_reference(x: jax.Array, residual: jax.Array, weight: jax.Array | None = None,
                             bias: jax.Array | None = None, eps: float = 1e-5
                             ) -> tuple[jax.Array, jax.Array]:
    """``s = x + residual`` and ``layer_norm(s)`` over the last dim: returns ``(normed, s)``.

    The pre-norm transformer block's "add & norm": ``s`` is the new residual stream.

    Example:
        >>> y, s = add_layer_norm_reference(jnp.ones((2, 4)), jnp.arange(4.0) * jnp.ones((2, 1)))
        >>> s[0], y.shape
        (Array([1., 2., 3., 4.], dtype=float32), (2, 4))
    """
    _check_residual(x, residual)
    s = x + residual
    return layer_norm_reference(s, 1, weight, bias, eps), s


def add_layer_norm(x: jax.Array, residual: jax.Array, weight: jax.Array | None = None,
                   bias: jax.Array | None = None, eps: float = 1e-5, *, impl: str = "auto"
                   ) -> tuple[jax.Array, jax.Array]:
    """Residual add + layer norm (see ``add_layer_norm_reference``) in one pass with Pallas."""
    if _pallas_chosen("add_layer_norm", impl, x, 1):
        _check_residual(x, residual)
        return typed_like(lambda *a: add_layer_norm_reference(*a, eps),
                          lambda *a: add_layer_norm_pallas(*a, eps), x, residual, weight, bias)
    return add_layer_norm_reference(x, residual, weight, bias, eps)
