"""DataLoader: batches equal torch's for the same sampler order, for any number of workers;
seeding, worker errors, crashes, timeouts, persistence and clean shutdown."""

from __future__ import annotations

import gc
import multiprocessing
import os
import time

import numpy as np
import pytest
import torch
import torch.utils.data

import torsh_fn
from tests.data import _datasets_for_workers as wds
from tests.oracle import to_numpy
from torsh_fn.data import (
    BatchSampler,
    DataLoader,
    RandomSampler,
    SequentialSampler,
    TensorDataset,
    get_worker_info,
)


def assert_same_batch(ours, theirs, where="batch"):
    """Same structure, dtypes and values as torch's batch (tensors <-> numpy arrays)."""
    if isinstance(theirs, dict):
        assert isinstance(ours, dict) and ours.keys() == theirs.keys(), where
        for k in theirs:
            assert_same_batch(ours[k], theirs[k], f"{where}[{k!r}]")
    elif isinstance(theirs, list | tuple):
        assert type(ours) is type(theirs) and len(ours) == len(theirs), where
        for i, (a, b) in enumerate(zip(ours, theirs)):
            assert_same_batch(a, b, f"{where}[{i}]")
    elif isinstance(theirs, torch.Tensor):
        assert isinstance(ours, np.ndarray), f"{where}: {type(ours)}"
        expected = to_numpy(theirs)
        assert ours.dtype == expected.dtype, f"{where}: {ours.dtype} != {expected.dtype}"
        np.testing.assert_array_equal(ours, expected, err_msg=where)
    else:
        assert ours == theirs, where


def assert_loaders_agree(ours, theirs):
    ours, theirs = list(ours), list(theirs)
    assert len(ours) == len(theirs)
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert_same_batch(a, b, f"batch {i}")


def assert_processes_gone(pids, within=5.0):
    """No worker process is left: not among our children, and no such pid alive."""
    deadline = time.monotonic() + within
    alive = set(pids)
    while alive and time.monotonic() < deadline:
        for pid in list(alive):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                alive.discard(pid)
        time.sleep(0.02)
    assert not alive, f"worker processes still alive: {sorted(alive)}"
    assert multiprocessing.active_children() == []


def test_workers_are_processes_that_exit_with_the_epoch():
    batches = list(DataLoader(wds.WhoLoads(), batch_size=2, num_workers=2))
    pids = {int(p) for b in batches for p in b[1]}
    assert os.getpid() not in pids and len(pids) == 2
    assert_processes_gone(pids)


@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize(("batch_size", "drop_last"), [(1, False), (5, False), (5, True)])
def test_batches_match_torch_for_the_same_sampler_order(num_workers, batch_size, drop_last):
    ds = wds.Samples(23)
    order = list(RandomSampler(ds, generator=torsh_fn.Generator().manual_seed(3)))
    ours = DataLoader(ds, batch_size=batch_size, drop_last=drop_last, num_workers=num_workers,
                      sampler=RandomSampler(ds, generator=torsh_fn.Generator().manual_seed(3)))
    theirs = torch.utils.data.DataLoader(ds, batch_size=batch_size, drop_last=drop_last,
                                         sampler=order)
    assert len(ours) == len(theirs)
    assert_loaders_agree(ours, theirs)


def test_unbatched_and_batch_sampler_loading_match_torch():
    ds = wds.Samples(7)
    assert_loaders_agree(DataLoader(ds, batch_size=None),
                         torch.utils.data.DataLoader(ds, batch_size=None))
    batches = [[6, 0], [3], [1, 2, 4, 5]]
    assert_loaders_agree(DataLoader(ds, batch_sampler=batches, num_workers=2),
                         torch.utils.data.DataLoader(ds, batch_sampler=batches))


def test_tensor_dataset_with_shuffle_has_every_sample_once():
    x = np.arange(30, dtype=np.float32).reshape(10, 3)
    batches = list(DataLoader(TensorDataset(x, np.arange(10)), batch_size=4, shuffle=True))
    assert [len(b[1]) for b in batches] == [4, 4, 2]
    labels = np.concatenate([b[1] for b in batches])
    assert sorted(labels) == list(range(10)) and labels.tolist() != list(range(10))
    np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), x[labels])


def _epochs(num_workers, epochs=2, **kwargs):
    torsh_fn.manual_seed(1234)
    loader = DataLoader(wds.Augmented(), batch_size=3, shuffle=True, num_workers=num_workers,
                        **kwargs)
    return [list(loader) for _ in range(epochs)]


def test_workers_0_2_4_give_identical_batches_with_shuffle_and_random_transforms():
    reference = _epochs(0)
    first, second = reference
    assert any(not np.array_equal(a[0], b[0]) for a, b in zip(first, second))
    for num_workers in (2, 4):
        for epoch, expected in zip(_epochs(num_workers), reference):
            for a, b in zip(epoch, expected):
                np.testing.assert_array_equal(a[0], b[0])
                np.testing.assert_array_equal(a[1], b[1])
    assert _epochs(2, persistent_workers=True, prefetch_factor=1)[1][0][0].tolist() == \
        second[0][0].tolist()


