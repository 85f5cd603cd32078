"""prefetch_to_device: same batches as jax arrays, in order, ahead, on the layout asked for."""

from __future__ import annotations

import threading
import time

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from tests.data._datasets_for_workers import FailsAt, Sleepy, WhoLoads
from tests.data.test_dataloader import assert_processes_gone
from torsh_fn.data import DataLoader, TensorDataset, prefetch_to_device


def prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "torsh_fn-prefetch"]


@pytest.mark.parametrize("thread", [False, True])
def test_prefetched_batches_are_jax_arrays_equal_to_the_loader_batches(thread):
    loader = DataLoader(TensorDataset(np.arange(20.0).reshape(10, 2), np.arange(10)),
                        batch_size=3)
    on_device = list(prefetch_to_device(loader, size=2, thread=thread))
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


@pytest.mark.parametrize("thread", [False, True])
def test_loading_errors_surface_in_the_consumer(thread):
    loader = DataLoader(FailsAt(5, ValueError("bad sample 5")), batch_size=2)
    got = []
    with pytest.raises(ValueError, match="bad sample 5") as raised:
        for batch in prefetch_to_device(loader, size=1, thread=thread):
            got.append(np.asarray(batch).tolist())
    assert got == [[0, 1], [2, 3]]  # the batches before the failing one, in order
    assert "__getitem__" in "".join(str(t.name) for t in raised.traceback)  # where it failed
    assert not prefetch_threads()


def test_the_thread_stays_size_batches_ahead_and_the_first_is_loaded_by_the_caller():
    pulled = []

    def source():
        for i in range(10):
            pulled.append((i, threading.current_thread().name))
            yield np.full(2, i)

    it = prefetch_to_device(source(), size=3, thread=True)
    assert np.asarray(next(it)).tolist() == [0, 0]
    deadline = time.monotonic() + 10
    while len(pulled) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)  # room to overrun, if it were unbounded
    # three batches wait on the device, the fourth waits for room: 0..4 pulled
    assert [i for i, _ in pulled] == [0, 1, 2, 3, 4]
    assert pulled[0][1] == threading.current_thread().name
    assert {name for _, name in pulled[1:]} == {"torsh_fn-prefetch"}
    assert [int(np.asarray(b)[0]) for b in it] == list(range(1, 10))
    assert not prefetch_threads()


def test_by_default_batches_are_loaded_in_the_calling_thread():
    names = []

    def source():
        for i in range(4):
            names.append(threading.current_thread().name)
            yield np.full(2, i)

    assert len(list(prefetch_to_device(source()))) == 4
    assert set(names) == {threading.current_thread().name}


def test_a_new_epoch_stops_the_thread_of_the_last_one_first():
    # persistent workers: iter(loader) resets the one iterator the old thread may still advance
    loader = DataLoader(Sleepy(0.01, n=24), batch_size=2, num_workers=2, persistent_workers=True)
    it = prefetch_to_device(loader, size=1, thread=True)
    assert np.asarray(next(it)).tolist() == [0, 1]
    it = prefetch_to_device(loader, size=1, thread=True)  # the old one is still alive here
    assert [np.asarray(b).tolist() for b in it] == [[2 * i, 2 * i + 1] for i in range(12)]


def test_the_thread_copies_as_the_caller_would():
    with jax.enable_x64(True):  # JAX's config is per thread: the caller's applies
        (x,) = next(prefetch_to_device([(np.ones(3),)], thread=True))
    assert x.dtype == np.float64


def test_closing_waits_only_briefly_for_the_batch_being_loaded():
    release = threading.Event()

    def slow():
        yield np.zeros(2)
        release.wait(60)  # the second batch takes until the test releases it
        yield np.zeros(2)

    it = prefetch_to_device(slow(), thread=True)
    next(it)
    start = time.monotonic()
    it.close()
    assert time.monotonic() - start < 5
    assert prefetch_threads()  # still loading; not waited for
    release.set()
    deadline = time.monotonic() + 10
    while prefetch_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not prefetch_threads()  # it ended after its batch, without offering it


def test_an_exception_thrown_in_is_raised_at_once():
    it = prefetch_to_device(iter([np.zeros(1)] * 5), size=1)
    next(it)
    with pytest.raises(KeyError):
        it.throw(KeyError("stop"))


def test_an_empty_iterable_gives_nothing_in_either_mode():
    assert list(prefetch_to_device([], thread=True)) == []
    assert list(prefetch_to_device([], thread=False)) == []


def test_batches_are_loaded_ahead_and_dropping_the_iterator_stops_the_workers():
    pulled = []

    def source():
        for i in range(10):
            pulled.append(i)
            yield np.full(2, i)

    it = prefetch_to_device(source(), size=3)
    assert np.asarray(next(it)).tolist() == [0, 0] and pulled == [0, 1, 2, 3]
    for thread in (False, True):
        loader = DataLoader(WhoLoads(), batch_size=2, num_workers=2)
        it = prefetch_to_device(loader, thread=thread)
        pids = {int(p) for p in np.asarray(next(it)[1])}
        del it
        assert not prefetch_threads()
        assert_processes_gone(pids)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="prefetch_to_device: size: expected a positive integer"):
        prefetch_to_device([], size=0)
    with pytest.raises(ValueError, match="expected either device or sharding, got both"):
        prefetch_to_device([], device=jax.devices()[0], sharding=jax.devices()[0])
    with pytest.raises(TypeError, match=r"sharding: expected a jax\.sharding\.Sharding"):
        prefetch_to_device([], sharding="batch")
    with pytest.raises(TypeError, match="thread: expected a bool, got 'yes'"):
        prefetch_to_device([], thread="yes")
