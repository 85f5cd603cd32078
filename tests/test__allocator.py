"""``torsh_fn.jit`` on the CPU keeps large freed blocks in the heap (glibc), unless told not to.

Each check runs in a fresh interpreter: the setting is process-wide. The oracle is glibc's own
bookkeeping: ``mallinfo2().hblkhd`` counts the bytes it currently serves by ``mmap``.
"""

import ctypes
import os
import subprocess
import sys

import pytest

from torsh_fn import _allocator
from torsh_fn._allocator import keeps_freed_memory_by_default

MiB = 1 << 20

PROBE = """
import ctypes, sys, jax.numpy as jnp, torsh_fn
if sys.argv[1] == "jit":
    torsh_fn.jit(lambda x: x + 1)(jnp.ones(3))
libc = ctypes.CDLL(None)
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc.mallinfo2.restype = Info
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
before = libc.mallinfo2().hblkhd
block = libc.malloc(64 << 20)
print(libc.mallinfo2().hblkhd - before)
libc.free(block)
"""


def _has_mallinfo2() -> bool:
    try:
        return sys.platform.startswith("linux") and hasattr(ctypes.CDLL(None), "mallinfo2")
    except OSError:
        return False


def _mmapped_growth(jit: bool = True, **env: str) -> int:
    """Bytes glibc serves by mmap after a 64 MiB malloc, in a new process with ``env``, after
    importing torsh_fn and (``jit``) running a first torsh_fn.jit program."""
    clean = {k: v for k, v in os.environ.items()
             if k not in ("TORSH_FN_KEEP_FREED_MEMORY", "MALLOC_MMAP_THRESHOLD_",
                          "MALLOC_TRIM_THRESHOLD_")}
    out = subprocess.run([sys.executable, "-c", PROBE, "jit" if jit else "-"],
                         env={**clean, "JAX_PLATFORMS": "cpu", **env}, check=True,
                         capture_output=True, text=True, timeout=120).stdout
    return int(out.split()[-1])


needs_glibc = pytest.mark.skipif(not _has_mallinfo2(), reason="needs glibc >= 2.33")


@needs_glibc
def test_a_cpu_jit_program_serves_large_blocks_from_the_heap():
    assert _mmapped_growth() < MiB


@needs_glibc
def test_importing_alone_leaves_malloc_alone():
    assert _mmapped_growth(jit=False) >= 64 * MiB


@needs_glibc
def test_opting_out_leaves_glibc_mapping_large_blocks():
    assert _mmapped_growth(TORSH_FN_KEEP_FREED_MEMORY="0") >= 64 * MiB


@pytest.mark.parametrize(("env", "applies"), [
    ({}, True),
    ({"TORSH_FN_KEEP_FREED_MEMORY": "1"}, True),
    ({"TORSH_FN_KEEP_FREED_MEMORY": "0"}, False),
    ({"TORSH_FN_KEEP_FREED_MEMORY": " Off "}, False),
    ({"TORSH_FN_KEEP_FREED_MEMORY": "false"}, False),
    ({"MALLOC_MMAP_THRESHOLD_": "131072"}, False),  # the user's own glibc setting wins
    ({"MALLOC_TRIM_THRESHOLD_": "0"}, False),
])
def test_environment_decides(env, applies):
    assert keeps_freed_memory_by_default(env) is applies


def test_a_gpu_process_is_left_alone(monkeypatch):
    called = []
    monkeypatch.setattr(_allocator, "keep_freed_memory", lambda: called.append(1) or True)
    monkeypatch.setattr(_allocator.jax, "default_backend", lambda: "gpu")
    assert _allocator.keep_freed_memory_on_cpu.__wrapped__() is False
    monkeypatch.setattr(_allocator.jax, "default_backend", lambda: "cpu")
    monkeypatch.delenv("TORSH_FN_KEEP_FREED_MEMORY", raising=False)
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    assert _allocator.keep_freed_memory_on_cpu.__wrapped__() is True
    assert called == [1]
