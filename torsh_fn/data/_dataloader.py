"""The DataLoader: batches from a dataset, in the main process or in parallel worker processes.

Workers are processes started with 'forkserver' (where the platform has it) or 'spawn', never a
bare fork of the main process: JAX runs threads once its backend starts, and forking a process
with threads is unsafe. The forkserver preloads this package once, so starting a worker is a
fork of a clean, JAX-idle process (milliseconds), not a fresh interpreter.

Batches come back in sampler order whatever the workers' speed: the main process keeps
``prefetch_factor * num_workers`` tasks in flight, round-robin over the workers, and buffers
replies that arrive early.
"""

from __future__ import annotations

import atexit
import itertools
import math
import multiprocessing
import pickle
import queue
import signal
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .. import random as _random
from ._collate import default_collate, default_convert
from ._dataset import Dataset, IterableDataset
from ._rng import batch_seed, seed_from
from ._sampler import BatchSampler, RandomSampler, Sampler, SequentialSampler
from ._worker import (
    ExceptionWrapper,
    Fetcher,
    IterableEnd,
    LoaderConfig,
    Resume,
    ResumeAck,
    worker_loop,
)

__all__ = ["DataLoader"]

# How often the main process, while waiting for a batch, checks that its workers still live.
_POLL_INTERVAL = 0.2
# How long a worker may take to exit when told to, before it is terminated.
_JOIN_TIMEOUT = 5.0


_UNPICKLABLE = (
    "DataLoader: the dataset, collate_fn and worker_init_fn go to the worker processes by pickle "
    "(start method {method!r}: JAX is not fork-safe), and one of them could not be pickled: "
    "{error}. Define functions and classes at module level (not lambdas or local functions), "
    "or use num_workers=0."
)
_exiting = False
_DONE = object()


@atexit.register
def _mark_exit() -> None:
    # At exit, multiprocessing terminates the (daemonic) workers itself, after this runs; an
    # iterator collected then must not touch queues whose modules are already torn down.
    global _exiting
    _exiting = True


def _forkserver() -> multiprocessing.context.BaseContext:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["__main__", __name__.rsplit(".", 1)[0] + "._worker"])
    return ctx


def _context(value: Any) -> multiprocessing.context.BaseContext:
    if value is None:
        value = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    if value == "forkserver":
        return _forkserver()
    if isinstance(value, str):
        if value not in multiprocessing.get_all_start_methods():
            raise ValueError(f"DataLoader: multiprocessing_context: expected one of "
                             f"{multiprocessing.get_all_start_methods()}, got {value!r}")
        return multiprocessing.get_context(value)
    if isinstance(value, multiprocessing.context.BaseContext):
        return value
    raise TypeError(f"DataLoader: multiprocessing_context: expected a start method name or a "
                    f"multiprocessing context, got {type(value).__name__}")


def _check_int(name: str, value: Any, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"DataLoader: {name}: expected an integer >= {minimum}, got {value!r}")
    return value


