"""What runs inside a DataLoader worker process, and what it tells the main process.

A worker reads tasks ``(batch_index, indices)`` from its own index queue, loads and collates the
batch under the batch's seed (see ``_rng.batch_seed``), pickles it itself (so an unpicklable batch
becomes a clear error rather than a silent hang) and puts ``(batch_index, payload)`` on the shared
result queue. It never touches JAX: batches are numpy, and device transfer is the main process's
job.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import pickle
import queue
import random
import sys
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ._collate import default_collate
from ._dataset import TensorDataset
from ._rng import batch_seed

# How long a worker waits on its queue before checking that the main process still lives.
STATUS_CHECK_INTERVAL = 1.0


@dataclasses.dataclass(frozen=True)
class WorkerInfo:
    """What :func:`get_worker_info` returns inside a worker: its ``id`` (0-based), the number of
    workers, its ``seed`` (the loader's base seed + ``id``, as in PyTorch) and its copy of the
    dataset."""

    id: int
    num_workers: int
    seed: int
    dataset: Any


_worker_info: WorkerInfo | None = None


def get_worker_info() -> WorkerInfo | None:
    """Inside a DataLoader worker process, its :class:`WorkerInfo`; in the main process, None.

    Example:
        >>> get_worker_info() is None       # in the main process
        True
    """
    return _worker_info


class ExceptionWrapper:
    """An exception caught in a worker, carried to the main process with its traceback text."""

    def __init__(self, where: str) -> None:
        exc = sys.exc_info()[1]
        self.exc_type: type[BaseException] = type(exc)
        self.message = (f"Caught {type(exc).__name__} {where}.\nOriginal "
                        + "".join(traceback.format_exception(exc)))

    def reraise(self) -> None:
        """Raise the exception again, with the worker's traceback in its message."""
        message = self.message
        if self.exc_type is KeyError:  # KeyError would repr() the message, quoting the newlines
            message = _KeyErrorMessage(message)
        try:
            exc = self.exc_type(message)
        except Exception:
            raise RuntimeError(message) from None
        raise exc


class _KeyErrorMessage(str):
    def __repr__(self) -> str:
        return str(self)


@dataclasses.dataclass(frozen=True)
class IterableEnd:
    """Reply to a task after the worker's copy of an IterableDataset is exhausted."""

    worker_id: int


@dataclasses.dataclass(frozen=True)
class Resume:
    """Start a new epoch (persistent workers): reset the fetcher, answer with ``ResumeAck``."""

    epoch_seed: int


@dataclasses.dataclass(frozen=True)
class ResumeAck:
    worker_id: int


@dataclasses.dataclass(frozen=True)
class LoaderConfig:
    """What a fetcher needs to know about the DataLoader, sent once to every worker."""

    iterable: bool
    auto_collation: bool
    batch_size: int | None
    drop_last: bool
    collate_fn: Callable[[Any], Any]


class Fetcher:
    """Loads one batch (or one sample when ``auto_collation`` is off) of ``dataset``."""

    def __init__(self, dataset: Any, config: LoaderConfig) -> None:
        self.dataset = dataset
        self.config = config
        self.iterator: Iterator[Any] | None = None  # a stream starts at the first fetch
        self.exhausted = False

    def fetch(self, indices: Any) -> Any:
        """The collated batch at ``indices``; raises StopIteration when a stream is exhausted."""
        c = self.config
        if c.iterable:
            return c.collate_fn(self._next_from_stream())
        if not c.auto_collation:
            return c.collate_fn(self.dataset[indices])
        if c.collate_fn is default_collate and type(self.dataset) is TensorDataset:
            return self.dataset.gather(indices)
        getitems = getattr(self.dataset, "__getitems__", None)
        samples = getitems(indices) if callable(getitems) else [self.dataset[i] for i in indices]
        return c.collate_fn(samples)

    def _next_from_stream(self) -> Any:
        c = self.config
        if self.exhausted:
            raise StopIteration
        if self.iterator is None:
            self.iterator = iter(self.dataset)
        try:
            if not c.auto_collation:
                return next(self.iterator)
            samples = [s for _, s in zip(range(c.batch_size), self.iterator)]  # type: ignore
            if not samples or (c.drop_last and len(samples) < c.batch_size):  # type: ignore
                raise StopIteration
            return samples
        except StopIteration:
            self.exhausted = True
            raise


def _seed_worker(base_seed: int, worker_id: int) -> int:
    seed = base_seed + worker_id
    random.seed(seed)
    np.random.seed(np.random.SeedSequence([base_seed, worker_id]).generate_state(4))  # noqa: NPY002
    return seed


def _reply(worker_id: int, fetcher: Fetcher, init_error: ExceptionWrapper | None,
           epoch_seed: int, task: tuple[int, Any]) -> Any:
    batch_index, indices = task
    if init_error is not None:
        return init_error
    try:
        with batch_seed(epoch_seed, batch_index):
            batch = fetcher.fetch(indices)
        return pickle.dumps(batch, pickle.HIGHEST_PROTOCOL)
    except StopIteration:
        return IterableEnd(worker_id)
    except Exception:
        return ExceptionWrapper(f"in DataLoader worker process {worker_id}")


def _picklable(reply: Any) -> Any:
    try:
        pickle.dumps(reply, pickle.HIGHEST_PROTOCOL)
    except Exception:
        reply.exc_type = RuntimeError  # an exception class only the worker can name
    return reply


def worker_loop(dataset: Any, config: LoaderConfig, index_queue: Any, result_queue: Any,
                done_event: Any, base_seed: int, epoch_seed: int,
                worker_init_fn: Callable[[int], None] | None, worker_id: int,
                num_workers: int) -> None:
    """The body of a worker process; returns when told to (None) or when the parent is gone."""
    global _worker_info
    _worker_info = WorkerInfo(worker_id, num_workers, _seed_worker(base_seed, worker_id), dataset)
    init_error = None
    fetcher = Fetcher(dataset, config)
    try:
        if worker_init_fn is not None:
            worker_init_fn(worker_id)
    except Exception:
        init_error = ExceptionWrapper(f"in DataLoader worker process {worker_id} while starting")
    parent = multiprocessing.parent_process()
    while not done_event.is_set():
        try:
            task = index_queue.get(timeout=STATUS_CHECK_INTERVAL)
        except queue.Empty:
            if parent is not None and not parent.is_alive():
                break
            continue
        if task is None:
            break
        if isinstance(task, Resume):
            epoch_seed = task.epoch_seed
            fetcher = Fetcher(dataset, config)
            result_queue.put(ResumeAck(worker_id))
            continue
        reply = _reply(worker_id, fetcher, init_error, epoch_seed, task)
        if isinstance(reply, ExceptionWrapper):
            reply = _picklable(reply)
        result_queue.put((task[0], reply))
    if done_event.is_set():  # the main process may not read what is still queued
        result_queue.cancel_join_thread()
    result_queue.close()
