"""nn.functional: activation ops, with PyTorch's names, defaults and gradients at the kinks.

Pointwise ops keep the input's dtype. ``inplace=`` is accepted and ignored (arrays are immutable).
``softmax``, ``log_softmax`` and ``softmin`` call ``torsh_fn.kernels``.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp

from torsh_fn import random as _random
from torsh_fn.kernels.softmax import log_softmax as _log_softmax_kernel
from torsh_fn.kernels.softmax import softmax as _softmax_kernel

__all__ = [
    "celu", "elu", "gelu", "glu", "gumbel_softmax", "hardshrink", "hardsigmoid", "hardswish",
    "hardtanh", "leaky_relu", "log_softmax", "logsigmoid", "mish", "prelu", "relu", "relu6",
    "rrelu", "selu", "sigmoid", "silu", "softmax", "softmin", "softplus", "softshrink",
    "softsign", "tanh", "tanhshrink", "threshold",
]

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def relu(input: jax.Array, inplace: bool = False) -> jax.Array:
    """``max(x, 0)``; gradient 0 at 0, as PyTorch.

    Example:
        >>> relu(jnp.array([-1.0, 2.0]))
        Array([0., 2.], dtype=float32)
    """
    return jnp.where(input > 0, input, jnp.zeros((), input.dtype))


def hardtanh(input: jax.Array, min_val: float = -1.0, max_val: float = 1.0,
             inplace: bool = False) -> jax.Array:
    """``clip(x, min_val, max_val)``; gradient 1 strictly inside, 0 elsewhere."""
    if min_val > max_val:
        raise ValueError(f"hardtanh: min_val must be <= max_val, got {min_val=} and {max_val=}")
    lo, hi = jnp.asarray(min_val, input.dtype), jnp.asarray(max_val, input.dtype)
    return jnp.where(input <= lo, lo, jnp.where(input >= hi, hi, input))


def relu6(input: jax.Array, inplace: bool = False) -> jax.Array:
    """``min(max(x, 0), 6)``."""
    return hardtanh(input, 0.0, 6.0)


def leaky_relu(input: jax.Array, negative_slope: float = 0.01, inplace: bool = False
               ) -> jax.Array:
    """``x`` where ``x > 0``, else ``negative_slope * x``."""
    return jnp.where(input > 0, input, input * negative_slope)


def _negative_part(x: jax.Array) -> jax.Array:
    """``x`` where ``x <= 0``, else 0, with gradient 1 at 0 (``jnp.minimum`` would give 0.5)."""
    return jnp.where(x > 0, jnp.zeros((), x.dtype), x)


def elu(input: jax.Array, alpha: float = 1.0, inplace: bool = False) -> jax.Array:
    """``x`` where ``x > 0``, else ``alpha * (exp(x) - 1)``."""
    return jnp.where(input > 0, input, alpha * jnp.expm1(_negative_part(input)))


def celu(input: jax.Array, alpha: float = 1.0, inplace: bool = False) -> jax.Array:
    """``max(0, x) + min(0, alpha * (exp(x / alpha) - 1))``."""
    if alpha == 0:
        raise ValueError("celu: alpha must not be 0")
    return jnp.where(input > 0, input, alpha * jnp.expm1(_negative_part(input) / alpha))


def selu(input: jax.Array, inplace: bool = False) -> jax.Array:
    """``scale * elu(x, alpha)`` with the self-normalising constants."""
    return _SELU_SCALE * elu(input, _SELU_ALPHA)


def gelu(input: jax.Array, approximate: str = "none") -> jax.Array:
    """``x * Phi(x)`` (``approximate="none"``) or its tanh approximation (``"tanh"``)."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return jax.nn.gelu(input, approximate=approximate == "tanh")


def sigmoid(input: jax.Array) -> jax.Array:
    """``1 / (1 + exp(-x))``."""
    return jax.nn.sigmoid(input)


def tanh(input: jax.Array) -> jax.Array:
    return jnp.tanh(input)


def silu(input: jax.Array, inplace: bool = False) -> jax.Array:
    """``x * sigmoid(x)``."""
    return input * jax.nn.sigmoid(input)


def softplus(input: jax.Array, beta: float = 1.0, threshold: float = 20.0) -> jax.Array:
    """``log(1 + exp(beta * x)) / beta``, and ``x`` itself where ``beta * x > threshold``.

    Example:
        >>> softplus(jnp.array([0.0, 1e4]))
        Array([6.931472e-01, 1.000000e+04], dtype=float32)
    """
    bx = input * beta
    soft = jnp.log1p(jnp.exp(jnp.minimum(bx, threshold))) / beta
    return jnp.where(bx > threshold, input, soft.astype(input.dtype))


def mish(input: jax.Array, inplace: bool = False) -> jax.Array:
    """``x * tanh(softplus(x))``."""
    return input * jnp.tanh(jax.nn.softplus(input))


def hardswish(input: jax.Array, inplace: bool = False) -> jax.Array:
    """``x * relu6(x + 3) / 6``."""
    return input * relu6(input + 3) / 6


def hardsigmoid(input: jax.Array, inplace: bool = False) -> jax.Array:
    """``relu6(x + 3) / 6``."""
    return relu6(input + 3) / 6


def logsigmoid(input: jax.Array) -> jax.Array:
    """``log(sigmoid(x))``, stable for large ``|x|``."""
    return jax.nn.log_sigmoid(input)


def softsign(input: jax.Array) -> jax.Array:
    """``x / (1 + |x|)``."""
    return input / (1 + jnp.abs(input))


