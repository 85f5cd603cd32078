"""The Mosaic GPU row softmax against a float64 reference: interpret mode on the CPU, the Mosaic
GPU lowering (to the CUDA custom call, no GPU needed), and the compiled kernel on a GPU."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from torsh_fn.kernels import _mosaic_softmax
from torsh_fn.kernels._mosaic_softmax import MosaicSoftmaxConfig, softmax_mosaic

TOL = {jnp.bfloat16: (1e-2, 1e-5), jnp.float32: (2e-5, 1e-7)}  # rtol, atol against float64
DTYPES = [jnp.bfloat16, jnp.float32]
CONFIGS = [  # default; one row a slot; deeper pipelines; warpgroup semantics
    MosaicSoftmaxConfig(),
    MosaicSoftmaxConfig(block_rows=1),
    MosaicSoftmaxConfig(block_rows=3, stages=3),
    MosaicSoftmaxConfig(block_rows=2, stages=4, ctas_per_sm=1),
    MosaicSoftmaxConfig(block_rows=3, warpgroup_semantics=True),
]


@pytest.fixture
def two_sms(monkeypatch):
    """Few CTAs, so that each walks several blocks through its pipeline (on a real GPU the grid
    has an SM count of CTAs and small inputs give each CTA one block)."""
    monkeypatch.setattr(_mosaic_softmax, "sm_count", lambda: 2)


def _input(rng, shape, dtype):
    return jnp.asarray(3.0 * rng.standard_normal(shape), dtype)


def _check(x, out):
    x64 = np.asarray(x.astype(jnp.float32), np.float64)
    e = np.exp(x64 - x64.max(-1, keepdims=True))
    ref = e / e.sum(-1, keepdims=True)
    assert out.shape == x.shape and out.dtype == x.dtype
    rtol, atol = TOL[x.dtype.type]
    np.testing.assert_allclose(np.asarray(out.astype(jnp.float32)), ref, rtol=rtol, atol=atol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(7, 128), (30, 384), (5, 4096)])
@pytest.mark.parametrize("config", CONFIGS)
def test_interpret_matches_float64(rng, two_sms, shape, dtype, config):
    x = _input(rng, shape, dtype)
    _check(x, softmax_mosaic(x, interpret=True, config=config))


def test_interpret_widest_rows(rng, two_sms):
    """Two float32 rows of 8192 do not fit two stages: the slot shrinks to one row."""
    x = _input(rng, (6, 8192), jnp.float32)
    _check(x, softmax_mosaic(x, interpret=True))


@pytest.mark.parametrize("rows", [1, 17, 1001])
def test_slots_and_grid_cover_every_row_once(rows, two_sms):
    """Rows of distinct constants: each output row must be uniform and its own (a row computed
    twice or skipped would show as zeros or a neighbour's values)."""
    x = jnp.broadcast_to(jnp.arange(rows, dtype=jnp.float32)[:, None], (rows, 128))
    x = x + jnp.where(jnp.arange(128) == 0, 1.0, 0.0)  # column 0 is e times the others
    out = softmax_mosaic(x, interpret=True, config=MosaicSoftmaxConfig(block_rows=4))
    expected = jax.nn.softmax(x, axis=-1)
    np.testing.assert_allclose(np.asarray(out), np.asarray(expected), rtol=1e-6)


def test_extreme_logits_stay_finite():
    x = jnp.tile(jnp.array([1e4, -1e4, 0.0, -1e4], jnp.float32), (3, 32))
    out = softmax_mosaic(x, interpret=True)
    assert jnp.isfinite(out).all()
    assert jnp.allclose(out.sum(-1), 1.0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("config", [CONFIGS[0], CONFIGS[3], CONFIGS[4]])
def test_lowers_to_mosaic_gpu(dtype, config):
    """The kernel passes the Mosaic GPU lowering (TMA box, layouts, shared memory) on the CPU."""
    x = jax.ShapeDtypeStruct((1001, 4096), dtype)
    call = jax.jit(functools.partial(softmax_mosaic, interpret=False, config=config))
    text = call.trace(x).lower(lowering_platforms=("cuda",)).as_text()
    assert "mosaic_gpu" in text


@pytest.mark.parametrize(
    "x, match",
    [
        (jnp.zeros((4, 128, 2)), "must be 2-D"),
        (jnp.zeros((4, 128), jnp.float16), "bfloat16 or float32, got float16"),
        (jnp.zeros((4, 100)), "multiple of 128 and at most 8192, got 100"),
        (jnp.zeros((4, 8320)), "got 8320"),
    ],
)
def test_unsupported_inputs_raise(x, match):
    with pytest.raises(ValueError, match=f"softmax_mosaic: .*{match}"):
        softmax_mosaic(x, interpret=True)


def test_slots_over_shared_memory_raise():
    with pytest.raises(ValueError, match="shared memory"):
        softmax_mosaic(jnp.zeros((8, 8192)), interpret=True, config=MosaicSoftmaxConfig(stages=4))


@pytest.mark.parametrize("field", ["block_rows", "stages", "ctas_per_sm"])
def test_config_rejects_non_positive_knobs(field):
    with pytest.raises(ValueError, match=f"{field} must be >= 1, got 0"):
        MosaicSoftmaxConfig(**{field: 0})


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1001, 4096), (16384, 4096), (7, 384), (3, 2048)])
@pytest.mark.parametrize("config", CONFIGS)
def test_compiled_matches_float64(rng, shape, dtype, config):
    x = _input(rng, shape, dtype)
    _check(x, softmax_mosaic(x, interpret=False, config=config))
