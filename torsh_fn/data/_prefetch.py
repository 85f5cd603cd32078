"""Device prefetch: the next batches are copied to the device while the current step runs."""

from __future__ import annotations

import collections
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
) -> Iterator[Any]:
    """Iterate ``iterable`` (a DataLoader, say) with ``size`` more batches already on the device.

    When batch ``k`` is handed out, batches ``k+1 .. k+size`` have been loaded and their copies
    started with ``jax.device_put`` (to ``device``, to ``sharding``'s layout, or to the default
    device). JAX dispatches a jitted step asynchronously, so the loading and the copies overlap
    the step that runs on the device; no thread is involved. Batches come back as pytrees of
    ``jax.Array`` in the same order; an error in loading is raised here.

    Args:
        iterable: yields pytrees of arrays.
        size: how many batches to keep on the device ahead of the one in use.
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
    return _prefetch(iter(iterable), size, sharding if sharding is not None else device)


def _prefetch(source: Iterator[Any], size: int, target: Any) -> Iterator[Any]:
    ahead: collections.deque[Any] = collections.deque()
    for batch in source:
        ahead.append(jax.device_put(batch, target))
        if len(ahead) > size:
            yield ahead.popleft()
    while ahead:
        yield ahead.popleft()
