"""Normalisation layers: ``BatchNorm1d/2d/3d``, ``InstanceNorm1d/2d/3d``, ``LayerNorm``,
``GroupNorm``, ``RMSNorm``, ``LocalResponseNorm``, over ``nn.functional``.

BatchNorm keeps PyTorch's buffers (``running_mean``, ``running_var``, ``num_batches_tracked``)
and their update rule: in training, ``running = (1 - momentum) * running + momentum * batch``
with the unbiased batch variance, or the cumulative average when ``momentum=None``
(``nn.functional.batch_norm_with_stats`` computes it). The update is a plain assignment of new
arrays, so it is written back by ``torsh_fn.jit`` and kept out of
gradients by ``torsh_fn.backward``.

Example:
    >>> bn = BatchNorm2d(8)
    >>> y = bn(jnp.ones((4, 8, 5, 5)))          # normalised with batch statistics
    >>> int(bn.num_batches_tracked)
    1
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec

from .. import functional as F
from .. import init
from ..module import Module
from ._checks import check_rank, check_size, describe, empty_parameter, zeros

__all__ = [
    "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "GroupNorm", "InstanceNorm1d", "InstanceNorm2d",
    "InstanceNorm3d", "LayerNorm", "LocalResponseNorm", "RMSNorm",
]


class _NormBase(Module):
    """Affine parameters and running-statistics buffers shared by BatchNorm and InstanceNorm."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, device: Any = None,
                 dtype: Any = None, *, bias: bool = True) -> None:
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        self.register_parameter(
            "weight", empty_parameter((num_features,), device, dtype) if affine else None)
        self.register_parameter(
            "bias", empty_parameter((num_features,), device, dtype) if affine and bias else None)
        if track_running_stats:
            self.register_buffer("running_mean", zeros((num_features,), device, dtype))
            self.register_buffer("running_var", jnp.ones_like(self.running_mean))
            self.register_buffer("num_batches_tracked", jnp.zeros((), jnp.int32))
        else:
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                self.register_buffer(name, None)
        self.reset_parameters()

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean = jnp.zeros_like(self.running_mean)
            self.running_var = jnp.ones_like(self.running_var)
            self.num_batches_tracked = jnp.zeros((), jnp.int32)

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        if self.weight is not None:
            init.ones_(self.weight)
        if self.bias is not None:
            init.zeros_(self.bias)

    def _factor(self) -> Any:
        """Count this training batch; return the running-average weight for it."""
        self.num_batches_tracked = self.num_batches_tracked + 1
        if self.momentum is None:
            return 1.0 / self.num_batches_tracked.astype(jnp.float32)
        return self.momentum

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, bias={self.bias is not None}, "
                f"track_running_stats={self.track_running_stats}")


class _BatchNorm(_NormBase):
    """Batch normalisation over ``nn.functional.batch_norm_with_stats``.

    ``replica_axis``: None (the default) computes training statistics over the whole batch, also
    when the batch is sharded over devices (XLA all-reduces them: SyncBatchNorm semantics, equal
    to one device). ``(mesh, axis_name)``, set by ``torsh_fn.distributed.DistributedDataParallel(
    ..., sync_batchnorm=False)``, computes them per shard of the batch along that mesh axis, with
    no communication, as PyTorch's DDP does; the running statistics become the mean of the
    shards' updated ones.
    """

    ranks: tuple[int, ...]
    replica_axis: tuple[Any, str] | None = None

    def forward(self, input: jax.Array) -> jax.Array:
        check_rank(self, input, self.ranks)
        check_size(self, input, 1, self.num_features, "num_features")
        if self.training and input.size // input.shape[1] <= 1:
            raise ValueError(f"{describe(self)}: expected more than 1 value per channel when "
                             f"training, got input of shape {tuple(input.shape)}")
        updating = self.training and self.track_running_stats
        factor = self._factor() if updating else 0.0
        use_batch = self.training or self.running_mean is None
        stats = F.batch_norm_with_stats
        if use_batch and self.replica_axis is not None:
            stats = functools.partial(_per_replica_batch_norm, self, *self.replica_axis)
        out, mean, var = stats(input, self.running_mean, self.running_var, self.weight,
                               self.bias, use_batch, factor, self.eps)
        if updating:
            self.running_mean, self.running_var = mean, var
        return out


