"""Collectives for users: ``all_reduce``, ``all_gather``, ``broadcast``, thin wrappers over JAX.

Each works in one of two places, chosen by ``axis_name``:

* ``axis_name="data"`` (any mesh axis or ``pmap`` axis): *inside* a ``shard_map``/``pmap``
  body, over the devices of that axis (``jax.lax.psum``/``pmean``/``pmax``/``pmin``,
  ``all_gather``). This is what a hand-written SPMD step uses.
* ``axis_name=None`` (default): *between processes*, on host values (a numpy array, a number,
  a fully addressable ``jax.Array``): each process contributes its own value, every process
  gets the result (``jax.experimental.multihost_utils``; gloo on CPUs, NCCL on GPUs). Every
  process must make the same calls in the same order. With one process they return the value
  (``all_gather``: with a new leading axis of size 1).

Unlike PyTorch, nothing is changed in place: the result is returned.

A DDP/FSDP training step needs none of these: XLA inserts its own collectives.

Example:
    >>> total = all_reduce(np.float32(local_loss))                 # summed over processes
    >>> f = jax.shard_map(lambda x: all_reduce(x, "mean", axis_name="data"),
    ...                   mesh=mesh, in_specs=P("data"), out_specs=P())
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["all_gather", "all_reduce", "broadcast"]

_IN_PROGRAM = {"sum": jax.lax.psum, "mean": jax.lax.pmean, "avg": jax.lax.pmean,
               "max": jax.lax.pmax, "min": jax.lax.pmin}
_ON_HOST = {"sum": np.sum, "mean": np.mean, "avg": np.mean, "max": np.max, "min": np.min}


def _op(op: Any) -> str:
    name = str(op).lower()
    if name not in _IN_PROGRAM:
        raise ValueError(f"all_reduce: op: expected one of {sorted(_IN_PROGRAM)}, got {op!r}")
    return name


def _gather_processes(x: Any) -> np.ndarray:
    """``(process_count, *x.shape)``: every process's ``x``, stacked in rank order."""
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=False))


def all_reduce(x: Any, op: str = "sum", *, axis_name: str | None = None) -> Any:
    """Reduce ``x`` over the devices of ``axis_name`` (inside ``shard_map``/``pmap``), or over
    the processes (``axis_name=None``); every participant gets the result.

    Args:
        x: an array (or pytree of arrays, inside a program).
        op: ``"sum"``, ``"mean"`` (or ``"avg"``), ``"max"`` or ``"min"``.
        axis_name: a mesh/pmap axis name, or None for the processes.

    Returns:
        The reduction, of ``x``'s shape (a numpy array for processes).
    """
    name = _op(op)
    if axis_name is not None:
        return _IN_PROGRAM[name](x, axis_name)
    if jax.process_count() == 1:
        return x
    return _ON_HOST[name](_gather_processes(x), axis=0).astype(np.asarray(x).dtype)


def all_gather(x: Any, *, axis_name: str | None = None, dim: int = 0,
               tiled: bool = False) -> Any:
    """Every participant's ``x``, stacked along a new axis ``dim`` (``tiled=True``:
    concatenated along the existing ``dim``), over ``axis_name``'s devices or the processes.

    Returns:
        ``(n, *x.shape)`` for ``n`` participants with ``dim=0`` and ``tiled=False``.
    """
    if axis_name is not None:
        return jax.lax.all_gather(x, axis_name, axis=dim, tiled=tiled)
    stacked = _gather_processes(x) if jax.process_count() > 1 else np.asarray(x)[None]
    if tiled:
        return np.concatenate(list(stacked), axis=dim)
    return np.moveaxis(stacked, 0, dim)


def broadcast(x: Any, src: int = 0, *, axis_name: str | None = None) -> Any:
    """Participant ``src``'s ``x``, on every participant (the index along ``axis_name``, or
    the process rank).

    Raises:
        ValueError: ``src`` is not a valid process rank (``axis_name=None``).
    """
    if axis_name is not None:
        mine = jax.lax.axis_index(axis_name) == src
        return jax.lax.psum(jnp.where(mine, x, jnp.zeros_like(x)), axis_name)
    count = jax.process_count()
    if not isinstance(src, int | np.integer) or not 0 <= src < count:
        raise ValueError(f"broadcast: src: expected a process rank in [0, {count - 1}], "
                         f"got {src!r}")
    if count == 1:
        return x
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.broadcast_one_to_all(
        np.asarray(x), is_source=jax.process_index() == src))
