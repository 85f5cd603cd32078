"""``DistributedDataParallel`` and ``FullyShardedDataParallel``: a module's state placed on a
mesh, after which the usual ``torsh_fn.jit`` training step runs on every device of the mesh.

There is no hand-written communication: the wrapper *places* the parameters and buffers
(replicated for DDP, split along each weight's largest dimension for FSDP), the batch comes
split over ``"data"`` (:func:`shard_batch`), and XLA's SPMD partitioner turns the one program
into per-device programs with the collectives they need (the gradient all-reduce of DDP; the
per-layer all-gathers and gradient reduce-scatters of FSDP). ``torsh_fn.jit`` keeps every
sharded state array in its sharding across steps.

BatchNorm: the batch statistics are those of the *global* batch (the mean over a sharded axis
is a global mean), i.e. PyTorch's ``SyncBatchNorm`` semantics. That is what makes a
data-parallel step equal to the single-device step on the whole batch. ``sync_batchnorm=False``
gives PyTorch DDP's default instead: statistics per shard of the batch, no communication.

Example:
    >>> ddp = DistributedDataParallel(models.get("seed_cnn"))      # default mesh: all devices
    >>> opt = optim.SGD(ddp.parameters(), lr=0.1, momentum=0.9)    # made after wrapping
    >>> @torsh_fn.jit
    ... def step(model, opt, x, y):
    ...     opt.zero_grad()
    ...     loss = torsh_fn.backward(lambda: F.cross_entropy(model(x), y))
    ...     opt.step()
    ...     return loss
    >>> loss = step(ddp, opt, *shard_batch((x, y)))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ..nn.module import Module
from ._mesh import resolve_mesh, set_default_mesh
from ._placement import MIN_SIZE, fsdp_spec, place

__all__ = ["DDP", "FSDP", "DistributedDataParallel", "FullyShardedDataParallel",
           "place_optimizer_state"]


def _module_arrays(module: Module) -> tuple[list[Any], list[tuple[dict, str]]]:
    params = list(module.parameters())
    buffers = [(m._buffers, name) for m in module.modules() for name in m._buffers
               if m._buffers[name] is not None]
    return params, buffers


def _from_process_zero(values: list[Any]) -> list[Any]:
    """With several processes, every process takes process 0's values (PyTorch's DDP
    broadcasts the module state from rank 0 when it wraps)."""
    if jax.process_count() == 1:
        return values
    from jax.experimental import multihost_utils

    return list(multihost_utils.broadcast_one_to_all(values))


class _Parallel(Module):
    """The shared wrapper: holds ``module`` (keys get PyTorch's ``module.`` prefix), puts each
    of its arrays on ``self.sharding_of(array)`` and forwards calls to it."""

    def __init__(self, owner: str, module: Module, mesh: Mesh | None,
                 sharding_of: Callable[[Any], NamedSharding], sync_batchnorm: bool) -> None:
        if not isinstance(module, Module):
            raise TypeError(f"{owner}: module: expected a torsh_fn.nn.Module, "
                            f"got {type(module).__name__}")
        super().__init__()
        self.module = module
        self.mesh = resolve_mesh(owner, mesh)
        set_default_mesh(self.mesh)
        params, buffers = _module_arrays(module)
        values = _from_process_zero([p.data for p in params] + [d[k] for d, k in buffers])
        for p, v in zip(params, values):
            p.data = place(v, sharding_of(v))
        for (d, k), v in zip(buffers, values[len(params):]):
            d[k] = place(v, sharding_of(v))
        if not sync_batchnorm:
            for m in module.modules():
                if hasattr(m, "replica_axis"):  # BatchNorm: statistics per shard of "data"
                    m.replica_axis = (self.mesh, "data")

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.module(*args, **kwargs)


class DistributedDataParallel(_Parallel):
    """Data parallelism: ``module``'s parameters and buffers replicated on every device of
    ``mesh``; with a batch from :func:`shard_batch`, each device runs its slice and XLA
    averages the gradients (an all-reduce), so every replica takes the same step.

    Args:
        module: the model (its arrays are moved in place; ``ddp.module`` is the same object).
        mesh: default: the default mesh (every device on ``"data"``); it becomes the default.
        sync_batchnorm: True (default): BatchNorm's training statistics are those of the global
            batch (``SyncBatchNorm``; equal to one device). False: each shard of the batch
            along ``"data"`` normalises with its own statistics, as PyTorch's DDP does without
            ``SyncBatchNorm`` (sets the BatchNorm layers' ``replica_axis``).

    ``ddp.state_dict()`` keys carry PyTorch's ``module.`` prefix; ``ddp.module.state_dict()``
    has the model's own keys. With several processes, process 0's values are broadcast.
    Create the optimizer after wrapping, or call :func:`place_optimizer_state`.

    Example:
        >>> ddp = DDP(models.get("resnet50"))
        >>> opt = optim.SGD(ddp.parameters(), lr=0.1, momentum=0.9)
    """

    def __init__(self, module: Module, mesh: Mesh | None = None, *,
                 sync_batchnorm: bool = True) -> None:
        mesh = resolve_mesh("DistributedDataParallel", mesh)
        replicated = NamedSharding(mesh, P())
        super().__init__("DistributedDataParallel", module, mesh, lambda x: replicated,
                         sync_batchnorm)


class FullyShardedDataParallel(_Parallel):
    """Fully sharded data parallelism: each parameter (and buffer) of ``module`` is split over
    the mesh's ``"data"`` axis along its largest dimension divisible by the axis size, so each
    device holds about ``1/n`` of the model; arrays under ``min_size`` elements or without such
    a dimension stay replicated. An optimizer made from ``fsdp.parameters()`` creates its state
    with the same sharding, gradients come out sharded (a reduce-scatter) and XLA gathers each
    layer's weights where they are used. The state stays sharded across ``torsh_fn.jit`` steps.

    Args:
        module: the model (its arrays are moved in place).
        mesh: default: the default mesh; it becomes the default.
        min_size: arrays with fewer elements are replicated (default 1024).
        sync_batchnorm: as for :class:`DistributedDataParallel`.

    Example:
        >>> fsdp = FSDP(models.get("gpt"))
        >>> opt = optim.AdamW(fsdp.parameters(), lr=3e-4)
    """

    def __init__(self, module: Module, mesh: Mesh | None = None, *,
                 min_size: int = MIN_SIZE, sync_batchnorm: bool = True) -> None:
        mesh = resolve_mesh("FullyShardedDataParallel", mesh)
        size = mesh.shape["data"]

        def sharding_of(x: Any) -> NamedSharding:
            return NamedSharding(mesh, fsdp_spec(tuple(x.shape), size, "data", min_size))

        super().__init__("FullyShardedDataParallel", module, mesh, sharding_of,
                         sync_batchnorm)


DDP = DistributedDataParallel
FSDP = FullyShardedDataParallel


def place_optimizer_state(optimizer: Any) -> Any:
    """Move an optimizer's existing state next to its (wrapped) parameters: each state array
    of a parameter's shape takes that parameter's sharding, the rest (step counts) is
    replicated on its mesh. Needed only for an optimizer that made state before the model was
    wrapped; one created after wrapping places its state itself. Returns ``optimizer``."""
    state = getattr(optimizer, "state", None)
    if not isinstance(state, dict):
        raise TypeError(f"place_optimizer_state: optimizer: expected a torsh_fn.optim "
                        f"Optimizer, got {type(optimizer).__name__}")
    for p, entries in state.items():
        sharding = getattr(p.data, "sharding", None)
        if not isinstance(sharding, NamedSharding):
            raise ValueError("place_optimizer_state: a parameter of the optimizer is not "
                             "placed on a mesh; wrap the model with DDP/FSDP first")
        for k, v in entries.items():
            if isinstance(v, jax.Array):
                same = tuple(v.shape) == tuple(p.data.shape)
                entries[k] = place(v, sharding if same else NamedSharding(sharding.mesh, P()))
    return optimizer
