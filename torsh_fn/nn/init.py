"""``torch.nn.init``: initialisers with PyTorch's names, arguments and distributions.

Each ``*_`` function fills a :class:`Parameter` in place (its ``.data`` is replaced) and returns
it; given a plain array (immutable in JAX) it returns a new filled array instead. Random ones
draw from the global generator unless given ``generator=`` or an explicit JAX ``key=``.

Example:
    >>> w = Parameter(torsh_fn.empty(8, 4))
    >>> kaiming_uniform_(w, a=math.sqrt(5))     # nn.Linear's default weight init
    >>> bool((abs(w.data) <= 0.5).all())
    True
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from ..random import Generator, next_key
from .parameter import Parameter, as_array

__all__ = [
    "calculate_gain", "uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_",
    "eye_", "dirac_", "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_",
    "orthogonal_",
]

_LINEAR = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
           "conv_transpose3d", "sigmoid")


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The recommended gain for ``nonlinearity`` (PyTorch's table).

    Example:
        >>> calculate_gain("relu")
        1.4142135623730951
    """
    if nonlinearity in _LINEAR:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        if isinstance(slope, bool) or not isinstance(slope, int | float):
            raise ValueError(f"negative_slope {param!r} is not a valid number")
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"Unsupported nonlinearity {nonlinearity}")


def _put(tensor: Any, value: jax.Array) -> Any:
    if isinstance(tensor, Parameter):
        tensor.data = value
        return tensor
    return value



def _floating(dtype: Any) -> Any:
    return dtype if jnp.issubdtype(dtype, jnp.floating) else jnp.float32


def uniform_(tensor: Any, a: float = 0.0, b: float = 1.0, generator: Generator | None = None,
             *, key: jax.Array | None = None) -> Any:
    """Fill with values drawn from U(a, b)."""
    t = as_array(tensor, "uniform_")
    draw = jax.random.uniform(next_key(key, generator), t.shape, _floating(t.dtype), a, b)
    return _put(tensor, draw.astype(t.dtype))


def normal_(tensor: Any, mean: float = 0.0, std: float = 1.0,
            generator: Generator | None = None, *, key: jax.Array | None = None) -> Any:
    """Fill with values drawn from N(mean, std²)."""
    t = as_array(tensor, "normal_")
    draw = jax.random.normal(next_key(key, generator), t.shape, _floating(t.dtype)) * std + mean
    return _put(tensor, draw.astype(t.dtype))


def trunc_normal_(tensor: Any, mean: float = 0.0, std: float = 1.0, a: float = -2.0,
                  b: float = 2.0, generator: Generator | None = None, *,
                  key: jax.Array | None = None) -> Any:
    """Fill from N(mean, std²) truncated to [a, b] (bounds in value units, as PyTorch)."""
    t = as_array(tensor, "trunc_normal_")
    lower, upper = (a - mean) / std, (b - mean) / std
    unit = jax.random.truncated_normal(next_key(key, generator), lower, upper, t.shape,
                                       _floating(t.dtype))
    return _put(tensor, jnp.clip(unit * std + mean, a, b).astype(t.dtype))


def constant_(tensor: Any, val: float) -> Any:
    t = as_array(tensor, "constant_")
    return _put(tensor, jnp.full(t.shape, val, t.dtype))


def ones_(tensor: Any) -> Any:
    return constant_(tensor, 1)


def zeros_(tensor: Any) -> Any:
    return constant_(tensor, 0)


def eye_(tensor: Any) -> Any:
    """Fill a 2-D array with the identity (ones on the diagonal)."""
    t = as_array(tensor, "eye_")
    if t.ndim != 2:
        raise ValueError(f"eye_: only 2-D arrays are supported, got shape {t.shape}")
    return _put(tensor, jnp.eye(*t.shape, dtype=t.dtype))


