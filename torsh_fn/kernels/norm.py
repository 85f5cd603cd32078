"""Layer norm and RMS norm over the trailing dims, with dispatch.

    layer_norm(x) = (x - mean) / sqrt(var + eps) * weight + bias     (biased variance)
    rms_norm(x)   = x / sqrt(mean(x ** 2) + eps) * weight

Statistics are taken in float32 (float64 for float64 input); the output has ``x``'s dtype.
``*_reference`` are the ``jax.numpy`` paths (``impl="xla"``); ``impl="pallas"`` runs the Pallas
row kernels, which ``"auto"`` does not pick until a benchmark shows them faster.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._dispatch import resolve_impl
from ._pallas_norm import layer_norm_pallas, rms_norm_pallas

__all__ = ["layer_norm", "layer_norm_reference", "rms_norm", "rms_norm_reference"]


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


def _never() -> bool:  # no benchmark yet shows the Pallas kernels faster than XLA
    return False


def layer_norm(x: jax.Array, normalized_ndim: int = 1, weight: jax.Array | None = None,
               bias: jax.Array | None = None, eps: float = 1e-5, *, impl: str = "auto"
               ) -> jax.Array:
    """Layer norm (see ``layer_norm_reference``); ``impl`` is "auto", "pallas" or "xla"."""
    if resolve_impl("layer_norm", impl, _never) == "pallas":
        return layer_norm_pallas(x, weight, bias, eps, normalized_ndim)
    return layer_norm_reference(x, normalized_ndim, weight, bias, eps)


def rms_norm(x: jax.Array, normalized_ndim: int = 1, weight: jax.Array | None = None,
             eps: float = 1e-6, *, impl: str = "auto") -> jax.Array:
    """RMS norm (see ``rms_norm_reference``); ``impl`` is "auto", "pallas" or "xla"."""
    if resolve_impl("rms_norm", impl, _never) == "pallas":
        return rms_norm_pallas(x, weight, eps, normalized_ndim)
    return rms_norm_reference(x, normalized_ndim, weight, eps)
