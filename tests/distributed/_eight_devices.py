"""Run as a script with 8 simulated CPU devices (the test sets XLA_FLAGS in the subprocess):
trains seed_cnn single-device, with DDP and with FSDP, and prints the results as JSON.

Usage: python _eight_devices.py [section ...]  (prints one JSON object on its last line)
"""

from __future__ import annotations

import json
import sys

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import torsh_fn
import torsh_fn.nn.functional as F
from torsh_fn import distributed as dist
from torsh_fn import models, optim
from torsh_fn.func import functional_call

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


def train(wrap: str | None, opt_name: str, mesh=None) -> dict:
    """Train seed_cnn (dropout and BatchNorm in train mode); return its state and diagnostics.
    ``mesh``: the wrapper's (None: the default mesh)."""
    torsh_fn.manual_seed(0)
    model = models.get("seed_cnn")
    wrappers = {"ddp": dist.DDP, "fsdp": dist.FSDP}
    net = model if wrap is None else wrappers[wrap](model, mesh=mesh)
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
            "opt_state": opt_state,
            "mesh_axis_types": [] if wrap is None else [t.name for t in net.mesh.axis_types]}


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


def functional_results() -> dict:
    """The functional face: plain jax.jit with the helpers' shardings, vs the same jit on one
    device (seed_cnn in eval mode through functional_call, three SGD steps)."""
    torsh_fn.manual_seed(0)
    model = models.get("seed_cnn").eval()
    params = {k: p.detach() for k, p in model.named_parameters()}

    def sgd_step(params, x, y):
        def loss_fn(params):
            return F.cross_entropy(functional_call(model, params, (x,)), y)

        loss, grads = jax.value_and_grad(loss_fn)(params)
        return jax.tree.map(lambda p, g: p - 0.1 * g, params, grads), loss

    def run(step, params, place_batch):
        for x, y in batches():
            params, _ = step(params, *place_batch((x, y)))
        return params

    single = run(jax.jit(sgd_step), params, lambda b: b)
    mesh = dist.make_mesh()
    data, scalar = NamedSharding(mesh, P("data")), NamedSharding(mesh, P())
    out = {}
    for name, shardings, place in (("ddp", dist.replicated_shardings, dist.replicate),
                                   ("fsdp", dist.fsdp_shardings, dist.shard_fsdp)):
        s = shardings(params, mesh)
        step = jax.jit(sgd_step, in_shardings=(s, data, data), out_shardings=(s, scalar))
        final = run(step, place(params, mesh), lambda b: dist.shard_batch(b, mesh))
        host = {k: np.asarray(v) for k, v in final.items()}
        ref = {k: np.asarray(v) for k, v in single.items()}
        out[name] = {"close": close(host, ref), "max_diff": max_diff(host, ref),
                     "shards": shard_shapes(final),
                     "param_bytes": per_device_bytes(final.values()),
                     "full_param_bytes": sum(v.nbytes for v in host.values())}
    return out


def error_of(fn) -> str:
    try:
        fn()
    except (ValueError, TypeError) as err:
        return f"{type(err).__name__}: {err}"
    return "no error"


def placement_results() -> dict:
    mesh = dist.make_mesh()
    mesh42 = dist.make_mesh(data=4, model=2)
    x = np.arange(16 * 3, dtype=np.float32).reshape(16, 3)
    bx, by = dist.shard_batch((x, np.arange(16)), mesh42)
    w = dist.shard_fsdp({"w": np.zeros((24, 64), np.float32), "b": np.zeros(64, np.float32),
                         "odd": np.zeros((33, 35), np.float32)}, mesh)
    return {
        "mesh": dict(mesh.shape), "mesh42": dict(mesh42.shape),
        "mesh_axes": list(mesh.axis_names),
        "batch_shard": list(bx.addressable_shards[0].data.shape),
        "batch_devices": len(bx.sharding.device_set),
        "batch_equal": bool(np.array_equal(np.asarray(bx), x)),
        "label_shard": list(by.addressable_shards[0].data.shape),
        "fsdp_w": list(w["w"].addressable_shards[0].data.shape),
        "fsdp_b": list(w["b"].addressable_shards[0].data.shape),
        "fsdp_odd": list(w["odd"].addressable_shards[0].data.shape),
        "replicated": list(dist.replicate(x, mesh).addressable_shards[3].data.shape),
        "err_batch": error_of(lambda: dist.shard_batch({"x": np.zeros((12, 2))}, mesh)),
        "err_scalar": error_of(lambda: dist.shard_batch(np.float32(1), mesh)),
        "err_mesh": error_of(lambda: dist.make_mesh(data=3)),
        "err_mesh_model": error_of(lambda: dist.make_mesh(model=3)),
        "err_mesh_zero": error_of(lambda: dist.make_mesh(data=0, model=8)),
        "err_mesh_type": error_of(lambda: dist.replicate(x, mesh="data")),
        "err_axis": error_of(lambda: dist.fsdp_shardings(x, mesh, axis="batch")),
    }


