"""Device prefetch: the next batches are copied to the device while the current step runs."""

from __future__ import annotations

import collections
import itertools
import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import jax

__all__ = ["prefetch_to_device"]


def prefetch_to_device(
    iterable: Iterable[Any],
    size: int = 2,
    *,
    device: jax.Device | None = None,
    sharding: jax.sharding.Sharding | None = None,
    thread: bool | None = None,
) -> Iterator[Any]:
    """Iterate ``iterable`` (a DataLoader, say) with ``size`` more batches already on the device.

    While batch ``k`` is in use, batches ``k+1 .. k+size`` have been loaded and their copies
    started with ``jax.device_put`` (to ``device``, to ``sharding``'s layout, or to the default
    device). Batches come back as pytrees of ``jax.Array`` in the same order; an error in loading
    is raised here, with its traceback, after the batches loaded before it.

    On an accelerator the loading and the copies run in a background thread (``thread=None``):
    there a short step leaves the host only a fraction of a millisecond, and dispatching the
    step, gathering a batch and staging its copy all take host time that a single thread would
    spend in turn. The first batch of the iterable is requested in the calling thread, so the
    seeds an epoch draws from torsh_fn's generators come in the caller's order. On the CPU
    there is no spare core to give (the step uses them all), so the batches are loaded in the
    calling thread, ahead of JAX's asynchronous dispatch.

    Args:
        iterable: yields pytrees of arrays.
        size: how many batches to keep on the device ahead of the one in use (the background
            thread may hold one more while it waits for room).
        device: the target device; default: JAX's default device.
        sharding: a ``jax.sharding.Sharding`` for every leaf (e.g. split along the batch axis);
            use either ``device`` or ``sharding``.
        thread: load in a background thread (True), in the calling thread (False), or on an
            accelerator only (None). Use False for an iterable that must not be advanced from
            another thread.

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
    if thread is not None and not isinstance(thread, bool):
        raise TypeError(f"prefetch_to_device: thread: expected a bool or None, got {thread!r}")
    target = sharding if sharding is not None else device
    if thread is None:
        thread = _platform(target) != "cpu"
    prefetch = _prefetch_in_thread if thread else _prefetch
    return prefetch(iter(iterable), size, target)


def _platform(target: jax.Device | jax.sharding.Sharding | None) -> str:
    if isinstance(target, jax.sharding.Sharding):
        target = next(iter(target.device_set))
    return (target or jax.devices()[0]).platform


def _prefetch(source: Iterator[Any], size: int, target: Any) -> Iterator[Any]:
    ahead: collections.deque[Any] = collections.deque()
    failure = None
    try:
        for batch in source:
            ahead.append(jax.device_put(batch, target))
            if len(ahead) > size:
                yield ahead.popleft()
    except Exception as error:  # the batches loaded before it come first
        failure = error
    while ahead:
        yield ahead.popleft()
    if failure is not None:
        raise failure


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()


def _prefetch_in_thread(source: Iterator[Any], size: int, target: Any) -> Iterator[Any]:
    try:
        first = next(source)
    except StopIteration:
        return
    ready: queue.Queue[Any] = queue.Queue(maxsize=size)
    stop = threading.Event()

    def offer(item: Any) -> bool:
        """Wait for room for ``item``; False once the consumer has gone."""
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.05)
                return True
            except queue.Full:
                pass
        return False

    def produce() -> None:
        try:
            for batch in itertools.chain([first], source):
                if not offer(jax.device_put(batch, target)):
                    return
            offer(_END)
        except BaseException as error:  # handed to the consumer, raised there
            offer(_Failed(error))

    worker = threading.Thread(target=produce, name="torsh_fn-prefetch", daemon=True)
    worker.start()
    try:
        while (item := ready.get()) is not _END:
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        worker.join()  # it ends after the batch it is loading; then the source can be dropped
