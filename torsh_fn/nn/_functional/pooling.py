"""nn.functional: max, average, power-average and adaptive pooling, and max unpooling.

Inputs are batched (N, C, *spatial) or unbatched (C, *spatial), as in PyTorch; pooling runs over
the trailing spatial dims. Max and average pooling call ``torsh_fn.kernels``. ``return_indices``
gives each maximum's flat index into the input's spatial dims (int32 unless 64-bit types are on;
PyTorch returns int64).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from torsh_fn import random as _random
from torsh_fn.kernels.pooling import avg_pool as _avg_pool_kernel
from torsh_fn.kernels.pooling import max_pool as _max_pool_kernel
from torsh_fn.kernels.pooling import pool_output_size

__all__ = [
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d", "adaptive_max_pool1d",
    "adaptive_max_pool1d_with_indices", "adaptive_max_pool2d", "adaptive_max_pool2d_with_indices",
    "adaptive_max_pool3d", "adaptive_max_pool3d_with_indices", "avg_pool1d", "avg_pool2d",
    "avg_pool3d", "fractional_max_pool2d", "fractional_max_pool2d_with_indices",
    "fractional_max_pool3d", "fractional_max_pool3d_with_indices",
    "lp_pool1d", "lp_pool2d", "lp_pool3d", "max_pool1d", "max_pool2d", "max_pool3d",
    "max_pool1d_with_indices", "max_pool2d_with_indices", "max_pool3d_with_indices",
    "max_unpool1d", "max_unpool2d", "max_unpool3d",
]

IntOrTuple = int | Sequence[int]


def _tuple(name: str, arg: str, value: IntOrTuple, nd: int) -> tuple[int, ...]:
    values = (value,) * nd if isinstance(value, int) else tuple(value)
    if len(values) == 1 and nd > 1:
        values = values * nd
    if len(values) != nd or not all(isinstance(v, int) for v in values):
        raise ValueError(f"{name}: {arg} must be an int or {nd} ints, got {value!r}")
    return values


def _check_rank(name: str, input: jax.Array, nd: int) -> None:
    if input.ndim not in (nd + 1, nd + 2):
        raise ValueError(f"{name}: expected input of rank {nd + 1} (unbatched) or {nd + 2} "
                         f"(batched), got shape {input.shape}")


def _window_args(name, input, nd, kernel_size, stride, padding, dilation, ceil_mode):
    """Checked (kernel, stride, padding, dilation) tuples and the output's spatial shape."""
    _check_rank(name, input, nd)
    kernel = _tuple(name, "kernel_size", kernel_size, nd)
    stride = kernel if stride is None or stride == [] else _tuple(name, "stride", stride, nd)
    padding = _tuple(name, "padding", padding, nd)
    dilation = _tuple(name, "dilation", dilation, nd)
    if min(kernel) < 1 or min(stride) < 1 or min(dilation) < 1:
        raise ValueError(f"{name}: kernel_size, stride and dilation must be positive, got "
                         f"{kernel=}, {stride=}, {dilation=}")
    if any(2 * p > k for p, k in zip(padding, kernel)):
        raise ValueError(f"{name}: padding must be at most half the kernel size, got "
                         f"{padding=} for kernel_size={kernel}")
    spatial = input.shape[-nd:]
    out = tuple(pool_output_size(n, k, s, p, d, ceil_mode)
                for n, k, s, p, d in zip(spatial, kernel, stride, padding, dilation))
    if min(out) < 1:
        raise ValueError(f"{name}: output size {out} is too small for input of spatial shape "
                         f"{spatial} with kernel_size={kernel}")
    return kernel, stride, padding, dilation, out


