"""Start-up of several processes (one per host, or one per GPU) over ``jax.distributed``.

``init_process_group`` mirrors ``torch.distributed.init_process_group``: the coordinator
address, the number of processes and this process's rank come from the arguments, else from
torchrun's environment variables (``MASTER_ADDR``, ``MASTER_PORT``, ``WORLD_SIZE``, ``RANK``,
``LOCAL_RANK``/``LOCAL_WORLD_SIZE``). It must run before anything touches a JAX device. After
it, ``jax.devices()`` lists the devices of every process and a mesh over them
(:func:`make_mesh`) spans all hosts; cross-process collectives run over NCCL on GPUs and gloo
(or MPI) on CPUs.

Example (every process runs the same script; torchrun or SLURM sets the variables):
    >>> init_process_group()                       # MASTER_ADDR/PORT, WORLD_SIZE, RANK
    >>> get_rank(), get_world_size()
    (0, 2)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import jax

__all__ = ["barrier", "destroy_process_group", "get_rank", "get_world_size",
           "init_process_group", "is_initialized"]

_BACKENDS = (None, "gloo", "mpi", "nccl")
_OWNER = "init_process_group"
_barriers = [0]


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{_OWNER}: environment variable {name}: expected an integer, "
                         f"got {value!r}") from None


def _pick(name: str, *candidates: tuple[str, Any]) -> Any:
    """The one value given among (source, value) candidates; ValueError if two disagree."""
    given = [(src, v) for src, v in candidates if v is not None]
    if len({v for _, v in given}) > 1:
        listed = ", ".join(f"{src}={v!r}" for src, v in given)
        raise ValueError(f"{_OWNER}: {name} is given twice with different values: {listed}")
    return given[0][1] if given else None


def _coordinator(init_method: str | None, address: str | None) -> str | None:
    if init_method is not None and init_method != "env://":
        if not init_method.startswith("tcp://"):
            raise ValueError(f"{_OWNER}: init_method: expected 'env://' or "
                             f"'tcp://host:port', got {init_method!r}")
        address = _pick("the coordinator address", ("init_method", init_method[6:]),
                        ("coordinator_address", address))
    if address is None and os.environ.get("MASTER_ADDR"):
        port = os.environ.get("MASTER_PORT")
        if not port:
            raise ValueError(f"{_OWNER}: MASTER_ADDR is set but MASTER_PORT is not; set both "
                             f"or pass coordinator_address='host:port'")
        if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
            # torchrun's agent already serves its own store on MASTER_PORT: take the next port
            port = str(_env_int("MASTER_PORT") + 1)
        address = f"{os.environ['MASTER_ADDR']}:{port}"
    return address


def _local_devices(local_device_ids: int | Sequence[int] | None) -> Any:
    """torchrun's one-process-per-GPU: LOCAL_RANK picks this process's GPU, when the host
    runs several processes (LOCAL_WORLD_SIZE > 1)."""
    if local_device_ids is not None:
        return local_device_ids
    local_rank, local_size = _env_int("LOCAL_RANK"), _env_int("LOCAL_WORLD_SIZE")
    if local_rank is not None and local_size is not None and local_size > 1:
        return [local_rank]
    return None


def init_process_group(backend: str | None = None, init_method: str | None = None,
                       world_size: int | None = None, rank: int | None = None, *,
                       coordinator_address: str | None = None, num_processes: int | None = None,
                       process_id: int | None = None,
                       local_device_ids: int | Sequence[int] | None = None) -> None:
    """Join this process to a group of ``world_size`` processes (``jax.distributed.initialize``).

    Args:
        backend: ``None`` (NCCL on GPUs, gloo on CPUs), ``"nccl"``, ``"gloo"`` or ``"mpi"``
            (the last two choose the CPU collectives).
        init_method: ``"env://"`` (default) or ``"tcp://host:port"`` of the coordinator.
        world_size, rank: the number of processes and this one's index (PyTorch's names;
            ``num_processes``/``process_id`` are JAX's). Default: ``WORLD_SIZE``/``RANK``.
        coordinator_address: ``"host:port"`` of process 0's coordinator service. Default:
            from ``init_method``, else ``MASTER_ADDR:MASTER_PORT`` (under torchrun, whose agent
            serves its own store on ``MASTER_PORT``: ``MASTER_ADDR:MASTER_PORT + 1``).
        local_device_ids: the local devices this process uses. Default: ``[LOCAL_RANK]`` when
            ``LOCAL_WORLD_SIZE > 1`` (one process per GPU), else all local devices.

    Raises:
        ValueError: an unknown backend, a missing coordinator or world size, a rank outside
            ``[0, world_size)``, or two sources that disagree.
        RuntimeError: the group is already initialised.

    Example:
        >>> init_process_group("gloo", "tcp://10.0.0.1:29500", world_size=2, rank=0)
    """
    if backend not in _BACKENDS:
        raise ValueError(f"{_OWNER}: backend: expected one of {_BACKENDS}, got {backend!r}")
    if is_initialized():
        raise RuntimeError(f"{_OWNER}: the process group is already initialised; call "
                           f"destroy_process_group() first")
    address = _coordinator(init_method, coordinator_address)
    size = _pick("the number of processes", ("world_size", world_size),
                 ("num_processes", num_processes))
    size = _env_int("WORLD_SIZE") if size is None else size
    index = _pick("the rank", ("rank", rank), ("process_id", process_id))
    index = _env_int("RANK") if index is None else index
    if address is None:
        raise ValueError(f"{_OWNER}: no coordinator address: pass coordinator_address="
                         f"'host:port' or init_method='tcp://host:port', or set MASTER_ADDR "
                         f"and MASTER_PORT")
    if size is None or index is None:
        raise ValueError(f"{_OWNER}: expected world_size and rank (or the WORLD_SIZE and RANK "
                         f"environment variables), got world_size={size!r}, rank={index!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"{_OWNER}: world_size: expected a positive integer, got {size!r}")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < size:
        raise ValueError(f"{_OWNER}: rank: expected an integer in [0, {size - 1}] "
                         f"(world_size={size}), got {index!r}")
    if backend in ("gloo", "mpi"):
        jax.config.update("jax_cpu_collectives_implementation", backend)
    elif getattr(jax.config, "jax_cpu_collectives_implementation", "gloo") is None:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPUs need some
    jax.distributed.initialize(coordinator_address=address, num_processes=size,
                               process_id=index,
                               local_device_ids=_local_devices(local_device_ids))
    from ._mesh import set_default_mesh

    set_default_mesh(None)  # a cached mesh predates the other processes' devices


def is_initialized() -> bool:
    """Whether :func:`init_process_group` has run (and no :func:`destroy_process_group`)."""
    return jax.distributed.is_initialized()


def get_rank() -> int:
    """This process's index (``jax.process_index()``); 0 without a process group."""
    return jax.process_index()


def get_world_size() -> int:
    """The number of processes (``jax.process_count()``); 1 without a process group."""
    return jax.process_count()


def barrier(name: str | None = None) -> None:
    """Wait until every process reaches this call (a no-op with one process).

    Args:
        name: the barrier's name, the same on every process; default: a counter of calls.
    """
    if jax.process_count() == 1:
        return
    from jax.experimental import multihost_utils

    _barriers[0] += 1
    multihost_utils.sync_global_devices(name or f"torsh_fn.barrier.{_barriers[0]}")


def destroy_process_group() -> None:
    """Leave the process group (``jax.distributed.shutdown``); a no-op when not in one."""
    jax.distributed.shutdown()
    from ._mesh import set_default_mesh

    set_default_mesh(None)
