"""Max and average pooling over the trailing spatial dims, PyTorch's sizes, with dispatch.

Each spatial dim of length ``L`` with kernel ``k``, stride ``s``, padding ``p`` and dilation ``d``
gives ``out = floor_or_ceil((L + 2p - d(k - 1) - 1) / s) + 1`` windows; in ceil mode a last window
that would start in the right padding is dropped. Windows reaching past the padded input (ceil
mode) see ``-inf`` (max) or nothing (average). The average's divisor is the window's size clipped
to the padded input (``count_include_pad``) or to the input, unless ``divisor_override`` is set.
2-D pooling without dilation also has a Pallas kernel (``impl="pallas"``; "auto" picks it where
the dispatch table measured it faster for that plane size). On the CPU, "auto" computes floating
pooling with windows of at most 16 elements as elementwise work over the window's taps
(``_pool_cpu``), with the same result and the same routing of the max's gradient to the first
maximum of each window: 2-8x faster than XLA's ``reduce_window`` and its gradient for
MaxPool2d(2) and the like, 1.8x for ResNet's overlapping 3x3/2 max pool (64x64x16x16, forward and
backward). Where the windows tile the input from its origin (``kernel_size == stride``, no
padding, no dilation) it reduces a reshaped view instead, whose gradient is one elementwise pass
(the issue-10 CNN step: 15% faster than over taps).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ._dispatch import measured_faster, picks_lowering, resolve_impl
from ._explicit_sharding import typed_like
from ._pallas_pool import PoolConfig, pool2d_pallas
from ._pool_cpu import (
    max_pool_blocks,
    max_pool_taps,
    sum_pool_blocks,
    sum_pool_taps,
    windows_are_blocks,
)

__all__ = ["avg_pool", "avg_pool_reference", "max_pool", "max_pool_reference",
           "pool_output_size"]


def pool_output_size(length: int, kernel: int, stride: int, padding: int, dilation: int = 1,
                     ceil_mode: bool = False) -> int:
    """Number of windows along one dim, by PyTorch's rule."""
    span = length + 2 * padding - dilation * (kernel - 1) - 1
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= length + padding:
        out -= 1
    return out


def _pads(shape: Sequence[int], kernel, stride, padding, dilation, ceil_mode) -> list:
    """(lo, hi) padding per spatial dim: explicit padding plus ceil mode's extra on the right."""
    pads = []
    for n, k, s, p, d in zip(shape, kernel, stride, padding, dilation):
        out = pool_output_size(n, k, s, p, d, ceil_mode)
        pads.append((p, max(p, (out - 1) * s + d * (k - 1) + 1 - n - p)))
    return pads


def _window(x: jax.Array, nd: int, values: Sequence[int]) -> tuple[int, ...]:
    return (1,) * (x.ndim - nd) + tuple(values)


def max_pool_reference(x: jax.Array, kernel_size: Sequence[int], stride: Sequence[int],
                       padding: Sequence[int], dilation: Sequence[int],
                       ceil_mode: bool = False) -> jax.Array:
    """Max over windows of the last ``len(kernel_size)`` dims of ``x``.

    Example:
        >>> max_pool_reference(jnp.arange(5.0)[None], (2,), (2,), (0,), (1,), ceil_mode=True)
        Array([[1., 3., 4.]], dtype=float32)
    """
    nd = len(kernel_size)
    pads = _pads(x.shape[-nd:], kernel_size, stride, padding, dilation, ceil_mode)
    init = -np.inf if jnp.issubdtype(x.dtype, jnp.floating) else jnp.iinfo(x.dtype).min
    return lax.reduce_window(
        x, np.array(init, x.dtype), lax.max, _window(x, nd, kernel_size), _window(x, nd, stride),
        [(0, 0)] * (x.ndim - nd) + pads, window_dilation=_window(x, nd, dilation))


def _divisor(shape, kernel, stride, padding, ceil_mode, count_include_pad) -> np.ndarray:
    """Each window's divisor, computed once on the host from the static shapes."""
    nd = len(kernel)
    ones = np.ones(shape, np.float32)
    pad_value = 1.0 if count_include_pad else 0.0
    ones = np.pad(ones, [(p, p) for p in padding], constant_values=pad_value)
    pads = _pads(shape, kernel, stride, padding, (1,) * nd, ceil_mode)
    extra = [(0, hi - p) for (_, hi), p in zip(pads, padding)]
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(ones, extra), tuple(kernel))
    windows = windows[tuple(slice(None, None, s) for s in stride)]
    return windows.sum(axis=tuple(range(nd, 2 * nd)))


def avg_pool_reference(x: jax.Array, kernel_size: Sequence[int], stride: Sequence[int],
                       padding: Sequence[int], ceil_mode: bool = False,
                       count_include_pad: bool = True, divisor_override: int | None = None
                       ) -> jax.Array:
    """Average over windows of the last ``len(kernel_size)`` dims of ``x`` (PyTorch's divisors).

    Example:
        >>> avg_pool_reference(jnp.arange(4.0)[None], (2,), (2,), (1,), count_include_pad=False)
        Array([[0. , 1.5, 3. ]], dtype=float32)
    """
    nd = len(kernel_size)
    shape = x.shape[-nd:]
    pads = _pads(shape, kernel_size, stride, padding, (1,) * nd, ceil_mode)
    z = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    sums = lax.reduce_window(z, np.array(0, z.dtype), lax.add, _window(x, nd, kernel_size),
                             _window(x, nd, stride), [(0, 0)] * (x.ndim - nd) + pads)
    if divisor_override is not None:
        return (sums / divisor_override).astype(x.dtype)
    divisor = _divisor(shape, kernel_size, stride, padding, ceil_mode, count_include_pad)
    return (sums / jnp.asarray(divisor, z.dtype)).astype(x.dtype)


