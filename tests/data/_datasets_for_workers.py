"""Datasets and hooks the DataLoader tests send to worker processes.

They live apart from the test files so that a worker, which imports the module a dataset's class
comes from, imports only numpy and torsh_fn.data, not torch and pytest.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import numpy as np

from torsh_fn.data import Dataset, IterableDataset, get_worker_info, transforms


class Samples(Dataset):
    """Sample ``i``: a dict with an image-like array, a float, an int label and a tuple."""

    def __init__(self, n: int = 23) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        image = np.arange(6, dtype=np.float32).reshape(2, 3) + i
        return {"image": image, "weight": i / 2, "label": i % 3, "pair": (i, np.int32(-i))}


class Augmented(Dataset):
    """Random crops and flips of a fixed image: shows which stream the transforms drew from."""

    def __init__(self, n: int = 16) -> None:
        self.n = n
        self.image = np.arange(8 * 8 * 3, dtype=np.uint8).reshape(8, 8, 3)
        self.transform = transforms.Compose([
            transforms.RandomCrop(6, padding=1), transforms.RandomHorizontalFlip(),
            transforms.ToTensor()])

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return self.transform(self.image), i


class WhoLoads(Dataset):
    """Sample ``i``: (i, the loading process's pid, its worker id, its worker seed, np.random)."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int):
        info = get_worker_info()
        wid, seed = (-1, -1) if info is None else (info.id, info.seed)
        return i, os.getpid(), wid, seed, np.random.randint(1 << 30)  # noqa: NPY002


class FailsAt(Dataset):
    """Raises ``error`` at index ``bad`` (others are slow enough that several are in flight)."""

    def __init__(self, bad: int, error: Exception) -> None:
        self.bad = bad
        self.error = error

    def __len__(self) -> int:
        return 40

    def __getitem__(self, i: int):
        if i == self.bad:
            raise self.error
        time.sleep(0.002)
        return np.float32(i)


class DiesAt(Dataset):
    """The worker process exits hard (no exception) at index ``bad``."""

    def __init__(self, bad: int) -> None:
        self.bad = bad

    def __len__(self) -> int:
        return 20

    def __getitem__(self, i: int):
        if i == self.bad:
            os._exit(3)
        return np.float32(i)


class Sleepy(Dataset):
    """``n`` samples, each takes ``seconds``."""

    def __init__(self, seconds: float, n: int = 4) -> None:
        self.seconds = seconds
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        time.sleep(self.seconds)
        return np.float32(i)


class ShardedRange(IterableDataset):
    """``range(start, end)``, split into contiguous shards, one per worker (PyTorch's example)."""

    def __init__(self, start: int, end: int) -> None:
        self.start = start
        self.end = end

    def __iter__(self):
        return shard(self.start, self.end, get_worker_info())


def shard(start: int, end: int, info) -> Iterator[int]:
    """This worker's contiguous part of ``range(start, end)`` (all of it without workers)."""
    if info is None:
        return iter(range(start, end))
    per_worker = -(-(end - start) // info.num_workers)
    lo = start + info.id * per_worker
    return iter(range(lo, min(lo + per_worker, end)))


def set_worker_marker(worker_id: int) -> None:
    """A worker_init_fn: records that it ran, for WorkerMarker to report."""
    os.environ["TORSH_TEST_WORKER_MARK"] = f"init {worker_id}"


def failing_init(worker_id: int) -> None:
    raise RuntimeError(f"init failed in worker {worker_id}")


class WorkerMarker(Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int):
        return os.environ.get("TORSH_TEST_WORKER_MARK", "none")