def _gather_windows(x: jax.Array, positions: Sequence[np.ndarray], fill) -> tuple:
    """Windows of the trailing dims: (..., *out, prod(k)) values and flat input indices.

    ``positions[i]`` is an (out_i, k_i) int array of input positions along spatial dim ``i``;
    positions outside the input read ``fill`` and index -1.
    """
    nd = len(positions)
    spatial = x.shape[-nd:]
    index, valid, gathered = [], np.ones((), bool), []
    for i, pos in enumerate(positions):
        shape = [1] * (2 * nd)
        shape[i], shape[nd + i] = pos.shape
        pos = pos.reshape(shape)
        valid = valid & (pos >= 0) & (pos < spatial[i])
        gathered.append(np.clip(pos, 0, spatial[i] - 1))
        index.append(pos)
    flat = sum(p * math.prod(spatial[i + 1:]) for i, p in enumerate(index))
    values = jnp.where(valid, x[(..., *tuple(gathered))], jnp.asarray(fill, x.dtype))
    out_shape = values.shape[:x.ndim]
    flat = np.broadcast_to(np.where(valid, flat, -1), out_shape[-nd:] + values.shape[x.ndim:])
    return (values.reshape(*out_shape, -1), flat.reshape(*out_shape[-nd:], -1))


def _max_with_indices(x: jax.Array, positions: Sequence[np.ndarray]) -> tuple:
    """The max of each window and its flat input index (the first one on ties, as PyTorch)."""
    fill = -jnp.inf if jnp.issubdtype(x.dtype, jnp.floating) else jnp.iinfo(x.dtype).min
    values, flat = _gather_windows(x, positions, fill)
    best = jnp.argmax(values, axis=-1)[..., None]
    out = jnp.take_along_axis(values, best, axis=-1)[..., 0]
    flat = jnp.broadcast_to(jnp.asarray(flat, jnp.int32), values.shape)
    return out, jnp.take_along_axis(flat, best, axis=-1)[..., 0]


def _max_pool(name, nd, input, kernel_size, stride, padding, dilation, ceil_mode,
              return_indices):
    kernel, stride, padding, dilation, out = _window_args(
        name, input, nd, kernel_size, stride, padding, dilation, ceil_mode)
    if not return_indices and max(dilation) == 1:
        return _max_pool_kernel(input, kernel, stride, padding, dilation, ceil_mode)
    # JAX has no gradient for a dilated max reduce_window: gather the windows instead.
    positions = [np.arange(o)[:, None] * s - p + np.arange(k)[None, :] * d
                 for o, k, s, p, d in zip(out, kernel, stride, padding, dilation)]
    out, indices = _max_with_indices(input, positions)
    return (out, indices) if return_indices else out


def max_pool1d(input: jax.Array, kernel_size: IntOrTuple, stride: IntOrTuple | None = None,
               padding: IntOrTuple = 0, dilation: IntOrTuple = 1, ceil_mode: bool = False,
               return_indices: bool = False):
    """Max over windows of (N, C, L) or (C, L); ``stride`` defaults to ``kernel_size``.

    Returns the pooled array, and with ``return_indices`` also each max's index into ``L``.

    Example:
        >>> max_pool1d(jnp.arange(7.0)[None], 2, ceil_mode=True)
        Array([[1., 3., 5., 6.]], dtype=float32)
    """
    return _max_pool("max_pool1d", 1, input, kernel_size, stride, padding, dilation, ceil_mode,
                     return_indices)


def max_pool2d(input: jax.Array, kernel_size: IntOrTuple, stride: IntOrTuple | None = None,
               padding: IntOrTuple = 0, dilation: IntOrTuple = 1, ceil_mode: bool = False,
               return_indices: bool = False):
    """Max over windows of (N, C, H, W) or (C, H, W); indices are flat into ``H * W``.

    Example:
        >>> max_pool2d(jnp.ones((1, 3, 7, 7)), 3, stride=2, padding=1).shape
        (1, 3, 4, 4)
    """
    return _max_pool("max_pool2d", 2, input, kernel_size, stride, padding, dilation, ceil_mode,
                     return_indices)


def max_pool3d(input: jax.Array, kernel_size: IntOrTuple, stride: IntOrTuple | None = None,
               padding: IntOrTuple = 0, dilation: IntOrTuple = 1, ceil_mode: bool = False,
               return_indices: bool = False):
    """Max over windows of (N, C, D, H, W) or (C, D, H, W); indices flat into ``D * H * W``."""
    return _max_pool("max_pool3d", 3, input, kernel_size, stride, padding, dilation, ceil_mode,
                     return_indices)