class DataLoader(Iterable[Any]):
    """Batches of a dataset, as ``torch.utils.data.DataLoader``; batches are numpy arrays.

    Args:
        dataset: a map-style :class:`Dataset` (``__getitem__``/``__len__``) or an
            :class:`IterableDataset`.
        batch_size: samples per batch; None turns batching off (samples come one by one).
        shuffle: reshuffle every epoch (a :class:`RandomSampler` over ``generator``).
        sampler, batch_sampler: where the indices (or lists of indices) come from.
        num_workers: worker processes; 0 loads in the main process.
        collate_fn: turns a list of samples into a batch; :func:`default_collate` by default.
        pin_memory, pin_memory_device: accepted for PyTorch code; use :func:`prefetch_to_device`
            to move batches to an accelerator.
        drop_last: drop the last incomplete batch.
        timeout: seconds to wait for a batch from the workers (0: forever); then RuntimeError.
        worker_init_fn: called as ``worker_init_fn(worker_id)`` in each worker after seeding.
        multiprocessing_context: a start method name or context; 'forkserver' where available,
            else 'spawn'. 'fork' is allowed but unsafe once JAX has started its threads.
        generator: a :class:`torsh_fn.random.Generator` for the shuffle and the workers' base
            seed; the global generator by default, so ``torsh_fn.manual_seed`` reproduces runs.
        prefetch_factor: batches in flight per worker (2 with workers).
        persistent_workers: keep the workers between epochs.

    Random transforms in :mod:`torsh_fn.data.transforms` draw from a stream fixed by the epoch's
    seed and the batch's position, so batches are the same for any ``num_workers``.

    Example:
        >>> loader = DataLoader(TensorDataset(np.arange(10.0)), batch_size=4, shuffle=True)
        >>> [b[0].shape for b in loader]
        [(4,), (4,), (2,)]
    """

    def __init__(
        self,
        dataset: Dataset[Any],
        batch_size: int | None = 1,
        shuffle: bool | None = None,
        sampler: Sampler | Iterable[Any] | None = None,
        batch_sampler: Sampler | Iterable[list[Any]] | None = None,
        num_workers: int = 0,
        collate_fn: Callable[[Any], Any] | None = None,
        pin_memory: bool = False,
        drop_last: bool = False,
        timeout: float = 0,
        worker_init_fn: Callable[[int], None] | None = None,
        multiprocessing_context: str | multiprocessing.context.BaseContext | None = None,
        generator: _random.Generator | None = None,
        *,
        prefetch_factor: int | None = None,
        persistent_workers: bool = False,
        pin_memory_device: str = "",
    ) -> None:
        self.num_workers = _check_int("num_workers", num_workers, 0)
        if not isinstance(timeout, int | float) or timeout < 0:
            raise ValueError(f"DataLoader: timeout: expected a number >= 0, got {timeout!r}")
        if num_workers == 0 and prefetch_factor is not None:
            raise ValueError("DataLoader: prefetch_factor: expected None with num_workers=0 "
                             f"(it counts batches per worker), got {prefetch_factor!r}")
        if num_workers == 0 and persistent_workers:
            raise ValueError("DataLoader: persistent_workers: expected False with num_workers=0, "
                             "got True")
        if generator is not None and not isinstance(generator, _random.Generator):
            raise TypeError(f"DataLoader: generator: expected a torsh_fn.random.Generator, "
                            f"got {type(generator).__name__}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.timeout = timeout
        self.worker_init_fn = worker_init_fn
        self.generator = generator
        self.pin_memory = pin_memory
        self.pin_memory_device = pin_memory_device
        self.prefetch_factor = None if num_workers == 0 else _check_int(
            "prefetch_factor", 2 if prefetch_factor is None else prefetch_factor, 1)
        self.persistent_workers = persistent_workers
        self.multiprocessing_context = (
            _context(multiprocessing_context) if num_workers > 0 else multiprocessing_context)
        self._iterable = isinstance(dataset, IterableDataset)
        self.sampler, self.batch_sampler = self._samplers(shuffle, sampler, batch_sampler)
        if collate_fn is None:
            collate_fn = default_collate if self._auto_collation else default_convert
        self.collate_fn = collate_fn
        self._iterator: _MultiProcessIter | None = None

    def _samplers(self, shuffle: bool | None, sampler: Any, batch_sampler: Any) -> tuple[Any, Any]:
        if self._iterable:
            for name, value in (("shuffle", shuffle), ("sampler", sampler),
                                ("batch_sampler", batch_sampler)):
                if value not in (None, False):
                    raise ValueError(f"DataLoader: {name}: expected unset with an "
                                     f"IterableDataset (it orders itself), got {value!r}")
            return None, None
        if sampler is not None and shuffle:
            raise ValueError("DataLoader: shuffle: expected unset when a sampler is given, "
                             "got True")
        if batch_sampler is not None:
            if self.batch_size != 1 or shuffle or sampler is not None or self.drop_last:
                raise ValueError("DataLoader: batch_sampler: expected batch_size=1 and no "
                                 "shuffle, sampler or drop_last beside it (it decides them)")
            self.batch_size = None
            self.drop_last = False
        elif self.batch_size is None and self.drop_last:
            raise ValueError("DataLoader: drop_last: expected False with batch_size=None, "
                             "got True")
        if sampler is None:
            sampler = (RandomSampler(self.dataset, generator=self.generator) if shuffle
                       else SequentialSampler(self.dataset))
        if self.batch_size is not None and batch_sampler is None:
            batch_sampler = BatchSampler(sampler, self.batch_size, self.drop_last)
        return sampler, batch_sampler

    @property
    def _auto_collation(self) -> bool:
        return self.batch_sampler is not None or (self._iterable and self.batch_size is not None)

    @property
    def _index_sampler(self) -> Any:
        return self.batch_sampler if self.batch_sampler is not None else self.sampler

    def _config(self) -> LoaderConfig:
        return LoaderConfig(self._iterable, self._auto_collation, self.batch_size, self.drop_last,
                            self.collate_fn)

    def __iter__(self) -> Iterator[Any]:
        if self.num_workers == 0:
            return _SingleProcessIter(self)
        if not self.persistent_workers:
            return _MultiProcessIter(self)
        if self._iterator is None or self._iterator.closed:
            self._iterator = _MultiProcessIter(self)
        else:
            self._iterator.reset(self)
        return self._iterator

    def __len__(self) -> int:
        if not self._iterable:
            return len(self._index_sampler)
        n = len(self.dataset)  # type: ignore[arg-type]
        if self.batch_size is None:
            return n
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)


class _SingleProcessIter(Iterator[Any]):
    """Loads each batch in the calling process when ``next`` is called."""

    def __init__(self, loader: DataLoader) -> None:
        self._fetcher = Fetcher(loader.dataset, loader._config())
        self._sampler_iter = None if loader._iterable else iter(loader._index_sampler)
        self._epoch_seed = seed_from(loader.generator)
        self._batch_index = 0

    def __next__(self) -> Any:
        indices = None if self._sampler_iter is None else next(self._sampler_iter)
        with batch_seed(self._epoch_seed, self._batch_index):
            batch = self._fetcher.fetch(indices)
        self._batch_index += 1
        return batch


