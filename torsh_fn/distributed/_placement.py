"""Placing arrays on a mesh: batches split on ``"data"``, state replicated or FSDP-sharded.

Every function takes a pytree (a dict of arrays, a tuple ``(x, y)``, a state_dict...) and a mesh
(``None``: the default mesh, see :mod:`._mesh`). ``*_shardings`` return the
``NamedSharding`` pytrees for the functional face's ``jax.jit(in_shardings=...,
out_shardings=...)``; ``shard_batch``/``replicate``/``shard_fsdp`` put the arrays there.

With several processes, a batch is each process's *own* rows (joined into one global array
along dim 0); replicated or FSDP-sharded state must hold the same values on every process.

Example:
    >>> mesh = make_mesh()                                   # 8 devices on "data"
    >>> x, y = shard_batch((x, y), mesh)                     # (64, ...) -> 8 rows a device
    >>> params = shard_fsdp(params, mesh)                    # each weight split 8 ways
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ._mesh import resolve_mesh

__all__ = ["fsdp_shardings", "fsdp_spec", "place", "replicate", "replicated_shardings",
           "shard_batch", "shard_fsdp"]

MIN_SIZE = 1024


def _leaves_ok(owner: str, tree: Any) -> None:
    for leaf in jax.tree_util.tree_leaves(tree):
        if not hasattr(leaf, "shape") or not hasattr(leaf, "dtype"):
            raise TypeError(f"{owner}: expected a pytree of arrays, found a leaf of type "
                            f"{type(leaf).__name__}")


def place(x: Any, sharding: NamedSharding) -> jax.Array:
    """One array (jax, numpy, scalar) put on ``sharding``. With several processes a host value
    is taken as the same on every process (each process fills its own devices from it)."""
    if isinstance(x, jax.Array) and (x.is_fully_addressable is False
                                     or jax.process_count() == 1):
        return jax.device_put(x, sharding)
    if jax.process_count() == 1:
        return jax.device_put(x, sharding)
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def fsdp_spec(shape: tuple[int, ...], size: int, axis: str = "data",
              min_size: int = MIN_SIZE) -> P:
    """The ``PartitionSpec`` FSDP gives an array of ``shape`` on an axis of ``size`` devices:
    its largest dimension divisible by ``size`` (the first such on ties) is split; arrays with
    fewer than ``min_size`` elements, or with no divisible dimension, are replicated (``P()``).

    Example:
        >>> fsdp_spec((64, 32, 3, 3), 8)
        PartitionSpec('data',)
    """
    if size <= 1 or int(np.prod(shape, dtype=np.int64)) < min_size:
        return P()
    dims = [d for d in range(len(shape)) if shape[d] % size == 0]
    if not dims:
        return P()
    best = max(dims, key=lambda d: (shape[d], -d))
    return P(*([None] * best), axis)


def replicated_shardings(tree: Any, mesh: Mesh | None = None) -> Any:
    """``NamedSharding(mesh, P())`` for every leaf of ``tree`` (same structure)."""
    mesh = resolve_mesh("replicated_shardings", mesh)
    sharding = NamedSharding(mesh, P())
    return jax.tree_util.tree_map(lambda _: sharding, tree)


def fsdp_shardings(tree: Any, mesh: Mesh | None = None, *, axis: str = "data",
                   min_size: int = MIN_SIZE) -> Any:
    """The FSDP ``NamedSharding`` of every leaf of ``tree`` (see :func:`fsdp_spec`).

    Args:
        tree: a pytree of arrays (or of ``jax.ShapeDtypeStruct``).
        mesh: the mesh; ``None`` is the default mesh.
        axis: the mesh axis the arrays are split over.
        min_size: arrays with fewer elements stay replicated.

    Returns:
        A pytree of ``NamedSharding`` of the same structure, for ``jax.jit``'s
        ``in_shardings``/``out_shardings`` or :func:`shard_fsdp`.
    """
    mesh = resolve_mesh("fsdp_shardings", mesh)
    if axis not in mesh.shape:
        raise ValueError(f"fsdp_shardings: axis: expected one of {tuple(mesh.shape)}, "
                         f"got {axis!r}")
    _leaves_ok("fsdp_shardings", tree)
    size = mesh.shape[axis]
    return jax.tree_util.tree_map(
        lambda x: NamedSharding(mesh, fsdp_spec(tuple(x.shape), size, axis, min_size)), tree)


def replicate(tree: Any, mesh: Mesh | None = None) -> Any:
    """Every array of ``tree`` copied onto every device of ``mesh`` (DDP's parameters)."""
    _leaves_ok("replicate", tree)
    return jax.tree_util.tree_map(place, tree, replicated_shardings(tree, mesh))


def shard_fsdp(tree: Any, mesh: Mesh | None = None, *, axis: str = "data",
               min_size: int = MIN_SIZE) -> Any:
    """Every array of ``tree`` split over ``axis`` along its largest divisible dimension
    (small or indivisible arrays replicated): FSDP's parameters and optimizer state.

    Example:
        >>> w = shard_fsdp(jnp.zeros((1024, 256)), make_mesh())   # 8 devices
        >>> w.addressable_shards[0].data.shape
        (128, 256)
    """
    shardings = fsdp_shardings(tree, mesh, axis=axis, min_size=min_size)
    return jax.tree_util.tree_map(place, tree, shardings)


def shard_batch(batch: Any, mesh: Mesh | None = None) -> Any:
    """A batch (pytree of arrays with the batch on dim 0) split over the mesh's ``"data"``
    axis: ``(N, ...)`` -> each device holds ``N / data`` rows (replicated over ``"model"``).

    With one process ``batch`` is the global batch. With several, it is this process's rows:
    the global batch is the processes' rows in rank order
    (``jax.make_array_from_process_local_data``).

    Raises:
        ValueError: a leaf is a scalar, or its (global) batch size is not divisible by the
            size of the ``"data"`` axis.

    Example:
        >>> x, y = shard_batch((jnp.zeros((64, 1, 8, 8)), jnp.zeros(64, int)), make_mesh())
    """
    mesh = resolve_mesh("shard_batch", mesh)
    _leaves_ok("shard_batch", batch)
    sharding = NamedSharding(mesh, P("data"))
    size, procs = mesh.shape["data"], jax.process_count()

    def one(path: Any, x: Any) -> jax.Array:
        where = jax.tree_util.keystr(path) or "batch"
        if np.ndim(x) == 0:
            raise ValueError(f"shard_batch: {where}: expected an array with a batch "
                             f"dimension, got a scalar")
        is_global = isinstance(x, jax.Array) and not x.is_fully_addressable
        n = x.shape[0] if is_global or procs == 1 else x.shape[0] * procs
        if n % size:
            raise ValueError(f"shard_batch: {where}: the batch size {n} is not divisible by "
                             f"the size of the mesh's 'data' axis ({size}); expected a "
                             f"multiple of {size}")
        if procs == 1 or is_global:  # a global array (already spanning processes) is moved
            return jax.device_put(x, sharding)
        return jax.make_array_from_process_local_data(sharding, np.asarray(x))

    return jax.tree_util.tree_map_with_path(one, batch)
