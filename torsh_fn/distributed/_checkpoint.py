"""Sharded checkpoints that restore onto any number of devices, over ``torsh_fn.save``/``load``.

``save_sharded`` gathers every array of a pytree to the host (a cross-process all-gather where
an array spans several processes) and process 0 writes one safetensors file with
``torsh_fn.save``; the layout is not stored. ``load_sharded`` reads the file on every process
(the path must be on a file system all processes see) and places the arrays on the shardings
you ask for: those of ``like`` (a pytree of arrays already placed, e.g. a freshly wrapped FSDP
model's state_dict), or ``shardings`` (e.g. :func:`fsdp_shardings` over the new mesh). So a
checkpoint written on 8 devices loads onto 1, 2 or 4, sharded or not.

Limits: the whole tree passes through process 0's host memory (no per-shard files, unlike
orbax-checkpoint); fine for models that fit in one host's RAM.

Example:
    >>> save_sharded("ckpt.safetensors", fsdp.state_dict())
    >>> fsdp2 = FSDP(models.get("gpt"), make_mesh())           # any device count
    >>> fsdp2.load_state_dict(load_sharded("ckpt.safetensors", like=fsdp2.state_dict()))
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from ..serialization import load, save
from ._placement import place
from ._process import barrier

__all__ = ["load_sharded", "save_sharded"]


def _to_host(x: Any) -> Any:
    if not isinstance(x, jax.Array):
        return x
    if x.is_fully_addressable:
        return np.asarray(x)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def save_sharded(path: str | os.PathLike, tree: Any) -> None:
    """Write ``tree`` (arrays on any shardings, nested dicts/lists/tuples, numbers, strings)
    to ``path`` as one file; every process must call it (it gathers), process 0 writes.

    Example:
        >>> save_sharded(path, {"model": fsdp.module.state_dict(), "step": 100})
    """
    host = jax.tree_util.tree_map(_to_host, tree)
    if jax.process_index() == 0:
        save(host, path)
    barrier("torsh_fn.save_sharded")


def _restore(target: Any, value: Any, where: str, by_sharding: bool) -> Any:
    """``value`` (from the file) placed as ``target`` says, walking dicts/lists/tuples."""
    if target is None:
        return value
    if isinstance(target, Mapping):
        if not isinstance(value, Mapping):
            raise ValueError(f"load_sharded: {where or 'the tree'}: expected a dict, got "
                             f"{type(value).__name__} in the file")
        missing = [k for k in target if k not in value and str(k) not in value]
        if missing:
            raise ValueError(f"load_sharded: {where or 'the tree'}: keys {missing} are not "
                             f"in the file (it has {sorted(map(str, value))})")
        return type(value)((k, _restore(target[k], value[k if k in value else str(k)],
                                         f"{where}[{k!r}]", by_sharding)) for k in target)
    if isinstance(target, list | tuple):
        if not isinstance(value, list | tuple) or len(value) != len(target):
            raise ValueError(f"load_sharded: {where}: expected a sequence of {len(target)}, "
                             f"got {type(value).__name__} in the file")
        return type(target)(_restore(t, v, f"{where}[{i}]", by_sharding)
                            for i, (t, v) in enumerate(zip(target, value)))
    if by_sharding:
        return place(value, target) if hasattr(value, "shape") else value
    if not hasattr(target, "shape"):
        return value
    if tuple(np.shape(value)) != tuple(target.shape):
        raise ValueError(f"load_sharded: {where}: expected shape {tuple(target.shape)} (from "
                         f"like), got {tuple(np.shape(value))} in the file")
    sharding = getattr(target, "sharding", None)
    return value if sharding is None else place(value, sharding)


def load_sharded(path: str | os.PathLike, like: Any = None, shardings: Any = None) -> Any:
    """Read a file of :func:`save_sharded` (or ``torsh_fn.save``) and place its arrays.

    Args:
        path: the file.
        like: a pytree (dicts, lists, tuples) of the same structure whose arrays carry the
            wanted shardings and shapes (checked); other leaves are ignored, and ``None``
            stands for a whole subtree returned as loaded.
        shardings: the same with a ``jax.sharding.Sharding`` a leaf (e.g.
            :func:`fsdp_shardings` of a fresh model's state_dict); takes precedence over
            ``like``.

    Returns:
        The tree, its arrays on the given shardings (without either: on the default device).
        Keys of ``like``/``shardings`` the file lacks are an error; extra keys in the file
        are dropped.

    Raises:
        ValueError: the file's structure or shapes differ from ``like``/``shardings``.
    """
    by_sharding = shardings is not None
    target = shardings if by_sharding else like
    # This process's own host CPU device: the whole tree waits in host memory to be placed.
    host = None if target is None else jax.local_devices(backend="cpu")[0]
    tree = load(path, device=host)
    return tree if target is None else _restore(target, tree, "", by_sharding)
