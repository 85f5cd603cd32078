"""``parameters_to_vector`` and ``vector_to_parameters``, as ``torch.nn.utils``.

Example:
    >>> vec = parameters_to_vector(model.parameters())
    >>> vector_to_parameters(vec * 0.5, model.parameters())
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["parameters_to_vector", "vector_to_parameters"]


def parameters_to_vector(parameters: Iterable[Any]) -> jax.Array:
    """All parameters flattened and concatenated into one 1-D array."""
    return jnp.concatenate([jnp.ravel(p.data) for p in parameters])


def vector_to_parameters(vec: jax.Array, parameters: Iterable[Any]) -> None:
    """Slice ``vec`` (1-D, as many elements as the parameters) back into their ``.data``."""
    vec = jnp.asarray(vec)
    if vec.ndim != 1:
        raise TypeError(f"expected a 1-D vector, got shape {vec.shape}")
    params = list(parameters)
    total = sum(p.data.size for p in params)
    if vec.size != total:
        raise ValueError(f"vector_to_parameters: the vector has {vec.size} elements, the "
                         f"parameters {total}")
    offset = 0
    for p in params:
        n = p.data.size
        p.data = vec[offset:offset + n].reshape(p.data.shape).astype(p.data.dtype)
        offset += n