def test_manual_seed_and_generator_fix_the_shuffle():
    ds = TensorDataset(np.arange(50))

    def order(**kwargs):
        return np.concatenate([b[0] for b in DataLoader(ds, batch_size=8, shuffle=True,
                                                         **kwargs)]).tolist()

    torsh_fn.manual_seed(0)
    a = order()
    torsh_fn.manual_seed(0)
    assert order() == a
    torsh_fn.manual_seed(1)
    assert order() != a
    state = np.asarray(torsh_fn.get_rng_state()).copy()
    g = order(generator=torsh_fn.Generator().manual_seed(5))
    assert g == order(generator=torsh_fn.Generator().manual_seed(5))
    np.testing.assert_array_equal(np.asarray(torsh_fn.get_rng_state()), state)


def test_worker_info_and_seeds_follow_pytorch():
    assert get_worker_info() is None
    rows = np.concatenate(
        [np.stack(b, 1) for b in DataLoader(wds.WhoLoads(), batch_size=1, num_workers=2)])
    index, _pid, worker_id, seed, numpy_draw = rows.T
    assert index.tolist() == list(range(8))
    assert worker_id.tolist() == [0, 1] * 4  # tasks go round-robin
    base = seed[worker_id == 0][0]
    assert set(seed[worker_id == 1]) == {base + 1}
    assert numpy_draw[0] != numpy_draw[1]  # numpy's global generator is seeded per worker


def test_worker_error_is_reraised_with_its_traceback_quickly_and_leaves_no_process():
    loader = DataLoader(wds.FailsAt(13, ValueError("bad sample 13")), batch_size=2,
                        num_workers=2)
    seen = []
    start = time.monotonic()
    with pytest.raises(ValueError, match="bad sample 13") as info:
        for batch in loader:
            seen.append(batch.tolist())
    assert time.monotonic() - start < 10
    message = str(info.value)
    assert "Caught ValueError in DataLoader worker process" in message
    assert "Traceback" in message and "_datasets_for_workers.py" in message
    assert seen == [[2.0 * i, 2.0 * i + 1] for i in range(6)]  # every batch before it, in order
    assert multiprocessing.active_children() == []


def test_key_error_message_keeps_its_lines():
    with pytest.raises(KeyError) as info:
        list(DataLoader(wds.FailsAt(1, KeyError("missing")), num_workers=2))
    assert "\nOriginal Traceback" in str(info.value)


def test_a_worker_that_dies_is_reported_and_the_others_are_stopped():
    start = time.monotonic()
    with pytest.raises(RuntimeError, match=r"exited unexpectedly \(pid \d+, exit code 3\)"):
        list(DataLoader(wds.DiesAt(5), num_workers=2))
    assert time.monotonic() - start < 10
    assert_processes_gone([])


def test_timeout_raises_and_stops_the_workers():
    start = time.monotonic()
    with pytest.raises(RuntimeError, match=r"DataLoader timed out after 0\.3 seconds"):
        list(DataLoader(wds.Sleepy(60.0), num_workers=1, timeout=0.3))
    assert time.monotonic() - start < 10  # not the 60 s the sample would take
    assert_processes_gone([])


def test_persistent_workers_live_across_epochs_and_are_stopped_with_the_loader():
    loader = DataLoader(wds.WhoLoads(), batch_size=4, num_workers=2, persistent_workers=True)
    pids = [{int(p) for b in loader for p in b[1]} for _ in range(3)]
    assert pids[0] == pids[1] == pids[2] and len(pids[0]) == 2
    iterator = iter(loader)
    next(iterator)  # abandon an epoch midway: the next one must not see its batches
    assert [b[0].tolist() for b in loader] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    del loader, iterator
    gc.collect()
    assert_processes_gone(pids[0])


def test_breaking_out_of_an_epoch_stops_the_workers():
    iterator = iter(DataLoader(wds.WhoLoads(), batch_size=1, num_workers=2))
    pids = {int(next(iterator)[1][0]), int(next(iterator)[1][0])}
    del iterator
    assert_processes_gone(pids)


def test_worker_init_fn_runs_in_every_worker_and_its_errors_are_reraised():
    marks = list(DataLoader(wds.WorkerMarker(), batch_size=None, num_workers=2,
                            worker_init_fn=wds.set_worker_marker))
    assert marks == ["init 0", "init 1", "init 0", "init 1"]
    with pytest.raises(RuntimeError, match=r"(?s)while starting.*init failed in worker 0"):
        list(DataLoader(wds.WorkerMarker(), num_workers=2, worker_init_fn=wds.failing_init))