def _avg_pool(name, nd, input, kernel_size, stride, padding, ceil_mode, count_include_pad,
              divisor_override):
    kernel, stride, padding, _, _ = _window_args(name, input, nd, kernel_size, stride, padding,
                                                 1, ceil_mode)
    if divisor_override is not None and divisor_override == 0:
        raise ValueError(f"{name}: divisor_override must be non-zero")
    return _avg_pool_kernel(input, kernel, stride, padding, ceil_mode, count_include_pad,
                            divisor_override)


def avg_pool1d(input: jax.Array, kernel_size: IntOrTuple, stride: IntOrTuple | None = None,
               padding: IntOrTuple = 0, ceil_mode: bool = False, count_include_pad: bool = True
               ) -> jax.Array:
    """Average over windows of (N, C, L) or (C, L).

    Example:
        >>> avg_pool1d(jnp.arange(6.0)[None], 3)
        Array([[1., 4.]], dtype=float32)
    """
    return _avg_pool("avg_pool1d", 1, input, kernel_size, stride, padding, ceil_mode,
                     count_include_pad, None)


def avg_pool2d(input: jax.Array, kernel_size: IntOrTuple, stride: IntOrTuple | None = None,
               padding: IntOrTuple = 0, ceil_mode: bool = False, count_include_pad: bool = True,
               divisor_override: int | None = None) -> jax.Array:
    """Average over windows of (N, C, H, W) or (C, H, W); ``divisor_override`` replaces the
    window size as divisor."""
    return _avg_pool("avg_pool2d", 2, input, kernel_size, stride, padding, ceil_mode,
                     count_include_pad, divisor_override)


def avg_pool3d(input: jax.Array, kernel_size: IntOrTuple, stride: IntOrTuple | None = None,
               padding: IntOrTuple = 0, ceil_mode: bool = False, count_include_pad: bool = True,
               divisor_override: int | None = None) -> jax.Array:
    """Average over windows of (N, C, D, H, W) or (C, D, H, W)."""
    return _avg_pool("avg_pool3d", 3, input, kernel_size, stride, padding, ceil_mode,
                     count_include_pad, divisor_override)


def _lp_pool(name, nd, input, norm_type, kernel_size, stride, ceil_mode):
    kernel = _tuple(name, "kernel_size", kernel_size, nd)
    pooled = _avg_pool(name, nd, input ** norm_type, kernel, stride, 0, ceil_mode, True, None)
    magnitude = jnp.abs(pooled)
    scaled = jnp.sign(pooled) * jnp.where(magnitude > 0, magnitude, 0) * math.prod(kernel)
    return scaled ** (1.0 / norm_type)


def lp_pool1d(input: jax.Array, norm_type: float, kernel_size: IntOrTuple,
              stride: IntOrTuple | None = None, ceil_mode: bool = False) -> jax.Array:
    """``(sum over window of x ** p) ** (1 / p)`` over (N, C, L), as PyTorch computes it."""
    return _lp_pool("lp_pool1d", 1, input, norm_type, kernel_size, stride, ceil_mode)


def lp_pool2d(input: jax.Array, norm_type: float, kernel_size: IntOrTuple,
              stride: IntOrTuple | None = None, ceil_mode: bool = False) -> jax.Array:
    """``(sum over window of x ** p) ** (1 / p)`` over (N, C, H, W).

    Example:
        >>> lp_pool2d(jnp.ones((1, 1, 4, 4)), 2, 2)
        Array([[[[2., 2.],
                 [2., 2.]]]], dtype=float32)
    """
    return _lp_pool("lp_pool2d", 2, input, norm_type, kernel_size, stride, ceil_mode)


def lp_pool3d(input: jax.Array, norm_type: float, kernel_size: IntOrTuple,
              stride: IntOrTuple | None = None, ceil_mode: bool = False) -> jax.Array:
    """``(sum over window of x ** p) ** (1 / p)`` over (N, C, D, H, W)."""
    return _lp_pool("lp_pool3d", 3, input, norm_type, kernel_size, stride, ceil_mode)


