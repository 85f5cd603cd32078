"""Data-parallel and sharded training on ``jax.sharding``, on one host or many.

* processes: :func:`init_process_group` (over ``jax.distributed.initialize``), ranks, barrier;
* meshes: :func:`make_mesh` (axes ``"data"``, ``"model"``) and the default mesh;
* placement: :func:`shard_batch`, :func:`replicate`, :func:`shard_fsdp` and the
  ``NamedSharding`` pytrees for ``jax.jit`` (:func:`replicated_shardings`,
  :func:`fsdp_shardings`);
* the PyTorch face: :class:`DistributedDataParallel` (``DDP``) and
  :class:`FullyShardedDataParallel` (``FSDP``), trained with ``torsh_fn.jit``;
* collectives: :func:`all_reduce`, :func:`all_gather`, :func:`broadcast`;
* checkpoints: :func:`save_sharded` / :func:`load_sharded`, restorable on any device count.

See docs/distributed.md.
"""

from ._checkpoint import load_sharded as load_sharded
from ._checkpoint import save_sharded as save_sharded
from ._collectives import all_gather as all_gather
from ._collectives import all_reduce as all_reduce
from ._collectives import broadcast as broadcast
from ._mesh import get_default_mesh as get_default_mesh
from ._mesh import make_mesh as make_mesh
from ._mesh import set_default_mesh as set_default_mesh
from ._parallel import DDP as DDP
from ._parallel import FSDP as FSDP
from ._parallel import DistributedDataParallel as DistributedDataParallel
from ._parallel import FullyShardedDataParallel as FullyShardedDataParallel
from ._parallel import place_optimizer_state as place_optimizer_state
from ._placement import fsdp_shardings as fsdp_shardings
from ._placement import replicate as replicate
from ._placement import replicated_shardings as replicated_shardings
from ._placement import shard_batch as shard_batch
from ._placement import shard_fsdp as shard_fsdp
from ._process import barrier as barrier
from ._process import destroy_process_group as destroy_process_group
from ._process import get_rank as get_rank
from ._process import get_world_size as get_world_size
from ._process import init_process_group as init_process_group
from ._process import is_initialized as is_initialized

__all__ = [
    "DDP", "FSDP", "DistributedDataParallel", "FullyShardedDataParallel", "all_gather",
    "all_reduce", "barrier", "broadcast", "destroy_process_group", "fsdp_shardings",
    "get_default_mesh", "get_rank", "get_world_size", "init_process_group", "is_initialized",
    "load_sharded", "make_mesh", "place_optimizer_state", "replicate", "replicated_shardings",
    "save_sharded", "set_default_mesh", "shard_batch", "shard_fsdp",
]