def _exit_description(code: int | None) -> str:
    if code is not None and code < 0:
        return f"exit code {code} (killed by {signal.Signals(-code).name})"
    return f"exit code {code}"


class _MultiProcessIter(Iterator[Any]):
    """Feeds tasks to worker processes and hands their batches back in task order."""

    def __init__(self, loader: DataLoader) -> None:
        self.closed = True  # until the queues exist there is nothing to shut down
        n = loader.num_workers
        self._num_workers = n
        self._keep = loader.persistent_workers
        self._timeout = loader.timeout
        self._in_flight = loader.prefetch_factor * n  # type: ignore[operator]
        self._iterable = loader._iterable
        self._index_sampler = loader._index_sampler
        self._sampler_iter = None if self._iterable else iter(self._index_sampler)
        self._epoch_seed = seed_from(loader.generator)
        ctx = loader.multiprocessing_context
        self._done_event = ctx.Event()
        self._result_queue = ctx.Queue()
        self._index_queues = [ctx.Queue() for _ in range(n)]
        self._workers: list[Any] = []
        self.closed = False
        try:
            for worker_id in range(n):
                worker = ctx.Process(
                    target=worker_loop, daemon=True,
                    args=(loader.dataset, loader._config(), self._index_queues[worker_id],
                          self._result_queue, self._done_event,
                          self._epoch_seed,  # the workers' base seed, kept while they live
                          self._epoch_seed, loader.worker_init_fn, worker_id, n))
                worker.start()
                self._workers.append(worker)
        except (pickle.PicklingError, AttributeError, TypeError) as exc:
            self._shutdown(wait=False)
            raise TypeError(_UNPICKLABLE.format(method=ctx.get_start_method(), error=exc)) from exc
        except BaseException:
            self._shutdown(wait=False)
            raise
        self._start_epoch()

    def _start_epoch(self) -> None:
        self._send_idx = 0
        self._rcvd_idx = 0
        self._replies: dict[int, Any] = {}
        self._active = [True] * self._num_workers
        self._worker_cycle = itertools.cycle(range(self._num_workers))
        for _ in range(self._in_flight):
            self._put_task()

    def reset(self, loader: DataLoader) -> None:
        """Start another epoch on the same (persistent) workers."""
        self._sampler_iter = None if self._iterable else iter(self._index_sampler)
        self._epoch_seed = seed_from(loader.generator)
        for q in self._index_queues:
            q.put(Resume(self._epoch_seed))
        acks = 0
        while acks < self._num_workers:  # replies of an abandoned epoch are dropped on the way
            acks += isinstance(self._get_reply(), ResumeAck)
        self._start_epoch()

    def _put_task(self) -> None:
        if self._iterable:
            indices = None
        else:
            indices = next(self._sampler_iter, _DONE)  # type: ignore[arg-type]
            if indices is _DONE:
                return
        for _ in range(self._num_workers):
            worker_id = next(self._worker_cycle)
            if self._active[worker_id]:
                break
        else:
            return
        self._index_queues[worker_id].put((self._send_idx, indices))
        self._send_idx += 1

    def __next__(self) -> Any:
        while True:
            if self._rcvd_idx == self._send_idx or self.closed:
                if not self._keep:
                    self._shutdown()
                raise StopIteration
            while self._rcvd_idx not in self._replies:
                task_idx, reply = self._get_reply()
                self._replies[task_idx] = reply
            reply = self._replies.pop(self._rcvd_idx)
            self._rcvd_idx += 1
            if isinstance(reply, IterableEnd):
                self._active[reply.worker_id] = False
                self._put_task()
                continue
            if isinstance(reply, ExceptionWrapper):
                self._shutdown()
                reply.reraise()
            self._put_task()
            return pickle.loads(reply)

    def _get_reply(self) -> Any:
        deadline = time.monotonic() + self._timeout if self._timeout > 0 else math.inf
        while True:
            wait = min(_POLL_INTERVAL, deadline - time.monotonic())
            try:
                return self._result_queue.get(timeout=max(wait, 0))
            except queue.Empty:
                pass
            dead = [w for w in self._workers if not w.is_alive()]
            if dead:
                self._shutdown(wait=False)
                details = ", ".join(f"pid {w.pid}, {_exit_description(w.exitcode)}" for w in dead)
                raise RuntimeError(f"DataLoader worker(s) exited unexpectedly ({details})")
            if time.monotonic() >= deadline:
                self._shutdown(wait=False)
                raise RuntimeError(f"DataLoader timed out after {self._timeout} seconds "
                                   f"waiting for a batch from its workers")

    def _shutdown(self, wait: bool = True) -> None:
        """Stop the workers: let them finish the sample at hand (``wait``) or terminate them."""
        if self.closed:
            return
        self.closed = True
        self._done_event.set()
        for q in self._index_queues:
            q.put(None)
        for w in self._workers:
            w.join(timeout=_JOIN_TIMEOUT if wait else 0)
        for w in self._workers:
            if w.is_alive():
                w.terminate()
                w.join()
        for q in (*self._index_queues, self._result_queue):
            q.cancel_join_thread()
            q.close()

    def __del__(self) -> None:
        if not _exiting:
            self._shutdown()
