"""Array creation with PyTorch's signatures, returning ``jax.Array``.

Sizes are given as PyTorch does: ``zeros(2, 3)``, ``zeros((2, 3))`` or ``zeros([2, 3])``.
Without ``dtype=``, floating results take :func:`torsh_fn.get_default_dtype` and integer ones
int64 (int32 unless ``jax_enable_x64`` is on). ``device=`` places the result; ``requires_grad``
and ``pin_memory`` are accepted and ignored (JAX differentiates functions, not arrays).
Random functions take ``generator=`` (a :class:`torsh_fn.Generator`) or ``key=`` (a JAX key).
"""

from __future__ import annotations

import builtins
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import _dtypes
from ._device import place
from .random import Generator, next_key

__all__ = [
    "arange", "as_tensor", "bernoulli", "empty", "empty_like", "eye", "from_numpy", "full",
    "full_like", "linspace", "logspace", "normal", "ones", "ones_like", "rand", "rand_like",
    "randint", "randint_like", "randn", "randn_like", "randperm", "tensor", "zeros", "zeros_like",
]


def _size(name: str, size: tuple[Any, ...]) -> tuple[int, ...]:
    """PyTorch's ``*size`` convention: ints, or one tuple/list of ints."""
    if len(size) == 1 and isinstance(size[0], Sequence | np.ndarray):
        size = tuple(size[0])
    for s in size:
        if isinstance(s, builtins.bool) or not isinstance(s, builtins.int | np.integer):
            raise TypeError(f"{name}: size must be ints or one tuple of ints, got {size!r}")
        if s < 0:
            raise ValueError(f"{name}: negative dimension in size {tuple(size)}")
    return tuple(builtins.int(s) for s in size)


def _float_dtype(name: str, dtype: Any) -> np.dtype:
    d = _dtypes.canonical(dtype) if dtype is not None else _dtypes.get_default_dtype()
    if not jnp.issubdtype(d, jnp.inexact):
        raise TypeError(f"{name}: expected a floating dtype, got {d}")
    return d


def _infer_dtype(data: Any) -> np.dtype:
    """The dtype PyTorch would give a Python value: default float, int64, bool or complex."""
    kind = np.asarray(data).dtype.kind
    if kind == "f":
        return _dtypes.get_default_dtype()
    if kind == "c":
        return _dtypes.canonical(jnp.complex128 if _dtypes.get_default_dtype() == jnp.float64
                                 else jnp.complex64)
    if kind in "iu":
        return _dtypes.canonical(jnp.int64)
    if kind == "b":
        return jnp.dtype(jnp.bool_)
    raise TypeError(f"tensor: cannot make an array from {type(data).__name__}")


def _from_torch(data: Any) -> np.ndarray:
    t = data.detach().cpu()
    if str(t.dtype) == "torch.bfloat16":
        return t.float().numpy().astype(jnp.bfloat16)
    return t.numpy()


def host_copy(data: Any) -> Any:
    """A numpy array or torch tensor as a numpy array of its own; other values as they are.

    JAX copies host memory in the background on the CPU, so an array handed to it must not be
    written afterwards: a caller's array that the caller may still write is copied here first.
    """
    if type(data).__module__.startswith("torch") and hasattr(data, "detach"):
        data = _from_torch(data)
    return np.array(data, copy=True) if isinstance(data, np.ndarray | np.generic) else data


def as_tensor(data: Any, dtype: Any = None, device: Any = None) -> jax.Array:
    """Convert ``data`` to a ``jax.Array``, sharing memory where JAX allows (``torch.as_tensor``).

    Accepts Python scalars and nested lists, numpy arrays, JAX arrays and torch tensors.
    Python floats take the default dtype; numpy and JAX arrays keep theirs.
    """
    if type(data).__module__.startswith("torch"):
        data = _from_torch(data)
    if dtype is None and not isinstance(data, np.ndarray | np.generic | jax.Array):
        dtype = _infer_dtype(data)
    out = jnp.asarray(data, dtype=_dtypes.canonical(dtype))
    return place(out, device)


def tensor(data: Any, *, dtype: Any = None, device: Any = None, requires_grad: bool = False,
           pin_memory: bool = False) -> jax.Array:
    """``torch.tensor``: an array holding a copy of ``data``.

    Host memory (a numpy array, a torch tensor) is copied here, before returning: JAX copies it
    in the background on the CPU, so a write to the caller's array right after could otherwise
    still reach the result.

    Example:
        >>> tensor([[1.0, 2.0]]).dtype
        dtype('float32')
    """
    return as_tensor(host_copy(data), dtype=dtype, device=device)


def from_numpy(ndarray: np.ndarray) -> jax.Array:
    """``torch.from_numpy``: the array as a ``jax.Array`` (JAX may copy: its arrays are
    immutable)."""
    if not isinstance(ndarray, np.ndarray):
        raise TypeError(f"from_numpy: expected np.ndarray, got {type(ndarray).__name__}")
    return jnp.asarray(ndarray)


