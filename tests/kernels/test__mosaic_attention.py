"""The Mosaic GPU attention forward: against the float32 HIGHEST-precision reference on a Hopper
GPU; on any machine, its Mosaic GPU lowering (no GPU needed), what it refuses, and when
``attention_pallas`` hands it a call. (Pallas' Mosaic GPU interpreter cannot run it: it has no
stores into wgmma accumulators.)"""

import functools

import jax
import jax.numpy as jnp
import pytest

from tests.kernels.pallas_helpers import TOL, normal, rel_err
from tests.kernels.test__pallas_attention import reference, reference_lse
from torsh_fn.kernels import _pallas_attention
from torsh_fn.kernels._mosaic_attention import (
    MosaicAttentionConfig,
    mosaic_attention,
    mosaic_attention_can,
)
from torsh_fn.kernels._pallas_attention import AttentionStatic
from torsh_fn.kernels._pallas_common import on_hopper

hopper = pytest.mark.skipif(not on_hopper(), reason="needs a Hopper GPU (wgmma, TMA)")

CASES = [  # q shape, k/v shape, causal, dtype: grouped heads, L != S, several tiles, head dims
    ((2, 3, 384, 128), (2, 3, 384, 128), True, jnp.bfloat16),
    ((1, 4, 256, 64), (1, 2, 256, 64), True, jnp.float16),
    ((1, 6, 128, 128), (1, 2, 640, 128), False, jnp.bfloat16),
    ((3, 2, 512, 64), (3, 1, 384, 64), False, jnp.bfloat16),
]


CONFIGS = [MosaicAttentionConfig(), MosaicAttentionConfig(64, 64, 2, "pingpong"),
           MosaicAttentionConfig(schedule="overlap"), MosaicAttentionConfig(64, 64, 2, "overlap"),
           MosaicAttentionConfig(stages=3, schedule="pingpong"),
           MosaicAttentionConfig(64, 64, 1, "pingpong"),
           # fewer CTAs than tiles: each walks several, some more than others
           MosaicAttentionConfig(ctas=5), MosaicAttentionConfig(64, 64, 2, "overlap", ctas=2)]


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("q_shape, kv_shape, causal, dtype", CASES[:2] + CASES[3:])
def test_lowers_to_mosaic_gpu(q_shape, kv_shape, causal, dtype, config):
    """The kernel passes the Mosaic GPU lowering (TMA boxes, layouts, barriers) on the CPU."""
    q, kv = jax.ShapeDtypeStruct(q_shape, dtype), jax.ShapeDtypeStruct(kv_shape, dtype)
    call = jax.jit(functools.partial(mosaic_attention, scale=0.1, is_causal=causal,
                                     config=config))
    assert "mosaic_gpu" in call.trace(q, kv, kv).lower(lowering_platforms=("cuda",)).as_text()


@pytest.mark.parametrize("q_shape, kv_shape, dtype, causal, match", [
    ((1, 2, 128, 64), (1, 2, 128, 64), jnp.float32, False, "bfloat16 or float16, got float32"),
    ((1, 2, 128, 96), (1, 2, 128, 96), jnp.bfloat16, False, "head dim must be 64 or 128"),
    ((1, 2, 200, 64), (1, 2, 256, 64), jnp.bfloat16, False, "query length 200 must be"),
    ((1, 2, 128, 64), (1, 2, 200, 64), jnp.bfloat16, False, "key length 200 of 128"),
    ((1, 2, 128, 64), (1, 2, 256, 64), jnp.bfloat16, True, "causal needs equal"),
    ((1, 3, 128, 64), (1, 2, 128, 64), jnp.bfloat16, False, "heads dividing"),
    ((2, 2, 128, 64), (1, 2, 128, 64), jnp.bfloat16, False, "does not match"),
])
def test_refuses_what_it_does_not_take(q_shape, kv_shape, dtype, causal, match):
    assert not mosaic_attention_can(q_shape, kv_shape, dtype, causal)
    q, kv = jnp.zeros(q_shape, dtype), jnp.zeros(kv_shape, dtype)
    with pytest.raises(ValueError, match=match):
        mosaic_attention(q, kv, kv, scale=0.1, is_causal=causal)


@pytest.mark.parametrize("scale", [0.0, -0.125])
def test_refuses_a_scale_that_is_not_positive(scale):
    q = jnp.zeros((1, 2, 128, 64), jnp.bfloat16)
    with pytest.raises(ValueError, match=f"mosaic_attention: scale must be positive, got {scale}"):
        mosaic_attention(q, q, q, scale=scale, is_causal=True)