def _pallas_pool(op: str, impl: str, x: jax.Array, kernel_size, stride, padding,
                 dilation, ceil_mode: bool, divisor: Callable[[tuple[int, ...]], np.ndarray]
                 | None, reference: Callable[[jax.Array], jax.Array]) -> jax.Array | None:
    """The Pallas result for a 2-D, undilated, floating pooling if dispatch picks it, else None."""
    supported = (len(kernel_size) == 2 and x.ndim in (3, 4) and tuple(dilation) == (1, 1)
                 and jnp.issubdtype(x.dtype, jnp.floating) and x.dtype != jnp.float64)
    plane = math.prod(x.shape[-2:])
    chosen = resolve_impl(f"{op}_pool", impl,
                          lambda: supported and measured_faster(f"{op}_pool2d", x.dtype, plane))
    if chosen == "xla":
        return None
    if not supported:
        raise ValueError(f"{op}_pool: the Pallas kernel takes 2-D pooling of float16/bfloat16/"
                         f"float32 (N, C, H, W) or (C, H, W) input without dilation; got input "
                         f"{x.shape} {x.dtype}, kernel {tuple(kernel_size)}, dilation "
                         f"{tuple(dilation)}: use impl='xla'")
    hw = tuple(x.shape[-2:])
    out = tuple(pool_output_size(n, k, s, p, 1, ceil_mode)
                for n, k, s, p in zip(hw, kernel_size, stride, padding))
    cfg = PoolConfig(op, tuple(kernel_size), tuple(stride), tuple(padding), hw, out)

    def kernel(x: jax.Array) -> jax.Array:
        x4 = x.reshape((-1, *x.shape[-3:]))
        y = pool2d_pallas(x4, cfg, None if divisor is None else divisor(out), reference)
        return y.reshape((*x.shape[:-2], *out))

    return typed_like(reference, kernel, x)


def _taps_on_cpu(impl: str, x: jax.Array, kernel_size, stride) -> bool:
    """Whether "auto" computes this pooling over the window's taps (see the module docstring)."""
    return (picks_lowering(impl) and jax.default_backend() == "cpu"
            and jnp.issubdtype(x.dtype, jnp.floating) and math.prod(kernel_size) <= 16)


def max_pool(x: jax.Array, kernel_size: Sequence[int], stride: Sequence[int],
             padding: Sequence[int], dilation: Sequence[int], ceil_mode: bool = False, *,
             impl: str = "auto") -> jax.Array:
    """Max pooling (see ``max_pool_reference``); ``impl`` is "auto", "pallas" or "xla".

    The Pallas kernel covers 2-D pooling without dilation (``max_pool2d``'s common case).
    """
    def reference(z: jax.Array) -> jax.Array:
        return max_pool_reference(z, kernel_size, stride, padding, dilation, ceil_mode)

    y = _pallas_pool("max", impl, x, kernel_size, stride, padding, dilation, ceil_mode, None,
                     reference)
    if y is None and _taps_on_cpu(impl, x, kernel_size, stride):
        nd = len(kernel_size)
        pads = _pads(x.shape[-nd:], kernel_size, stride, padding, dilation, ceil_mode)
        if windows_are_blocks(kernel_size, stride, pads, dilation):
            return typed_like(reference, lambda z: max_pool_blocks(z, kernel_size), x)
        return typed_like(reference,
                          lambda z: max_pool_taps(z, kernel_size, stride, pads, dilation), x)
    return reference(x) if y is None else y


def avg_pool(x: jax.Array, kernel_size: Sequence[int], stride: Sequence[int],
             padding: Sequence[int], ceil_mode: bool = False, count_include_pad: bool = True,
             divisor_override: int | None = None, *, impl: str = "auto") -> jax.Array:
    """Average pooling (see ``avg_pool_reference``); ``impl`` as in ``max_pool``."""
    def reference(z: jax.Array) -> jax.Array:
        return avg_pool_reference(z, kernel_size, stride, padding, ceil_mode, count_include_pad,
                                  divisor_override)

    nd = len(kernel_size)

    def divisor(out: tuple[int, ...]) -> np.ndarray:
        if divisor_override is not None:
            return np.full(out, divisor_override, np.float32)
        return _divisor(x.shape[-nd:], kernel_size, stride, padding, ceil_mode, count_include_pad)

    y = _pallas_pool("avg", impl, x, kernel_size, stride, padding, (1,) * nd, ceil_mode, divisor,
                     reference)
    if y is None and _taps_on_cpu(impl, x, kernel_size, stride):
        pads = _pads(x.shape[-nd:], kernel_size, stride, padding, (1,) * nd, ceil_mode)

        def by_taps(x: jax.Array) -> jax.Array:
            z = x.astype(jnp.promote_types(x.dtype, jnp.float32))
            if windows_are_blocks(kernel_size, stride, pads, (1,) * nd):
                sums = sum_pool_blocks(z, kernel_size)
            else:
                sums = sum_pool_taps(z, kernel_size, stride, pads)
            out = tuple(sums.shape[-nd:])
            return (sums / jnp.asarray(divisor(out), z.dtype)).astype(x.dtype)

        return typed_like(reference, by_taps, x)
    return reference(x) if y is None else y
