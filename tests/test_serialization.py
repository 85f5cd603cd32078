"""save/load: round trips of nested checkpoints, interop with the safetensors package, corrupt
files, atomic writes, and no pickle anywhere."""

import io
import json
import os
import struct
import sys

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import safetensors.numpy
import torch

import torsh_fn as T
from tests.oracle import assert_close
from torsh_fn.serialization import CheckpointError


def _checkpoint(rng):
    return {
        "model": {"fc.weight": jnp.asarray(rng.standard_normal((3, 5)).astype(np.float32)),
                  "fc.bias": jnp.zeros(3, jnp.bfloat16),
                  "bn.num_batches_tracked": jnp.array(7, jnp.int32)},
        "optimizer": {"state": {0: {"step": 3, "exp_avg": np.ones((2, 2), np.float16)}},
                      "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "params": [0, 1],
                                        "amsgrad": False, "foreach": None}]},
        "epoch": 4, "name": "run-1", "history": [0.5, 0.25, float("inf")],
        "rng": T.get_rng_state(), "mask": np.array([True, False]), "empty": np.zeros((0, 3)),
    }


def _assert_same(a, b):
    assert type(a) is type(b) or (isinstance(b, jax.Array)
                                  and isinstance(a, np.ndarray | jax.Array))
    if isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    elif isinstance(a, np.ndarray | jax.Array):
        assert np.asarray(a).dtype == np.asarray(b).dtype and np.shape(a) == np.shape(b)
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    else:
        assert a == b


def test_round_trip_keeps_structure_types_and_values(tmp_path, rng):
    ckpt = _checkpoint(rng)
    path = tmp_path / "ckpt.safetensors"
    T.save(ckpt, path)
    loaded = T.load(path)
    _assert_same(ckpt, loaded)
    assert isinstance(loaded["optimizer"]["param_groups"][0]["betas"], tuple)
    assert list(loaded["optimizer"]["state"]) == [0]  # int keys stay ints
    assert isinstance(loaded["model"]["fc.weight"], jax.Array)


def test_file_objects_and_device(tmp_path, rng):
    buf = io.BytesIO()
    T.save({"w": jnp.ones(3)}, buf)
    buf.seek(0)
    out = T.load(buf, device="cpu")
    assert out["w"].devices() == {jax.devices("cpu")[0]}
    assert T.load(io.BytesIO(buf.getvalue()), map_location="cpu")["w"].shape == (3,)


def test_torch_tensors_are_saved_as_arrays(tmp_path):
    sd = torch.nn.Linear(4, 2).state_dict()
    T.save(sd, tmp_path / "lin.safetensors")
    loaded = T.load(tmp_path / "lin.safetensors")
    for k, v in sd.items():
        assert_close(loaded[k], v)


def test_files_are_readable_by_the_safetensors_package(tmp_path, rng):
    w = rng.standard_normal((4, 3)).astype(np.float32)
    T.save({"w": w, "step": 3}, tmp_path / "a.safetensors")
    tensors = safetensors.numpy.load_file(str(tmp_path / "a.safetensors"))
    np.testing.assert_array_equal(next(iter(tensors.values())), w)


def test_plain_safetensors_files_load_as_flat_dicts(tmp_path, rng):
    tensors = {"a": rng.standard_normal((2, 3)).astype(np.float32),
               "b": np.arange(5, dtype=np.int64)}
    safetensors.numpy.save_file(tensors, str(tmp_path / "plain.safetensors"))
    loaded = T.load(tmp_path / "plain.safetensors")
    assert sorted(loaded) == ["a", "b"]
    np.testing.assert_array_equal(np.asarray(loaded["a"]), tensors["a"])


def test_bfloat16_matches_torchs_safetensors_encoding(tmp_path):
    from safetensors.torch import load_file, save_file

    t = torch.randn(5).to(torch.bfloat16)
    save_file({"x": t}, str(tmp_path / "t.safetensors"))
    ours = T.load(tmp_path / "t.safetensors")["x"]
    assert ours.dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(ours).astype(np.float32), t.float().numpy())
    T.save({"x": ours}, tmp_path / "o.safetensors")
    assert torch.equal(next(iter(load_file(str(tmp_path / "o.safetensors")).values())), t)


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        T.load(tmp_path / "nope.safetensors")


