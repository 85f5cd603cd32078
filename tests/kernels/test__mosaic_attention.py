"""The Mosaic GPU attention forward: against the float32 HIGHEST-precision reference on a Hopper
GPU; on any machine, its Mosaic GPU lowering (no GPU needed), what it refuses, and when
``attention_pallas`` hands it a call. (Pallas' Mosaic GPU interpreter cannot run it: it has no
stores into wgmma accumulators.)"""

import functools
import math

import jax
import jax.numpy as jnp
import pytest

from tests.kernels.pallas_helpers import TOL, normal, rel_err
from tests.kernels.test__pallas_attention import (
    _grouped,
    dropped_reference,
    reference,
    reference_lse,
)
from torsh_fn.kernels import _pallas_attention
from torsh_fn.kernels._mosaic_attention import (
    MosaicAttentionConfig,
    key_bias_rows,
    mosaic_attention,
    mosaic_attention_can,
)
from torsh_fn.kernels._pallas_attention import AttentionStatic
from torsh_fn.kernels._pallas_common import on_hopper
from torsh_fn.kernels.attention import attention_reference

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


def _key_masks(rng, batch: int, heads: int, kv_len: int):
    """Masks of one row for every query (what the kernel takes as a key bias): a bool key
    padding mask per batch row (the kernel skips the key blocks past the last kept key; the
    second row's keys all hidden: its rows give zeros), one that hides the first keys (rows
    hidden in the first blocks, causal rows hidden wholly), and a float bias per head (finite
    and -inf entries)."""
    kept = jnp.arange(kv_len) < jnp.array([kv_len, 0, 77, kv_len // 3])[:batch, None]
    late = jnp.arange(kv_len) >= kv_len // 2
    bias = jnp.asarray(rng.standard_normal((1, heads, 1, kv_len)), jnp.float32) * 2.0
    bias = jnp.where(jnp.arange(kv_len) % 5 == 1, -jnp.inf, bias)
    return [kept[:, None, None, :], late.reshape(1, 1, 1, kv_len), bias]


@pytest.mark.parametrize("config", [CONFIGS[0], CONFIGS[2], MosaicAttentionConfig(ctas=3)])
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("bias_shape", [(2, 1, 384), (1, 4, 384), (2, 4, 384)])
def test_lowers_with_a_key_bias(config, causal, bias_shape):
    """Each step loads its key block's bias row from global memory into the scores' column
    layout (not an optimized transfer: those read shared memory only)."""
    q = jax.ShapeDtypeStruct((2, 4, 384, 128), jnp.bfloat16)
    bias = jax.ShapeDtypeStruct(bias_shape, jnp.float32)
    call = jax.jit(functools.partial(mosaic_attention, scale=0.1, is_causal=causal,
                                     config=config, with_lse=True))
    assert "mosaic_gpu" in call.trace(q, q, q, bias).lower(lowering_platforms=("cuda",)).as_text()


@pytest.mark.parametrize("bias_shape, dtype", [((2, 1, 384), jnp.bfloat16),
                                               ((3, 1, 384), jnp.float32),
                                               ((1, 2, 384), jnp.float32),
                                               ((1, 1, 256), jnp.float32),
                                               ((1, 384), jnp.float32)])
def test_refuses_a_key_bias_of_another_shape_or_dtype(bias_shape, dtype):
    q = jnp.zeros((2, 4, 384, 64), jnp.bfloat16)
    with pytest.raises(ValueError, match=r"mosaic_attention: key_bias must be float32 \(1 or 2, "
                                         r"1 or 4, 384\), got"):
        mosaic_attention(q, q, q, jnp.zeros(bias_shape, dtype), scale=0.1, is_causal=False)


def test_key_bias_rows_is_the_masks_base_2_bias():
    """0 / -inf for a bool mask; a float mask times log2(e), float32's min and max kept
    finite."""
    kept = jnp.array([True, False, True]).reshape(1, 1, 1, 3)
    assert key_bias_rows(kept).tolist() == [[[0.0, -jnp.inf, 0.0]]]
    low, high = jnp.finfo(jnp.float32).min, jnp.finfo(jnp.float32).max
    bias = jnp.array([1.5, -jnp.inf, low, high], jnp.float32).reshape(1, 1, 1, 4)
    rows = key_bias_rows(bias)
    assert rows.shape == (1, 1, 4) and rows.dtype == jnp.float32
    assert rows[0, 0, 0] == pytest.approx(1.5 / math.log(2.0)) and rows[0, 0, 1] == -jnp.inf
    assert rows[0, 0, 2] == low and rows[0, 0, 3] == high


def test_attention_pallas_hands_it_key_padding_masks(monkeypatch):
    """One mask row for every query: any in inference, bool only in training (then the Mosaic
    backward takes it too); a row per query none."""
    monkeypatch.setattr(_pallas_attention, "on_hopper", lambda: True)
    seen, seen_bwd = [], []
    monkeypatch.setattr(_pallas_attention, "mosaic_attention",
                        lambda q, k, v, bias, seeds, **kw: seen.append(bias) or (
                            (q, q[..., 0].astype(jnp.float32)) if kw["with_lse"] else q))
    monkeypatch.setattr(_pallas_attention, "mosaic_attention_bwd",
                        lambda q, k, v, out, lse, d_out, bias, seeds, **kw: seen_bwd.append(
                            bias) or (q, k, v))
    q = jnp.zeros((2, 2, 256, 64), jnp.bfloat16)
    static = AttentionStatic(False, 0.1, None)
    runs = functools.partial(_pallas_attention.mosaic_runs, q, q, q, static)
    row, rows = jnp.ones((2, 1, 1, 256), bool), jnp.ones((2, 1, 256, 256), bool)
    assert runs(False, row) and runs(True, row) and runs(False, row.astype(jnp.float32))
    assert not runs(True, row.astype(jnp.float32)) and not runs(False, rows)
    _pallas_attention.attention_pallas(q, q, q, static, row)
    assert seen and all(bias.shape == (2, 1, 256) for bias in seen)
    seen.clear()
    jax.grad(lambda q: _pallas_attention.attention_pallas(q, q, q, static, row).sum()
             .astype(jnp.float32))(q)
    assert seen and seen_bwd and all(bias.shape == (2, 1, 256) for bias in seen_bwd)
    seen.clear()
    _pallas_attention.attention_pallas(q, q, q, static, rows)  # the Triton kernel's
    assert not seen


@pytest.mark.gpu
@hopper
@pytest.mark.parametrize("config", [MosaicAttentionConfig(schedule="pingpong"),
                                    MosaicAttentionConfig(schedule="overlap"),
                                    MosaicAttentionConfig(64, 64, 2, "overlap", ctas=2),
                                    MosaicAttentionConfig(ctas=5)])
@pytest.mark.parametrize("q_shape, kv_shape, causal, dtype", CASES)
def test_matches_reference_with_a_key_mask(rng, q_shape, kv_shape, causal, dtype, config):
    """A bool key padding mask (a batch row with every key hidden gives zeros, lse +inf) and a
    float bias per head, against the reference with the mask; the logsumexp too."""
    q, k, v = (normal(rng, s, dtype) for s in (q_shape, kv_shape, kv_shape))
    scale = q_shape[-1] ** -0.5
    for mask in _key_masks(rng, *q_shape[:2], kv_shape[2]):
        out, lse = mosaic_attention(q, k, v, key_bias_rows(mask), scale=scale,
                                    is_causal=causal, config=config, with_lse=True)
        expected = attention_reference(q, _grouped(q, k), _grouped(q, v), mask,
                                       is_causal=causal, scale=scale)
        assert rel_err(out, expected) < TOL[dtype]
        s = jnp.einsum("bhqd,bhkd->bhqk", q.astype(jnp.float32),
                       _grouped(q, k).astype(jnp.float32), precision="highest") * scale
        s = jnp.where(mask, s, -jnp.inf) if mask.dtype == jnp.bool_ else s + mask
        if causal:
            s = jnp.where(jnp.tril(jnp.ones(s.shape[-2:], bool)), s, -jnp.inf)
        want = jax.nn.logsumexp(s, axis=-1) / jnp.log(2.0)
        hidden = jnp.isneginf(want)
        assert bool(jnp.all(jnp.where(hidden, lse == jnp.inf, True)))
        assert bool(jnp.all(jnp.where(hidden, jnp.all(out == 0, axis=-1), True)))
        err = jnp.where(hidden, 0.0, jnp.abs(lse - want))
        assert float(jnp.max(err)) < 2e-3 * float(jnp.max(jnp.where(hidden, 0.0, jnp.abs(want))))


def _seeds(rng, q_shape):
    return jnp.asarray(rng.integers(0, 2**32, q_shape[:2]), jnp.uint32)


@pytest.mark.parametrize("config", [CONFIGS[0], CONFIGS[2], MosaicAttentionConfig(ctas=3)])
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("bias_shape", [None, (2, 1, 384)])
def test_lowers_with_dropout(config, causal, bias_shape):
    q = jax.ShapeDtypeStruct((2, 4, 384, 128), jnp.bfloat16)
    bias = None if bias_shape is None else jax.ShapeDtypeStruct(bias_shape, jnp.float32)
    call = jax.jit(functools.partial(mosaic_attention, scale=0.1, is_causal=causal,
                                     config=config, with_lse=True, dropout_p=0.1))
    seeds = jax.ShapeDtypeStruct((2, 4), jnp.uint32)
    program = call.trace(q, q, q, bias, seeds).lower(lowering_platforms=("cuda",)).as_text()
    assert "mosaic_gpu" in program


@pytest.mark.parametrize("dropout_p, seeds, match", [
    (1.0, jnp.zeros((2, 4), jnp.uint32), r"dropout_p must be in \[0, 1\), got 1.0"),
    (-0.1, None, r"dropout_p must be in \[0, 1\), got -0.1"),
    (0.1, None, r"with dropout_p 0.1 seeds must be uint32 of shape \(2, 4\), got None"),
    (0.1, jnp.zeros((2, 4), jnp.int32), r"with dropout_p 0.1 seeds must be uint32 of shape "
                                         r"\(2, 4\), got \(\(2, 4\), dtype\('int32'\)\)"),
    (0.1, jnp.zeros((4,), jnp.uint32), r"with dropout_p 0.1 seeds must be uint32 of shape "
                                       r"\(2, 4\), got \(\(4,\), dtype\('uint32'\)\)"),
    (0.0, jnp.zeros((2, 4), jnp.uint32), r"with dropout_p 0.0 seeds must be None, got"),
])
def test_refuses_dropout_out_of_range_or_without_its_seeds(dropout_p, seeds, match):
    q = jnp.zeros((2, 4, 128, 64), jnp.bfloat16)
    with pytest.raises(ValueError, match="mosaic_attention: " + match):
        mosaic_attention(q, q, q, None, seeds, scale=0.1, is_causal=False, dropout_p=dropout_p)


@pytest.mark.gpu
@hopper
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("config", [MosaicAttentionConfig(schedule="pingpong"),
                                    MosaicAttentionConfig(schedule="overlap"),
                                    MosaicAttentionConfig(64, 64, 2, "overlap", ctas=2),
                                    MosaicAttentionConfig(ctas=5)])
@pytest.mark.parametrize("q_shape, kv_shape, causal, dtype", CASES)
def test_matches_reference_with_dropout(rng, q_shape, kv_shape, causal, dtype, config, masked):
    """Dropout 0.3 drawn in the kernel: the output against the float32 computation with the
    same pattern (``dropout_keep`` of each head's seed), with a key padding mask too (a batch
    row with every key hidden); the logsumexp of every weight, as without dropout."""
    q, k, v = (normal(rng, s, dtype) for s in (q_shape, kv_shape, kv_shape))
    scale = q_shape[-1] ** -0.5
    seeds = _seeds(rng, q_shape)
    mask = _key_masks(rng, *q_shape[:2], kv_shape[2])[0] if masked else None
    out, lse = mosaic_attention(q, k, v, None if mask is None else key_bias_rows(mask), seeds,
                                scale=scale, is_causal=causal, config=config, with_lse=True,
                                dropout_p=0.3)
    want = dropped_reference(q, k, v, mask, causal, scale, seeds, 0.3)
    assert rel_err(out, want) < TOL[dtype]
    assert rel_err(out, reference(q, k, v, causal, scale)) > 10 * TOL[dtype]  # it drops
    if not masked:
        expected = reference_lse(q, k, causal, scale)
        assert float(jnp.max(jnp.abs(lse - expected))) < 2e-3 * float(jnp.max(jnp.abs(expected)))
