"""nn.functional: embedding lookups and one-hot encoding.

``max_norm`` cannot renormalise ``weight`` in place as PyTorch does (arrays are immutable): the
looked-up rows are renormalised in the output, and the gradient reaches ``weight`` as PyTorch's
does (unscaled). ``sparse=`` is accepted and ignored: gradients are dense.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["embedding", "embedding_bag", "one_hot"]


def _check_indices(name: str, input: jax.Array) -> None:
    if not jnp.issubdtype(input.dtype, jnp.integer):
        raise TypeError(f"{name}: input must hold integer indices, got dtype {input.dtype}")


def _padding_idx(name: str, padding_idx: int | None, num: int) -> int | None:
    if padding_idx is None:
        return None
    if not -num <= padding_idx < num:
        raise ValueError(f"{name}: padding_idx must be within [-{num}, {num}), got {padding_idx}")
    return padding_idx % num


def _renormed(rows: jax.Array, max_norm: float | None, norm_type: float) -> jax.Array:
    """Rows with norm above ``max_norm`` scaled down to it; no gradient through the scale."""
    if max_norm is None:
        return rows
    norm = jnp.sum(jnp.abs(rows) ** norm_type, axis=-1, keepdims=True) ** (1.0 / norm_type)
    scale = jnp.where(norm > max_norm, max_norm / (norm + 1e-7), 1.0)
    return rows + jax.lax.stop_gradient(rows * scale - rows)


def _grad_scaled_by_freq(rows: jax.Array, input: jax.Array, num: int) -> jax.Array:
    """Same values; each row's gradient divided by its index's count in ``input``."""
    counts = jnp.bincount(input.reshape(-1), length=num)[input][..., None].astype(rows.dtype)
    fixed = jax.lax.stop_gradient(rows)
    return fixed + (rows - fixed) / counts


def embedding(input: jax.Array, weight: jax.Array, padding_idx: int | None = None,
              max_norm: float | None = None, norm_type: float = 2.0,
              scale_grad_by_freq: bool = False, sparse: bool = False) -> jax.Array:
    """Rows of ``weight`` (num_embeddings, dim) at integer ``input`` (any shape): (*, dim).

    ``padding_idx``'s row gets no gradient; ``scale_grad_by_freq`` divides each row's gradient
    by how often its index occurs in ``input``.

    Example:
        >>> embedding(jnp.array([[0, 2]]), jnp.arange(6.0).reshape(3, 2))
        Array([[[0., 1.],
                [4., 5.]]], dtype=float32)
    """
    name = "embedding"
    _check_indices(name, input)
    if weight.ndim != 2:
        raise ValueError(f"{name}: weight must be (num_embeddings, embedding_dim), got shape "
                         f"{weight.shape}")
    num = weight.shape[0]
    padding_idx = _padding_idx(name, padding_idx, num)
    rows = _renormed(weight[input], max_norm, norm_type)
    if scale_grad_by_freq:
        rows = _grad_scaled_by_freq(rows, input, num)
    if padding_idx is not None:
        rows = jnp.where((input == padding_idx)[..., None], jax.lax.stop_gradient(rows), rows)
    return rows


def _bag_ids(name: str, input: jax.Array, offsets: jax.Array | None,
             include_last_offset: bool) -> tuple[jax.Array, jax.Array, int]:
    """Flat indices, the bag of each, and the number of bags."""
    if input.ndim == 2:
        if offsets is not None:
            raise ValueError(f"{name}: offsets must be None for 2-d input, got {offsets.shape}")
        bags, length = input.shape
        return input.reshape(-1), jnp.repeat(jnp.arange(bags), length), bags
    if input.ndim != 1 or offsets is None or offsets.ndim != 1:
        raise ValueError(f"{name}: expected 2-d input, or 1-d input with 1-d offsets, got input "
                         f"{input.shape} and offsets {None if offsets is None else offsets.shape}")
    bags = offsets.shape[0] - (1 if include_last_offset else 0)
    ids = jnp.searchsorted(offsets, jnp.arange(input.shape[0]), side="right") - 1
    return input, jnp.minimum(ids, bags - 1), bags


def embedding_bag(input: jax.Array, weight: jax.Array, offsets: jax.Array | None = None,
                  max_norm: float | None = None, norm_type: float = 2.0,
                  scale_grad_by_freq: bool = False, mode: str = "mean", sparse: bool = False,
                  per_sample_weights: jax.Array | None = None,
                  include_last_offset: bool = False, padding_idx: int | None = None
                  ) -> jax.Array:
    """Sums, means or maxes of bags of embeddings: (B, dim).

    Bags are the rows of a 2-d ``input``, or the runs of a 1-d ``input`` that start at
    ``offsets``. ``padding_idx`` entries are left out of their bag; an empty bag gives zeros.

    Example:
        >>> w = jnp.arange(6.0).reshape(3, 2)
        >>> embedding_bag(jnp.array([0, 2, 1]), w, jnp.array([0, 1]), mode="sum")
        Array([[0., 1.],
               [6., 8.]], dtype=float32)
    """
    name = "embedding_bag"
    if mode not in ("sum", "mean", "max"):
        raise ValueError(f"{name}: mode must be 'sum', 'mean' or 'max', got {mode!r}")
    if per_sample_weights is not None and mode != "sum":
        raise ValueError(f"{name}: per_sample_weights needs mode='sum', got {mode!r}")
    flat, ids, bags = _bag_ids(name, input, offsets, include_last_offset)
    rows = embedding(flat, weight, None, max_norm, norm_type, scale_grad_by_freq)
    used = jnp.ones(flat.shape, bool)
    padding_idx = _padding_idx(name, padding_idx, weight.shape[0])
    if padding_idx is not None:
        used = flat != padding_idx
    if per_sample_weights is not None:
        rows = rows * per_sample_weights.reshape(-1, 1).astype(rows.dtype)
    if mode == "max":
        out = jax.ops.segment_max(jnp.where(used[:, None], rows, -jnp.inf), ids, bags)
        return jnp.where(jnp.isneginf(out), 0.0, out).astype(rows.dtype)
    out = jax.ops.segment_sum(jnp.where(used[:, None], rows, 0.0), ids, bags)
    if mode == "mean":
        counts = jax.ops.segment_sum(used.astype(rows.dtype), ids, bags)
        out = out / jnp.maximum(counts, 1)[:, None]
    return out


def one_hot(tensor: jax.Array, num_classes: int = -1) -> jax.Array:
    """(*,) integer classes -> (*, num_classes) of 0/1 integers.

    ``num_classes=-1`` infers ``max + 1`` from the data, which needs concrete values: pass it
    explicitly under ``jit``. The result is int32 unless 64-bit types are on (PyTorch: int64).

    Example:
        >>> one_hot(jnp.array([0, 2]), 3)
        Array([[1, 0, 0],
               [0, 0, 1]], dtype=int32)
    """
    _check_indices("one_hot", tensor)
    if num_classes == -1:
        try:
            num_classes = int(tensor.max()) + 1 if tensor.size else 0
        except jax.errors.ConcretizationTypeError:
            raise ValueError("one_hot: num_classes=-1 infers the count from the data, which is "
                             "not known under jit; pass num_classes=") from None
    dtype = jax.dtypes.canonicalize_dtype(jnp.int64)
    return (tensor[..., None] == jnp.arange(num_classes)).astype(dtype)
