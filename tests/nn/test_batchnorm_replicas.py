"""BatchNorm with ``replica_axis`` (DDP's ``sync_batchnorm=False``): statistics per shard of a
batch sharded over 4 simulated devices equal BatchNorm run on each shard alone (outputs,
running statistics, gradients), and the compiled forward has no cross-device reduction."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.distributed._subprocess import ROOT, device_env

SCRIPT = r"""
import json
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import torsh_fn
from torsh_fn import func, nn

R = 4
mesh = Mesh(np.array(jax.devices()[:R]), ("data",))
rng = np.random.default_rng(int(__import__("sys").argv[1]))
x = (rng.standard_normal((4 * R, 3, 5, 3)) * rng.uniform(0.5, 3, (1, 3, 1, 1))
     + rng.standard_normal((1, 3, 1, 1))).astype(np.float32)
x[:4] += 2.0                      # the shards differ: their statistics must differ too
cot = rng.standard_normal(x.shape).astype(np.float32)
state = {"weight": rng.standard_normal(3).astype(np.float32),
         "bias": rng.standard_normal(3).astype(np.float32),
         "running_mean": rng.standard_normal(3).astype(np.float32),
         "running_var": rng.uniform(0.5, 2, 3).astype(np.float32),
         "num_batches_tracked": np.array(3)}

def fresh(**kw):
    bn = nn.BatchNorm2d(3, **kw)
    bn.load_state_dict({k: jnp.asarray(v) for k, v in state.items()})
    return bn

out = {}
for momentum in (0.1, None):
    bn = fresh(momentum=momentum)
    bn.replica_axis = (mesh, "data")
    xs = jax.device_put(x, NamedSharding(mesh, P("data")))
    y = torsh_fn.jit(lambda m, x: m(x))(bn, xs)
    shards = [fresh(momentum=momentum) for _ in range(R)]
    y_ref = np.concatenate([np.asarray(s(jnp.asarray(x[4 * i:4 * i + 4])))
                            for i, s in enumerate(shards)])
    out[f"y_{momentum}"] = float(np.max(np.abs(np.asarray(y) - y_ref)))
    for name in ("running_mean", "running_var"):
        ref = np.mean([np.asarray(getattr(s, name)) for s in shards], axis=0)
        out[f"{name}_{momentum}"] = float(np.max(np.abs(np.asarray(getattr(bn, name)) - ref)))
    whole = fresh(momentum=momentum)
    y_whole = whole(jnp.asarray(x))
    out[f"differs_from_whole_batch_{momentum}"] = min(
        float(np.max(np.abs(np.asarray(whole.running_var) - np.asarray(bn.running_var)))),
        float(np.max(np.abs(np.asarray(y_whole) - y_ref))))

bn = fresh()
bn.replica_axis = (mesh, "data")
params = {"weight": bn.weight.data, "bias": bn.bias.data}
loss = lambda p, x: jnp.sum(func.functional_call(bn, p, (x,)) * cot)
grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
g_params, g_x = grad(params, jax.device_put(x, NamedSharding(mesh, P("data"))))
ref_params, ref_x = {"weight": 0.0, "bias": 0.0}, []
for i in range(R):
    s = fresh()
    sl = slice(4 * i, 4 * i + 4)
    gp, gx = jax.grad(lambda p, x: jnp.sum(func.functional_call(s, p, (x,)) * cot[sl]),
                      argnums=(0, 1))({"weight": s.weight.data, "bias": s.bias.data},
                                      jnp.asarray(x[sl]))
    ref_params = {k: ref_params[k] + np.asarray(gp[k]) for k in gp}
    ref_x.append(np.asarray(gx))
out["grad_x"] = float(np.max(np.abs(np.asarray(g_x) - np.concatenate(ref_x))))
out["grad_params"] = max(float(np.max(np.abs(np.asarray(g_params[k]) - ref_params[k])))
                         for k in ref_params)
forward = jax.jit(lambda p, x: func.functional_call(bn, p, (x,)))
hlo = forward.lower(params, jax.device_put(x, NamedSharding(mesh, P("data")))).compile().as_text()
out["forward_all_reduces"] = hlo.count("all-reduce(")
out["odd_batch_error"] = ""
try:
    torsh_fn.jit(lambda m, x: m(x))(bn, jnp.ones((6, 3, 2, 2)))
except ValueError as err:
    out["odd_batch_error"] = str(err)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def results():
    seed = str(int(__import__("numpy").random.default_rng().integers(1 << 30)))
    proc = subprocess.run([sys.executable, "-c", SCRIPT, seed], env=device_env(4),
                          capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_outputs_and_running_statistics_are_per_shard(results):
    for momentum in ("0.1", "None"):
        assert results[f"y_{momentum}"] < 1e-5
        assert results[f"running_mean_{momentum}"] < 1e-6
        assert results[f"running_var_{momentum}"] < 1e-5
        assert results[f"differs_from_whole_batch_{momentum}"] > 1e-3  # not the global stats


def test_gradients_are_the_per_shard_gradients(results):
    assert results["grad_x"] < 1e-4
    assert results["grad_params"] < 1e-3


def test_forward_needs_no_cross_device_reduction(results):
    assert results["forward_all_reduces"] == 0


def test_batch_not_divisible_by_the_replicas_is_refused(results):
    assert "BatchNorm2d" in results["odd_batch_error"]
    assert "divisible by the 4 replicas" in results["odd_batch_error"]