@pytest.mark.parametrize("corrupt, match", [
    (lambda raw: b"", "too short"),
    (lambda raw: raw[:8] + b"{not json" + raw[17:], "header is not JSON"),
    (lambda raw: struct.pack("<Q", 10**12) + raw[8:], "bad header length"),
    (lambda raw: raw[:-4], "truncated or corrupt"),
    (lambda raw: b"\x80\x04\x95" + raw[3:], "not a safetensors file"),  # a pickle's opening bytes
])
def test_corrupt_or_foreign_files_raise_clear_errors(tmp_path, corrupt, match):
    T.save({"w": jnp.arange(6.0)}, tmp_path / "ok.safetensors")
    raw = (tmp_path / "ok.safetensors").read_bytes()
    (tmp_path / "bad").write_bytes(corrupt(raw))
    with pytest.raises(CheckpointError, match=match):
        T.load(tmp_path / "bad")
    with pytest.raises(ValueError):  # CheckpointError is a ValueError
        T.load(tmp_path / "bad")


def test_newer_format_is_refused(tmp_path):
    T.save({"w": jnp.ones(1)}, tmp_path / "a")
    raw = (tmp_path / "a").read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    header["__metadata__"]["torsh_fn"] = json.dumps({"version": 99, "tree": {}})
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    (tmp_path / "b").write_bytes(struct.pack("<Q", len(head)) + head + raw[8 + n:])
    with pytest.raises(CheckpointError, match="newer torsh_fn"):
        T.load(tmp_path / "b")


def test_unsupported_objects_are_refused_with_their_path(tmp_path):
    with pytest.raises(TypeError, match=r"cannot store object at obj\['a'\]\[1\]"):
        T.save({"a": [1, object()]}, tmp_path / "x")
    with pytest.raises(TypeError, match="dict keys must be str or int"):
        T.save({(1, 2): 3}, tmp_path / "x")
    assert not os.listdir(tmp_path)  # nothing half-written left behind


def test_save_is_atomic_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "ckpt"
    T.save({"w": jnp.ones(2)}, path)
    before = path.read_bytes()

    def boom(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        T.save({"w": jnp.zeros(2)}, path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["ckpt"]


def test_all_storable_dtypes_round_trip(tmp_path):
    arrays = {str(d): np.arange(4).astype(d) for d in
              [np.bool_, np.uint8, np.int8, np.int16, np.int32, np.float16, np.float32,
               ml_dtypes.bfloat16, np.complex64]}
    T.save(arrays, tmp_path / "d")
    loaded = T.load(tmp_path / "d")
    for k, v in arrays.items():
        assert np.asarray(loaded[k]).dtype == v.dtype
        np.testing.assert_array_equal(np.asarray(loaded[k]), v)


@pytest.mark.parametrize("legacy", [False, True])
def test_pytorch_state_dicts_load_through_torch_load_weights_only(tmp_path, legacy):
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    sd = {**model.state_dict(), "half": torch.randn(4).to(torch.bfloat16)}
    torch.save({"model": sd, "epoch": 3, "names": ["a", "b"]}, tmp_path / "ckpt.pth",
               _use_new_zipfile_serialization=not legacy)
    loaded = T.load(tmp_path / "ckpt.pth")
    assert loaded["epoch"] == 3 and loaded["names"] == ["a", "b"]
    assert list(loaded["model"]) == list(sd)
    assert loaded["model"]["half"].dtype == jnp.bfloat16
    for key, value in sd.items():
        assert isinstance(loaded["model"][key], jax.Array)
        np.testing.assert_array_equal(np.asarray(loaded["model"][key], np.float32),
                                      value.float().numpy(), err_msg=key)


class _Custom:
    """A class: unpickling it would run code, so weights_only refuses it."""


def test_pytorch_files_with_code_are_refused(tmp_path):
    torch.save({"obj": _Custom()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match=r"torch.load\(weights_only=True\) refused it"):
        T.load(tmp_path / "evil.pt")


def test_pytorch_files_without_torch_say_what_to_install(tmp_path, monkeypatch):
    torch.save({"w": torch.ones(2)}, tmp_path / "w.pt")
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match="is a PyTorch file; reading it needs torch"):
        T.load(tmp_path / "w.pt")
