"""One process of the two-process data-parallel test, or the single-process oracle.

Usage:
    python _two_process.py RANK WORLD PORT OUT.npz   # joins a group over localhost:PORT
                                                     # (from MASTER_ADDR... if RANK is set)
    python _two_process.py single WORLD - OUT.npz     # trains alone on the same global batches

Each process of the group takes its share of every epoch's indices from
``torsh_fn.data.DistributedSampler``, feeds its rows to ``shard_batch`` (which joins the
processes' rows in rank order into one global batch) and trains a DDP-wrapped seed_cnn with
SGD + momentum. The oracle trains the same model on the same global batches on one device.
The final parameters, host collective results and an FSDP save_sharded/load_sharded round trip
across the processes (to OUT's folder) are written to OUT.npz.
"""

from __future__ import annotations

import faulthandler
import os
import sys

import numpy as np

import torsh_fn
import torsh_fn.nn.functional as F
from torsh_fn import distributed as dist
from torsh_fn import models, optim
from torsh_fn.data import DistributedSampler

N, PER_RANK, STEPS = 64, 8, 3


def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return (rng.standard_normal((N, 1, 8, 8)).astype(np.float32),
            rng.integers(0, 10, N).astype(np.int32))


def global_batches(world: int) -> list[np.ndarray]:
    """Index arrays: step i's global batch is rank 0's rows, then rank 1's, ..."""
    shares = [list(DistributedSampler(range(N), num_replicas=world, rank=r, seed=3))
              for r in range(world)]
    return [np.concatenate([s[i * PER_RANK:(i + 1) * PER_RANK] for s in shares])
            for i in range(STEPS)]


@torsh_fn.jit
def step(model, opt, x, y):
    opt.zero_grad()
    loss = torsh_fn.backward(lambda: F.cross_entropy(model(x), y))
    opt.step()
    return loss


def train(rank: int | None, world: int) -> dict[str, np.ndarray]:
    x, y = data()
    torsh_fn.manual_seed(0)
    model = models.get("seed_cnn", widths=(8, 16, 16), hidden=32)
    net = model if rank is None else dist.DDP(model)
    opt = optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    torsh_fn.manual_seed(1)
    for idx in global_batches(world):
        if rank is not None:
            idx = idx[rank * PER_RANK:(rank + 1) * PER_RANK]  # this process's share
            step(net, opt, *dist.shard_batch((x[idx], y[idx])))
        else:
            step(net, opt, x[idx], y[idx])
    return {k: np.asarray(p.data.addressable_shards[0].data)
            for k, p in model.named_parameters()}


def main() -> None:
    faulthandler.dump_traceback_later(120, exit=True)  # a hang shows where, then fails
    who, world, port, out = sys.argv[1:5]
    world = int(world)
    if who == "single":
        np.savez(out, **train(None, world))
        return
    rank = int(who)
    if os.environ.get("RANK"):  # torchrun's way: everything from the environment
        dist.init_process_group()
    else:
        dist.init_process_group("gloo", f"tcp://localhost:{port}", world_size=world, rank=rank)
    result = train(rank, world)
    result.update(collectives(rank))
    result.update(fsdp_checkpoint(os.path.join(os.path.dirname(out), "fsdp.safetensors")))
    dist.barrier()
    np.savez(out, **result)
    dist.destroy_process_group()


def collectives(rank: int) -> dict[str, np.ndarray]:
    """Host collectives across the processes (rank r contributes [r + 1, 10 (r + 1)]) and
    shard_batch of process-local rows and of a global array."""
    mine = np.asarray([rank + 1.0, 10.0 * (rank + 1)], np.float32)
    rows = dist.shard_batch(np.full((4, 3), rank, np.float32))   # 4 local rows -> (8, 3)
    again = dist.shard_batch(rows)                                # a global array stays global
    return {"_global_rows": np.asarray(again.shape),
            "_local_rows": np.asarray([s.data[0, 0] for s in again.addressable_shards]),
            "_rank": np.asarray(dist.get_rank()), "_world": np.asarray(dist.get_world_size()),
            "_initialized": np.asarray(dist.is_initialized()),
            "_sum": dist.all_reduce(mine), "_max": dist.all_reduce(mine, "max"),
            "_mean": dist.all_reduce(mine, "mean"), "_gather": dist.all_gather(mine),
            "_broadcast": dist.broadcast(mine, src=1)}


def fsdp_checkpoint(path: str) -> dict[str, np.ndarray]:
    """An FSDP model sharded across both processes' devices, saved with save_sharded (which
    gathers across processes) and loaded back sharded."""
    torsh_fn.manual_seed(0)
    fsdp = dist.FSDP(models.get("seed_cnn"))
    state = fsdp.module.state_dict()
    big = state["features.7.weight"]
    dist.save_sharded(path, {"model": state})
    back = dist.load_sharded(path, like={"model": state})["model"]
    same = all(np.array_equal(np.asarray(a.addressable_shards[0].data),
                              np.asarray(back[k].addressable_shards[0].data))
               for k, a in state.items())
    return {"_fsdp_shard": np.asarray(big.addressable_shards[0].data.shape),
            "_fsdp_addressable": np.asarray(big.is_fully_addressable),
            "_fsdp_roundtrip": np.asarray(same and not back["features.7.weight"]
                                          .is_fully_addressable)}


if __name__ == "__main__":
    main()