def dirac_(tensor: Any, groups: int = 1) -> Any:
    """Fill a 3-5-D conv weight with the Dirac delta (identity convolution), per group."""
    t = as_array(tensor, "dirac_")
    if t.ndim not in (3, 4, 5):
        raise ValueError(f"dirac_: only 3, 4 or 5-D arrays are supported, got shape {t.shape}")
    if t.shape[0] % groups:
        raise ValueError(f"dirac_: dim 0 ({t.shape[0]}) must be divisible by groups={groups}")
    out_per_group = t.shape[0] // groups
    n = min(out_per_group, t.shape[1])
    centre = tuple(s // 2 for s in t.shape[2:])
    out = jnp.zeros(t.shape, t.dtype)
    for g in range(groups):
        rows = jnp.arange(n) + g * out_per_group
        out = out.at[(rows, jnp.arange(n), *centre)].set(1)
    return _put(tensor, out)


def _calculate_fan_in_and_fan_out(shape: tuple[int, ...]) -> tuple[int, int]:
    """PyTorch's fans: dim 1 (inputs) and dim 0 (outputs), times the receptive field."""
    if len(shape) < 2:
        raise ValueError("Fan in and fan out can not be computed for tensor with fewer than "
                         f"2 dimensions (shape {shape})")
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def _fan(shape: tuple[int, ...], mode: str) -> int:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"Mode {mode} not supported, please use one of fan_in, fan_out")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(shape)
    return fan_in if mode == "fan_in" else fan_out


def xavier_uniform_(tensor: Any, gain: float = 1.0, generator: Generator | None = None, *,
                    key: jax.Array | None = None) -> Any:
    """U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio, 2010)."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(as_array(tensor, "xavier_uniform_").shape)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -bound, bound, generator, key=key)


def xavier_normal_(tensor: Any, gain: float = 1.0, generator: Generator | None = None, *,
                   key: jax.Array | None = None) -> Any:
    """N(0, std²) with std = gain * sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(as_array(tensor, "xavier_normal_").shape)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), generator, key=key)


def kaiming_uniform_(tensor: Any, a: float = 0, mode: str = "fan_in",
                     nonlinearity: str = "leaky_relu", generator: Generator | None = None, *,
                     key: jax.Array | None = None) -> Any:
    """U(-bound, bound) with bound = gain * sqrt(3 / fan) (He et al., 2015)."""
    t = as_array(tensor, "kaiming_uniform_")
    if 0 in t.shape:
        return tensor
    bound = calculate_gain(nonlinearity, a) * math.sqrt(3.0 / _fan(t.shape, mode))
    return uniform_(tensor, -bound, bound, generator, key=key)


def kaiming_normal_(tensor: Any, a: float = 0, mode: str = "fan_in",
                    nonlinearity: str = "leaky_relu", generator: Generator | None = None, *,
                    key: jax.Array | None = None) -> Any:
    """N(0, std²) with std = gain / sqrt(fan)."""
    t = as_array(tensor, "kaiming_normal_")
    if 0 in t.shape:
        return tensor
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(t.shape, mode))
    return normal_(tensor, 0.0, std, generator, key=key)


def orthogonal_(tensor: Any, gain: float = 1.0, generator: Generator | None = None, *,
                key: jax.Array | None = None) -> Any:
    """A (semi-)orthogonal matrix from the QR decomposition of a normal draw (Saxe et al.)."""
    t = as_array(tensor, "orthogonal_")
    if t.ndim < 2:
        raise ValueError("Only tensors with 2 or more dimensions are supported")
    rows, cols = t.shape[0], t.size // t.shape[0]
    flat = jax.random.normal(next_key(key, generator), (rows, cols), jnp.float32)
    if rows < cols:
        flat = flat.T
    q, r = jnp.linalg.qr(flat)
    q = q * jnp.sign(jnp.diag(r))
    if rows < cols:
        q = q.T
    return _put(tensor, (gain * q).reshape(t.shape).astype(t.dtype))