@pytest.mark.parametrize("config, match", [
    (MosaicAttentionConfig(schedule="turns"), r"schedule must be one of .* got 'turns'"),
    (MosaicAttentionConfig(stages=0), "stages must be None or at least 1, got 0"),
    (MosaicAttentionConfig(ctas=0), "ctas must be None or at least 1, got 0"),
])
def test_refuses_an_unknown_schedule_no_slots_or_no_ctas(config, match):
    assert not mosaic_attention_can((1, 2, 128, 64), (1, 2, 128, 64), jnp.bfloat16, True, config)
    q = jnp.zeros((1, 2, 128, 64), jnp.bfloat16)
    with pytest.raises(ValueError, match=match):
        mosaic_attention(q, q, q, scale=0.1, is_causal=True, config=config)


@pytest.mark.parametrize("config", [*CONFIGS[:3], MosaicAttentionConfig(ctas=3)])
def test_lowers_with_the_logsumexp(config):
    """``with_lse`` adds the (B, H, L) float32 output, stored from registers, so that the
    overlap schedule's three slots of head dim 128 fit beside it (with a buffer of its own the
    lowering refused them: too much shared memory)."""
    q = jax.ShapeDtypeStruct((1, 2, 384, 128), jnp.bfloat16)  # three key blocks: three slots
    call = jax.jit(functools.partial(mosaic_attention, scale=0.1, is_causal=True, config=config,
                                     with_lse=True))
    traced = call.trace(q, q, q)
    out, lse = traced.out_info
    assert (out.shape, out.dtype, lse.shape, lse.dtype) == (q.shape, q.dtype, q.shape[:3],
                                                            jnp.float32)
    assert "mosaic_gpu" in traced.lower(lowering_platforms=("cuda",)).as_text()


def test_attention_pallas_hands_it_only_what_it_takes(monkeypatch):
    monkeypatch.setattr(_pallas_attention, "on_hopper", lambda: True)
    q = jnp.zeros((1, 2, 256, 64), jnp.bfloat16)
    takes = _pallas_attention.mosaic_takes
    assert takes(q, q, q, AttentionStatic(True, 0.1, None))
    assert not takes(q, q, q, AttentionStatic(True, 0.1, _pallas_attention.default_config(64)))
    assert not takes(q, q, q, AttentionStatic(True, -0.1, None))  # the Triton kernels take it
    assert not takes(q, q, q, AttentionStatic(True, 0.0, None))
    assert not takes(q, q, q[..., :32], AttentionStatic(False, 0.1, None))  # Dv != D
    assert not takes(q[:, :, :100], q, q, AttentionStatic(False, 0.1, None))
    assert not takes(q.astype(jnp.float32), q, q, AttentionStatic(False, 0.1, None))
    monkeypatch.setattr(_pallas_attention, "on_hopper", lambda: False)
    assert not takes(q, q, q, AttentionStatic(True, 0.1, None))


@pytest.mark.gpu
@hopper
@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("q_shape, kv_shape, causal, dtype", CASES)
def test_matches_reference(rng, q_shape, kv_shape, causal, dtype, config):
    q, k, v = (normal(rng, s, dtype) for s in (q_shape, kv_shape, kv_shape))
    scale = q_shape[-1] ** -0.5
    out = mosaic_attention(q, k, v, scale=scale, is_causal=causal, config=config)
    assert out.shape == q_shape and out.dtype == dtype
    assert rel_err(out, reference(q, k, v, causal, scale)) < TOL[dtype]


@pytest.mark.gpu
@hopper
@pytest.mark.parametrize("ctas", [None, 5])  # 5: CTAs that walk several tiles
@pytest.mark.parametrize("schedule", ["pingpong", "overlap"])
@pytest.mark.parametrize("q_shape, kv_shape, causal, dtype", CASES)
def test_logsumexp_matches_reference(rng, q_shape, kv_shape, causal, dtype, schedule, ctas):
    """Base 2, of the scaled scores: what the Triton backward recomputes probabilities from."""
    q, k, v = (normal(rng, s, dtype) for s in (q_shape, kv_shape, kv_shape))
    scale = q_shape[-1] ** -0.5
    config = MosaicAttentionConfig(schedule=schedule, ctas=ctas)
    out, lse = mosaic_attention(q, k, v, scale=scale, is_causal=causal, config=config,
                                with_lse=True)
    assert rel_err(out, reference(q, k, v, causal, scale)) < TOL[dtype]
    expected = reference_lse(q, k, causal, scale)
    assert lse.shape == q_shape[:3] and lse.dtype == jnp.float32
    assert float(jnp.max(jnp.abs(lse - expected))) < 2e-3 * float(jnp.max(jnp.abs(expected)))
