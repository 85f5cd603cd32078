"""Datasets as in ``torch.utils.data``: map-style and iterable, and the ways to combine them."""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Generic, TypeVar

import numpy as np

from .. import random as _random
from ._rng import seed_from

T_co = TypeVar("T_co", covariant=True)

__all__ = [
    "Dataset", "IterableDataset", "TensorDataset", "ConcatDataset", "ChainDataset", "Subset",
    "random_split",
]


class Dataset(Generic[T_co]):
    """A map-style dataset: subclasses define ``__getitem__(index)`` and usually ``__len__``.

    Example:
        >>> class Squares(Dataset):
        ...     def __len__(self): return 4
        ...     def __getitem__(self, i): return np.float32(i * i)
        >>> Squares()[3]
        np.float32(9.0)
    """

    def __getitem__(self, index: int) -> T_co:
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__")

    def __add__(self, other: Dataset[T_co]) -> ConcatDataset[T_co]:
        return ConcatDataset([self, other])


class IterableDataset(Dataset[T_co], Iterable[T_co]):
    """A dataset that is a stream: subclasses define ``__iter__``.

    With ``num_workers > 0`` every worker iterates its own copy; shard the stream in ``__iter__``
    with :func:`get_worker_info`, as in PyTorch.

    Example:
        >>> class Range(IterableDataset):
        ...     def __iter__(self):
        ...         info = get_worker_info()
        ...         start, step = (0, 1) if info is None else (info.id, info.num_workers)
        ...         return iter(range(start, 10, step))
    """

    def __iter__(self) -> Iterator[T_co]:
        raise NotImplementedError(f"{type(self).__name__} must define __iter__")

    def __add__(self, other: Dataset[T_co]) -> ChainDataset[T_co]:
        return ChainDataset([self, other])


class TensorDataset(Dataset[tuple[np.ndarray, ...]]):
    """Samples are ``tuple(t[i] for t in tensors)``; arrays are kept as numpy arrays.

    Example:
        >>> ds = TensorDataset(np.zeros((5, 3)), np.arange(5))
        >>> len(ds), ds[4][1]
        (5, np.int64(4))
    """

    def __init__(self, *tensors: Any) -> None:
        arrays = tuple(np.asarray(t) for t in tensors)
        sizes = [a.shape[0] if a.ndim else None for a in arrays]
        if not arrays or None in sizes or len(set(sizes)) != 1:
            raise ValueError(
                f"TensorDataset: tensors: expected arrays with one common first dimension, "
                f"got shapes {[a.shape for a in arrays]}"
            )
        self.tensors = arrays

    def __getitem__(self, index: int) -> tuple[np.ndarray, ...]:
        return tuple(t[index] for t in self.tensors)

    def __len__(self) -> int:
        return self.tensors[0].shape[0]

    def gather(self, indices: Sequence[int]) -> list[np.ndarray]:
        """The batch at ``indices``, equal to ``default_collate([self[i] for i in indices])``
        but gathered with one index per array (the DataLoader's fast path)."""
        return [t[np.asarray(indices)] for t in self.tensors]


class ConcatDataset(Dataset[T_co]):
    """The datasets one after another, indexed as one.

    Example:
        >>> len(ConcatDataset([TensorDataset(np.zeros(2)), TensorDataset(np.ones(3))]))
        5
    """

    def __init__(self, datasets: Iterable[Dataset[T_co]]) -> None:
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("ConcatDataset: datasets: expected a non-empty iterable, got none")
        for d in self.datasets:
            if isinstance(d, IterableDataset):
                raise TypeError("ConcatDataset: datasets: expected map-style datasets, got an "
                                f"IterableDataset ({type(d).__name__}); use ChainDataset")
        self.cumulative_sizes = list(itertools.accumulate(len(d) for d in self.datasets))

    def __len__(self) -> int:
        return self.cumulative_sizes[-1]

    def __getitem__(self, index: int) -> T_co:
        if index < 0:
            if -index > len(self):
                raise ValueError(f"ConcatDataset: index: expected at least {-len(self)}, "
                                 f"got {index}")
            index += len(self)
        which = bisect.bisect_right(self.cumulative_sizes, index)
        offset = self.cumulative_sizes[which - 1] if which else 0
        return self.datasets[which][index - offset]