def _per_replica_batch_norm(layer: _BatchNorm, mesh: Any, axis: str, input: jax.Array,
                            *args: Any) -> tuple:
    """``batch_norm_with_stats`` on each of the ``mesh.shape[axis]`` shards of the batch apart:
    ``(N, C, *)`` is viewed as ``(R, N / R, C, *)`` with the replica dimension on ``axis``, so
    XLA computes every shard's statistics on its own device."""
    replicas = mesh.shape[axis]
    if input.shape[0] % replicas:
        raise ValueError(f"{describe(layer)}: per-replica statistics need a batch divisible by "
                         f"the {replicas} replicas of mesh axis {axis!r}, got batch "
                         f"{input.shape[0]}")
    on_replicas = NamedSharding(mesh, PartitionSpec(axis))
    grouped = jax.lax.with_sharding_constraint(
        input.reshape(replicas, input.shape[0] // replicas, *input.shape[1:]), on_replicas)
    running = args[:2]
    per_replica = jax.vmap(F.batch_norm_with_stats, in_axes=(0, None, None, None, None, None,
                                                             None, None))
    out, mean, var = per_replica(grouped, *args)
    out = jax.lax.with_sharding_constraint(out, on_replicas).reshape(input.shape)
    mean, var = (None if r is None else m.mean(axis=0).astype(r.dtype)
                 for r, m in zip(running, (mean, var), strict=True))
    return out, mean, var


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of ``(N, C)`` or ``(N, C, L)``."""

    ranks = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of ``(N, C, H, W)``."""

    ranks = (4,)


class BatchNorm3d(_BatchNorm):
    """Batch normalisation of ``(N, C, D, H, W)``."""

    ranks = (5,)


class _InstanceNorm(_NormBase):
    nd: int

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = False, track_running_stats: bool = False, device: Any = None,
                 dtype: Any = None, *, bias: bool = True) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype,
                         bias=bias)

    def forward(self, input: jax.Array) -> jax.Array:
        check_rank(self, input, (self.nd + 1, self.nd + 2))
        check_size(self, input, -self.nd - 1, self.num_features, "num_features")
        x = input if input.ndim == self.nd + 2 else input[None]
        use_input_stats = self.training or not self.track_running_stats
        out, mean, var = F.instance_norm_with_stats(
            x, self.running_mean, self.running_var, self.weight, self.bias, use_input_stats,
            self.momentum if self.momentum is not None else 0.0, self.eps)
        if use_input_stats and self.running_mean is not None:  # PyTorch updates them here
            self.running_mean, self.running_var = mean, var
        return out if input.ndim == self.nd + 2 else out[0]


class InstanceNorm1d(_InstanceNorm):
    """Instance normalisation of ``(N, C, L)`` or ``(C, L)``."""

    nd = 1


class InstanceNorm2d(_InstanceNorm):
    """Instance normalisation of ``(N, C, H, W)`` or ``(C, H, W)``."""

    nd = 2


class InstanceNorm3d(_InstanceNorm):
    """Instance normalisation of ``(N, C, D, H, W)`` or ``(C, D, H, W)``."""

    nd = 3


def _shape(normalized_shape: int | Sequence[int]) -> tuple[int, ...]:
    return (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)


def _check_trailing(layer: Module, input: jax.Array, shape: tuple[int, ...]) -> None:
    got = tuple(jnp.shape(input))
    if got[len(got) - len(shape):] != shape or len(got) < len(shape):
        raise ValueError(f"{describe(layer)}: expected input whose last dimensions are {shape}, "
                         f"got shape {got}")


class LayerNorm(Module):
    """Normalise over the trailing ``normalized_shape`` dimensions; affine ``weight``/``bias``
    of that shape (ones/zeros)."""

    def __init__(self, normalized_shape: int | Sequence[int], eps: float = 1e-5,
                 elementwise_affine: bool = True, bias: bool = True, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__()
        self.normalized_shape, self.eps = _shape(normalized_shape), eps
        self.elementwise_affine = elementwise_affine
        if elementwise_affine:
            self.weight = empty_parameter(self.normalized_shape, device, dtype)
            init.ones_(self.weight)
            if bias:
                self.bias = empty_parameter(self.normalized_shape, device, dtype)
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, input: jax.Array) -> jax.Array:
        _check_trailing(self, input, self.normalized_shape)
        return F.layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}, bias={self.bias is not None}")


class RMSNorm(Module):
    """``x / sqrt(mean(x², trailing dims) + eps) * weight``; ``eps=None`` uses the dtype's
    machine epsilon, as PyTorch."""

    def __init__(self, normalized_shape: int | Sequence[int], eps: float | None = None,
                 elementwise_affine: bool = True, device: Any = None, dtype: Any = None):
        super().__init__()
        self.normalized_shape, self.eps = _shape(normalized_shape), eps
        self.elementwise_affine = elementwise_affine
        if elementwise_affine:
            self.weight = empty_parameter(self.normalized_shape, device, dtype)
            init.ones_(self.weight)
        else:
            self.register_parameter("weight", None)

    def forward(self, input: jax.Array) -> jax.Array:
        _check_trailing(self, input, self.normalized_shape)
        return F.rms_norm(input, self.normalized_shape, self.weight, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}")


class GroupNorm(Module):
    """Normalise ``(N, C, *)`` over groups of ``C / num_groups`` channels; per-channel affine."""

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5,
                 affine: bool = True, device: Any = None, dtype: Any = None, *,
                 bias: bool = True) -> None:
        super().__init__()
        if num_channels % num_groups:
            raise ValueError(f"GroupNorm: num_channels ({num_channels}) must be divisible by "
                             f"num_groups ({num_groups})")
        self.num_groups, self.num_channels, self.eps, self.affine = (num_groups, num_channels,
                                                                     eps, affine)
        self.register_parameter(
            "weight", empty_parameter((num_channels,), device, dtype) if affine else None)
        self.register_parameter(
            "bias", empty_parameter((num_channels,), device, dtype) if affine and bias else None)
        if affine:
            init.ones_(self.weight)

    def forward(self, input: jax.Array) -> jax.Array:
        check_size(self, input, 1, self.num_channels, "num_channels")
        return F.group_norm(input, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}, "
                f"bias={self.bias is not None}")


class LocalResponseNorm(Module):
    """Normalise each channel by the activity of its ``size`` neighbours (AlexNet)."""

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0):
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, input: jax.Array) -> jax.Array:
        return F.local_response_norm(input, self.size, self.alpha, self.beta, self.k)

    def extra_repr(self) -> str:
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"
