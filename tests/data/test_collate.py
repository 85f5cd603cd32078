"""default_collate / default_convert against torch's, structure and dtype included."""

from __future__ import annotations

import collections

import numpy as np
import pytest
import torch.utils.data

from tests.data.test_dataloader import assert_same_batch
from torsh_fn.data import default_collate, default_convert

Point = collections.namedtuple("Point", ["x", "y"])


def _samples(rng):
    return [
        {"image": rng.standard_normal((3, 4)).astype(np.float32), "label": int(i), "w": 0.5 * i,
         "flag": bool(i % 2), "name": f"s{i}", "nested": [np.int16(i), (np.arange(2) + i,)],
         "point": Point(np.float64(i), np.array([i, i], np.uint8))}
        for i in range(4)
    ]


def test_collate_matches_torch_on_nested_samples(rng):
    samples = _samples(rng)
    assert_same_batch(default_collate(samples), torch.utils.data.default_collate(samples))


def test_convert_matches_torch(rng):
    sample = _samples(rng)[1]
    assert_same_batch(default_convert(sample), torch.utils.data.default_convert(sample))


def test_collate_stacks_array_likes_such_as_jax_arrays():
    import jax.numpy as jnp

    batch = default_collate([jnp.ones(2), jnp.zeros(2)])
    assert isinstance(batch, np.ndarray) and batch.tolist() == [[1, 1], [0, 0]]


def test_collate_rejects_ragged_lists_and_unknown_types():
    with pytest.raises(RuntimeError, match="each element in list of batch should be of equal"):
        default_collate([[1, 2], [3]])
    with pytest.raises(TypeError, match=r"default_collate: batch must contain .* found <class"):
        default_collate([object(), object()])
    with pytest.raises(TypeError, match="found numpy array of dtype <U1"):
        default_collate([np.array(["a"]), np.array(["b"])])
