"""Dropout layers: active in ``train()`` mode, the identity in ``eval()``. Masks come from the
global generator (``torsh_fn.manual_seed`` makes them reproducible), inside ``torsh_fn.jit`` too,
where the generator's state is threaded through the compiled step.

Example:
    >>> drop = Dropout(0.5)
    >>> y = drop(jnp.ones(8))          # zeros and 2.0s
    >>> drop.eval()(jnp.ones(8))       # unchanged
"""

from __future__ import annotations

import jax

from .. import functional as F
from ..module import Module
from ._checks import check_rank

__all__ = ["AlphaDropout", "Dropout", "Dropout1d", "Dropout2d", "Dropout3d",
           "FeatureAlphaDropout"]


class _DropoutNd(Module):
    def __init__(self, p: float = 0.5, inplace: bool = False) -> None:
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p, self.inplace = p, inplace

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"


class Dropout(_DropoutNd):
    """Zero each element with probability ``p`` and scale the rest by ``1 / (1 - p)``."""

    def forward(self, input: jax.Array) -> jax.Array:
        return F.dropout(input, self.p, self.training)


class Dropout1d(_DropoutNd):
    """Zero whole channels of ``(N, C, L)`` or ``(C, L)`` input."""

    def forward(self, input: jax.Array) -> jax.Array:
        check_rank(self, input, (2, 3))
        return F.dropout1d(input, self.p, self.training)


class Dropout2d(_DropoutNd):
    """Zero whole channels of ``(N, C, H, W)`` or ``(C, H, W)`` input."""

    def forward(self, input: jax.Array) -> jax.Array:
        return F.dropout2d(input, self.p, self.training)


class Dropout3d(_DropoutNd):
    """Zero whole channels of ``(N, C, D, H, W)`` or ``(C, D, H, W)`` input."""

    def forward(self, input: jax.Array) -> jax.Array:
        return F.dropout3d(input, self.p, self.training)


class AlphaDropout(_DropoutNd):
    """Dropout that keeps SELU's self-normalising mean and variance."""

    def forward(self, input: jax.Array) -> jax.Array:
        return F.alpha_dropout(input, self.p, self.training)


class FeatureAlphaDropout(_DropoutNd):
    """Alpha dropout of whole channels."""

    def forward(self, input: jax.Array) -> jax.Array:
        return F.feature_alpha_dropout(input, self.p, self.training)
