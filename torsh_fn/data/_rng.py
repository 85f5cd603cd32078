"""Seeds for the data pipeline: numpy seeds drawn from torsh_fn generators, per-batch streams.

Samplers, ``random_split`` and the DataLoader draw one JAX key from a
:class:`torsh_fn.random.Generator` (the global one by default) and turn it into a numpy seed, so
``torsh_fn.manual_seed(s)`` makes shuffles and augmentations reproducible while the per-sample
work stays in numpy (and out of JAX) inside worker processes.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import numpy as np

from .. import random as _random

_SEED_MASK = (1 << 63) - 1
_local = threading.local()


def seed_from(generator: _random.Generator | None = None) -> int:
    """A 63-bit seed made from one key drawn from ``generator`` (default: the global one)."""
    hi, lo = np.asarray(_random.next_key(generator=generator), dtype=np.uint64)
    return int((hi << np.uint64(32)) | lo) & _SEED_MASK


@contextlib.contextmanager
def batch_seed(epoch_seed: int, batch_index: int) -> Iterator[None]:
    """Within the block, :func:`batch_rng` is a stream fixed by (epoch seed, batch index).

    The DataLoader wraps the loading of every batch in this, in the main process and in workers
    alike, so random transforms give the same batches whatever ``num_workers`` is.
    """
    _local.seed, _local.rng = (epoch_seed, batch_index), None  # the stream is made on first use
    try:
        yield
    finally:
        _local.seed = _local.rng = None


def batch_rng() -> np.random.Generator:
    """The stream of the batch being loaded, or outside a DataLoader a fresh one drawn from the
    global generator (so ``torsh_fn.manual_seed`` reproduces it)."""
    seed = getattr(_local, "seed", None)
    if seed is None:
        return np.random.default_rng(seed_from())
    if _local.rng is None:
        _local.rng = np.random.default_rng(list(seed))
    return _local.rng
