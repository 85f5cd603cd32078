"""save_sharded on 8 devices (FSDP-sharded seed_cnn and AdamW state) -> load_sharded on 1
(here), 2 and 4 devices (subprocesses), values equal and placed on the new shardings."""

from __future__ import annotations

import numpy as np
import pytest

from torsh_fn import distributed as dist

from ._subprocess import run_script

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt")
    result = run_script("_checkpoint_roundtrip.py", "save", str(folder), devices=8)
    assert result["saved_shard"] == [8, 64, 3, 3]  # it was sharded when saved
    return folder


@pytest.mark.parametrize("devices", [2, 4])
def test_restores_onto_fewer_devices_sharded(saved, devices):
    r = run_script("_checkpoint_roundtrip.py", "load", str(saved), devices=devices)
    assert r["equal"] and r["equal_like"] and r["step"] == 7
    assert r["devices"] == r["like_devices"] == devices
    assert r["shard"] == [64 // devices, 64, 3, 3]
    assert r["optim_keys"] == ["exp_avg", "exp_avg_sq", "step"]


def test_restores_onto_one_device_here(saved):
    ref = np.load(saved / "ref.npz")
    tree = dist.load_sharded(saved / "ckpt.safetensors")
    assert tree["step"] == 7
    for key in ref.files:
        np.testing.assert_array_equal(np.asarray(tree["model"][key]), ref[key])
    like = {"model": {k: np.zeros_like(ref[k]) for k in ref.files}}
    with pytest.raises(ValueError, match=r"load_sharded: \['model'\]\['features.0.weight'\]: "
                                         r"expected shape \(3,\) \(from like\)"):
        dist.load_sharded(saved / "ckpt.safetensors",
                          like={"model": {"features.0.weight": np.zeros(3)}})
    with pytest.raises(ValueError, match=r"keys \['nope'\] are not in the file"):
        dist.load_sharded(saved / "ckpt.safetensors", like={"nope": None})
    placed = dist.load_sharded(saved / "ckpt.safetensors", like=like)
    assert sorted(placed) == ["model"]


def test_save_then_load_on_one_device(tmp_path):
    tree = {"w": np.arange(6.0, dtype=np.float32).reshape(2, 3), "n": 3}
    dist.save_sharded(tmp_path / "t.safetensors", {**tree, "w": dist.shard_fsdp(tree["w"])})
    back = dist.load_sharded(tmp_path / "t.safetensors", shardings=dist.fsdp_shardings(
        {"w": tree["w"], "n": np.zeros(())}))
    np.testing.assert_array_equal(np.asarray(back["w"]), tree["w"])
    assert back["n"] == 3
