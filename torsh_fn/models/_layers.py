"""The layers the zoo needs from ``torsh_fn.nn``, with stand-ins while nn lacks them.

``torsh_fn.nn`` is the source of every layer; where this version of it has no ``BatchNorm1d``,
``BatchNorm2d``, ``LayerNorm`` or working ``Dropout`` yet (``nn.functional.dropout``), the small
stand-ins here take their place with PyTorch's keys, defaults and numerics.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from .. import kernels, nn
from .. import random as _random
from ..nn import functional as F

__all__ = ["BatchNorm1d", "BatchNorm2d", "Dropout", "LayerNorm"]


class _BatchNorm(nn.Module):
    """Batch norm over dim 1 with running statistics (PyTorch's keys and momentum rule)."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.weight = nn.Parameter(jnp.ones(num_features))
        self.bias = nn.Parameter(jnp.zeros(num_features))
        self.register_buffer("running_mean", jnp.zeros(num_features))
        self.register_buffer("running_var", jnp.ones(num_features))
        self.register_buffer("num_batches_tracked", jnp.zeros((), jnp.int32))

    def forward(self, x: jax.Array) -> jax.Array:
        axes = (0, *range(2, x.ndim))
        shape = (1, -1) + (1,) * (x.ndim - 2)
        if self.training:
            mean, var = x.mean(axes), x.var(axes)
            n = x.size // x.shape[1]
            m = self.momentum
            self.running_mean = (1 - m) * self.running_mean + m * jax.lax.stop_gradient(mean)
            unbiased = jax.lax.stop_gradient(var) * n / max(n - 1, 1)
            self.running_var = (1 - m) * self.running_var + m * unbiased
            self.num_batches_tracked = self.num_batches_tracked + 1
        else:
            mean, var = self.running_mean, self.running_var
        y = (x - mean.reshape(shape)) * jax.lax.rsqrt(var.reshape(shape) + self.eps)
        return y * self.weight.reshape(shape) + self.bias.reshape(shape)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class _LayerNorm(nn.Module):
    """Layer norm over the last dimension (``kernels.layer_norm``)."""

    def __init__(self, normalized_shape: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.normalized_shape, self.eps = (normalized_shape,), eps
        self.weight = nn.Parameter(jnp.ones(normalized_shape))
        self.bias = nn.Parameter(jnp.zeros(normalized_shape))

    def forward(self, x: jax.Array) -> jax.Array:
        return kernels.layer_norm(x, 1, self.weight.data, self.bias.data, self.eps)


class _Dropout(nn.Module):
    """Inverted dropout drawing its mask from the global generator."""

    def __init__(self, p: float = 0.5, inplace: bool = False) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: jax.Array) -> jax.Array:
        if not self.training or self.p == 0:
            return x
        keep = jax.random.bernoulli(_random.next_key(), 1 - self.p, x.shape)
        return jnp.where(keep, x / (1 - self.p), 0).astype(x.dtype)


def _pick(name: str, stand_in: type, works: bool = True) -> Any:
    return getattr(nn, name) if works and hasattr(nn, name) else stand_in


BatchNorm1d = _pick("BatchNorm1d", _BatchNorm)
BatchNorm2d = _pick("BatchNorm2d", _BatchNorm)
LayerNorm = _pick("LayerNorm", _LayerNorm)
Dropout = _pick("Dropout", _Dropout, works=hasattr(F, "dropout"))
