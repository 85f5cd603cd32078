"""Max and average pooling as elementwise work over kernel taps, for the CPU.

Each tap of the window (one kernel offset) is one strided slice of the padded input, of the
output's shape; the max (or sum) over taps is one fused elementwise loop in XLA. The gradient of
the max routes each output's cotangent to the first tap, in row-major window order, that holds the
maximum (PyTorch's choice on ties, and that of XLA's ``select_and_scatter``), and sums the taps
back into the input through the slices' transposes (pads): elementwise work again, where XLA's CPU
gradient of ``reduce_window`` is a slow ``select_and_scatter``.

Windows are given as the pooling module computes them: ``pads`` is one ``(lo, hi)`` pair per
spatial dim, ceil mode's extra included.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from ._windows import Pairs, out_size, tap_slices

__all__ = ["max_pool_taps", "sum_pool_taps"]

def _taps(xp: jax.Array, nd: int, kernel, stride, dilation, out) -> list[jax.Array]:
    """One strided slice of the padded ``xp`` per kernel offset, row-major: each (..., *out)."""
    return tap_slices(xp, nd, itertools.product(*(range(k) for k in kernel)), stride, dilation,
                      out)


def _out(shape, kernel, stride, pads, dilation) -> tuple[int, ...]:
    return tuple(map(out_size, shape, kernel, stride, pads, dilation))


def _pad(x: jax.Array, nd: int, pads: Pairs, value) -> jax.Array:
    config = [(0, 0, 0)] * (x.ndim - nd) + [(lo, hi, 0) for lo, hi in pads]
    return lax.pad(x, jnp.asarray(value, x.dtype), config)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _max_pool(x: jax.Array, geometry: tuple) -> jax.Array:
    return _max_fwd(x, geometry)[0]


def _max_fwd(x, geometry):
    kernel, stride, pads, dilation = geometry
    nd = len(kernel)
    xp = _pad(x, nd, pads, -jnp.inf)  # floating x only (pooling's rule)
    out = _out(x.shape[-nd:], kernel, stride, pads, dilation)
    y = functools.reduce(lax.max, _taps(xp, nd, kernel, stride, dilation, out))
    return y, (xp, y)


def _max_bwd(geometry, residuals, g):
    kernel, stride, pads, dilation = geometry
    xp, y = residuals
    nd = len(kernel)
    out = y.shape[-nd:]
    taken = jnp.zeros(y.shape, bool)
    routed = []
    for tap in _taps(xp, nd, kernel, stride, dilation, out):
        first = (tap == y) & ~taken
        routed.append(jnp.where(first, g, jnp.zeros_like(g)))
        taken = taken | first
    _, pull = jax.vjp(lambda z: _taps(z, nd, kernel, stride, dilation, out), xp)
    (gp,) = pull(routed)
    spatial = xp.shape[-nd:]
    index = (Ellipsis, *(slice(lo, n - hi) for (lo, hi), n in zip(pads, spatial)))
    return (gp[index],)


_max_pool.defvjp(_max_fwd, _max_bwd)


def max_pool_taps(x: jax.Array, kernel: Sequence[int], stride: Sequence[int], pads: Pairs,
                  dilation: Sequence[int]) -> jax.Array:
    """Max over windows of the last ``len(kernel)`` dims of ``x``, padded by ``pads`` with -inf.

    Example:
        >>> max_pool_taps(jnp.arange(5.0)[None], (2,), (2,), [(0, 1)], (1,))
        Array([[1., 3., 4.]], dtype=float32)
    """
    geometry = (tuple(kernel), tuple(stride), tuple(tuple(p) for p in pads), tuple(dilation))
    return _max_pool(x, geometry)


def sum_pool_taps(x: jax.Array, kernel: Sequence[int], stride: Sequence[int],
                  pads: Pairs) -> jax.Array:
    """Sum over windows of the last ``len(kernel)`` dims of ``x``, zero-padded by ``pads``.

    Example:
        >>> sum_pool_taps(jnp.arange(4.0)[None], (2,), (2,), [(1, 1)])
        Array([[0., 3., 3.]], dtype=float32)
    """
    nd = len(kernel)
    dilation = (1,) * nd
    out = _out(x.shape[-nd:], kernel, stride, pads, dilation)
    return functools.reduce(lax.add, _taps(_pad(x, nd, pads, 0), nd, kernel, stride, dilation, out))