class TorchShardedRange(torch.utils.data.IterableDataset):
    """The same dataset for torch's loader, sharded with torch's worker info."""

    def __iter__(self):
        return wds.shard(0, 17, torch.utils.data.get_worker_info())


@pytest.mark.filterwarnings("ignore:os.fork", "ignore:This DataLoader will create")
@pytest.mark.parametrize("num_workers", [0, 2, 3])
def test_iterable_dataset_shards_across_workers_as_torch(num_workers):
    ds = wds.ShardedRange(0, 17)
    theirs = torch.utils.data.DataLoader(TorchShardedRange(), batch_size=3, num_workers=num_workers,
                                         multiprocessing_context="fork" if num_workers else None)
    expected = [b.numpy().tolist() for b in theirs]
    ours = [b.tolist() for b in DataLoader(ds, batch_size=3, num_workers=num_workers)]
    assert ours == expected


def test_iterable_dataset_with_drop_last_and_len():
    ds = wds.ShardedRange(0, 10)
    assert [b.tolist() for b in DataLoader(ds, batch_size=4, drop_last=True)] == [
        [0, 1, 2, 3], [4, 5, 6, 7]]
    with pytest.raises(TypeError):
        len(DataLoader(ds, batch_size=4))


def test_len_counts_batches():
    ds = TensorDataset(np.zeros(10))
    assert len(DataLoader(ds, batch_size=4)) == 3
    assert len(DataLoader(ds, batch_size=4, drop_last=True)) == 2
    assert len(DataLoader(ds, batch_size=None)) == 10


def test_spawn_start_method_works():
    loader = DataLoader(TensorDataset(np.arange(6)), batch_size=2, num_workers=2,
                        multiprocessing_context="spawn")
    assert [b[0].tolist() for b in loader] == [[0, 1], [2, 3], [4, 5]]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"num_workers": -1}, "DataLoader: num_workers: expected an integer >= 0, got -1"),
    ({"prefetch_factor": 2}, "DataLoader: prefetch_factor: expected None with num_workers=0"),
    ({"num_workers": 1, "prefetch_factor": 0},
     "DataLoader: prefetch_factor: expected an integer >= 1, got 0"),
    ({"persistent_workers": True},
     "DataLoader: persistent_workers: expected False with num_workers=0"),
    ({"timeout": -1}, "DataLoader: timeout: expected a number >= 0, got -1"),
    ({"shuffle": True, "sampler": [0, 1]},
     "DataLoader: shuffle: expected unset when a sampler is given"),
    ({"batch_sampler": [[0]], "batch_size": 2}, "DataLoader: batch_sampler: expected batch_size=1"),
    ({"batch_size": None, "drop_last": True}, "DataLoader: drop_last: expected False"),
    ({"num_workers": 1, "multiprocessing_context": "nope"},
     "DataLoader: multiprocessing_context: expected one of"),
])
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DataLoader(TensorDataset(np.zeros(4)), **kwargs)


def test_bad_generator_and_iterable_options_are_named():
    with pytest.raises(TypeError, match=r"DataLoader: generator: expected a torsh_fn\.random\.Gen"):
        DataLoader(TensorDataset(np.zeros(4)), generator=np.random.default_rng())
    with pytest.raises(ValueError, match="DataLoader: shuffle: expected unset with an Iterable"):
        DataLoader(wds.ShardedRange(0, 4), shuffle=True)


def test_batch_sampler_and_sequential_sampler_objects_are_accepted():
    ds = TensorDataset(np.arange(5))
    sampler = BatchSampler(SequentialSampler(ds), 2, drop_last=False)
    assert [b[0].tolist() for b in DataLoader(ds, batch_sampler=sampler)] == [[0, 1], [2, 3],
                                                                              [4]]


def test_tensor_dataset_fast_path_equals_collating_samples(rng):
    ds = TensorDataset(rng.standard_normal((9, 2, 3)).astype(np.float32), np.arange(9),
                       rng.integers(0, 2, 9).astype(bool))
    order = [4, 0, 8, 1, 7]
    (fast,) = DataLoader(ds, batch_size=5, sampler=order, drop_last=True)
    (slow,) = DataLoader(ds, batch_size=5, sampler=order, drop_last=True,
                         collate_fn=lambda samples: torsh_fn.data.default_collate(samples))
    assert_same_batch(fast, [torch.from_numpy(a) for a in slow])


def test_unpicklable_collate_fn_is_explained():
    with pytest.raises(TypeError, match=r"could not be pickled: .*Define functions and classes at "
                                        r"module level \(not lambdas"):
        iter(DataLoader(TensorDataset(np.zeros(4)), num_workers=2, collate_fn=lambda b: b))
    assert multiprocessing.active_children() == []


def test_unbatched_iterable_dataset_with_workers():
    loader = DataLoader(wds.ShardedRange(0, 5), batch_size=None, num_workers=2)
    assert [int(x) for x in loader] == [0, 3, 1, 4, 2]