def tanhshrink(input: jax.Array) -> jax.Array:
    """``x - tanh(x)``."""
    return input - jnp.tanh(input)


def softshrink(input: jax.Array, lambd: float = 0.5) -> jax.Array:
    """``x - lambd`` above ``lambd``, ``x + lambd`` below ``-lambd``, else 0."""
    if lambd < 0:
        raise ValueError(f"softshrink: lambd must be >= 0, got {lambd}")
    zero = jnp.zeros((), input.dtype)
    return jnp.where(input > lambd, input - lambd, jnp.where(input < -lambd, input + lambd, zero))


def hardshrink(input: jax.Array, lambd: float = 0.5) -> jax.Array:
    """``x`` where ``|x| > lambd``, else 0."""
    return jnp.where(jnp.abs(input) > lambd, input, jnp.zeros((), input.dtype))


def threshold(input: jax.Array, threshold: float, value: float, inplace: bool = False
              ) -> jax.Array:
    """``x`` where ``x > threshold``, else ``value``."""
    return jnp.where(input > threshold, input, jnp.asarray(value, input.dtype))


def prelu(input: jax.Array, weight: jax.Array) -> jax.Array:
    """``x`` where ``x > 0``, else ``weight * x``; ``weight`` is (1,) or (C,) for channel dim 1.

    Example:
        >>> prelu(jnp.array([[-2.0, 3.0]]), jnp.array([0.25]))
        Array([[-0.5,  3. ]], dtype=float32)
    """
    channels = input.shape[1] if input.ndim >= 2 else 1
    if weight.size not in (1, channels):
        raise ValueError(f"prelu: weight must have 1 or {channels} elements (input's channel dim "
                         f"1), got {weight.size}")
    w = weight.reshape(-1, *([1] * (input.ndim - 2))) if weight.size > 1 else weight.reshape(())
    return jnp.where(input > 0, input, w.astype(input.dtype) * input)


def rrelu(input: jax.Array, lower: float = 1.0 / 8, upper: float = 1.0 / 3,
          training: bool = False, inplace: bool = False, *, key: jax.Array | None = None,
          generator: _random.Generator | None = None) -> jax.Array:
    """Leaky ReLU with slope ``U(lower, upper)`` per element in training, their mean otherwise.

    ``key`` is the PRNG key for training mode, drawn from ``generator`` (or the global one) when
    omitted.
    """
    if not training:
        return leaky_relu(input, (lower + upper) / 2)
    key = _random.next_key(key, generator)
    slope = jax.random.uniform(key, input.shape, input.dtype, lower, upper)
    return jnp.where(input >= 0, input, input * slope)


def glu(input: jax.Array, dim: int = -1) -> jax.Array:
    """``a * sigmoid(b)`` where ``a, b`` are the halves of ``input`` along ``dim``."""
    if input.ndim == 0 or input.shape[dim] % 2:
        raise ValueError(f"glu: dim {dim} must have an even size, got shape {input.shape}")
    a, b = jnp.split(input, 2, axis=dim)
    return a * jax.nn.sigmoid(b)


def _softmax_dim(name: str, ndim: int, dim: int | None) -> int:
    if dim is not None:
        return dim
    warnings.warn(f"{name}: implicit dim is deprecated; pass dim=", UserWarning, stacklevel=3)
    return 0 if ndim in (0, 1, 3) else 1


def _cast(input: jax.Array, dtype) -> jax.Array:
    return input if dtype is None else input.astype(dtype)


def softmax(input: jax.Array, dim: int | None = None, _stacklevel: int = 3,
            dtype=None) -> jax.Array:
    """``exp(x) / sum(exp(x))`` along ``dim``; ``dtype`` casts the input first.

    Example:
        >>> softmax(jnp.array([0.0, 0.0]), dim=0)
        Array([0.5, 0.5], dtype=float32)
    """
    return _softmax_kernel(_cast(input, dtype), _softmax_dim("softmax", input.ndim, dim))


def log_softmax(input: jax.Array, dim: int | None = None, _stacklevel: int = 3,
                dtype=None) -> jax.Array:
    """``x - logsumexp(x)`` along ``dim``; finite for logits of +-1e4."""
    dim = _softmax_dim("log_softmax", input.ndim, dim)
    return _log_softmax_kernel(_cast(input, dtype), dim)


def softmin(input: jax.Array, dim: int | None = None, _stacklevel: int = 3,
            dtype=None) -> jax.Array:
    """``softmax(-x)`` along ``dim``."""
    return _softmax_kernel(-_cast(input, dtype), _softmax_dim("softmin", input.ndim, dim))


def gumbel_softmax(logits: jax.Array, tau: float = 1.0, hard: bool = False, eps: float = 1e-10,
                   dim: int = -1, *, key: jax.Array | None = None,
                   generator: _random.Generator | None = None) -> jax.Array:
    """Softmax of ``(logits + Gumbel noise) / tau``; ``hard`` returns one-hot samples with the
    soft sample's gradient (straight-through). ``key`` as in ``rrelu``."""
    key = _random.next_key(key, generator)
    gumbels = jax.random.gumbel(key, logits.shape, logits.dtype)
    soft = _softmax_kernel((logits + gumbels) / tau, dim)
    if not hard:
        return soft
    index = jnp.argmax(soft, axis=dim, keepdims=True)
    onehot = jnp.where(jnp.arange(soft.shape[dim]).reshape(
        [-1 if d == dim % soft.ndim else 1 for d in range(soft.ndim)]) == index, 1.0, 0.0)
    return onehot.astype(soft.dtype) - jax.lax.stop_gradient(soft) + soft
