"""nn.functional: normalisation ops.

Arrays cannot be updated in place, so where PyTorch's op also updates running statistics
(``batch_norm``, ``instance_norm`` in training), a companion ``*_with_stats`` function returns
``(output, new_running_mean, new_running_var)`` for the module layer to store; the PyTorch-named
op returns the output alone. ``layer_norm``, ``rms_norm`` and training-mode ``batch_norm`` call
``torsh_fn.kernels``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from torsh_fn.kernels.batch_norm import batch_norm as _batch_norm_kernel
from torsh_fn.kernels.norm import layer_norm as _layer_norm_kernel
from torsh_fn.kernels.norm import rms_norm as _rms_norm_kernel

from .distance import vector_norm

__all__ = [
    "batch_norm", "batch_norm_with_stats", "group_norm", "instance_norm",
    "instance_norm_with_stats", "layer_norm", "local_response_norm", "normalize", "rms_norm",
]


def _f32(x: jax.Array) -> jax.Array:
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _channel_shape(x: jax.Array) -> tuple[int, ...]:
    """Shape that broadcasts a (C,) vector along dim 1 of ``x``."""
    return (x.shape[1],) + (1,) * (x.ndim - 2)


def _affine(y: jax.Array, weight: jax.Array | None, bias: jax.Array | None) -> jax.Array:
    if weight is not None:
        y = y * weight.astype(y.dtype).reshape(_channel_shape(y))
    if bias is not None:
        y = y + bias.astype(y.dtype).reshape(_channel_shape(y))
    return y


def _check_channels(name: str, x: jax.Array, **vectors: jax.Array | None) -> None:
    if x.ndim < 2:
        raise ValueError(f"{name}: expected input of shape (N, C, ...), got shape {x.shape}")
    for arg, v in vectors.items():
        if v is not None and v.shape != (x.shape[1],):
            raise ValueError(f"{name}: {arg} must have shape ({x.shape[1]},) for input with "
                             f"{x.shape[1]} channels, got {v.shape}")


def _update(running: jax.Array | None, batch: jax.Array, momentum: float) -> jax.Array | None:
    if running is None:
        return None
    new = (1 - momentum) * _f32(running) + momentum * batch
    return new.astype(running.dtype)


def batch_norm_with_stats(input: jax.Array, running_mean: jax.Array | None,
                          running_var: jax.Array | None, weight: jax.Array | None = None,
                          bias: jax.Array | None = None, training: bool = False,
                          momentum: float = 0.1, eps: float = 1e-5) -> tuple:
    """``batch_norm`` that also returns the updated running statistics.

    Returns:
        ``(output, new_running_mean, new_running_var)``. In training the output uses the batch's
        statistics (biased variance) and the running ones move by ``momentum`` toward the batch
        mean and unbiased variance; otherwise the running statistics are used and returned as
        they came. A running statistic passed as None comes back as None.

    Example:
        >>> x = jnp.arange(6.0).reshape(3, 2)
        >>> y, mean, var = batch_norm_with_stats(x, jnp.zeros(2), jnp.ones(2), training=True)
        >>> mean
        Array([0.2, 0.3], dtype=float32)
    """
    name = "batch_norm"
    _check_channels(name, input, running_mean=running_mean, running_var=running_var,
                    weight=weight, bias=bias)
    x = _f32(input)
    axes = (0, *tuple(range(2, x.ndim)))
    if training:
        count = input.size // input.shape[1]
        if count <= 1:
            raise ValueError(f"{name}: expected more than 1 value per channel when training, "
                             f"got input of shape {input.shape}")
        if x.dtype == jnp.float32:  # float16/bfloat16/float32: the kernel op (Pallas on GPU)
            y, mean, var = _batch_norm_kernel(input, weight, bias, eps)
        else:  # float64 stays float64
            mean = jnp.mean(x, axis=axes)
            var = jnp.mean(jnp.square(x - mean.reshape(_channel_shape(x))), axis=axes)
            y = _normalise(x, mean, var, weight, bias, eps).astype(input.dtype)
        unbiased = jax.lax.stop_gradient(var) * (count / (count - 1))
        return (y, _update(running_mean, jax.lax.stop_gradient(mean), momentum),
                _update(running_var, unbiased, momentum))
    if running_mean is None or running_var is None:
        raise ValueError(f"{name}: running_mean and running_var are required when not training")
    y = _normalise(x, _f32(running_mean), _f32(running_var), weight, bias, eps)
    return y.astype(input.dtype), running_mean, running_var


def _normalise(x: jax.Array, mean: jax.Array, var: jax.Array, weight: jax.Array | None,
               bias: jax.Array | None, eps: float) -> jax.Array:
    shape = _channel_shape(x)
    y = (x - mean.reshape(shape)) * jax.lax.rsqrt(var.reshape(shape) + eps)
    return _affine(y, weight, bias)


def batch_norm(input: jax.Array, running_mean: jax.Array | None, running_var: jax.Array | None,
               weight: jax.Array | None = None, bias: jax.Array | None = None,
               training: bool = False, momentum: float = 0.1, eps: float = 1e-5) -> jax.Array:
    """Batch normalisation of (N, C, ...) over all dims but the channel dim 1.

    PyTorch's signature and return value; the running statistics are not updated (arrays are
    immutable): use ``batch_norm_with_stats`` to get the updated ones.
    """
    return batch_norm_with_stats(input, running_mean, running_var, weight, bias, training,
                                 momentum, eps)[0]


def instance_norm_with_stats(input: jax.Array, running_mean: jax.Array | None = None,
                             running_var: jax.Array | None = None,
                             weight: jax.Array | None = None, bias: jax.Array | None = None,
                             use_input_stats: bool = True, momentum: float = 0.1,
                             eps: float = 1e-5) -> tuple:
    """``instance_norm`` that also returns the updated running statistics.

    With ``use_input_stats`` each (sample, channel) is normalised over its spatial dims and the
    running statistics move toward the batch average of the instances' mean and unbiased
    variance; otherwise the running statistics are used as they came.
    """
    name = "instance_norm"
    _check_channels(name, input, running_mean=running_mean, running_var=running_var,
                    weight=weight, bias=bias)
    if not use_input_stats:
        return batch_norm_with_stats(input, running_mean, running_var, weight, bias, False,
                                     momentum, eps)
    x = _f32(input)
    axes = tuple(range(2, x.ndim))
    count = x[0, 0].size
    if count <= 1:
        raise ValueError(f"{name}: expected more than 1 spatial element per channel, got "
                         f"input of shape {input.shape}")
    mean = jnp.mean(x, axis=axes, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=axes, keepdims=True)
    y = _affine((x - mean) * jax.lax.rsqrt(var + eps), weight, bias).astype(input.dtype)
    batch_mean = jax.lax.stop_gradient(jnp.mean(mean, axis=(0, *axes)))
    batch_var = jax.lax.stop_gradient(jnp.mean(var, axis=(0, *axes))) * (count / (count - 1))
    return y, _update(running_mean, batch_mean, momentum), _update(running_var, batch_var,
                                                                   momentum)


def instance_norm(input: jax.Array, running_mean: jax.Array | None = None,
                  running_var: jax.Array | None = None, weight: jax.Array | None = None,
                  bias: jax.Array | None = None, use_input_stats: bool = True,
                  momentum: float = 0.1, eps: float = 1e-5) -> jax.Array:
    """Instance normalisation of (N, C, *spatial): each (n, c) slice over its spatial dims.

    Example:
        >>> instance_norm(jnp.array([[[1.0, 3.0]]]))
        Array([[[-0.999995,  0.999995]]], dtype=float32)
    """
    return instance_norm_with_stats(input, running_mean, running_var, weight, bias,
                                    use_input_stats, momentum, eps)[0]


def _normalized_ndim(name: str, input: jax.Array, normalized_shape, **params) -> int:
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if len(shape) == 0 or input.shape[input.ndim - len(shape):] != shape \
            or input.ndim < len(shape):
        raise ValueError(f"{name}: input's trailing dims must equal normalized_shape={shape}, "
                         f"got input shape {input.shape}")
    for arg, p in params.items():
        if p is not None and p.shape != shape:
            raise ValueError(f"{name}: {arg} must have shape {shape}, got {p.shape}")
    return len(shape)


def layer_norm(input: jax.Array, normalized_shape: int | Sequence[int],
               weight: jax.Array | None = None, bias: jax.Array | None = None,
               eps: float = 1e-5) -> jax.Array:
    """Normalise over the trailing ``normalized_shape`` dims (biased variance), then affine.

    Example:
        >>> layer_norm(jnp.array([[1.0, 3.0]]), (2,))
        Array([[-0.999995,  0.999995]], dtype=float32)
    """
    nd = _normalized_ndim("layer_norm", input, normalized_shape, weight=weight, bias=bias)
    return _layer_norm_kernel(input, nd, weight, bias, eps)


def rms_norm(input: jax.Array, normalized_shape: int | Sequence[int],
             weight: jax.Array | None = None, eps: float | None = None) -> jax.Array:
    """``x / sqrt(mean(x ** 2) + eps) * weight`` over the trailing ``normalized_shape`` dims.

    ``eps=None`` uses the machine epsilon of ``input``'s dtype, as PyTorch.
    """
    nd = _normalized_ndim("rms_norm", input, normalized_shape, weight=weight)
    eps = float(jnp.finfo(input.dtype).eps) if eps is None else eps
    return _rms_norm_kernel(input, nd, weight, eps)


def group_norm(input: jax.Array, num_groups: int, weight: jax.Array | None = None,
               bias: jax.Array | None = None, eps: float = 1e-5) -> jax.Array:
    """Normalise (N, C, *) over groups of ``C / num_groups`` channels and the spatial dims.

    Example:
        >>> group_norm(jnp.ones((2, 4, 3)), 2).shape
        (2, 4, 3)
    """
    name = "group_norm"
    _check_channels(name, input, weight=weight, bias=bias)
    if num_groups < 1 or input.shape[1] % num_groups:
        raise ValueError(f"{name}: num_groups={num_groups} must divide the {input.shape[1]} "
                         f"channels of input {input.shape}")
    grouped = input.reshape(input.shape[0], num_groups, -1)
    y = _layer_norm_kernel(grouped, 1, None, None, eps).reshape(input.shape)
    return _affine(y, weight, bias)


def local_response_norm(input: jax.Array, size: int, alpha: float = 1e-4, beta: float = 0.75,
                        k: float = 1.0) -> jax.Array:
    """``x / (k + alpha * mean of x ** 2 over size neighbouring channels) ** beta``.

    The window spans channels ``[c - size // 2, c + (size - 1) // 2]``, zero-padded, divided by
    ``size``, as PyTorch.
    """
    if input.ndim < 3:
        raise ValueError(f"local_response_norm: expected input of rank 3 or more (N, C, ...), "
                         f"got shape {input.shape}")
    sq = jnp.square(_f32(input))
    pads = [(0, 0), (size // 2, (size - 1) // 2)] + [(0, 0)] * (input.ndim - 2)
    window = (1, size) + (1,) * (input.ndim - 2)
    sums = jax.lax.reduce_window(jnp.pad(sq, pads), 0.0, jax.lax.add, window,
                                 (1,) * input.ndim, "VALID")
    div = (sums * (alpha / size) + k) ** beta
    return (_f32(input) / div).astype(input.dtype)


def normalize(input: jax.Array, p: float = 2.0, dim: int = 1, eps: float = 1e-12,
              out: None = None) -> jax.Array:
    """``x / max(||x||_p, eps)`` along ``dim``.

    Example:
        >>> normalize(jnp.array([[3.0, 4.0]]))
        Array([[0.6, 0.8]], dtype=float32)
    """
    if out is not None:
        raise TypeError("normalize: out= is not supported (arrays are immutable)")
    norm = vector_norm(input, p, dim, keepdim=True)
    return input / jnp.maximum(norm, eps)
