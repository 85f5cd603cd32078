"""DDP and FSDP on 8 simulated CPU devices train seed_cnn exactly as one device does.

The training runs in a subprocess (``_eight_devices.py``); the oracle is the same training,
same seeds and batches, on one device of that process.
"""

from __future__ import annotations

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from torsh_fn import distributed as dist
from torsh_fn import models

from ._subprocess import ROOT, device_env, run_once

pytestmark = pytest.mark.slow
RUNS = ["ddp_sgd", "fsdp_sgd", "ddp_adamw", "fsdp_adamw"]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return run_once(tmp_path_factory, "_eight_devices.py", "training")


def test_the_subprocess_saw_eight_devices(results):
    assert results["devices"] == 8


@pytest.mark.parametrize("run", RUNS)
def test_data_parallel_training_equals_single_device_training(results, run):
    r = results["training"][run]
    assert r["close"], f"{run}: max |difference| {r['max_diff']}"
    np.testing.assert_allclose(r["losses"], r["single_losses"], rtol=1e-5)


@pytest.mark.parametrize("run", RUNS)
def test_wrapper_state_dict_keys_carry_the_module_prefix(results, run):
    assert all(k.startswith("module.") for k in results["training"][run]["keys"])


@pytest.mark.parametrize("run", ["ddp_sgd", "ddp_adamw"])
def test_ddp_replicates_parameters_and_optimizer_state(results, run):
    r = results["training"][run]
    for name, (shape, shard, ndev) in r["shards"].items():
        assert shard == shape and ndev == 8, name
    assert r["param_bytes"] == [r["full_param_bytes"]] * 8
    assert r["opt_bytes"] == [r["full_opt_bytes"]] * 8


@pytest.mark.parametrize("run", ["fsdp_sgd", "fsdp_adamw"])
def test_fsdp_keeps_each_device_one_eighth_of_parameters_and_optimizer_state(results, run):
    r = results["training"][run]
    shards = r["shards"]
    # the big weights are split 8 ways along their largest divisible dimension
    assert shards["features.3.weight"][1] == [8, 32, 3, 3]
    assert shards["features.7.weight"][1] == [8, 64, 3, 3]
    assert shards["classifier.2.weight"][1] == [128, 32]
    assert shards["classifier.5.weight"][1] == [10, 16]
    # small arrays (under min_size elements) stay replicated
    assert shards["features.0.weight"][1] == [32, 1, 3, 3]
    assert shards["features.1.bias"][1] == [32]
    for totals, full in ((r["param_bytes"], r["full_param_bytes"]),
                         (r["opt_bytes"], r["full_opt_bytes"])):
        assert len(set(totals)) == 1
        assert full / 8 <= totals[0] < 1.1 * full / 8


def test_optimizer_made_before_wrapping(eight):
    r = eight["late_optimizer"]
    assert r["uncommitted"] == "no error"  # state on no particular device: moved by the step
    assert r["committed"].startswith("ValueError: torsh_fn.jit: the state and arguments of "
                                     "this call live on different devices")
    assert "place_optimizer_state(optimizer)" in r["committed"]
    # after place_optimizer_state the momentum is FSDP-sharded like its parameter
    assert r["uncommitted_shard"] == r["committed_shard"] == [8, 64, 3, 3]
    assert r["not_placed"] == ("ValueError: place_optimizer_state: a parameter of the "
                               "optimizer is not placed on a mesh; wrap the model with "
                               "DDP/FSDP first")


def test_wrappers_check_their_arguments():
    with pytest.raises(TypeError, match=r"DistributedDataParallel: module: expected a "
                                        r"torsh_fn\.nn\.Module, got int"):
        dist.DDP(3)
    with pytest.raises(TypeError, match=r"FullyShardedDataParallel: mesh: expected a "
                                        r"jax\.sharding\.Mesh or None, got str"):
        dist.FSDP(models.get("mlp"), mesh="data")


def test_on_one_device_the_wrapper_is_the_model():
    model = models.get("mlp").eval()
    x = jnp.ones((4, 64))
    expected = np.asarray(model(x))
    one = dist.make_mesh(devices=jax.devices()[:1])
    for wrap in (dist.DDP, dist.FSDP):
        wrapped = wrap(model, mesh=one)
        assert wrapped.module is model
        np.testing.assert_array_equal(np.asarray(wrapped(x)), expected)
        assert sorted(wrapped.state_dict()) == sorted(f"module.{k}" for k in model.state_dict())
        assert dist.get_default_mesh() is wrapped.mesh
    dist.set_default_mesh(None)


def test_sync_batchnorm_false_normalises_each_shard_alone(eight):
    r = eight["unsynced_batchnorm"]
    assert r["axes"] == ["data"]
    np.testing.assert_allclose(r["unsynced"], r["mean_of_shards"], rtol=1e-5)
    np.testing.assert_allclose(r["synced"], r["whole"], rtol=1e-5)
    assert abs(r["unsynced"] - r["synced"]) > 1e-4  # the two semantics differ on this batch


# A DDP or FSDP training step compiles once: the state not yet placed anywhere (the generator's
# key, AdamW's step counters) goes onto the mesh before the first call, so the second call finds
# the first call's program.
COMPILE_ONCE = r"""
import json
import numpy as np
import torsh_fn
import torsh_fn.nn.functional as F
from torsh_fn import distributed as dist, models, optim

out = {}
rng = np.random.default_rng(0)
x = rng.standard_normal((16, 1, 8, 8)).astype(np.float32)
y = rng.integers(0, 10, 16)
for wrap in ("DDP", "FSDP"):
    torsh_fn.manual_seed(0)
    model = getattr(dist, wrap)(models.get("seed_cnn"))
    opt = optim.AdamW(model.parameters(), lr=1e-3)
    traces = []

    @torsh_fn.jit
    def step(model, opt, x, y):
        traces.append(None)
        opt.zero_grad()
        loss = torsh_fn.backward(lambda: F.cross_entropy(model(x), y))
        opt.step()
        return loss

    batch = dist.shard_batch((x, y))
    losses = [float(step(model, opt, *batch)) for _ in range(3)]
    out[wrap] = {"traces": len(traces), "programs": len(step._cache), "losses": losses}
print(json.dumps(out))
"""


def test_ddp_and_fsdp_steps_compile_once():
    proc = subprocess.run([sys.executable, "-c", COMPILE_ONCE], env=device_env(8), cwd=ROOT,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    for wrap, r in results.items():
        assert r["traces"] == 1 and r["programs"] == 1, (wrap, r)
        assert r["losses"][2] < r["losses"][0], (wrap, r)  # it trains


@pytest.mark.parametrize("wrap", ["ddp", "fsdp"])
def test_a_mesh_of_explicit_axes_trains_as_single_device(eight, wrap):
    """A mesh from ``jax.make_mesh`` (Explicit axes by default) is used with its axes Auto."""
    r = eight["explicit_mesh"]
    assert r["given_axis_types"] == ["Explicit", "Explicit"]
    run = r[wrap]
    assert run["mesh_axis_types"] == ["Auto", "Auto"]
    assert run["close"], f"max |difference| {run['max_diff']}"
    np.testing.assert_allclose(run["losses"], run["single_losses"], rtol=1e-5)
