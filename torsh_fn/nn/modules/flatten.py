"""``Flatten`` and ``Unflatten``: reshape a range of dimensions, as PyTorch.

Example:
    >>> Flatten()(jnp.ones((2, 3, 4))).shape
    (2, 12)
    >>> Unflatten(1, (3, 4))(jnp.ones((2, 12))).shape
    (2, 3, 4)
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from ..module import Module
from ._checks import describe

__all__ = ["Flatten", "Unflatten"]


class Flatten(Module):
    """Merge dimensions ``start_dim`` through ``end_dim`` into one."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, input: jax.Array) -> jax.Array:
        shape = jnp.shape(input)
        if not shape:
            return jnp.reshape(input, (1,))
        start, end = self.start_dim % len(shape), self.end_dim % len(shape)
        if start > end:
            raise ValueError(f"{describe(self)}: start_dim comes after end_dim for input of "
                             f"shape {shape}")
        merged = 1
        for size in shape[start:end + 1]:
            merged *= size
        return jnp.reshape(input, (*shape[:start], merged, *shape[end + 1:]))

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Unflatten(Module):
    """Split dimension ``dim`` into ``unflattened_size`` (one entry may be -1)."""

    def __init__(self, dim: int, unflattened_size: Sequence[int]) -> None:
        super().__init__()
        self.dim, self.unflattened_size = dim, tuple(unflattened_size)

    def forward(self, input: jax.Array) -> jax.Array:
        shape = jnp.shape(input)
        dim = self.dim % len(shape)
        return jnp.reshape(input, (*shape[:dim], *self.unflattened_size, *shape[dim + 1:]))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"