class ChainDataset(IterableDataset[T_co]):
    """Iterable datasets chained one after another.

    Example:
        >>> class Two(IterableDataset):
        ...     def __iter__(self): return iter([1, 2])
        >>> list(ChainDataset([Two(), Two()]))
        [1, 2, 1, 2]
    """

    def __init__(self, datasets: Iterable[Dataset[T_co]]) -> None:
        self.datasets = list(datasets)

    def __iter__(self) -> Iterator[T_co]:
        for d in self.datasets:
            if not isinstance(d, IterableDataset):
                raise TypeError(f"ChainDataset: datasets: expected IterableDatasets, got "
                                f"{type(d).__name__}")
            yield from d

    def __len__(self) -> int:
        return sum(len(d) for d in self.datasets)  # type: ignore[arg-type]


class Subset(Dataset[T_co]):
    """The samples of ``dataset`` at ``indices``, in that order.

    Example:
        >>> Subset(TensorDataset(np.arange(10)), [7, 2])[1]
        (np.int64(2),)
    """

    def __init__(self, dataset: Dataset[T_co], indices: Sequence[int]) -> None:
        self.dataset = dataset
        self.indices = indices

    def __getitem__(self, index: int) -> T_co:
        return self.dataset[self.indices[index]]

    def __getitems__(self, indices: list[int]) -> list[T_co]:
        mapped = [self.indices[i] for i in indices]
        if callable(getattr(self.dataset, "__getitems__", None)):
            return self.dataset.__getitems__(mapped)  # type: ignore[attr-defined]
        return [self.dataset[i] for i in mapped]

    def __len__(self) -> int:
        return len(self.indices)


def _split_lengths(n: int, lengths: Sequence[float]) -> list[int]:
    is_fractions = math.isclose(sum(lengths), 1) and sum(lengths) <= 1
    if not is_fractions:
        return [int(x) for x in lengths]
    for i, frac in enumerate(lengths):
        if not 0 <= frac <= 1:
            raise ValueError(f"random_split: lengths: fraction at index {i} is not in [0, 1], "
                             f"got {frac}")
    counts = [math.floor(n * frac) for frac in lengths]
    for i in range(n - sum(counts)):  # the remainder goes round-robin, as in PyTorch
        counts[i % len(counts)] += 1
    return counts


def random_split(
    dataset: Dataset[T_co],
    lengths: Sequence[float],
    generator: _random.Generator | None = None,
) -> list[Subset[T_co]]:
    """Split ``dataset`` into non-overlapping random subsets.

    Args:
        dataset: a map-style dataset with ``__len__``.
        lengths: the subset sizes (summing to ``len(dataset)``) or fractions (summing to 1).
        generator: a :class:`torsh_fn.random.Generator`; defaults to the global generator.

    Example:
        >>> train, val = random_split(TensorDataset(np.arange(10)), [0.8, 0.2],
        ...                           generator=torsh_fn.Generator().manual_seed(0))
        >>> len(train), len(val)
        (8, 2)
    """
    n = len(dataset)  # type: ignore[arg-type]
    counts = _split_lengths(n, lengths)
    if sum(counts) != n:
        raise ValueError(f"random_split: lengths: expected sizes summing to the dataset's length "
                         f"{n} (or fractions summing to 1), got {list(lengths)}")
    perm = np.random.default_rng(seed_from(generator)).permutation(n).tolist()
    starts = itertools.accumulate(counts, initial=0)
    return [Subset(dataset, perm[s:s + c]) for s, c in zip(starts, counts)]
