"""Samplers: the deterministic ones equal torch's; the random ones are seeded by torsh_fn."""

from __future__ import annotations

import collections

import numpy as np
import pytest
import torch.utils.data as tud

import torsh_fn
from torsh_fn.data import (
    BatchSampler,
    DistributedSampler,
    RandomSampler,
    SequentialSampler,
    SubsetRandomSampler,
    WeightedRandomSampler,
)


def gen(seed):
    return torsh_fn.Generator().manual_seed(seed)


@pytest.mark.parametrize(("n", "batch_size", "drop_last"), [(10, 3, False), (10, 3, True),
                                                            (9, 3, True), (2, 5, False)])
def test_sequential_and_batch_samplers_equal_torch(n, batch_size, drop_last):
    assert list(SequentialSampler(range(n))) == list(tud.SequentialSampler(range(n)))
    ours = BatchSampler(SequentialSampler(range(n)), batch_size, drop_last)
    theirs = tud.BatchSampler(tud.SequentialSampler(range(n)), batch_size, drop_last)
    assert list(ours) == list(theirs) and len(ours) == len(theirs)


@pytest.mark.parametrize(("n", "replicas", "drop_last"), [(10, 3, False), (10, 3, True),
                                                          (2, 4, False), (12, 4, False)])
def test_distributed_sampler_without_shuffle_equals_torch(n, replicas, drop_last):
    for rank in range(replicas):
        ours = DistributedSampler(range(n), replicas, rank, shuffle=False, drop_last=drop_last)
        theirs = tud.DistributedSampler(range(n), replicas, rank, shuffle=False,
                                        drop_last=drop_last)
        assert list(ours) == list(theirs) and len(ours) == len(theirs)


def test_distributed_sampler_shuffle_partitions_and_follows_the_epoch():
    def shards(epoch):
        out = []
        for rank in range(3):
            s = DistributedSampler(range(12), 3, rank, seed=7)
            s.set_epoch(epoch)
            out.append(list(s))
        return out

    first = shards(0)
    assert sorted(i for shard in first for i in shard) == list(range(12))
    assert shards(0) == first and shards(1) != first


def test_random_sampler_is_a_seeded_permutation():
    a = list(RandomSampler(range(20), generator=gen(0)))
    assert sorted(a) == list(range(20)) and a != list(range(20))
    assert a == list(RandomSampler(range(20), generator=gen(0)))
    sampler = RandomSampler(range(20), generator=gen(0))
    assert list(sampler) != list(sampler)  # each epoch draws a new order
    torsh_fn.manual_seed(3)
    b = list(RandomSampler(range(20)))
    torsh_fn.manual_seed(3)
    assert list(RandomSampler(range(20))) == b


def test_random_sampler_num_samples_and_replacement():
    long = list(RandomSampler(range(5), num_samples=12, generator=gen(1)))
    assert len(long) == 12 and sorted(long[:10]) == sorted(list(range(5)) * 2)
    drawn = list(RandomSampler(range(5), replacement=True, num_samples=50, generator=gen(1)))
    assert len(drawn) == 50 and set(drawn) <= set(range(5)) and len(set(drawn)) < 50
    with pytest.raises(ValueError, match="RandomSampler: num_samples: expected a positive int"):
        RandomSampler(range(5), num_samples=0)
    with pytest.raises(TypeError, match="RandomSampler: replacement: expected a bool"):
        RandomSampler(range(5), replacement=1)


def test_subset_random_sampler_permutes_the_given_indices():
    out = list(SubsetRandomSampler([10, 20, 30, 40], generator=gen(2)))
    assert sorted(out) == [10, 20, 30, 40]


def test_weighted_random_sampler_follows_the_weights():
    counts = collections.Counter(WeightedRandomSampler([1, 0, 3], 4000, generator=gen(0)))
    assert counts[1] == 0 and 2.6 < counts[2] / counts[0] < 3.4
    assert sorted(WeightedRandomSampler([1, 1, 1], 3, replacement=False, generator=gen(0))) == [
        0, 1, 2]
    with pytest.raises(ValueError, match="WeightedRandomSampler: weights: expected a 1-d"):
        WeightedRandomSampler([-1, 1], 2)
    with pytest.raises(ValueError, match=r"num_samples: expected at most 1 .* got 2"):
        WeightedRandomSampler([0, 1], 2, replacement=False)


def test_batch_and_distributed_sampler_errors_are_named():
    with pytest.raises(ValueError, match="BatchSampler: batch_size: expected a positive integer"):
        BatchSampler(range(3), 0, False)
    with pytest.raises(ValueError, match=r"DistributedSampler: rank: expected an integer in "
                                         r"\[0, 1\], got 2"):
        DistributedSampler(range(4), num_replicas=2, rank=2)


def test_distributed_sampler_defaults_to_jax_processes():
    s = DistributedSampler(np.zeros(5), shuffle=False)
    assert (s.num_replicas, s.rank, list(s)) == (1, 0, [0, 1, 2, 3, 4])
