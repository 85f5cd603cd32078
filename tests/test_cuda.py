"""torsh_fn.cuda on a machine without a GPU, and (marked gpu) with one."""

import jax.numpy as jnp
import pytest

import torsh_fn as T
from torsh_fn import cuda


def test_queries_without_a_gpu():
    if cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert cuda.device_count() == 0 and cuda.current_device() == 0
    assert cuda.memory_allocated() == 0 and cuda.max_memory_allocated() == 0
    assert cuda.memory_stats() == {}
    cuda.synchronize()
    cuda.empty_cache()
    with pytest.raises(RuntimeError, match="no CUDA device is available"):
        cuda.get_device_name()


def test_memory_settings_must_come_before_the_backend_starts():
    jnp.ones(1).block_until_ready()  # the backend has started
    with pytest.raises(RuntimeError, match="before the first JAX computation"):
        cuda.set_memory_fraction(0.5)
    with pytest.raises(ValueError, match="expected 0 < fraction <= 1"):
        cuda.set_memory_fraction(1.5)


def test_memory_settings_apply_in_a_fresh_process(tmp_path):
    import subprocess
    import sys

    code = ("import os, torsh_fn as T; T.cuda.set_memory_fraction(0.25); "
            "T.cuda.set_preallocate(False); "
            "print(os.environ['XLA_PYTHON_CLIENT_MEM_FRACTION'], "
            "os.environ['XLA_PYTHON_CLIENT_PREALLOCATE'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["0.25", "false"]


@pytest.mark.gpu
def test_memory_stats_on_a_gpu():
    before = cuda.memory_allocated()
    x = T.zeros(1024, 1024, device="cuda")
    x.block_until_ready()
    assert cuda.memory_allocated() >= before + 4 * 1024 * 1024
    assert cuda.max_memory_allocated() >= cuda.memory_allocated()
    assert "bytes_in_use" in cuda.memory_stats()
    assert cuda.get_device_name()
    cuda.synchronize()
