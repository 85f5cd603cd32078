"""Run as a script with 8 simulated CPU devices (the test sets XLA_FLAGS in the subprocess):
trains seed_cnn single-device, with DDP and with FSDP, and prints the results as JSON.

Usage: python _eight_devices.py [section ...]  (prints one JSON object on its last line)
"""

from __future__ import annotations

import json
import sys

import jax
import numpy as np

import torsh_fn
import torsh_fn.nn.functional as F
from torsh_fn import distributed as dist
from torsh_fn import models, optim

STEPS, BATCH = 3, 16


def batches() -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    return [(rng.standard_normal((BATCH, 1, 8, 8)).astype(np.float32),
             rng.integers(0, 10, BATCH).astype(np.int32)) for _ in range(STEPS)]


def make_opt(name: str, params):
    if name == "sgd":
        return optim.SGD(params, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4)
    return optim.AdamW(params, lr=1e-3, weight_decay=0.01)


@torsh_fn.jit
def step(model, opt, x, y):
    opt.zero_grad()
    loss = torsh_fn.backward(lambda: F.cross_entropy(model(x), y))
    opt.step()
    return loss


def train(wrap: str | None, opt_name: str) -> dict:
    """Train seed_cnn (dropout and BatchNorm in train mode); return its state and diagnostics."""
    torsh_fn.manual_seed(0)
    model = models.get("seed_cnn")
    net = {None: lambda m: m, "ddp": dist.DDP, "fsdp": dist.FSDP}[wrap](model)
    opt = make_opt(opt_name, net.parameters())
    torsh_fn.manual_seed(1)
    losses = []
    for x, y in batches():
        xy = (x, y) if wrap is None else dist.shard_batch((x, y))
        losses.append(float(step(net, opt, *xy)))
    state = {k: np.asarray(v) for k, v in model.state_dict().items()}
    opt_state = [v for s in opt.state.values() for v in s.values() if isinstance(v, jax.Array)]
    return {"state": state, "losses": losses, "keys": sorted(net.state_dict()),
            "params": {n: p.data for n, p in model.named_parameters()},
            "opt_state": opt_state}


def shard_shapes(arrays: dict) -> dict:
    return {k: [list(v.shape), list(v.addressable_shards[0].data.shape),
                len(v.sharding.device_set)] for k, v in arrays.items()}


def per_device_bytes(arrays) -> list[int]:
    totals = [0] * len(jax.devices())
    for v in arrays:
        for shard in v.addressable_shards:
            totals[shard.device.id] += shard.data.nbytes
    return totals


def max_diff(a: dict, b: dict) -> float:
    return max(float(np.max(np.abs(a[k].astype(np.float64) - b[k]), initial=0.0)) for k in a)


def close(a: dict, b: dict) -> bool:
    return all(np.allclose(a[k], b[k], rtol=1e-5, atol=1e-6) for k in a)


def training_results() -> dict:
    out = {}
    for opt_name in ("sgd", "adamw"):
        single = train(None, opt_name)
        for wrap in ("ddp", "fsdp"):
            run = train(wrap, opt_name)
            name = f"{wrap}_{opt_name}"
            out[name] = {"close": close(run["state"], single["state"]),
                         "max_diff": max_diff(run["state"], single["state"]),
                         "losses": run["losses"], "single_losses": single["losses"],
                         "keys": run["keys"][:2],
                         "shards": shard_shapes(run["params"]),
                         "param_bytes": per_device_bytes(run["params"].values()),
                         "opt_bytes": per_device_bytes(run["opt_state"]),
                         "full_param_bytes": sum(v.nbytes for v in run["params"].values()),
                         "full_opt_bytes": sum(v.nbytes for v in run["opt_state"])}
    return out


SECTIONS = {"training": training_results}


def main() -> None:
    names = sys.argv[1:] or list(SECTIONS)
    results = {"devices": len(jax.devices())}
    results.update({name: SECTIONS[name]() for name in names})
    print(json.dumps(results))


if __name__ == "__main__":
    sys.exit(main())
