"""PyTorch-named array functions with PyTorch's semantics (``dim``, ``keepdim``, return types).

Only the functions whose PyTorch behaviour differs from ``jax.numpy`` in name or semantics live
here; for everything else use ``jax.numpy`` directly on the same arrays. Dimensions are checked
as PyTorch checks them: an out-of-range ``dim`` raises :class:`DimensionError`, which is both an
``IndexError`` (PyTorch's type) and a ``ValueError``.
"""

from __future__ import annotations

import builtins
import collections
import itertools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._dtypes import canonical, get_default_dtype

__all__ = [
    "DimensionError", "allclose", "amax", "amin", "argmax", "argmin", "bmm", "cat", "chunk",
    "clamp", "clip", "concat", "concatenate", "cumsum", "einsum", "flatten", "gather",
    "index_select", "isclose", "logsumexp", "masked_fill", "matmul", "max", "mean", "min",
    "mm", "movedim", "narrow", "numel", "outer", "permute", "prod", "reshape", "return_types",
    "sort", "split", "squeeze", "stack", "std", "sum", "swapaxes", "swapdims", "topk",
    "transpose", "tril", "triu", "unflatten", "unsqueeze", "var", "where",
]


class DimensionError(IndexError, ValueError):
    """A ``dim`` argument out of range: an ``IndexError`` as in PyTorch, and a ``ValueError``."""


class return_types:
    """Named ``(values, indices)`` tuples returned by max/min/sort/topk with a ``dim``."""

    max = collections.namedtuple("max", ["values", "indices"])
    min = collections.namedtuple("min", ["values", "indices"])
    sort = collections.namedtuple("sort", ["values", "indices"])
    topk = collections.namedtuple("topk", ["values", "indices"])


def _dim(name: str, dim: Any, ndim: int) -> int:
    """Normalise one dim to ``[0, ndim)``; a 0-d array accepts 0 and -1 as in PyTorch."""
    if isinstance(dim, bool) or not isinstance(dim, int | np.integer):
        raise TypeError(f"{name}: dim must be an int, got {type(dim).__name__}")
    span = builtins.max(ndim, 1)
    if not -span <= dim < span:
        raise DimensionError(f"{name}: Dimension out of range (expected to be in range of "
                             f"[{-span}, {span - 1}], but got {dim})")
    return int(dim) % span


def _dims(name: str, dim: Any, ndim: int) -> tuple[int, ...] | None:
    """``None``/``()`` mean all dims; an int or a sequence of ints otherwise (no repeats)."""
    if dim is None or (isinstance(dim, Sequence) and len(dim) == 0):
        return None
    dims = tuple(_dim(name, d, ndim) for d in (dim if isinstance(dim, Sequence) else (dim,)))
    if len(set(dims)) != len(dims):
        raise ValueError(f"{name}: dim {dim} appears multiple times in the list of dims")
    return dims if ndim > 0 else None


def _promote_int(x: jax.Array, dtype: Any) -> Any:
    """PyTorch accumulates integer and bool sums/products in int64."""
    if dtype is None and (jnp.issubdtype(x.dtype, jnp.integer) or x.dtype == jnp.bool_):
        return canonical(jnp.int64)
    return dtype


def numel(input: Any) -> int:
    """The number of elements."""
    return int(np.prod(jnp.shape(input), dtype=np.int64))


def flatten(input: Any, start_dim: int = 0, end_dim: int = -1) -> jax.Array:
    """Merge dims ``start_dim..end_dim`` into one; a 0-d input becomes shape ``(1,)``."""
    x = jnp.asarray(input)
    if x.ndim == 0:
        return x.reshape(1)
    s, e = _dim("flatten", start_dim, x.ndim), _dim("flatten", end_dim, x.ndim)
    if s > e:
        raise ValueError(f"flatten: start_dim ({start_dim}) cannot come after end_dim ({end_dim})")
    return x.reshape((*x.shape[:s], int(np.prod(x.shape[s:e + 1])), *x.shape[e + 1:]))


