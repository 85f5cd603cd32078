"""Test-suite habits shared by every test file.

* ``variant``: run the function under test with and without ``jax.jit`` (chex's variants).
* ``rng``: a numpy Generator with a fresh seed per run (``TORSH_TEST_SEED`` pins it); the seed
  is printed in the header so a failure can be replayed.
* ``@pytest.mark.gpu`` tests are skipped where JAX sees no GPU.
* On a GPU, tests outside ``tests/kernels`` multiply float32 at full precision
  (``jax_default_matmul_precision`` "highest", also in the subprocesses they start): XLA's
  default there is TF32 (docs/functional.md), while their oracles (PyTorch on the CPU) and
  tolerances are float32's. The kernels' tests compare at their own precisions.
"""

from __future__ import annotations

import functools
import os
import zlib

import jax
import numpy as np
import pytest

# Set once in the controller; pytest-xdist workers inherit the variable and so the same seed.
os.environ.setdefault("TORSH_TEST_SEED", str(np.random.SeedSequence().entropy % 2**31))
_SESSION_SEED = int(os.environ["TORSH_TEST_SEED"])


def pytest_report_header(config):
    return f"torsh_fn test seed: TORSH_TEST_SEED={_SESSION_SEED}"


@functools.cache
def _has_gpu() -> bool:
    try:
        return bool(jax.devices("gpu"))
    except RuntimeError:
        return False


def pytest_collection_modifyitems(config, items):
    if _has_gpu():
        return
    skip = pytest.mark.skip(reason="needs a GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _float32_at_full_precision_on_a_gpu(request, monkeypatch):
    if not _has_gpu() or "kernels" in request.node.path.relative_to(request.config.rootpath).parts:
        yield
        return
    monkeypatch.setenv("JAX_DEFAULT_MATMUL_PRECISION", "highest")
    with jax.default_matmul_precision("highest"):
        yield


@pytest.fixture
def rng(request) -> np.random.Generator:
    """Fresh random data each run, reproducible from the printed seed and the test's name."""
    return np.random.default_rng([_SESSION_SEED, zlib.crc32(request.node.nodeid.encode())])


@pytest.fixture(params=["with_jit", "without_jit"])
def variant(request):
    """``variant(fn)`` is ``jax.jit(fn)`` or ``fn`` itself: each functional test runs both ways."""
    if request.param == "with_jit":
        return jax.jit
    return lambda fn, **kwargs: fn