def collective_results() -> dict:
    mesh = dist.make_mesh()
    x = np.arange(8 * 3, dtype=np.float32).reshape(8, 3) ** 1.5
    out = {}

    def in_program(fn, out_specs=None):
        # check_vma=False: all_gather's result is the same on every device, but JAX types it
        # as varying over the axis
        return np.asarray(jax.shard_map(fn, mesh=mesh, in_specs=P("data"), check_vma=False,
                                        out_specs=P() if out_specs is None else out_specs)(x)
                          ).tolist()

    for op in ("sum", "mean", "max", "min"):
        out[op] = in_program(lambda v, op=op: dist.all_reduce(v, op, axis_name="data"))
    out["gather"] = in_program(lambda v: dist.all_gather(v[0], axis_name="data"))
    out["gather_tiled"] = in_program(lambda v: dist.all_gather(v, axis_name="data", tiled=True))
    out["broadcast"] = in_program(lambda v: dist.broadcast(v, 3, axis_name="data"),
                                  out_specs=P("data"))
    out["x"] = x.tolist()
    out["host_reduce"] = np.asarray(dist.all_reduce(x, "max")).tolist()
    out["host_gather_shape"] = list(dist.all_gather(x).shape)
    out["host_broadcast"] = np.asarray(dist.broadcast(x, 0)).tolist()
    out["err_op"] = error_of(lambda: dist.all_reduce(x, "prod"))
    out["err_src"] = error_of(lambda: dist.broadcast(x, 1))
    return out


def late_optimizer_results() -> dict:
    """An optimizer that made its state before FSDP wrapped the model: uncommitted state is
    moved by the first step; state committed to one device is refused with a hint, and
    place_optimizer_state fixes it."""
    x, y = batches()[0]
    plain = make_opt("adamw", models.get("mlp").parameters())
    plain.step()  # no gradients: only creates the state
    out = {"not_placed": error_of(lambda: dist.place_optimizer_state(plain))}
    for commit in (False, True):
        torsh_fn.manual_seed(0)
        model = models.get("seed_cnn")
        opt = make_opt("sgd", model.parameters())
        step(model, opt, x, y)  # state made on one device
        if commit:
            for state in opt.state.values():
                state.update(jax.device_put(state, jax.devices()[0]))
        fsdp = dist.FSDP(model)
        name = "committed" if commit else "uncommitted"
        out[name] = error_of(lambda f=fsdp, o=opt: step(f, o, *dist.shard_batch((x, y))))
        dist.place_optimizer_state(opt)
        step(fsdp, opt, *dist.shard_batch((x, y)))
        buf = opt.state[model.features[7].weight]["momentum_buffer"]
        out[name + "_shard"] = list(buf.addressable_shards[0].data.shape)
    return out


def unsynced_batchnorm_results() -> dict:
    """DDP(sync_batchnorm=False): the first step's loss is the mean of one-device losses of
    the 8 shards, each normalised with its own statistics (seed_cnn without dropout)."""
    x, y = batches()[0]
    torsh_fn.manual_seed(0)
    model = models.get("seed_cnn", dropout=0.0)
    state = {k: np.asarray(v) for k, v in model.state_dict().items()}

    @torsh_fn.jit
    def loss_of(model, x, y):
        return F.cross_entropy(model(x), y)

    shard = BATCH // len(jax.devices())
    per_shard = [float(loss_of(model, x[i:i + shard], y[i:i + shard]))
                 for i in range(0, BATCH, shard)]
    whole = float(loss_of(model, x, y))
    ddp = dist.DDP(model, sync_batchnorm=False)
    unsynced = float(loss_of(ddp, *dist.shard_batch((x, y))))
    synced_model = models.get("seed_cnn", dropout=0.0)
    synced_model.load_state_dict(state)
    synced = float(loss_of(dist.DDP(synced_model), *dist.shard_batch((x, y))))
    axes = {m.replica_axis[1] for m in model.modules() if hasattr(m, "replica_axis")}
    return {"unsynced": unsynced, "mean_of_shards": float(np.mean(per_shard)),
            "synced": synced, "whole": whole, "axes": sorted(axes)}


def explicit_mesh_results() -> dict:
    """DDP and FSDP (SGD) given a mesh of ``jax.make_mesh``'s default Explicit axes, against
    single-device training."""
    mesh = jax.make_mesh((8, 1), ("data", "model"))
    single = train(None, "sgd")
    out = {"given_axis_types": [t.name for t in mesh.axis_types]}
    for wrap in ("ddp", "fsdp"):
        run = train(wrap, "sgd", mesh)
        out[wrap] = {"close": close(run["state"], single["state"]),
                     "max_diff": max_diff(run["state"], single["state"]),
                     "losses": run["losses"], "single_losses": single["losses"],
                     "mesh_axis_types": run["mesh_axis_types"]}
    dist.set_default_mesh(None)
    return out


SECTIONS = {"training": training_results, "functional": functional_results,
            "placement": placement_results, "collectives": collective_results,
            "late_optimizer": late_optimizer_results,
            "unsynced_batchnorm": unsynced_batchnorm_results,
            "explicit_mesh": explicit_mesh_results}


def main() -> None:
    names = sys.argv[1:] or list(SECTIONS)
    results = {"devices": len(jax.devices())}
    results.update({name: SECTIONS[name]() for name in names})
    print(json.dumps(results))


if __name__ == "__main__":
    sys.exit(main())