def _adaptive_sizes(name, input, nd, output_size) -> tuple[int, ...]:
    _check_rank(name, input, nd)
    sizes = (output_size,) * nd if isinstance(output_size, int | None) else tuple(output_size)
    if len(sizes) != nd:
        raise ValueError(f"{name}: output_size must be an int or {nd} values, got {output_size!r}")
    sizes = tuple(n if o is None else o for o, n in zip(sizes, input.shape[-nd:]))
    if min(sizes) < 1:
        raise ValueError(f"{name}: output_size must be positive, got {sizes}")
    return sizes


def _adaptive_bounds(length: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch's windows: ``[floor(i * L / out), ceil((i + 1) * L / out))``."""
    i = np.arange(out)
    return (i * length) // out, -(-((i + 1) * length) // out)


def _averaging_matrix(length: int, out: int) -> np.ndarray:
    start, end = _adaptive_bounds(length, out)
    j = np.arange(length)
    inside = (j[None, :] >= start[:, None]) & (j[None, :] < end[:, None])
    return inside / (end - start)[:, None]


def _adaptive_avg(name, nd, input, output_size):
    sizes = _adaptive_sizes(name, input, nd, output_size)
    z = input.astype(jnp.promote_types(input.dtype, jnp.float32))
    for i, out in enumerate(sizes):  # the mean over a box is the product of 1-d means
        axis = input.ndim - nd + i
        m = jnp.asarray(_averaging_matrix(input.shape[axis], out), z.dtype)
        z = jnp.moveaxis(jnp.tensordot(z, m, axes=[[axis], [1]],
                                       precision=jax.lax.Precision.HIGHEST), -1, axis)
    return z.astype(input.dtype)


def adaptive_avg_pool1d(input: jax.Array, output_size: int) -> jax.Array:
    """Average over ``output_size`` near-equal windows of (N, C, L) or (C, L).

    Example:
        >>> adaptive_avg_pool1d(jnp.arange(5.0)[None], 2)
        Array([[1., 3.]], dtype=float32)
    """
    return _adaptive_avg("adaptive_avg_pool1d", 1, input, output_size)


def adaptive_avg_pool2d(input: jax.Array, output_size: IntOrTuple | None) -> jax.Array:
    """Average pooling of (N, C, H, W) to ``output_size`` (None keeps that dim's size)."""
    return _adaptive_avg("adaptive_avg_pool2d", 2, input, output_size)


def adaptive_avg_pool3d(input: jax.Array, output_size: IntOrTuple | None) -> jax.Array:
    """Average pooling of (N, C, D, H, W) to ``output_size``."""
    return _adaptive_avg("adaptive_avg_pool3d", 3, input, output_size)


def _adaptive_max(name, nd, input, output_size, return_indices):
    sizes = _adaptive_sizes(name, input, nd, output_size)
    positions = []
    for length, out in zip(input.shape[-nd:], sizes):
        start, end = _adaptive_bounds(length, out)
        pos = start[:, None] + np.arange((end - start).max())[None, :]
        positions.append(np.where(pos < end[:, None], pos, -1))
    out, indices = _max_with_indices(input, positions)
    return (out, indices) if return_indices else out


def adaptive_max_pool1d(input: jax.Array, output_size: int, return_indices: bool = False):
    """Max over ``output_size`` near-equal windows of (N, C, L) or (C, L)."""
    return _adaptive_max("adaptive_max_pool1d", 1, input, output_size, return_indices)


def adaptive_max_pool2d(input: jax.Array, output_size: IntOrTuple | None,
                        return_indices: bool = False):
    """Max pooling of (N, C, H, W) to ``output_size``; indices are flat into ``H * W``."""
    return _adaptive_max("adaptive_max_pool2d", 2, input, output_size, return_indices)


def adaptive_max_pool3d(input: jax.Array, output_size: IntOrTuple | None,
                        return_indices: bool = False):
    """Max pooling of (N, C, D, H, W) to ``output_size``."""
    return _adaptive_max("adaptive_max_pool3d", 3, input, output_size, return_indices)


def _with_indices(pool):
    """``pool`` with ``return_indices=True``: PyTorch's ``*_with_indices`` names."""

    def with_indices(input: jax.Array, *args, **kwargs) -> tuple[jax.Array, jax.Array]:
        return pool(input, *args, **{**kwargs, "return_indices": True})

    with_indices.__name__ = f"{pool.__name__}_with_indices"
    with_indices.__doc__ = f"``{pool.__name__}(..., return_indices=True)``: (output, indices)."
    return with_indices


max_pool1d_with_indices = _with_indices(max_pool1d)
max_pool2d_with_indices = _with_indices(max_pool2d)
max_pool3d_with_indices = _with_indices(max_pool3d)
adaptive_max_pool1d_with_indices = _with_indices(adaptive_max_pool1d)
adaptive_max_pool2d_with_indices = _with_indices(adaptive_max_pool2d)
adaptive_max_pool3d_with_indices = _with_indices(adaptive_max_pool3d)


def _fractional_starts(samples: jax.Array, size_in: int, size_out: int, k: int) -> jax.Array:
    """PyTorch's pseudo-random window starts along one dim, from samples in [0, 1): (..., out)."""
    if size_out == 1:
        return jnp.full((*samples.shape, 1), size_in - k, jnp.int32)
    alpha = jnp.float32((size_in - k) / (size_out - 1))
    i = jnp.arange(size_out - 1, dtype=jnp.float32)
    u = samples.astype(jnp.float32)[..., None]
    starts = ((i + u) * alpha).astype(jnp.int32) - (u * alpha).astype(jnp.int32)
    last = jnp.full((*samples.shape, 1), size_in - k, jnp.int32)
    return jnp.concatenate([starts, last], axis=-1)


def _fractional(name, nd, input, kernel_size, output_size, output_ratio, return_indices,
                _random_samples, key, generator):
    _check_rank(name, input, nd)
    kernel = _tuple(name, "kernel_size", kernel_size, nd)
    spatial = input.shape[-nd:]
    if (output_size is None) == (output_ratio is None):
        raise ValueError(f"{name}: exactly one of output_size and output_ratio must be given")
    if output_size is None:
        ratios = (output_ratio,) * nd if isinstance(output_ratio, int | float) else output_ratio
        output_size = tuple(int(n * r) for n, r in zip(spatial, ratios))
    out = _tuple(name, "output_size", output_size, nd)
    if any(o + k - 1 > n or o < 1 for o, k, n in zip(out, kernel, spatial)):
        raise ValueError(f"{name}: output_size {out} with kernel_size {kernel} does not fit input "
                         f"of spatial shape {spatial}")
    x = input if input.ndim == nd + 2 else input[None]
    n, c = x.shape[:2]
    samples = _random_samples
    if samples is None:
        samples = jax.random.uniform(_random.next_key(key, generator), (n, c, nd), jnp.float32)
    if samples.shape != (n, c, nd):
        raise ValueError(f"{name}: _random_samples must have shape {(n, c, nd)}, got "
                         f"{samples.shape}")
    order = (1, 0) if nd == 2 else (0, 1, 2)  # PyTorch's sample per dim: (W, H) or (T, H, W)
    flat = 0
    for d in range(nd):
        starts = _fractional_starts(samples[..., order[d]], spatial[d], out[d], kernel[d])
        shape = [n, c] + [1] * (2 * nd)
        shape[2 + d] = out[d]
        window = [1] * (2 * nd)
        window[nd + d] = kernel[d]
        pos = starts.reshape(shape) + jnp.arange(kernel[d]).reshape(window)
        flat = flat + pos * math.prod(spatial[d + 1:])
    flat = jnp.broadcast_to(flat, (n, c, *out, *kernel)).reshape(n, c, -1)
    values = jnp.take_along_axis(x.reshape(n, c, -1), flat, axis=-1)
    values = values.reshape(n, c, *out, -1)
    best = jnp.argmax(values, axis=-1)[..., None]
    result = jnp.take_along_axis(values, best, axis=-1)[..., 0]
    indices = jnp.take_along_axis(flat.reshape(n, c, *out, -1), best, axis=-1)[..., 0]
    if input.ndim == nd + 1:
        result, indices = result[0], indices[0]
    return (result, indices) if return_indices else result


def fractional_max_pool2d(input: jax.Array, kernel_size: IntOrTuple,
                          output_size: IntOrTuple | None = None,
                          output_ratio: float | Sequence[float] | None = None,
                          return_indices: bool = False, _random_samples: jax.Array | None = None,
                          *, key: jax.Array | None = None,
                          generator: _random.Generator | None = None):
    """Max over pseudo-randomly placed windows of (N, C, H, W) or (C, H, W) (Graham, 2014).

    The windows come from ``_random_samples`` (N, C, 2) in [0, 1) if given, else from ``key``
    (drawn from ``generator`` or the global generator when omitted).

    Example:
        >>> fractional_max_pool2d(jnp.ones((1, 2, 9, 9)), 2, output_size=5,
        ...                       key=jax.random.PRNGKey(0)).shape
        (1, 2, 5, 5)
    """
    return _fractional("fractional_max_pool2d", 2, input, kernel_size, output_size, output_ratio,
                       return_indices, _random_samples, key, generator)


def fractional_max_pool3d(input: jax.Array, kernel_size: IntOrTuple,
                          output_size: IntOrTuple | None = None,
                          output_ratio: float | Sequence[float] | None = None,
                          return_indices: bool = False, _random_samples: jax.Array | None = None,
                          *, key: jax.Array | None = None,
                          generator: _random.Generator | None = None):
    """Fractional max pooling of (N, C, T, H, W) or (C, T, H, W); samples (N, C, 3)."""
    return _fractional("fractional_max_pool3d", 3, input, kernel_size, output_size, output_ratio,
                       return_indices, _random_samples, key, generator)


fractional_max_pool2d_with_indices = _with_indices(fractional_max_pool2d)
fractional_max_pool3d_with_indices = _with_indices(fractional_max_pool3d)


def _max_unpool(name, nd, input, indices, kernel_size, stride, padding, output_size):
    _check_rank(name, input, nd)
    if indices.shape != input.shape:
        raise ValueError(f"{name}: indices must have input's shape {input.shape}, "
                         f"got {indices.shape}")
    kernel = _tuple(name, "kernel_size", kernel_size, nd)
    stride = kernel if stride is None else _tuple(name, "stride", stride, nd)
    padding = _tuple(name, "padding", padding, nd)
    if output_size is None:
        size = tuple((n - 1) * s - 2 * p + k
                     for n, k, s, p in zip(input.shape[-nd:], kernel, stride, padding))
    else:
        size = tuple(output_size)[-nd:]
    lead = input.shape[:-nd]
    rows = math.prod(lead)
    flat_in, flat_idx = input.reshape(rows, -1), indices.reshape(rows, -1)
    out = jnp.zeros((rows, math.prod(size)), input.dtype)
    out = out.at[jnp.arange(rows)[:, None], flat_idx].set(flat_in, mode="drop")
    return out.reshape(*lead, *size)


def max_unpool1d(input: jax.Array, indices: jax.Array, kernel_size: IntOrTuple,
                 stride: IntOrTuple | None = None, padding: IntOrTuple = 0,
                 output_size: Sequence[int] | None = None) -> jax.Array:
    """Inverse of ``max_pool1d``: each value goes to its index, zeros elsewhere."""
    return _max_unpool("max_unpool1d", 1, input, indices, kernel_size, stride, padding,
                       output_size)


def max_unpool2d(input: jax.Array, indices: jax.Array, kernel_size: IntOrTuple,
                 stride: IntOrTuple | None = None, padding: IntOrTuple = 0,
                 output_size: Sequence[int] | None = None) -> jax.Array:
    """Inverse of ``max_pool2d(..., return_indices=True)`` on (N, C, H, W) or (C, H, W).

    Example:
        >>> x = jnp.arange(16.0).reshape(1, 1, 4, 4)
        >>> max_unpool2d(*max_pool2d(x, 2, return_indices=True), 2).shape
        (1, 1, 4, 4)
    """
    return _max_unpool("max_unpool2d", 2, input, indices, kernel_size, stride, padding,
                       output_size)


def max_unpool3d(input: jax.Array, indices: jax.Array, kernel_size: IntOrTuple,
                 stride: IntOrTuple | None = None, padding: IntOrTuple = 0,
                 output_size: Sequence[int] | None = None) -> jax.Array:
    """Inverse of ``max_pool3d(..., return_indices=True)``."""
    return _max_unpool("max_unpool3d", 3, input, indices, kernel_size, stride, padding,
                       output_size)