def unflatten(input: Any, dim: int, sizes: Sequence[int]) -> jax.Array:
    """Split dim ``dim`` into ``sizes`` (one entry may be -1)."""
    x = jnp.asarray(input)
    d = _dim("unflatten", dim, x.ndim)
    sizes = tuple(int(s) for s in sizes)
    known = int(np.prod([s for s in sizes if s != -1], dtype=np.int64))
    if sizes.count(-1) > 1 or (-1 not in sizes and known != x.shape[d]) or (
            -1 in sizes and (known == 0 or x.shape[d] % known)):
        raise ValueError(f"unflatten: sizes {sizes} don't multiply up to the size of dim {dim} "
                         f"({x.shape[d]}) in the input")
    return x.reshape((*x.shape[:d], *sizes, *x.shape[d + 1:]))


def reshape(input: Any, *shape: Any) -> jax.Array:
    """``torch.reshape(x, shape)``; also accepts ``reshape(x, 2, 3)``."""
    if len(shape) == 1 and isinstance(shape[0], Sequence):
        shape = tuple(shape[0])
    x = jnp.asarray(input)
    try:
        return x.reshape(shape)
    except TypeError as err:
        raise ValueError(f"reshape: shape {tuple(shape)} is invalid for input of shape "
                         f"{x.shape}") from err


def _arrays(name: str, tensors: Any) -> list[jax.Array]:
    if isinstance(tensors, jax.Array | np.ndarray) or not isinstance(tensors, Sequence):
        raise TypeError(f"{name}: expected a sequence of arrays, got {type(tensors).__name__}")
    if not tensors:
        raise ValueError(f"{name}: expected a non-empty sequence of arrays")
    return [jnp.asarray(t) for t in tensors]


def cat(tensors: Sequence[Any], dim: int = 0) -> jax.Array:
    """Concatenate along ``dim``; every other dim must agree."""
    xs = _arrays("cat", tensors)
    d = _dim("cat", dim, xs[0].ndim)
    for i, x in enumerate(xs):
        rest, first_rest = x.shape[:d] + x.shape[d + 1:], xs[0].shape[:d] + xs[0].shape[d + 1:]
        if x.ndim != xs[0].ndim or rest != first_rest:
            raise ValueError(f"cat: sizes of arrays must match except in dimension {dim}; "
                             f"array 0 has shape {xs[0].shape}, array {i} has {x.shape}")
    return jnp.concatenate(xs, axis=d)


concat = concatenate = cat


def stack(tensors: Sequence[Any], dim: int = 0) -> jax.Array:
    """Stack equal-shaped arrays along a new dim ``dim``."""
    xs = _arrays("stack", tensors)
    for i, x in enumerate(xs):
        if x.shape != xs[0].shape:
            raise ValueError(f"stack: expects each array to be equal size, but got "
                             f"{xs[0].shape} at entry 0 and {x.shape} at entry {i}")
    return jnp.stack(xs, axis=_dim("stack", dim, xs[0].ndim + 1))


def split(tensor: Any, split_size_or_sections: int | Sequence[int], dim: int = 0
          ) -> tuple[jax.Array, ...]:
    """Split into pieces of one size (the last may be smaller) or of the given sizes."""
    x = jnp.asarray(tensor)
    d = _dim("split", dim, x.ndim)
    n = x.shape[d]
    if isinstance(split_size_or_sections, int | np.integer):
        size = int(split_size_or_sections)
        if size <= 0:
            raise ValueError(f"split: split_size must be positive, got {size}")
        sizes = [builtins.min(size, n - i) for i in range(0, n, size)] or [0]
    else:
        sizes = [int(s) for s in split_size_or_sections]
        if builtins.sum(sizes) != n or builtins.min(sizes, default=0) < 0:
            raise ValueError(f"split: split sizes {sizes} must be non-negative and sum exactly "
                             f"to {n} (input size in dim {dim})")
    bounds = np.cumsum([0, *sizes])
    return tuple(jax.lax.slice_in_dim(x, int(a), int(b), axis=d)
                 for a, b in itertools.pairwise(bounds))


