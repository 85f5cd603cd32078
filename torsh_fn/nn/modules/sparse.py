"""``Embedding`` and ``EmbeddingBag``: lookup tables, initialised ``N(0, 1)`` as in PyTorch
(the ``padding_idx`` row zeroed).

Example:
    >>> emb = Embedding(10, 3, padding_idx=0)
    >>> emb(jnp.array([[0, 2], [4, 9]])).shape
    (2, 2, 3)
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from .. import functional as F
from .. import init
from ..module import Module
from ..parameter import Parameter, as_array
from ._checks import describe, empty_parameter

__all__ = ["Embedding", "EmbeddingBag"]


def _padding_index(owner: str, padding_idx: int | None, num_embeddings: int) -> int | None:
    if padding_idx is None:
        return None
    if not -num_embeddings <= padding_idx < num_embeddings:
        raise ValueError(f"{owner}: padding_idx must be within num_embeddings "
                         f"({num_embeddings}), got {padding_idx}")
    return padding_idx % num_embeddings


class _Table(Module):
    def _make_weight(self, weight: Any, device: Any, dtype: Any) -> None:
        shape = (self.num_embeddings, self.embedding_dim)
        if weight is None:
            self.weight = empty_parameter(shape, device, dtype)
            self.reset_parameters()
            return
        weight = as_array(weight, type(self).__name__)
        if tuple(weight.shape) != shape:
            raise ValueError(f"{type(self).__name__}: _weight must have shape {shape}, "
                             f"got {tuple(weight.shape)}")
        self.weight = Parameter(weight)

    def reset_parameters(self) -> None:
        init.normal_(self.weight)
        if self.padding_idx is not None:
            self.weight.data = self.weight.data.at[self.padding_idx].set(0)

    def _check_indices(self, input: Any) -> jax.Array:
        input = jnp.asarray(input)
        if not jnp.issubdtype(input.dtype, jnp.integer):
            raise TypeError(f"{describe(self)}: expected integer indices, got {input.dtype}")
        return input


class Embedding(_Table):
    """A table of ``num_embeddings`` vectors of size ``embedding_dim``.

    Shapes: integer indices ``(*)`` -> ``(*, embedding_dim)``; ``weight`` is
    ``(num_embeddings, embedding_dim)``. The ``padding_idx`` row gets no gradient.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None,
                 max_norm: float | None = None, norm_type: float = 2.0,
                 scale_grad_by_freq: bool = False, sparse: bool = False, _weight: Any = None,
                 _freeze: bool = False, device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.padding_idx = _padding_index("Embedding", padding_idx, num_embeddings)
        self.max_norm, self.norm_type = max_norm, norm_type
        self.scale_grad_by_freq, self.sparse = scale_grad_by_freq, sparse
        self._make_weight(_weight, device, dtype)
        self.weight.requires_grad = not _freeze

    def forward(self, input: Any) -> jax.Array:
        return F.embedding(self._check_indices(input), self.weight, self.padding_idx,
                           self.max_norm, self.norm_type, self.scale_grad_by_freq, self.sparse)

    def extra_repr(self) -> str:
        text = f"{self.num_embeddings}, {self.embedding_dim}"
        if self.padding_idx is not None:
            text += f", padding_idx={self.padding_idx}"
        if self.max_norm is not None:
            text += f", max_norm={self.max_norm}"
        return text

    @classmethod
    def from_pretrained(cls, embeddings: Any, freeze: bool = True,
                        padding_idx: int | None = None, max_norm: float | None = None,
                        norm_type: float = 2.0, scale_grad_by_freq: bool = False,
                        sparse: bool = False) -> Embedding:
        """An Embedding holding ``embeddings`` (2-D); frozen unless ``freeze=False``."""
        embeddings = as_array(embeddings, "Embedding.from_pretrained")
        if embeddings.ndim != 2:
            raise ValueError(f"Embedding.from_pretrained: embeddings must be 2-D, got shape "
                             f"{tuple(embeddings.shape)}")
        rows, cols = embeddings.shape
        return cls(rows, cols, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse,
                   _weight=embeddings, _freeze=freeze)


class EmbeddingBag(_Table):
    """Sums, means or maxes of bags of embeddings, without materialising the lookups.

    Shapes: 2-D indices ``(B, L)`` (fixed-length bags), or 1-D indices with ``offsets`` ``(B,)``
    -> ``(B, embedding_dim)``.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, max_norm: float | None = None,
                 norm_type: float = 2.0, scale_grad_by_freq: bool = False, mode: str = "mean",
                 sparse: bool = False, _weight: Any = None, include_last_offset: bool = False,
                 padding_idx: int | None = None, device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        if mode not in ("sum", "mean", "max"):
            raise ValueError(f"EmbeddingBag: mode must be 'sum', 'mean' or 'max', got {mode!r}")
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.padding_idx = _padding_index("EmbeddingBag", padding_idx, num_embeddings)
        self.max_norm, self.norm_type = max_norm, norm_type
        self.scale_grad_by_freq, self.mode, self.sparse = scale_grad_by_freq, mode, sparse
        self.include_last_offset = include_last_offset
        self._make_weight(_weight, device, dtype)

    def forward(self, input: Any, offsets: Any = None, per_sample_weights: Any = None):
        return F.embedding_bag(self._check_indices(input), self.weight, offsets, self.max_norm,
                               self.norm_type, self.scale_grad_by_freq, self.mode, self.sparse,
                               per_sample_weights, self.include_last_offset, self.padding_idx)

    def extra_repr(self) -> str:
        text = f"{self.num_embeddings}, {self.embedding_dim}, mode={self.mode!r}"
        if self.padding_idx is not None:
            text += f", padding_idx={self.padding_idx}"
        return text

    @classmethod
    def from_pretrained(cls, embeddings: Any, freeze: bool = True, max_norm: float | None = None,
                        norm_type: float = 2.0, scale_grad_by_freq: bool = False,
                        mode: str = "mean", sparse: bool = False,
                        include_last_offset: bool = False,
                        padding_idx: int | None = None) -> EmbeddingBag:
        embeddings = as_array(embeddings, "EmbeddingBag.from_pretrained")
        rows, cols = embeddings.shape
        bag = cls(rows, cols, max_norm, norm_type, scale_grad_by_freq, mode, sparse,
                  embeddings, include_last_offset, padding_idx)
        bag.weight.requires_grad = not freeze
        return bag
