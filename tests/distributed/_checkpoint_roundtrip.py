"""Save an FSDP-sharded state on this process's devices, or load one onto them.

Usage:
    python _checkpoint_roundtrip.py save DIR   # writes DIR/ckpt.safetensors and DIR/ref.npz
    python _checkpoint_roundtrip.py load DIR   # loads it FSDP-sharded on the devices here

Prints one JSON object on its last line.
"""

from __future__ import annotations

import json
import os
import sys

import jax
import numpy as np

import torsh_fn
from torsh_fn import distributed as dist
from torsh_fn import models, optim


def fsdp_model():
    torsh_fn.manual_seed(0)
    return dist.FSDP(models.get("seed_cnn"))


def save(folder: str) -> dict:
    fsdp = fsdp_model()
    opt = optim.AdamW(fsdp.parameters(), lr=1e-3)
    opt.step()  # no gradients yet: creates the (sharded) state, changes nothing
    tree = {"model": fsdp.module.state_dict(), "optim": opt.state_dict()["state"], "step": 7}
    dist.save_sharded(os.path.join(folder, "ckpt.safetensors"), tree)
    np.savez(os.path.join(folder, "ref.npz"),
             **{k: np.asarray(v) for k, v in tree["model"].items()})
    big = tree["model"]["features.7.weight"]
    return {"saved_shard": list(big.addressable_shards[0].data.shape)}


def load(folder: str) -> dict:
    path = os.path.join(folder, "ckpt.safetensors")
    fresh = fsdp_model()  # other init seed would not matter: everything is overwritten
    like = {"model": fresh.module.state_dict()}
    loaded = dist.load_sharded(path, shardings={
        "model": dist.fsdp_shardings(like["model"]), "optim": None, "step": None})
    via_like = dist.load_sharded(path, like={**like, "optim": None, "step": None})
    fresh.module.load_state_dict(loaded["model"])
    ref = np.load(os.path.join(folder, "ref.npz"))
    equal = all(np.array_equal(np.asarray(v), ref[k]) for k, v in loaded["model"].items())
    equal_like = all(np.array_equal(np.asarray(v), ref[k])
                     for k, v in via_like["model"].items())
    big = loaded["model"]["features.7.weight"]
    return {"equal": equal, "equal_like": equal_like, "step": loaded["step"],
            "shard": list(big.addressable_shards[0].data.shape),
            "devices": len(big.sharding.device_set),
            "like_devices": len(via_like["model"]["features.7.weight"].sharding.device_set),
            "optim_keys": sorted(next(iter(loaded["optim"].values())))}


if __name__ == "__main__":
    mode, folder = sys.argv[1:3]
    result = (save if mode == "save" else load)(folder)
    print(json.dumps({"devices_here": len(jax.devices()), **result}))
