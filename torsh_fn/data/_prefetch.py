"""Device prefetch: the next batches are copied to the device while the current step runs."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import jax

__all__ = ["prefetch_to_device"]

_BATCH, _END, _ERROR = range(3)


def prefetch_to_device(
    iterable: Iterable[Any],
    size: int = 2,
    *,
    device: jax.Device | None = None,
    sharding: jax.sharding.Sharding | None = None,
) -> Iterator[Any]:
    """Iterate ``iterable`` (a DataLoader, say) with up to ``size`` batches already on the device.

    A background thread takes each batch from ``iterable`` and starts its copy with
    ``jax.device_put`` (to ``device``, to ``sharding``'s layout, or to the default device), so the
    loading and the copy of the next batches overlap the step that runs now. Batches come back as
    pytrees of ``jax.Array`` in the same order; an error in loading is raised here.

    Args:
        iterable: yields pytrees of arrays.
        size: how many batches to hold on the device ahead of the one in use.
        device: the target device; default: JAX's default device.
        sharding: a ``jax.sharding.Sharding`` for every leaf (e.g. split along the batch axis);
            use either ``device`` or ``sharding``.

    Example:
        >>> for x, y in prefetch_to_device(loader):   # each epoch
        ...     params = step(params, x, y)
    """
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ValueError(f"prefetch_to_device: size: expected a positive integer, got {size!r}")
    if device is not None and sharding is not None:
        raise ValueError("prefetch_to_device: expected either device or sharding, got both")
    if sharding is not None and not isinstance(sharding, jax.sharding.Sharding):
        raise TypeError(f"prefetch_to_device: sharding: expected a jax.sharding.Sharding, "
                        f"got {type(sharding).__name__}")
    return _Prefetcher(iter(iterable), size, sharding if sharding is not None else device)


def _offer(q: queue.Queue[tuple[int, Any]], stop: threading.Event, item: tuple[int, Any]) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _fill(source: Iterator[Any], target: Any, q: queue.Queue[tuple[int, Any]],
          stop: threading.Event) -> None:
    # A function of its own, not a method: the thread must not keep the iterator alive, so that
    # dropping the iterator stops the thread and releases the source (and its worker processes).
    try:
        for batch in source:
            if not _offer(q, stop, (_BATCH, jax.device_put(batch, target))):
                return
        _offer(q, stop, (_END, None))
    except BaseException as exc:  # handed to the consumer, who raises it
        _offer(q, stop, (_ERROR, exc))


class _Prefetcher(Iterator[Any]):
    def __init__(self, source: Iterator[Any], size: int, target: Any) -> None:
        self._queue: queue.Queue[tuple[int, Any]] = queue.Queue(maxsize=size)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=_fill, daemon=True, name="prefetch_to_device",
                                        args=(source, target, self._queue, self._stop))
        self._thread.start()

    def __next__(self) -> Any:
        if self._stop.is_set():
            raise StopIteration
        kind, value = self._queue.get()
        if kind == _BATCH:
            return value
        self.close()
        if kind == _ERROR:
            raise value
        raise StopIteration

    def close(self) -> None:
        """Stop the background thread (and so release the source iterator and its workers)."""
        self._stop.set()
        self._thread.join()

    def __del__(self) -> None:
        self.close()