def chunk(input: Any, chunks: int, dim: int = 0) -> tuple[jax.Array, ...]:
    """Split into at most ``chunks`` pieces of size ``ceil(n / chunks)`` (PyTorch's rule)."""
    if not isinstance(chunks, int | np.integer) or chunks <= 0:
        raise ValueError(f"chunk: chunks must be a positive int, got {chunks!r}")
    x = jnp.asarray(input)
    n = x.shape[_dim("chunk", dim, x.ndim)]
    return split(x, builtins.max(-(-n // int(chunks)), 1), dim)


def squeeze(input: Any, dim: int | Sequence[int] | None = None) -> jax.Array:
    """Remove size-1 dims (all, or those in ``dim`` that have size 1; others are kept)."""
    x = jnp.asarray(input)
    dims = _dims("squeeze", dim, x.ndim)
    candidates = range(x.ndim) if dims is None else dims
    return jnp.squeeze(x, axis=tuple(d for d in candidates if x.shape[d] == 1))


def unsqueeze(input: Any, dim: int) -> jax.Array:
    """Insert a size-1 dim at ``dim`` (in ``[-ndim-1, ndim]``)."""
    x = jnp.asarray(input)
    return jnp.expand_dims(x, _dim("unsqueeze", dim, x.ndim + 1))


def transpose(input: Any, dim0: int, dim1: int) -> jax.Array:
    """Swap two dims (``torch.transpose``, not ``jnp.transpose``)."""
    x = jnp.asarray(input)
    if x.ndim == 0:
        _dim("transpose", dim0, 0), _dim("transpose", dim1, 0)
        return x
    return jnp.swapaxes(x, _dim("transpose", dim0, x.ndim), _dim("transpose", dim1, x.ndim))


swapaxes = swapdims = transpose


def permute(input: Any, *dims: Any) -> jax.Array:
    """Reorder dims: ``permute(x, (2, 0, 1))`` or ``permute(x, 2, 0, 1)``."""
    if len(dims) == 1 and isinstance(dims[0], Sequence):
        dims = tuple(dims[0])
    x = jnp.asarray(input)
    if len(dims) != x.ndim:
        raise ValueError(f"permute: number of dims don't match: input has {x.ndim}, "
                         f"dims has {len(dims)}")
    norm = [_dim("permute", d, x.ndim) for d in dims]
    if sorted(norm) != list(range(x.ndim)):
        raise ValueError(f"permute: dims {tuple(dims)} is not a permutation of the input's dims")
    return jnp.transpose(x, norm)


def movedim(input: Any, source: int | Sequence[int], destination: int | Sequence[int]) -> jax.Array:
    """Move dims from ``source`` to ``destination`` positions."""
    x = jnp.asarray(input)
    src = [source] if isinstance(source, int) else list(source)
    dst = [destination] if isinstance(destination, int) else list(destination)
    if len(src) != len(dst):
        raise ValueError(f"movedim: source and destination must have the same number of dims, "
                         f"got {len(src)} and {len(dst)}")
    return jnp.moveaxis(x, [_dim("movedim", d, x.ndim) for d in src],
                        [_dim("movedim", d, x.ndim) for d in dst])


def narrow(input: Any, dim: int, start: int, length: int) -> jax.Array:
    """The slice ``start : start + length`` of dim ``dim`` (``start`` may be negative)."""
    x = jnp.asarray(input)
    d = _dim("narrow", dim, x.ndim)
    n = x.shape[d]
    if start < 0:
        start += n
    if not 0 <= start <= n or length < 0 or start + length > n:
        raise ValueError(f"narrow: start ({start}) + length ({length}) exceeds dimension size "
                         f"({n}) of dim {dim}")
    return jax.lax.slice_in_dim(x, start, start + length, axis=d)


def gather(input: Any, dim: int, index: Any) -> jax.Array:
    """``out[i][j][k] = input[index[i][j][k]][j][k]`` for ``dim=0`` (PyTorch's gather).

    ``index`` has as many dims as ``input`` and is no larger in any dim other than ``dim``.
    """
    x, idx = jnp.asarray(input), jnp.asarray(index)
    d = _dim("gather", dim, x.ndim)
    if not jnp.issubdtype(idx.dtype, jnp.integer):
        raise TypeError(f"gather: index must be an integer array, got {idx.dtype}")
    if idx.ndim != x.ndim or any(i > s for k, (i, s) in enumerate(zip(idx.shape, x.shape))
                                 if k != d):
        raise ValueError(f"gather: index {idx.shape} must have input's number of dims and be no "
                         f"larger than input {x.shape} in every dim except {dim}")
    x = x[tuple(slice(0, s) if k != d else slice(None) for k, s in enumerate(idx.shape))]
    return jnp.take_along_axis(x, idx, axis=d)


def index_select(input: Any, dim: int, index: Any) -> jax.Array:
    """Select entries along ``dim`` by a 1-D integer ``index``."""
    x, idx = jnp.asarray(input), jnp.asarray(index)
    if idx.ndim > 1 or not jnp.issubdtype(idx.dtype, jnp.integer):
        raise ValueError(f"index_select: index must be a 1-D integer array, got {idx.dtype} "
                         f"of shape {idx.shape}")
    return jnp.take(x, idx.reshape(-1), axis=_dim("index_select", dim, x.ndim))


def masked_fill(input: Any, mask: Any, value: Any) -> jax.Array:
    """``value`` where the boolean ``mask`` (broadcast to ``input``) is True; dtype of ``input``."""
    x, m = jnp.asarray(input), jnp.asarray(mask)
    if m.dtype != jnp.bool_:
        raise TypeError(f"masked_fill: mask must be a bool array, got {m.dtype}")
    try:
        jnp.broadcast_shapes(m.shape, x.shape)
    except ValueError as err:
        raise ValueError(f"masked_fill: mask of shape {m.shape} does not broadcast to input of "
                         f"shape {x.shape}") from err
    return jnp.where(m, jnp.asarray(value, dtype=x.dtype), x)


def where(condition: Any, input: Any = None, other: Any = None) -> Any:
    """``input`` where ``condition`` else ``other``; with one argument, the indices of nonzeros."""
    if input is None and other is None:
        return jnp.nonzero(condition)
    if input is None or other is None:
        raise TypeError("where: expected where(condition) or where(condition, input, other)")
    return jnp.where(condition, input, other)


def clamp(input: Any, min: Any = None, max: Any = None) -> jax.Array:
    """Clamp to ``[min, max]``; where ``min > max`` every value becomes ``max`` (PyTorch's rule)."""
    if min is None and max is None:
        raise ValueError("clamp: at least one of 'min' or 'max' must not be None")
    x = jnp.asarray(input)
    if min is not None:
        x = jnp.maximum(x, min)
    if max is not None:
        x = jnp.minimum(x, max)
    return x


clip = clamp


def sum(input: Any, dim: Any = None, keepdim: bool = False, *, dtype: Any = None) -> jax.Array:
    """Sum over ``dim`` (all dims when None); integers and bools sum in int64 as in PyTorch."""
    x = jnp.asarray(input)
    return jnp.sum(x, axis=_dims("sum", dim, x.ndim), keepdims=keepdim,
                   dtype=_promote_int(x, dtype))


def prod(input: Any, dim: int | None = None, keepdim: bool = False, *,
         dtype: Any = None) -> jax.Array:
    """Product over one ``dim`` (all when None); integers in int64."""
    x = jnp.asarray(input)
    axis = None if dim is None or x.ndim == 0 else _dim("prod", dim, x.ndim)
    return jnp.prod(x, axis=axis, keepdims=keepdim and dim is not None,
                    dtype=_promote_int(x, dtype))


def mean(input: Any, dim: Any = None, keepdim: bool = False, *, dtype: Any = None) -> jax.Array:
    """Mean over ``dim``; as in PyTorch, integer input needs an explicit floating ``dtype``."""
    x = jnp.asarray(input)
    if dtype is None and not jnp.issubdtype(x.dtype, jnp.inexact):
        raise TypeError(f"mean: could not infer output dtype; input dtype must be floating or "
                        f"complex, got {x.dtype} (pass dtype=)")
    return jnp.mean(x, axis=_dims("mean", dim, x.ndim), keepdims=keepdim, dtype=dtype)


def _ddof(name: str, unbiased: Any, correction: Any) -> Any:
    if unbiased is not None and correction is not None:
        raise ValueError(f"{name}: give either unbiased or correction, not both")
    if correction is not None:
        return correction
    return 0 if unbiased is False else 1


def var(input: Any, dim: Any = None, unbiased: bool | None = None, keepdim: bool = False, *,
        correction: float | None = None) -> jax.Array:
    """Variance with ``correction`` (Bessel's by default) or the older ``unbiased`` flag.

    ``var(x, False)`` is PyTorch's overload ``var(x, unbiased=False)``.
    """
    if isinstance(dim, bool):
        dim, unbiased = None, dim
    x = jnp.asarray(input)
    return jnp.var(x, axis=_dims("var", dim, x.ndim), ddof=_ddof("var", unbiased, correction),
                   keepdims=keepdim)


def std(input: Any, dim: Any = None, unbiased: bool | None = None, keepdim: bool = False, *,
        correction: float | None = None) -> jax.Array:
    """Standard deviation: the square root of :func:`var` with the same arguments."""
    return jnp.sqrt(var(input, dim, unbiased, keepdim, correction=correction))


def _reduce_with_indices(name: str, input: Any, dim: Any, keepdim: bool, largest: bool) -> Any:
    x = jnp.asarray(input)
    if dim is None:
        if x.size == 0:
            raise ValueError(f"{name}: expected a non-empty array when no dim is given")
        return jnp.max(x) if largest else jnp.min(x)
    if isinstance(dim, jax.Array | np.ndarray):  # torch.max(a, b): elementwise
        return jnp.maximum(x, dim) if largest else jnp.minimum(x, dim)
    d = _dim(name, dim, x.ndim)
    if x.ndim == 0:
        return getattr(return_types, name)(x, jnp.zeros((), canonical(jnp.int64)))
    if x.shape[d] == 0:
        raise ValueError(f"{name}: cannot reduce over the empty dim {dim} of shape {x.shape}")
    values = (jnp.max if largest else jnp.min)(x, axis=d, keepdims=keepdim)
    indices = (jnp.argmax if largest else jnp.argmin)(x, axis=d, keepdims=keepdim)
    return getattr(return_types, name)(values, indices.astype(canonical(jnp.int64)))


def max(input: Any, dim: Any = None, keepdim: bool = False) -> Any:
    """The maximum; with ``dim``, a named tuple ``(values, indices)``; with an array second
    argument, the elementwise maximum (PyTorch's three overloads)."""
    return _reduce_with_indices("max", input, dim, keepdim, largest=True)


def min(input: Any, dim: Any = None, keepdim: bool = False) -> Any:
    """The minimum; overloads as :func:`max`."""
    return _reduce_with_indices("min", input, dim, keepdim, largest=False)


def amax(input: Any, dim: Any = (), keepdim: bool = False) -> jax.Array:
    """Maximum over one or several dims (all by default), values only."""
    x = jnp.asarray(input)
    return jnp.max(x, axis=_dims("amax", dim, x.ndim), keepdims=keepdim)


def amin(input: Any, dim: Any = (), keepdim: bool = False) -> jax.Array:
    """Minimum over one or several dims (all by default), values only."""
    x = jnp.asarray(input)
    return jnp.min(x, axis=_dims("amin", dim, x.ndim), keepdims=keepdim)


def _arg(name: str, fn: Any, input: Any, dim: int | None, keepdim: bool) -> jax.Array:
    x = jnp.asarray(input)
    if dim is None:
        out = fn(x.reshape(-1))
        return (out.reshape((1,) * x.ndim) if keepdim else out).astype(canonical(jnp.int64))
    if x.ndim == 0:
        _dim(name, dim, 0)
        return jnp.zeros((), canonical(jnp.int64))
    return fn(x, axis=_dim(name, dim, x.ndim), keepdims=keepdim).astype(canonical(jnp.int64))


def argmax(input: Any, dim: int | None = None, keepdim: bool = False) -> jax.Array:
    """Index of the first maximum (over the flattened input when ``dim`` is None)."""
    return _arg("argmax", jnp.argmax, input, dim, keepdim)


def argmin(input: Any, dim: int | None = None, keepdim: bool = False) -> jax.Array:
    """Index of the first minimum (over the flattened input when ``dim`` is None)."""
    return _arg("argmin", jnp.argmin, input, dim, keepdim)


def logsumexp(input: Any, dim: Any, keepdim: bool = False) -> jax.Array:
    """``log(sum(exp(x)))`` over ``dim``, stable; integer input is computed in the default float."""
    x = jnp.asarray(input)
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        x = x.astype(get_default_dtype())
    return jax.nn.logsumexp(x, axis=_dims("logsumexp", dim, x.ndim), keepdims=keepdim)


def cumsum(input: Any, dim: int, *, dtype: Any = None) -> jax.Array:
    """Cumulative sum along ``dim``; integers accumulate in int64."""
    x = jnp.asarray(input)
    if x.ndim == 0:
        _dim("cumsum", dim, 0)
        return x.astype(_promote_int(x, dtype) or x.dtype)
    return jnp.cumsum(x, axis=_dim("cumsum", dim, x.ndim), dtype=_promote_int(x, dtype))


def sort(input: Any, dim: int = -1, descending: bool = False, stable: bool = False) -> Any:
    """Sorted values and their indices along ``dim``; NaN sorts as the largest value.

    Sorting is always stable here (PyTorch's ``stable=True`` order; any order is valid for
    ``stable=False``).
    """
    x = jnp.asarray(input)
    if x.ndim == 0:
        _dim("sort", dim, 0)
        return return_types.sort(x, jnp.zeros((), canonical(jnp.int64)))
    d = _dim("sort", dim, x.ndim)
    idx = jnp.argsort(x, axis=d, stable=True, descending=descending)
    return return_types.sort(jnp.take_along_axis(x, idx, axis=d), idx.astype(canonical(jnp.int64)))


def topk(input: Any, k: int, dim: int = -1, largest: bool = True, sorted: bool = True) -> Any:
    """The ``k`` largest (or smallest) entries along ``dim`` and their indices, sorted."""
    x = jnp.asarray(input)
    d = _dim("topk", dim, x.ndim)
    n = x.shape[d] if x.ndim else 1
    if not 0 <= k <= n:
        raise ValueError(f"topk: k ({k}) is out of range for dimension {dim} of size {n}")
    moved = jnp.moveaxis(x, d, -1) if x.ndim else x.reshape(1)
    if x.dtype == jnp.bool_:
        moved = moved.astype(jnp.int8)
    keyed = moved if largest else (-moved if jnp.issubdtype(moved.dtype, jnp.inexact) else ~moved)
    _, idx = jax.lax.top_k(keyed, k)
    values = jnp.take_along_axis(moved, idx, axis=-1).astype(x.dtype)
    if x.ndim == 0:
        return return_types.topk(values.reshape(()), idx.reshape(()).astype(canonical(jnp.int64)))
    return return_types.topk(jnp.moveaxis(values, -1, d),
                             jnp.moveaxis(idx, -1, d).astype(canonical(jnp.int64)))


def _check_matrix(name: str, a: jax.Array, b: jax.Array, rank: int) -> None:
    if a.ndim != rank or b.ndim != rank:
        raise ValueError(f"{name}: expected two {rank}-D arrays, got shapes {a.shape} and "
                         f"{b.shape}")
    if a.shape[-1] != b.shape[-2] or (rank == 3 and a.shape[0] != b.shape[0]):
        raise ValueError(f"{name}: shapes {a.shape} and {b.shape} cannot be multiplied")


def matmul(input: Any, other: Any) -> jax.Array:
    """Matrix product with NumPy/PyTorch broadcasting rules for 1-D and batched inputs."""
    a, b = jnp.asarray(input), jnp.asarray(other)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError("matmul: both arguments need at least 1 dimension, got a 0-d array")
    inner_b = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if a.shape[-1] != inner_b:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} cannot be multiplied "
                         f"({a.shape[-1]} != {inner_b})")
    return jnp.matmul(a, b)


def mm(input: Any, mat2: Any) -> jax.Array:
    """The product of two 2-D arrays."""
    a, b = jnp.asarray(input), jnp.asarray(mat2)
    _check_matrix("mm", a, b, 2)
    return a @ b


def bmm(input: Any, mat2: Any) -> jax.Array:
    """Batched product of ``(b, n, m)`` and ``(b, m, p)`` arrays."""
    a, b = jnp.asarray(input), jnp.asarray(mat2)
    _check_matrix("bmm", a, b, 3)
    return a @ b


def einsum(equation: str, *operands: Any) -> jax.Array:
    """``torch.einsum``: operands as arguments or as one list."""
    if len(operands) == 1 and isinstance(operands[0], list | tuple):
        operands = tuple(operands[0])
    return jnp.einsum(equation, *operands)


def outer(input: Any, vec2: Any) -> jax.Array:
    """The outer product of two 1-D arrays."""
    a, b = jnp.asarray(input), jnp.asarray(vec2)
    if a.ndim != 1 or b.ndim != 1:
        raise ValueError(f"outer: expected two 1-D arrays, got shapes {a.shape} and {b.shape}")
    return jnp.outer(a, b)


def tril(input: Any, diagonal: int = 0) -> jax.Array:
    """Lower triangle of the last two dims (at and below ``diagonal``)."""
    x = jnp.asarray(input)
    if x.ndim < 2:
        raise ValueError(f"tril: input must have at least 2 dims, got shape {x.shape}")
    return jnp.tril(x, diagonal)


def triu(input: Any, diagonal: int = 0) -> jax.Array:
    """Upper triangle of the last two dims (at and above ``diagonal``)."""
    x = jnp.asarray(input)
    if x.ndim < 2:
        raise ValueError(f"triu: input must have at least 2 dims, got shape {x.shape}")
    return jnp.triu(x, diagonal)


def isclose(input: Any, other: Any, rtol: float = 1e-5, atol: float = 1e-8,
            equal_nan: bool = False) -> jax.Array:
    """Elementwise ``|input - other| <= atol + rtol * |other|``."""
    return jnp.isclose(input, other, rtol=rtol, atol=atol, equal_nan=equal_nan)


def allclose(input: Any, other: Any, rtol: float = 1e-5, atol: float = 1e-8,
             equal_nan: bool = False) -> bool:
    """Whether :func:`isclose` holds everywhere (a Python bool, as in PyTorch)."""
    return bool(jnp.all(isclose(input, other, rtol, atol, equal_nan)))
