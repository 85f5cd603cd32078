"""Reductions over one dim: ``sum``, ``mean``, ``amax``, ``amin``, ``var``, with dispatch.

Floating inputs accumulate in float32 (float64 stays float64) and the result has the input's
dtype, as PyTorch's reductions of half-precision tensors do. ``var`` takes PyTorch's
``correction`` (1: unbiased, 0: biased) and is computed in two passes (mean first) for accuracy.
The Pallas path reduces the last dim (others are moved there first); "auto" picks it on a GPU
where the dispatch table measured it faster for that length (``mean`` and ``amin`` run the same
kernels as ``sum`` and ``amax`` and share their measurements).

Example:
    >>> from torsh_fn.kernels import reductions
    >>> reductions.var(jnp.array([[1.0, 2.0, 3.0, 4.0]]), dim=1)
    Array([1.6666666], dtype=float32)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._dispatch import measured_faster, resolve_impl
from ._explicit_sharding import typed_like
from ._pallas_rows_reduce import reduce_last_dim_pallas

__all__ = ["amax", "amin", "mean", "reduce_reference", "sum", "var"]

_MEASURED_AS = {"sum": "sum", "mean": "sum", "amax": "amax", "amin": "amax", "var": "var"}
_JNP = {"sum": jnp.sum, "mean": jnp.mean, "amax": jnp.max, "amin": jnp.min}


def reduce_reference(x: jax.Array, op: str, dim: int = -1, *, correction: float = 1.0,
                     keepdim: bool = False) -> jax.Array:
    """``op`` ("sum", "mean", "amax", "amin", "var") of ``x`` over ``dim`` in ``jax.numpy``."""
    floating = jnp.issubdtype(x.dtype, jnp.floating)
    z = x.astype(jnp.promote_types(x.dtype, jnp.float32)) if floating else x
    if op == "var":
        out = jnp.var(z, axis=dim, ddof=correction, keepdims=keepdim)
    else:
        out = _JNP[op](z, axis=dim, keepdims=keepdim)
    return out.astype(x.dtype) if floating else out


def _reduce(op: str, x: jax.Array, dim: int, correction: float, keepdim: bool,
            impl: str) -> jax.Array:
    if x.ndim == 0:
        raise ValueError(f"{op}: expected an array with at least one dim, got a scalar")
    if not -x.ndim <= dim < x.ndim:
        raise ValueError(f"{op}: dim {dim} is out of range for an array of {x.ndim} dims")
    if op in ("amax", "amin") and x.shape[dim] == 0:
        raise ValueError(f"{op}: cannot reduce an empty dim (dim {dim} of shape {x.shape})")
    n = x.shape[dim]
    chosen = resolve_impl(op, impl, lambda: measured_faster(_MEASURED_AS[op], x.dtype, n))
    if chosen == "xla":
        return reduce_reference(x, op, dim, correction=correction, keepdim=keepdim)
    if not jnp.issubdtype(x.dtype, jnp.floating) or x.dtype == jnp.float64:
        raise TypeError(f"{op}: the Pallas kernel takes float16/bfloat16/float32 input, got "
                        f"{x.dtype}; use impl='xla'")

    def pallas(x: jax.Array) -> jax.Array:
        out = reduce_last_dim_pallas(jnp.moveaxis(x, dim, -1), op, correction=correction)
        return jnp.expand_dims(out, dim) if keepdim else out

    return typed_like(
        lambda x: reduce_reference(x, op, dim, correction=correction, keepdim=keepdim),
        pallas, x)


def sum(x: jax.Array, dim: int = -1, *, keepdim: bool = False, impl: str = "auto") -> jax.Array:
    """Sum of ``x`` over ``dim``; ``impl`` is "auto", "pallas" or "xla"."""
    return _reduce("sum", x, dim, 0.0, keepdim, impl)


def mean(x: jax.Array, dim: int = -1, *, keepdim: bool = False, impl: str = "auto") -> jax.Array:
    """Mean of ``x`` over ``dim``."""
    return _reduce("mean", x, dim, 0.0, keepdim, impl)


def amax(x: jax.Array, dim: int = -1, *, keepdim: bool = False, impl: str = "auto") -> jax.Array:
    """Maximum of ``x`` over ``dim`` (gradient split evenly between ties, as PyTorch's amax)."""
    return _reduce("amax", x, dim, 0.0, keepdim, impl)


def amin(x: jax.Array, dim: int = -1, *, keepdim: bool = False, impl: str = "auto") -> jax.Array:
    """Minimum of ``x`` over ``dim``."""
    return _reduce("amin", x, dim, 0.0, keepdim, impl)


def var(x: jax.Array, dim: int = -1, *, correction: float = 1.0, keepdim: bool = False,
        impl: str = "auto") -> jax.Array:
    """Variance of ``x`` over ``dim`` with ``correction`` (1: unbiased, as ``torch.var``)."""
    return _reduce("var", x, dim, correction, keepdim, impl)
