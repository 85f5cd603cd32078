"""Placement helpers on 8 devices (subprocess) and 1 device (here), and the functional face:
plain jax.jit with the helpers' shardings trains as one device does."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from torsh_fn import distributed as dist


def test_shard_batch_splits_dim_zero_over_data_and_replicates_over_model(eight):
    p = eight["placement"]
    assert p["batch_shard"] == [4, 3] and p["label_shard"] == [4]  # 16 rows on data=4
    assert p["batch_devices"] == 8 and p["batch_equal"]


def test_shard_fsdp_splits_the_largest_divisible_dimension(eight):
    p = eight["placement"]
    assert p["fsdp_w"] == [24, 8]        # (24, 64): 64 is the largest dim divisible by 8
    assert p["fsdp_b"] == [64]           # 64 elements < min_size: replicated
    assert p["fsdp_odd"] == [33, 35]     # no dimension divisible by 8: replicated
    assert p["replicated"] == [16, 3]


@pytest.mark.parametrize("key, message", [
    ("err_batch", "ValueError: shard_batch: ['x']: the batch size 12 is not divisible by the "
                  "size of the mesh's 'data' axis (8); expected a multiple of 8"),
    ("err_scalar", "ValueError: shard_batch: batch: expected an array with a batch "
                   "dimension, got a scalar"),
    ("err_mesh_type", "TypeError: replicated_shardings: mesh: expected a jax.sharding.Mesh "
                      "or None, got str"),
    ("err_axis", "ValueError: fsdp_shardings: axis: expected one of ('data', 'model'), "
                 "got 'batch'"),
])
def test_bad_placements_raise(eight, key, message):
    assert eight["placement"][key] == message


@pytest.mark.parametrize("kind", ["ddp", "fsdp"])
def test_functional_face_jax_jit_with_shardings_equals_one_device(eight, kind):
    r = eight["functional"][kind]
    assert r["close"], r["max_diff"]
    totals, full = r["param_bytes"], r["full_param_bytes"]
    if kind == "ddp":
        assert totals == [full] * 8
    else:
        assert r["shards"]["features.7.weight"][1] == [8, 64, 3, 3]
        assert full / 8 <= totals[0] < 1.1 * full / 8


def test_fsdp_spec_rule():
    P = jax.sharding.PartitionSpec
    assert dist._placement.fsdp_spec((64, 32, 3, 3), 8) == P("data")
    assert dist._placement.fsdp_spec((128, 256), 8) == P(None, "data")
    assert dist._placement.fsdp_spec((256, 256), 8) == P("data")  # ties: the first
    assert dist._placement.fsdp_spec((10, 128), 8) == P(None, "data")
    assert dist._placement.fsdp_spec((33, 35), 8) == P()
    assert dist._placement.fsdp_spec((16, 16), 8) == P()          # under min_size
    assert dist._placement.fsdp_spec((16, 16), 8, min_size=1) == P("data")
    assert dist._placement.fsdp_spec((64, 64), 1) == P()


def test_on_one_device_placement_is_the_identity_on_values():
    x = np.arange(12.0, dtype=np.float32).reshape(4, 3)
    tree = {"a": x, "b": (x[0], x)}
    one = dist.make_mesh(devices=jax.devices()[:1])
    for placed in (dist.shard_batch(tree, one), dist.replicate(tree, one),
                   dist.shard_fsdp(tree, one)):
        jax.tree.map(np.testing.assert_array_equal, placed, tree)
    shardings = dist.fsdp_shardings(tree, one)
    assert jax.tree.structure(shardings) == jax.tree.structure(tree)
    with pytest.raises(TypeError, match="replicate: expected a pytree of arrays, found a "
                                        "leaf of type str"):
        dist.replicate({"a": "text"})