def _filled(name: str, value: Any, size: tuple[Any, ...], dtype: Any, device: Any) -> jax.Array:
    shape = _size(name, size)
    d = _dtypes.canonical(dtype) if dtype is not None else _infer_dtype(value)
    return place(jnp.full(shape, value, dtype=d), device)


def zeros(*size: Any, dtype: Any = None, device: Any = None,
          requires_grad: bool = False) -> jax.Array:
    """``torch.zeros(*size)``: zeros of the default float dtype unless ``dtype`` is given."""
    return _filled("zeros", 0.0, size, dtype, device)


def ones(*size: Any, dtype: Any = None, device: Any = None,
         requires_grad: bool = False) -> jax.Array:
    """``torch.ones(*size)``."""
    return _filled("ones", 1.0, size, dtype, device)


def empty(*size: Any, dtype: Any = None, device: Any = None,
          requires_grad: bool = False) -> jax.Array:
    """``torch.empty``: JAX has no uninitialised memory, so this is :func:`zeros`."""
    return _filled("empty", 0.0, size, dtype, device)


def full(size: Sequence[int], fill_value: Any, *, dtype: Any = None, device: Any = None,
         requires_grad: bool = False) -> jax.Array:
    """``torch.full``: the dtype follows ``fill_value`` (float -> default, int -> int64, bool)."""
    return _filled("full", fill_value, (size,), dtype, device)


def _like(input: Any, dtype: Any) -> tuple[tuple[int, ...], np.dtype]:
    x = jnp.asarray(input)
    return x.shape, (_dtypes.canonical(dtype) if dtype is not None else x.dtype)


def zeros_like(input: Any, *, dtype: Any = None, device: Any = None) -> jax.Array:
    shape, d = _like(input, dtype)
    return place(jnp.zeros(shape, d), device)


def ones_like(input: Any, *, dtype: Any = None, device: Any = None) -> jax.Array:
    shape, d = _like(input, dtype)
    return place(jnp.ones(shape, d), device)


def empty_like(input: Any, *, dtype: Any = None, device: Any = None) -> jax.Array:
    """Zeros shaped like ``input`` (see :func:`empty`)."""
    return zeros_like(input, dtype=dtype, device=device)


def full_like(input: Any, fill_value: Any, *, dtype: Any = None, device: Any = None) -> jax.Array:
    shape, d = _like(input, dtype)
    return place(jnp.full(shape, fill_value, d), device)


def arange(start: Any = 0, end: Any = None, step: Any = 1, *, dtype: Any = None,
           device: Any = None, requires_grad: bool = False) -> jax.Array:
    """``torch.arange``: ``[start, end)`` in steps; float if any bound is a float.

    Values are ``start + i * step`` as in PyTorch, so float ranges match it element for element.
    """
    if end is None:
        start, end = 0, start
    if step == 0:
        raise ValueError("arange: step must be nonzero")
    if (end - start) * step < 0:
        raise ValueError(f"arange: upper bound and step are inconsistent: start={start}, "
                         f"end={end}, step={step}")
    d = _dtypes.canonical(dtype) if dtype is not None else _infer_dtype([start, end, step])
    n = math.ceil((end - start) / step)
    if jnp.issubdtype(d, jnp.integer):
        out = jnp.arange(start, start + n * step, step, dtype=d)[:n]
    else:
        out = (start + np.arange(n, dtype=np.float64) * step).astype(d)
    return place(jnp.asarray(out), device)


def linspace(start: float, end: float, steps: int, *, dtype: Any = None,
             device: Any = None, requires_grad: bool = False) -> jax.Array:
    """``torch.linspace``: ``steps`` evenly spaced points from ``start`` to ``end`` inclusive."""
    if not isinstance(steps, builtins.int | np.integer) or steps < 0:
        raise ValueError(f"linspace: steps must be a non-negative int, got {steps!r}")
    d = _float_dtype("linspace", dtype)
    return place(jnp.linspace(start, end, steps, dtype=d), device)


def logspace(start: float, end: float, steps: int, base: float = 10.0, *, dtype: Any = None,
             device: Any = None, requires_grad: bool = False) -> jax.Array:
    """``torch.logspace``: ``base ** linspace(start, end, steps)``."""
    d = _float_dtype("logspace", dtype)
    exps = np.linspace(start, end, steps, dtype=np.float64)
    return place(jnp.asarray(np.power(base, exps).astype(d)), device)


def eye(n: int, m: int | None = None, *, dtype: Any = None, device: Any = None,
        requires_grad: bool = False) -> jax.Array:
    """``torch.eye``: an ``n x m`` identity (``m`` defaults to ``n``)."""
    _size("eye", (n,) if m is None else (n, m))
    d = _dtypes.canonical(dtype) if dtype is not None else _dtypes.get_default_dtype()
    return place(jnp.eye(n, m, dtype=d), device)


