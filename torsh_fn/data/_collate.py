"""``default_collate`` and ``default_convert``: samples -> batches, with numpy arrays as tensors.

They follow ``torch.utils.data.default_collate`` rule for rule; where PyTorch makes a tensor, these
make a numpy array of the same dtype (Python ints -> int64, floats -> float64, bools -> bool).
"""

from __future__ import annotations

import collections.abc
from typing import Any

import numpy as np

_COLLATE_ERROR = (
    "default_collate: batch must contain numpy arrays, numbers, strings, dicts or lists; found {}"
)


def _is_namedtuple(x: Any) -> bool:
    return isinstance(x, tuple) and hasattr(x, "_fields")


def _check_numeric(arr: np.ndarray, where: str) -> None:
    if arr.dtype.kind in "SUO":
        raise TypeError(_COLLATE_ERROR.format(f"{where} of dtype {arr.dtype}"))


def default_collate(batch: list[Any]) -> Any:
    """Stack a list of samples into a batch, recursing into tuples, lists, dicts and namedtuples.

    Arrays (numpy, or anything with ``__array__`` such as ``jax.Array``) are stacked along a new
    first axis; numbers become 1-d arrays; strings stay a list; a tuple or list of fields becomes a
    list of batched fields (as in PyTorch).

    Example:
        >>> b = default_collate([(np.zeros(3), 1), (np.ones(3), 0)])
        >>> b[0].shape, b[1].dtype
        ((2, 3), dtype('int64'))
    """
    elem = batch[0]
    if isinstance(elem, np.ndarray):
        _check_numeric(elem, "numpy array")
        return np.stack(batch)
    if isinstance(elem, np.generic):
        _check_numeric(np.asarray(elem), "numpy scalar")
        return np.array(batch)
    if isinstance(elem, bool):
        return np.array(batch, dtype=np.bool_)
    if isinstance(elem, int):
        return np.array(batch, dtype=np.int64)
    if isinstance(elem, float):
        return np.array(batch, dtype=np.float64)
    if isinstance(elem, str | bytes):
        return batch
    if isinstance(elem, collections.abc.Mapping):
        return {key: default_collate([d[key] for d in batch]) for key in elem}
    if _is_namedtuple(elem):
        return type(elem)(*(default_collate(list(field)) for field in zip(*batch)))
    if isinstance(elem, collections.abc.Sequence):
        if any(len(sample) != len(elem) for sample in batch):
            raise RuntimeError("each element in list of batch should be of equal size")
        return [default_collate(list(field)) for field in zip(*batch)]
    if hasattr(elem, "__array__"):
        return np.stack([np.asarray(x) for x in batch])
    raise TypeError(_COLLATE_ERROR.format(type(elem)))


def default_convert(data: Any) -> Any:
    """Turn array-likes (e.g. ``jax.Array``) inside ``data`` into numpy arrays, keeping the
    structure; what the DataLoader applies to each sample when ``batch_size=None``.

    Example:
        >>> default_convert({"x": [1, 2], "y": np.ones(2)})["y"].shape
        (2,)
    """
    if isinstance(data, np.generic) and data.dtype.kind not in "SU":
        return np.asarray(data)  # a 0-d array, as PyTorch makes a 0-d tensor
    if isinstance(data, np.ndarray | np.generic | str | bytes | int | float):
        return data
    if isinstance(data, collections.abc.Mapping):
        return {key: default_convert(value) for key, value in data.items()}
    if _is_namedtuple(data):
        return type(data)(*(default_convert(d) for d in data))
    if isinstance(data, tuple | list):  # tuples become lists, as in PyTorch
        return [default_convert(d) for d in data]
    if hasattr(data, "__array__"):
        return np.asarray(data)
    return data
