"""init_process_group and friends: argument checking in this process, and a real two-process
data-parallel run over localhost (gloo CPU collectives) in subprocesses."""

from __future__ import annotations

import socket
import subprocess
import sys

import numpy as np
import pytest

from torsh_fn import distributed as dist

from ._subprocess import HERE, ROOT, device_env

ENV = ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE",
       "TORCHELASTIC_USE_AGENT_STORE")


@pytest.fixture
def clean_env(monkeypatch):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_without_a_process_group_there_is_one_process_of_rank_zero():
    assert not dist.is_initialized()
    assert (dist.get_rank(), dist.get_world_size()) == (0, 1)
    dist.barrier()  # a no-op with one process


@pytest.mark.parametrize("kwargs, match", [
    (dict(backend="tcp"), r"init_process_group: backend: expected one of"),
    (dict(world_size=2, rank=0), r"no coordinator address: pass coordinator_address"),
    (dict(init_method="file:///tmp/x", world_size=2, rank=0),
     r"init_method: expected 'env://' or 'tcp://host:port', got 'file:///tmp/x'"),
    (dict(coordinator_address="localhost:1234", rank=0),
     r"expected world_size and rank .* got world_size=None, rank=0"),
    (dict(coordinator_address="localhost:1234", world_size=2, rank=2),
     r"rank: expected an integer in \[0, 1\] \(world_size=2\), got 2"),
    (dict(coordinator_address="localhost:1234", world_size=0, rank=0),
     r"world_size: expected a positive integer, got 0"),
    (dict(coordinator_address="localhost:1234", world_size=2, num_processes=3, rank=0),
     r"the number of processes is given twice with different values: world_size=2, "
     r"num_processes=3"),
])
def test_bad_arguments_raise_value_errors_naming_the_argument(clean_env, kwargs, match):
    with pytest.raises(ValueError, match=match):
        dist.init_process_group(**kwargs)
    assert not dist.is_initialized()


def test_environment_variables_are_read_like_torchrun(clean_env):
    clean_env.setenv("MASTER_ADDR", "localhost")
    clean_env.setenv("WORLD_SIZE", "2")
    clean_env.setenv("RANK", "0")
    with pytest.raises(ValueError, match="MASTER_ADDR is set but MASTER_PORT is not"):
        dist.init_process_group()
    clean_env.setenv("MASTER_PORT", "1234")
    clean_env.setenv("RANK", "5")
    with pytest.raises(ValueError, match=r"rank: expected an integer in \[0, 1\].*got 5"):
        dist.init_process_group()
    clean_env.setenv("RANK", "one")
    with pytest.raises(ValueError, match="environment variable RANK: expected an integer"):
        dist.init_process_group()


def test_coordinator_address_and_local_devices_from_the_environment(clean_env):
    coordinator, local = dist._process._coordinator, dist._process._local_devices
    assert coordinator("tcp://10.0.0.1:1234", None) == "10.0.0.1:1234"
    assert coordinator(None, "h:9") == "h:9"
    assert coordinator(None, None) is None
    clean_env.setenv("MASTER_ADDR", "node0")
    clean_env.setenv("MASTER_PORT", "29500")
    assert coordinator("env://", None) == "node0:29500"
    clean_env.setenv("TORCHELASTIC_USE_AGENT_STORE", "True")  # torchrun's agent owns 29500
    assert coordinator(None, None) == "node0:29501"
    with pytest.raises(ValueError, match="the coordinator address is given twice"):
        coordinator("tcp://a:1", "b:2")
    assert local(None) is None
    clean_env.setenv("LOCAL_RANK", "3")
    clean_env.setenv("LOCAL_WORLD_SIZE", "1")
    assert local(None) is None             # one process per host: all its GPUs
    clean_env.setenv("LOCAL_WORLD_SIZE", "8")
    assert local(None) == [3]              # one process per GPU
    assert local([0, 1]) == [0, 1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_train_data_parallel_like_one_process(tmp_path):
    """Two processes x 2 CPU devices, gloo collectives: both end with the same parameters,
    equal to one process training on the same global batches; host collectives and a
    cross-process FSDP checkpoint round trip work."""
    port, script = _free_port(), str(HERE / "_two_process.py")
    outs = [tmp_path / f"rank{r}.npz" for r in range(2)] + [tmp_path / "single.npz"]
    who = ["0", "1", "single"]
    envs = [device_env(2), device_env(2), device_env(1)]
    for name in ENV:
        for env in envs:
            env.pop(name, None)
    # rank 0 passes arguments; rank 1 reads torchrun's variables (backend=None: gloo on CPUs)
    envs[1].update(MASTER_ADDR="localhost", MASTER_PORT=str(port), WORLD_SIZE="2", RANK="1")
    procs = [subprocess.Popen([sys.executable, script, w, "2", str(port), str(o)], env=env,
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
             for w, o, env in zip(who, outs, envs)]
    try:
        logs = [p.communicate(timeout=150)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    for w, p, log in zip(who, procs, logs):
        assert p.returncode == 0, f"process {w} failed:\n{log[-4000:]}"
    rank0, rank1, single = (np.load(o) for o in outs)
    assert (int(rank0["_rank"]), int(rank1["_rank"])) == (0, 1)
    assert int(rank0["_world"]) == int(rank1["_world"]) == 2
    for r in (rank0, rank1):
        # host collectives: rank r contributed [r + 1, 10 (r + 1)]
        assert bool(r["_initialized"])
        np.testing.assert_array_equal(r["_sum"], [3, 30])
        np.testing.assert_array_equal(r["_max"], [2, 20])
        np.testing.assert_array_equal(r["_mean"], [1.5, 15])
        np.testing.assert_array_equal(r["_gather"], [[1, 10], [2, 20]])
        np.testing.assert_array_equal(r["_broadcast"], [2, 20])
        # shard_batch: each process's 4 rows join a global (8, 3) batch; its own devices hold
        # its own rows; an already global array passes through
        np.testing.assert_array_equal(r["_global_rows"], [8, 3])
    np.testing.assert_array_equal(rank0["_local_rows"], [0, 0])
    np.testing.assert_array_equal(rank1["_local_rows"], [1, 1])
    for r in (rank0, rank1):
        # FSDP over 2 x 2 devices: a (64, 64, 3, 3) weight is split 4 ways across the
        # processes; save_sharded gathers it, load_sharded puts it back the same
        np.testing.assert_array_equal(r["_fsdp_shard"], [16, 64, 3, 3])
        assert not bool(r["_fsdp_addressable"]) and bool(r["_fsdp_roundtrip"])
    for key in single.files:
        np.testing.assert_array_equal(rank0[key], rank1[key], err_msg=key)
        np.testing.assert_allclose(rank0[key], single[key], rtol=1e-5, atol=1e-6, err_msg=key)
