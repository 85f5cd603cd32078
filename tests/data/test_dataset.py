"""Datasets and their combinations against torch.utils.data's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.utils.data as tud

import torsh_fn
from tests.data._datasets_for_workers import ShardedRange
from torsh_fn.data import (
    ChainDataset,
    ConcatDataset,
    Dataset,
    Subset,
    TensorDataset,
    random_split,
)


def test_tensor_dataset_indexes_every_array(rng):
    x, y = rng.standard_normal((6, 2)), np.arange(6)
    ds = TensorDataset(x, y)
    assert len(ds) == 6
    np.testing.assert_array_equal(ds[4][0], x[4])
    with pytest.raises(ValueError, match=r"TensorDataset: tensors: expected arrays with one "
                                         r"common first dimension, got shapes \[\(6, 2\), \(5,\)"):
        TensorDataset(x, y[:5])


def test_concat_subset_and_add_index_like_torch():
    a, b = TensorDataset(np.arange(3)), TensorDataset(np.arange(10, 15))
    ta, tb = tud.TensorDataset(torch.arange(3)), tud.TensorDataset(torch.arange(10, 15))
    ours, theirs = a + b, ta + tb
    assert isinstance(ours, ConcatDataset) and len(ours) == len(theirs) == 8
    for i in [*range(8), -1, -8]:
        assert int(ours[i][0]) == int(theirs[i][0])
    with pytest.raises(ValueError, match="ConcatDataset: index: expected at least -8, got -9"):
        ours[-9]
    sub = Subset(ours, [7, 0, 3])
    assert [int(sub[i][0]) for i in range(3)] == [14, 0, 10] and len(sub) == 3


def test_chain_dataset_and_iterable_add():
    chained = ShardedRange(0, 2) + ShardedRange(5, 7)
    assert isinstance(chained, ChainDataset) and list(chained) == [0, 1, 5, 6]
    with pytest.raises(TypeError, match="ConcatDataset: datasets: expected map-style datasets"):
        ConcatDataset([ShardedRange(0, 1)])


@pytest.mark.filterwarnings("ignore:Length of split")
@pytest.mark.parametrize(("n", "lengths"), [(10, [3, 7]), (11, [0.3, 0.7]),
                                            (11, [0.33, 0.33, 0.34]), (11, [0.5, 0.5, 0.0])])
def test_random_split_sizes_equal_torch_and_partition(n, lengths):
    ours = random_split(range(n), lengths, generator=torsh_fn.Generator().manual_seed(0))
    theirs = tud.random_split(range(n), lengths)
    assert [len(s) for s in ours] == [len(s) for s in theirs]
    assert sorted(i for s in ours for i in s.indices) == list(range(n))


def test_random_split_is_seeded_and_checks_lengths():
    def split():
        return [s.indices for s in random_split(range(20), [5, 15])]

    torsh_fn.manual_seed(0)
    first = split()
    torsh_fn.manual_seed(0)
    assert split() == first
    with pytest.raises(ValueError, match=r"random_split: lengths: expected sizes summing to the "
                                         r"dataset's length 20"):
        random_split(range(20), [5, 5])


def test_dataset_base_class_names_what_is_missing():
    with pytest.raises(NotImplementedError, match="Dataset must define __getitem__"):
        Dataset()[0]
