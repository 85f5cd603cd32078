"""Pallas batch norm (training mode) for NC... inputs: statistics, then the affine apply.

Statistics: each (n, c) plane is one row; the row kernel writes its mean and variance, and the
per-channel mean and (biased) variance combine the N rows of a channel exactly (equal counts:
``var = mean(var_n) + mean((mean_n - mean)^2)``). Apply: a row kernel computes
``y = x * scale[c] + shift[c]`` with ``scale = w * rstd`` and ``shift = b - mean * scale``.
Two passes over ``x``: one read for the statistics, one read and one write for the output.
Gradients use XLA (``jax.vjp`` of the reference formula) through a ``custom_vjp``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from ._pallas_common import (
    chunk_count,
    load_chunk,
    num_warps_for,
    row_block,
    row_call,
    store_chunk,
)
from ._pallas_rows_reduce import row_mean_var_pallas


def _affine_kernel(x_ref, scale_ref, shift_ref, y_ref, *, block: int):
    n = x_ref.shape[0]
    scale, shift = scale_ref[...], shift_ref[...]
    for i in range(chunk_count(n, block)):  # planes are a few blocks at most: unrolled
        start = i * block
        store_chunk(y_ref, start, block, n, load_chunk(x_ref, start, block, n) * scale + shift)


def channel_axes(x: jax.Array) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The dims batch norm's statistics run over, and the (1, C, 1, ...) shape of a per-channel
    value."""
    return (0, *range(2, x.ndim)), (1, -1) + (1,) * (x.ndim - 2)


def batch_norm_reference(x, weight, bias, eps: float):
    """Training-mode batch norm over all dims but 1; returns (y, mean, biased var)."""
    axes, shape = channel_axes(x)
    x32 = x.astype(jnp.float32)
    mean = x32.mean(axes)
    var = ((x32 - mean.reshape(shape)) ** 2).mean(axes)
    y = (x32 - mean.reshape(shape)) * jax.lax.rsqrt(var.reshape(shape) + eps)
    if weight is not None:
        y = y * weight.reshape(shape)
    if bias is not None:
        y = y + bias.reshape(shape)
    return y.astype(x.dtype), mean, var


def _stats(planes, n, c):
    mean_r, var_r = row_mean_var_pallas(planes)
    mean_r, var_r = mean_r.reshape(n, c), var_r.reshape(n, c)
    mean = mean_r.mean(0)
    return mean, var_r.mean(0) + ((mean_r - mean) ** 2).mean(0)


def _forward(x, weight, bias, eps: float):
    n, c = x.shape[:2]
    planes = x.reshape(n * c, -1)
    mean, var = _stats(planes, n, c)
    scale = jax.lax.rsqrt(var + eps) * (1.0 if weight is None else weight.astype(jnp.float32))
    shift = (0.0 if bias is None else bias.astype(jnp.float32)) - mean * scale
    block = row_block(planes.shape[1])
    call = row_call(functools.partial(_affine_kernel, block=block),
                    [jax.ShapeDtypeStruct((planes.shape[1],), x.dtype)], name="batch_norm_apply",
                    num_warps=num_warps_for(block, "batch_norm_apply"), row_inputs=[True] * 3)
    (y,) = call(planes, jnp.tile(scale, n), jnp.tile(shift, n))
    return y.reshape(x.shape), mean, var


def batch_norm_train_pallas(x, weight=None, bias=None, eps: float = 1e-5):
    """Training-mode batch norm of ``x`` (N, C, *spatial): returns ``(y, mean, biased_var)``.

    ``mean`` and ``biased_var`` are per channel, float32, for the caller's running statistics.
    """

    @jax.custom_vjp
    def bn(x, weight, bias):
        return _forward(x, weight, bias, eps)

    def fwd(x, weight, bias):
        return bn(x, weight, bias), (x, weight, bias)

    def bwd(saved, cot):
        return jax.vjp(lambda *a: batch_norm_reference(*a, eps), *saved)[1](cot)

    bn.defvjp(fwd, bwd)
    return bn(x, weight, bias)
