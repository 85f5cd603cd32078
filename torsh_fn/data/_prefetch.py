"""Device prefetch: the next batches are copied to the device while the current step runs."""

from __future__ import annotations

import collections
import contextlib
import itertools
import queue
import threading
import weakref
from collections.abc import Iterable, Iterator
from typing import Any

import jax

from .._compat import enable_x64, x64_enabled

__all__ = ["prefetch_to_device"]


def prefetch_to_device(
    iterable: Iterable[Any],
    size: int = 2,
    *,
    device: jax.Device | None = None,
    sharding: jax.sharding.Sharding | None = None,
    thread: bool = False,
) -> Iterator[Any]:
    """Iterate ``iterable`` (a DataLoader, say) with ``size`` more batches already on the device.

    While batch ``k`` is in use, batches ``k+1 .. k+size`` have been loaded and their copies
    started with ``jax.device_put`` (to ``device``, to ``sharding``'s layout, or to the default
    device). JAX dispatches a jitted step asynchronously, so the loading and the copies overlap
    the step running on the device. Batches come back as pytrees of ``jax.Array`` in the same
    order; an error in loading is raised here, with its traceback, after the batches loaded
    before it.

    With ``thread=True`` the batches are loaded and copied in a background thread instead of in
    the calling thread. That pays where gathering and staging a batch takes long beside the step
    (batches of many MiB on a GPU: numpy's gather and the host-side copy release the GIL); for a
    short step with small batches it costs more than it gives, the thread contending with the
    step's dispatch for the GIL (see ``benchmarks/results/data_loader.md``). The first batch is
    requested in the calling thread, so a DataLoader draws an epoch's seeds in the caller's
    order; a source that draws from torsh_fn's global generator for later batches (outside a
    DataLoader's per-batch streams) would do so in an order that varies, so keep such sources on
    ``thread=False`` for reproducible runs.

    Args:
        iterable: yields pytrees of arrays.
        size: how many batches to keep on the device ahead of the one in use (with a thread, one
            more may wait for room).
        device: the target device; default: JAX's default device where this is called.
        sharding: a ``jax.sharding.Sharding`` for every leaf (e.g. split along the batch axis);
            use either ``device`` or ``sharding``.
        thread: load and copy in a background thread.

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
    if not isinstance(thread, bool):
        raise TypeError(f"prefetch_to_device: thread: expected a bool, got {thread!r}")
    target = sharding if sharding is not None else device
    if not thread:
        return _prefetch(iter(iterable), size, target)
    _stop_producer_of(iterable)  # before iter(): a persistent-worker loader reuses its iterator
    target = target if target is not None else (jax.config.jax_default_device
                                                or jax.devices()[0])
    return _prefetch_in_thread(iterable, iter(iterable), size, target,
                               x64=x64_enabled())


def _prefetch(source: Iterator[Any], size: int, target: Any) -> Iterator[Any]:
    ahead: collections.deque[Any] = collections.deque()
    failure = None
    while failure is None:
        try:
            ahead.append(jax.device_put(next(source), target))
        except StopIteration:
            break
        except Exception as error:  # the batches loaded before it come first
            failure = error
            break
        if len(ahead) > size:
            yield ahead.popleft()
    while ahead:
        yield ahead.popleft()
    if failure is not None:
        raise failure


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()
_CLOSE_WAIT_S = 1.0  # on close, how long to wait for the batch being loaded
# iterable -> (stop event, thread) of the prefetch thread advancing it, while one runs
_producers: weakref.WeakKeyDictionary[Any, tuple[threading.Event, threading.Thread]] = (
    weakref.WeakKeyDictionary())


def _stop_producer_of(iterable: Any) -> None:
    """Stop, and wait for, a prefetch thread still advancing ``iterable`` (an earlier epoch's
    iterator not yet exhausted or collected): it must not race a new epoch's iterator."""
    try:
        live = _producers.pop(iterable, None)
    except TypeError:  # not weakly referable (a list, say): no iterator of it is shared
        return
    if live is not None:
        live[0].set()
        live[1].join()


def _prefetch_in_thread(iterable: Any, source: Iterator[Any], size: int, target: Any,
                        x64: bool) -> Iterator[Any]:
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
            with enable_x64(x64):  # the caller's setting: JAX's config is per thread
                for batch in itertools.chain([first], source):
                    if not offer(jax.device_put(batch, target)):
                        return
            offer(_END)
        except BaseException as error:  # handed to the consumer, raised there
            offer(_Failed(error))

    worker = threading.Thread(target=produce, name="torsh_fn-prefetch", daemon=True)
    worker.start()
    with contextlib.suppress(TypeError):  # an iterable that is not weakly referable
        _producers[iterable] = (stop, worker)
    try:
        while True:
            try:
                item = ready.get(timeout=0.1)
            except queue.Empty:
                if not worker.is_alive() and ready.empty():
                    raise RuntimeError("prefetch_to_device: the loading thread has stopped (a "
                                       "newer prefetch over the same iterable stops it)") from None
                continue
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        if worker is not threading.current_thread():  # a collection run by the worker itself
            worker.join(_CLOSE_WAIT_S)  # it ends after the batch it is loading, unwaited
