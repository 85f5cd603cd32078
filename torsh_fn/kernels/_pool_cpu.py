"""Max and average pooling as elementwise work, for the CPU.

Taps (any window): each tap of the window (one kernel offset) is one strided slice of the padded
input, of the output's shape; the max (or sum) over taps is one fused elementwise loop in XLA. The
gradient of the max routes each output's cotangent to the first tap, in row-major window order,
that holds the maximum (PyTorch's choice on ties, and that of XLA's ``select_and_scatter``), and
sums the taps back into the input through the slices' transposes (pads): elementwise work again,
where XLA's CPU gradient of ``reduce_window`` is a slow ``select_and_scatter``.

Blocks (windows that tile the input from its origin: ``stride == kernel``, no padding, no
dilation, as in ``MaxPool2d(2)``): the input, cropped to whole windows, is viewed as
``(..., out_1, k_1, out_2, k_2, ...)`` (a free reshape); the forward is elementwise over the
view's taps as above. The max's gradient routes each window's cotangent to its first maximum,
one window position at a time, and places each by interior padding (stride ``k``), summed: XLA
fuses it into one loop over the input's shape. (A broadcast of the cotangent over the view, the
earlier formulation, was pulled by XLA's CPU compiler into the matrix product before a CNN's pool
gradient, which then took 8.8 ms instead of 1.) The sum's gradient is a broadcast.

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

__all__ = ["max_pool_blocks", "max_pool_taps", "sum_pool_blocks", "sum_pool_taps",
           "windows_are_blocks"]


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


def windows_are_blocks(kernel: Sequence[int], stride: Sequence[int], pads: Pairs,
                       dilation: Sequence[int]) -> bool:
    """Whether the windows tile the input from its origin (the blocks lowering applies)."""
    return (tuple(kernel) == tuple(stride) and all(d == 1 for d in dilation)
            and all(tuple(p) == (0, 0) for p in pads))


def _block_view(x: jax.Array, kernel: tuple[int, ...]) -> jax.Array:
    """``x`` cropped to whole windows and viewed as ``(..., out_1, k_1, out_2, k_2, ...)``."""
    nd = len(kernel)
    lead, spatial = x.shape[:-nd], x.shape[-nd:]
    out = [n // k for n, k in zip(spatial, kernel)]
    x = x[(Ellipsis, *(slice(0, o * k) for o, k in zip(out, kernel)))]
    return x.reshape(*lead, *itertools.chain.from_iterable(zip(out, kernel)))


def _kernel_axes(nd: int, ndim: int) -> tuple[int, ...]:
    """The ``k`` axes of a block view with ``ndim`` dims over ``nd`` spatial dims."""
    return tuple(ndim - 2 * nd + 2 * i + 1 for i in range(nd))


def _block_taps(view: jax.Array, kernel: tuple[int, ...]) -> list[jax.Array]:
    """Each window position's elements, row-major, from a block view: each of the output's shape.

    Elementwise work over these fuses into one loop; XLA's CPU reduce over the interleaved
    ``k`` axes of the view ran 2.8x slower.
    """
    axes = _kernel_axes(len(kernel), view.ndim)
    taps = []
    for offset in itertools.product(*(range(k) for k in kernel)):
        index = [slice(None)] * view.ndim
        for axis, t in zip(axes, offset):
            index[axis] = t
        taps.append(view[tuple(index)])
    return taps


def _unblock(gx: jax.Array, x_shape: tuple[int, ...], kernel: tuple[int, ...]) -> jax.Array:
    """A block view's cotangent back in ``x``'s shape: the reshape undone, the tail zeros."""
    nd = len(kernel)
    whole = [n // k * k for n, k in zip(x_shape[-nd:], kernel)]
    return _zero_tail(gx.reshape(*x_shape[:-nd], *whole), x_shape)


def _zero_tail(gx: jax.Array, x_shape: tuple[int, ...]) -> jax.Array:
    """``gx``, covering the whole windows of ``x``, padded with zeros to ``x``'s shape (the tail
    that floor mode dropped)."""
    return jnp.pad(gx, [(0, n - w) for n, w in zip(x_shape, gx.shape)])


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _max_blocks(x: jax.Array, kernel: tuple[int, ...]) -> jax.Array:
    return _max_blocks_fwd(x, kernel)[0]


def _max_blocks_fwd(x, kernel):
    y = functools.reduce(lax.max, _block_taps(_block_view(x, kernel), kernel))
    return y, (x, y)


def _max_blocks_bwd(kernel, residuals, g):
    x, y = residuals
    view = _block_view(x, kernel)
    first = jnp.zeros(y.shape, jnp.int32)  # the first window position holding the max
    for position, tap in reversed(list(enumerate(_block_taps(view, kernel)))):
        first = jnp.where(tap == y, position, first)
    nd, zero = len(kernel), jnp.zeros((), g.dtype)
    lead = [(0, 0, 0)] * (g.ndim - nd)
    gx = None
    for position, offset in enumerate(itertools.product(*(range(k) for k in kernel))):
        routed = lax.pad(jnp.where(first == position, g, zero), zero,
                         lead + [(o, k - 1 - o, k - 1) for o, k in zip(offset, kernel)])
        gx = routed if gx is None else gx + routed
    return (_zero_tail(gx, x.shape),)


_max_blocks.defvjp(_max_blocks_fwd, _max_blocks_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _sum_blocks(x: jax.Array, kernel: tuple[int, ...]) -> jax.Array:
    return functools.reduce(lax.add, _block_taps(_block_view(x, kernel), kernel))


def _sum_blocks_fwd(x, kernel):
    return _sum_blocks(x, kernel), x.shape


def _sum_blocks_bwd(kernel, x_shape, g):
    nd = len(kernel)
    axes = _kernel_axes(nd, g.ndim + nd)
    view_shape = list(g.shape)
    for axis, k in zip(axes, kernel):
        view_shape.insert(axis, k)
    return (_unblock(jnp.broadcast_to(jnp.expand_dims(g, axes), view_shape), x_shape, kernel),)


_sum_blocks.defvjp(_sum_blocks_fwd, _sum_blocks_bwd)


def max_pool_blocks(x: jax.Array, kernel: Sequence[int]) -> jax.Array:
    """Max over the disjoint ``kernel``-sized blocks of the last ``len(kernel)`` dims of ``x``
    (a tail shorter than a block is dropped, as pooling's floor mode does).

    Example:
        >>> max_pool_blocks(jnp.arange(5.0)[None], (2,))
        Array([[1., 3.]], dtype=float32)
    """
    return _max_blocks(x, tuple(kernel))


def sum_pool_blocks(x: jax.Array, kernel: Sequence[int]) -> jax.Array:
    """Sum over the disjoint ``kernel``-sized blocks of the last ``len(kernel)`` dims of ``x``.

    Example:
        >>> sum_pool_blocks(jnp.arange(5.0)[None], (2,))
        Array([[1., 5.]], dtype=float32)
    """
    return _sum_blocks(x, tuple(kernel))