def rand(*size: Any, generator: Generator | None = None, key: jax.Array | None = None,
         dtype: Any = None, device: Any = None, requires_grad: bool = False) -> jax.Array:
    """``torch.rand``: uniform on ``[0, 1)``."""
    shape = _size("rand", size)
    d = _float_dtype("rand", dtype)
    return place(jax.random.uniform(next_key(key, generator), shape, d), device)


def randn(*size: Any, generator: Generator | None = None, key: jax.Array | None = None,
          dtype: Any = None, device: Any = None, requires_grad: bool = False) -> jax.Array:
    """``torch.randn``: standard normal."""
    shape = _size("randn", size)
    d = _float_dtype("randn", dtype)
    return place(jax.random.normal(next_key(key, generator), shape, d), device)


def randint(*args: Any, generator: Generator | None = None, key: jax.Array | None = None,
            dtype: Any = None, device: Any = None, requires_grad: bool = False,
            **kwargs: Any) -> jax.Array:
    """``torch.randint(high, size)`` or ``randint(low, high, size)``: integers in
    ``[low, high)``."""
    low = kwargs.pop("low", 0)
    if kwargs.keys() - {"high", "size"}:
        raise TypeError(f"randint: unexpected arguments {sorted(kwargs.keys() - {'high', 'size'})}")
    if len(args) == 3:
        low, high, size = args
    elif len(args) == 2:
        high, size = args
    elif len(args) == 1:
        high, size = args[0], kwargs.get("size")
    else:
        high, size = kwargs.get("high"), kwargs.get("size")
    if high is None or size is None:
        raise TypeError("randint: expected randint(high, size) or randint(low, high, size)")
    if high <= low:
        raise ValueError(f"randint: expected low < high, got low={low}, high={high}")
    d = _dtypes.canonical(dtype if dtype is not None else jnp.int64)
    shape = _size("randint", (size,))
    k = next_key(key, generator)
    if jnp.issubdtype(d, jnp.integer):
        return place(jax.random.randint(k, shape, low, high, dtype=d), device)
    int_dtype = _dtypes.canonical(jnp.int64)
    return place(jax.random.randint(k, shape, low, high, dtype=int_dtype).astype(d), device)


def randperm(n: int, *, generator: Generator | None = None, key: jax.Array | None = None,
             dtype: Any = None, device: Any = None, requires_grad: bool = False) -> jax.Array:
    """``torch.randperm``: a random permutation of ``0 .. n-1``."""
    _size("randperm", (n,))
    d = _dtypes.canonical(dtype if dtype is not None else jnp.int64)
    return place(jax.random.permutation(next_key(key, generator), n).astype(d), device)


def normal(mean: Any = 0.0, std: Any = 1.0, size: Sequence[int] | None = None, *,
           generator: Generator | None = None, key: jax.Array | None = None,
           dtype: Any = None, device: Any = None) -> jax.Array:
    """``torch.normal``: samples of N(mean, std**2); shape is ``size`` or mean/std broadcast."""
    if not isinstance(std, jax.Array) and np.any(np.asarray(std) < 0):
        raise ValueError(f"normal: std must be non-negative, got {std}")
    mean_a, std_a = jnp.asarray(mean), jnp.asarray(std)
    if size is not None:
        shape = _size("normal", (size,))
    else:
        shape = jnp.broadcast_shapes(mean_a.shape, std_a.shape)
    d = dtype if dtype is not None else jnp.result_type(mean_a, std_a)
    d = _float_dtype("normal", d if jnp.issubdtype(d, jnp.inexact) else None)
    z = jax.random.normal(next_key(key, generator), shape, d)
    return place(mean_a.astype(d) + std_a.astype(d) * z, device)


def bernoulli(input: Any, p: float | None = None, *, generator: Generator | None = None,
              key: jax.Array | None = None) -> jax.Array:
    """``torch.bernoulli``: 1 with probability ``input`` (or ``p`` everywhere), else 0.

    The result has ``input``'s shape and dtype.
    """
    x = jnp.asarray(input)
    prob = x if p is None else jnp.full(x.shape, p, x.dtype)
    draws = jax.random.uniform(next_key(key, generator), x.shape, jnp.float32)
    return (draws < prob.astype(jnp.float32)).astype(x.dtype)


def rand_like(input: Any, *, generator: Generator | None = None, key: jax.Array | None = None,
              dtype: Any = None) -> jax.Array:
    shape, d = _like(input, dtype)
    return rand(shape, generator=generator, key=key, dtype=d)


def randn_like(input: Any, *, generator: Generator | None = None, key: jax.Array | None = None,
               dtype: Any = None) -> jax.Array:
    shape, d = _like(input, dtype)
    return randn(shape, generator=generator, key=key, dtype=d)


def randint_like(input: Any, low: int = 0, high: int | None = None, *,
                 generator: Generator | None = None, key: jax.Array | None = None,
                 dtype: Any = None) -> jax.Array:
    """``torch.randint_like(input, high)`` or ``(input, low, high)``."""
    if high is None:
        low, high = 0, low
    shape, d = _like(input, dtype)
    return randint(low, high, shape, generator=generator, key=key, dtype=d)
