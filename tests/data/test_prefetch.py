"""prefetch_to_device: same batches as jax arrays, in order, ahead, on the layout asked for."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from tests.data._datasets_for_workers import FailsAt, WhoLoads
from tests.data.test_dataloader import assert_processes_gone
from torsh_fn.data import DataLoader, TensorDataset, prefetch_to_device


def test_prefetched_batches_are_jax_arrays_equal_to_the_loader_batches():
    loader = DataLoader(TensorDataset(np.arange(20.0).reshape(10, 2), np.arange(10)),
                        batch_size=3)
    on_device = list(prefetch_to_device(loader, size=2))
    expected = list(loader)
    assert len(on_device) == len(expected)
    for got, want in zip(on_device, expected):
        assert all(isinstance(x, jax.Array) for x in got)
        np.testing.assert_array_equal(np.asarray(got[0]), want[0])
        np.testing.assert_array_equal(np.asarray(got[1]), want[1])


def test_sharding_and_device_are_applied():
    mesh = jax.make_mesh((1,), ("batch",))
    sharding = NamedSharding(mesh, PartitionSpec("batch"))
    (x,) = next(iter(prefetch_to_device([(np.ones((4, 2)),)], sharding=sharding)))
    assert x.sharding == sharding
    device = jax.devices()[0]
    assert next(iter(prefetch_to_device([np.ones(3)], device=device))).devices() == {device}


def test_loading_errors_surface_in_the_consumer():
    loader = DataLoader(FailsAt(5, ValueError("bad sample 5")), batch_size=2)
    it = prefetch_to_device(loader, size=1)
    assert np.asarray(next(it)).tolist() == [0, 1]  # batch 1 was loaded ahead, batch 2 fails
    with pytest.raises(ValueError, match="bad sample 5"):
        next(it)


def test_batches_are_loaded_ahead_and_dropping_the_iterator_stops_the_workers():
    pulled = []

    def source():
        for i in range(10):
            pulled.append(i)
            yield np.full(2, i)

    it = prefetch_to_device(source(), size=3)
    assert np.asarray(next(it)).tolist() == [0, 0] and pulled == [0, 1, 2, 3]
    loader = DataLoader(WhoLoads(), batch_size=2, num_workers=2)
    it = prefetch_to_device(loader)
    pids = {int(p) for p in np.asarray(next(it)[1])}
    del it
    assert_processes_gone(pids)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="prefetch_to_device: size: expected a positive integer"):
        prefetch_to_device([], size=0)
    with pytest.raises(ValueError, match="expected either device or sharding, got both"):
        prefetch_to_device([], device=jax.devices()[0], sharding=jax.devices()[0])
    with pytest.raises(TypeError, match=r"sharding: expected a jax\.sharding\.Sharding"):
        prefetch_to_device([], sharding="batch")
