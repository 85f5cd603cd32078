"""The Mosaic GPU attention backward: its gradients against those of the float32 HIGHEST-precision
reference on a Hopper GPU; on any machine, its Mosaic GPU lowering (no GPU needed), what it
refuses, and when ``attention_pallas`` hands it a call."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.kernels import test__mosaic_attention as forward_tests
from tests.kernels.pallas_helpers import TOL, normal, rel_err
from tests.kernels.test__pallas_attention import (
    check_batch_sharded_training,
    dropped_reference,
    reference,
    reference_lse,
)
from torsh_fn.kernels import _pallas_attention
from torsh_fn.kernels._mosaic_attention import key_bias_rows
from torsh_fn.kernels._mosaic_attention_bwd import (
    MosaicAttentionBwdConfig,
    _shown_key_tiles,
    mosaic_attention_bwd,
    mosaic_attention_bwd_can,
)
from torsh_fn.kernels._pallas_attention import AttentionStatic

hopper = forward_tests.hopper
CASES = [  # q shape, k/v shape, causal, dtype: grouped heads, L != S, several tiles, head dims;
    # the query length 192 only the backward takes (the forward's tiles are 128 queries)
    ((2, 3, 384, 128), (2, 3, 384, 128), True, jnp.bfloat16),
    ((1, 4, 256, 64), (1, 2, 256, 64), True, jnp.float16),
    ((1, 6, 192, 128), (1, 2, 640, 128), False, jnp.bfloat16),
    ((3, 2, 512, 64), (3, 1, 384, 64), False, jnp.bfloat16),
]
LOWERED_ONLY = [  # one query tile; causal with grouped heads at head dim 128
    ((1, 2, 64, 128), (1, 2, 128, 128), False, jnp.bfloat16),
    ((1, 4, 256, 128), (1, 2, 256, 128), True, jnp.bfloat16),
]
# three query slots; three CTAs, so that some walk several key tiles (the default, one CTA per
# SM, here gives each CTA one tile)
CONFIGS = [MosaicAttentionBwdConfig(), MosaicAttentionBwdConfig(stages=3),
           MosaicAttentionBwdConfig(ctas=3)]
WALKS = [  # CTAs that walk several key tiles: one CTA, two tiles of one step each; two CTAs
    # with tiles of 8 and then 4 steps in three slots, so that the second starts at slot 2
    ((1, 2, 64, 128), (1, 2, 128, 128), False, jnp.bfloat16, MosaicAttentionBwdConfig(ctas=1)),
    CASES[1] + (MosaicAttentionBwdConfig(stages=3, ctas=2),),
]


def _inputs(q_shape, kv_shape, dtype):
    return (jax.ShapeDtypeStruct(q_shape, dtype), jax.ShapeDtypeStruct(kv_shape, dtype),
            jax.ShapeDtypeStruct(q_shape[:3], jnp.float32))


@pytest.mark.parametrize("q_shape, kv_shape, causal, dtype, config", [
    (*case, config) for case in CASES + LOWERED_ONLY for config in CONFIGS] + WALKS)
def test_lowers_to_mosaic_gpu(q_shape, kv_shape, causal, dtype, config):
    """The kernel passes the Mosaic GPU lowering (TMA boxes, layouts, barriers, the shared
    memory's size) on the CPU; gradients come back in the inputs' shapes and dtype."""
    q, kv, lse = _inputs(q_shape, kv_shape, dtype)
    call = jax.jit(functools.partial(mosaic_attention_bwd, scale=0.1, is_causal=causal,
                                     config=config))
    traced = call.trace(q, kv, kv, q, lse, q)
    assert [(g.shape, g.dtype) for g in traced.out_info] == [(q_shape, dtype),
                                                           (kv_shape, dtype), (kv_shape, dtype)]
    assert "mosaic_gpu" in traced.lower(lowering_platforms=("cuda",)).as_text()


@pytest.mark.parametrize("q_shape, kv_shape, dtype, causal, match", [
    ((1, 2, 128, 64), (1, 2, 128, 64), jnp.float32, False, "bfloat16 or float16, got float32"),
    ((1, 2, 128, 96), (1, 2, 128, 96), jnp.bfloat16, False, "head dim must be 64 or 128"),
    ((1, 2, 100, 64), (1, 2, 128, 64), jnp.bfloat16, False, "query length 100 must be"),
    ((1, 2, 128, 64), (1, 2, 192, 64), jnp.bfloat16, False, "key length 192 of 128"),
    ((1, 2, 128, 64), (1, 2, 256, 64), jnp.bfloat16, True, "causal needs equal"),
    ((1, 3, 128, 64), (1, 2, 128, 64), jnp.bfloat16, False, "heads dividing"),
])
def test_refuses_what_it_does_not_take(q_shape, kv_shape, dtype, causal, match):
    assert not mosaic_attention_bwd_can(q_shape, kv_shape, dtype, causal)
    q, kv = jnp.zeros(q_shape, dtype), jnp.zeros(kv_shape, dtype)
    lse = jnp.zeros(q_shape[:3], jnp.float32)
    with pytest.raises(ValueError, match=match):
        mosaic_attention_bwd(q, kv, kv, q, lse, q, scale=0.1, is_causal=causal)


@pytest.mark.parametrize("scale", [0.0, -0.125])
def test_refuses_a_scale_that_is_not_positive(scale):
    q = jnp.zeros((1, 2, 128, 64), jnp.bfloat16)
    lse = jnp.zeros(q.shape[:3], jnp.float32)
    with pytest.raises(ValueError,
                       match=f"mosaic_attention_bwd: scale must be positive, got {scale}"):
        mosaic_attention_bwd(q, q, q, q, lse, q, scale=scale, is_causal=True)


@pytest.mark.parametrize("config, match", [
    (MosaicAttentionBwdConfig(block_q=32), "multiples of 64"),
    (MosaicAttentionBwdConfig(ctas=0), "ctas must be None or at least 1, got 0"),
])
def test_refuses_a_config_it_cannot_run(config, match):
    assert not mosaic_attention_bwd_can((1, 2, 128, 64), (1, 2, 128, 64), jnp.bfloat16, False,
                                        config)
    q = jnp.zeros((1, 2, 128, 64), jnp.bfloat16)
    with pytest.raises(ValueError, match=match):
        mosaic_attention_bwd(q, q, q, q, q[..., 0].astype(jnp.float32), q, scale=0.1,
                             is_causal=False, config=config)


def _training_program(q_shape, kv_shape, static):
    """The Hopper program of a differentiated ``attention_pallas`` call, lowered on the CPU."""
    q, kv = jax.ShapeDtypeStruct(q_shape, jnp.bfloat16), jax.ShapeDtypeStruct(kv_shape,
                                                                               jnp.bfloat16)

    def training(q, k, v, d_out):
        out, vjp = jax.vjp(lambda *a: _pallas_attention.attention_pallas(*a, static), q, k, v)
        return out, vjp(d_out)

    return jax.jit(training).trace(q, kv, kv, q).lower(lowering_platforms=("cuda",)).as_text()


@pytest.mark.parametrize("q_len, kv_len, config, mosaic", [
    (128, 128, None, True),
    (192, 128, None, True),  # the forward is Triton's (192 is not a multiple of 128)
    (128, 192, None, False),  # keys not a multiple of 128
    (128, 128, _pallas_attention.default_config(64), False),  # a tile config: Triton's
])
def test_attention_pallas_backward_runs_it_where_it_takes_the_shapes(monkeypatch, q_len, kv_len,
                                                                      config, mosaic):
    monkeypatch.setattr(_pallas_attention, "on_hopper", lambda: True)
    program = _training_program((1, 2, q_len, 64), (1, 2, kv_len, 64),
                                AttentionStatic(False, 0.1, config))
    assert ("func.func private @mosaic_attention_bwd" in program) == mosaic


def _reference_grads(q, k, v, d_out, causal, scale):
    as_f32 = [x.astype(jnp.float32) for x in (q, k, v)]
    _, vjp = jax.vjp(functools.partial(reference, causal=causal, scale=scale), *as_f32)
    return vjp(d_out.astype(jnp.float32))


@pytest.mark.gpu
@hopper
@pytest.mark.parametrize("q_shape, kv_shape, causal, dtype, config", [
    (*case, config) for case in CASES for config in CONFIGS] + WALKS)
def test_gradients_match_reference(rng, q_shape, kv_shape, causal, dtype, config):
    """From the reference's output and logsumexp; dK, dV summed over grouped query heads."""
    q, k, v, d_out = (normal(rng, s, dtype) for s in (q_shape, kv_shape, kv_shape, q_shape))
    scale = q_shape[-1] ** -0.5
    out = reference(q, k, v, causal, scale).astype(dtype)
    lse = reference_lse(q, k, causal, scale)
    grads = mosaic_attention_bwd(q, k, v, out, lse, d_out, scale=scale, is_causal=causal,
                                 config=config)
    for name, g, expected in zip("qkv", grads, _reference_grads(q, k, v, d_out, causal, scale)):
        assert g.shape == expected.shape and g.dtype == dtype, name
        assert rel_err(g, expected) < 5 * TOL[dtype], (name, rel_err(g, expected))


@pytest.mark.gpu
@hopper
@pytest.mark.parametrize("q_shape, kv_shape, causal, dtype", CASES[:3])
def test_attention_pallas_trains_by_mosaic(rng, q_shape, kv_shape, causal, dtype):
    """The training program runs the Mosaic backward (after the Mosaic forward, or the Triton
    one where Mosaic's forward refuses the query length 192), and its output and gradients
    match the reference's."""
    q, k, v, d_out = (normal(rng, s, dtype) for s in (q_shape, kv_shape, kv_shape, q_shape))
    scale = q_shape[-1] ** -0.5
    static = AttentionStatic(causal, scale, None)

    def training(q, k, v, d_out):
        out, vjp = jax.vjp(lambda *a: _pallas_attention.attention_pallas(*a, static), q, k, v)
        return out, vjp(d_out)

    program = jax.jit(training).lower(q, k, v, d_out).as_text()
    assert "flash_attention_bwd_mosaic" in program and "flash_attention_dkdv" not in program
    assert ("flash_attention_fwd_mosaic" in program) == (q_shape[2] % 128 == 0)
    out, grads = jax.jit(training)(q, k, v, d_out)
    assert rel_err(out, reference(q, k, v, causal, scale)) < TOL[dtype]
    for name, g, expected in zip("qkv", grads, _reference_grads(q, k, v, d_out, causal, scale)):
        assert rel_err(g, expected) < 5 * TOL[dtype], (name, rel_err(g, expected))


@pytest.mark.gpu
@hopper
@pytest.mark.parametrize("config", [CONFIGS[0], CONFIGS[2]])
def test_key_and_value_gradients_are_the_same_every_run(rng, config):
    """dK and dV are each summed in one CTA in a fixed order; only dQ's TMA reductions land in
    any order (so dQ is held to the reference's tolerance, not to bits)."""
    q_shape, kv_shape, causal, dtype = CASES[0]
    q, k, v, d_out = (normal(rng, s, dtype) for s in (q_shape, kv_shape, kv_shape, q_shape))
    scale = q_shape[-1] ** -0.5
    out = reference(q, k, v, causal, scale).astype(dtype)
    lse = reference_lse(q, k, causal, scale)
    runs = [mosaic_attention_bwd(q, k, v, out, lse, d_out, scale=scale, is_causal=causal,
                                 config=config) for _ in range(3)]
    for dq, dk, dv in runs[1:]:
        assert jnp.array_equal(dk, runs[0][1]) and jnp.array_equal(dv, runs[0][2])
        assert rel_err(dq, runs[0][0]) < TOL[dtype]


@pytest.mark.gpu
@hopper
@pytest.mark.skipif(jax.device_count() < 2, reason="needs two or more GPUs")
@pytest.mark.parametrize("axis_type", [jax.sharding.AxisType.Auto, jax.sharding.AxisType.Explicit])
def test_batch_sharded_training_runs_it_on_every_device(rng, monkeypatch, axis_type):
    """Under ``jit`` with the batch sharded over the GPUs (Auto axes, or ``jax.make_mesh``'s
    default Explicit ones), each device runs the Mosaic backward on its own rows (no
    all-gather), the gradients stay sharded, and they match the reference."""
    check_batch_sharded_training(rng, monkeypatch, axis_type, "mosaic_attention_bwd", "pallas")


def _padding_masks(batch: int, kv_len: int):
    """Bool key padding masks (B, 1, 1, S): batch rows keeping all, no keys (that row's
    queries hidden wholly: zero gradients), 77 and a third of them; one row for the batch
    hiding the first half of the keys (causal, the first half of the queries hidden)."""
    kept = jnp.arange(kv_len) < jnp.array([kv_len, 0, 77, kv_len // 3])[:batch, None]
    return [kept[:, None, None, :], (jnp.arange(kv_len) >= kv_len // 2).reshape(1, 1, 1, -1)]


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("bias_shape", [(2, 1, 384), (1, 1, 384)])
def test_lowers_with_a_key_bias(causal, bias_shape):
    q, kv, lse = _inputs((2, 4, 384, 128), (2, 2, 384, 128), jnp.bfloat16)
    call = jax.jit(functools.partial(mosaic_attention_bwd, scale=0.1, is_causal=causal))
    bias = jax.ShapeDtypeStruct(bias_shape, jnp.float32)
    assert "mosaic_gpu" in call.trace(q, kv, kv, q, lse, q, bias).lower(
        lowering_platforms=("cuda",)).as_text()


@pytest.mark.parametrize("which_mask", [0, 1])
def test_shown_key_tiles_are_those_with_a_key_the_mask_keeps(which_mask):
    """The tiles the kernel walks (1) or skips (0, their gradients zeros) against a loop over
    each batch row's tiles of the bool mask."""
    mask = _padding_masks(4, 384)[which_mask]
    shown = np.asarray(_shown_key_tiles(key_bias_rows(mask)[:, :1], 128))
    kept = np.asarray(mask)[:, 0, 0]
    want = [[int(kept[b, t * 128:(t + 1) * 128].any()) for t in range(3)]
            for b in range(kept.shape[0])]
    assert shown.dtype == np.int32 and shown.tolist() == want


@pytest.mark.parametrize("bias_shape, dtype", [((2, 2, 128), jnp.float32),
                                               ((2, 1, 128), jnp.bfloat16),
                                               ((3, 1, 128), jnp.float32)])
def test_refuses_a_key_bias_per_head_of_another_shape_or_dtype(bias_shape, dtype):
    q = jnp.zeros((2, 2, 128, 64), jnp.bfloat16)
    with pytest.raises(ValueError, match=r"mosaic_attention_bwd: key_bias must be float32 "
                                         r"\(1 or 2, 1, 128\), got"):
        mosaic_attention_bwd(q, q, q, q, q[..., 0].astype(jnp.float32), q,
                             jnp.zeros(bias_shape, dtype), scale=0.1, is_causal=False)


@pytest.mark.parametrize("mask_shape, dtype, mosaic", [
    ((2, 1, 1, 128), jnp.bool_, True),  # a key padding mask
    ((1, 1, 1, 128), jnp.bool_, True),
    ((1, 2, 1, 128), jnp.bool_, False),  # one per head: the Triton backward
    ((2, 1, 1, 128), jnp.float32, False),  # float: the Triton kernels
    ((2, 1, 128, 128), jnp.bool_, False),  # a row per query: the Triton kernels
])
def test_attention_pallas_backward_takes_a_key_padding_mask(monkeypatch, mask_shape, dtype,
                                                             mosaic):
    monkeypatch.setattr(_pallas_attention, "on_hopper", lambda: True)
    static = AttentionStatic(True, 0.1, None)
    q = jax.ShapeDtypeStruct((2, 2, 128, 64), jnp.bfloat16)
    mask = jnp.ones(mask_shape, dtype)

    def training(q, d_out):
        _, vjp = jax.vjp(lambda q: _pallas_attention.attention_pallas(q, q, q, static, mask), q)
        return vjp(d_out)

    program = jax.jit(training).trace(q, q).lower(lowering_platforms=("cuda",)).as_text()
    assert ("func.func private @mosaic_attention_bwd" in program) == mosaic
    assert _pallas_attention.mosaic_runs(q, q, q, static, True, mask) == mosaic


@pytest.mark.gpu
@hopper
@pytest.mark.parametrize("which_mask", [0, 1])
@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("q_shape, kv_shape, causal, dtype", CASES)
def test_gradients_match_reference_with_a_key_padding_mask(rng, q_shape, kv_shape, causal,
                                                           dtype, config, which_mask):
    """Training through the Mosaic forward (where it takes the query length) and backward
    with a bool key padding mask: output and gradients against the reference's (zeros for
    rows the mask hides wholly)."""
    q, k, v, d_out = (normal(rng, s, dtype) for s in (q_shape, kv_shape, kv_shape, q_shape))
    scale = q_shape[-1] ** -0.5
    mask = _padding_masks(q_shape[0], kv_shape[2])[which_mask]
    bias = key_bias_rows(mask)
    out, lse = (forward_tests.mosaic_attention(q, k, v, bias, scale=scale, is_causal=causal,
                                               with_lse=True)
                if q_shape[2] % 128 == 0 else _reference_with_lse(q, k, v, mask, causal, scale))
    grads = mosaic_attention_bwd(q, k, v, out, lse, d_out, bias, scale=scale, is_causal=causal,
                                 config=config)

    def expected(q, k, v):
        return forward_tests.attention_reference(
            q, forward_tests._grouped(q, k), forward_tests._grouped(q, v), mask,
            is_causal=causal, scale=scale)

    want, vjp = jax.vjp(expected, *(x.astype(jnp.float32) for x in (q, k, v)))
    assert rel_err(out, want) < TOL[dtype]
    for name, g, e in zip("qkv", grads, vjp(d_out.astype(jnp.float32))):
        assert bool(jnp.all(jnp.isfinite(g))), name
        assert rel_err(g, e) < 5 * TOL[dtype], (name, rel_err(g, e))


def _reference_with_lse(q, k, v, mask, causal, scale):
    """The reference's output and base-2 logsumexp (+inf for hidden rows) with a key mask."""
    out = forward_tests.attention_reference(
        q, forward_tests._grouped(q, k), forward_tests._grouped(q, v), mask, is_causal=causal,
        scale=scale)
    s = jnp.einsum("bhqd,bhkd->bhqk", q.astype(jnp.float32),
                   forward_tests._grouped(q, k).astype(jnp.float32), precision="highest") * scale
    s = jnp.where(mask, s, -jnp.inf)
    if causal:
        s = jnp.where(jnp.tril(jnp.ones(s.shape[-2:], bool)), s, -jnp.inf)
    lse = jax.nn.logsumexp(s, axis=-1) / jnp.log(2.0)
    return out, jnp.where(jnp.isneginf(lse), jnp.inf, lse)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("bias_shape", [None, (2, 1, 384)])
def test_lowers_with_dropout(causal, bias_shape):
    q, kv, lse = _inputs((2, 4, 384, 128), (2, 2, 384, 128), jnp.bfloat16)
    call = jax.jit(functools.partial(mosaic_attention_bwd, scale=0.1, is_causal=causal,
                                     dropout_p=0.1))
    bias = None if bias_shape is None else jax.ShapeDtypeStruct(bias_shape, jnp.float32)
    seeds = jax.ShapeDtypeStruct((2, 4), jnp.uint32)
    assert "mosaic_gpu" in call.trace(q, kv, kv, q, lse, q, bias, seeds).lower(
        lowering_platforms=("cuda",)).as_text()


def test_refuses_dropout_without_its_seeds():
    q = jnp.zeros((2, 2, 128, 64), jnp.bfloat16)
    with pytest.raises(ValueError, match=r"mosaic_attention_bwd: with dropout_p 0.1 seeds must "
                                         r"be uint32 of shape \(2, 2\), got None"):
        mosaic_attention_bwd(q, q, q, q, q[..., 0].astype(jnp.float32), q, scale=0.1,
                             is_causal=False, dropout_p=0.1)


@pytest.mark.parametrize("mask_shape", [None, (2, 1, 1, 128)])
def test_attention_pallas_trains_with_dropout_by_mosaic(monkeypatch, mask_shape):
    """Dropout runs the Mosaic forward and backward where they take the call (the Triton
    kernels no longer draw it there)."""
    monkeypatch.setattr(_pallas_attention, "on_hopper", lambda: True)
    monkeypatch.setattr(_pallas_attention, "interpret_mode", lambda: False)  # Triton's kernels
    static = AttentionStatic(True, 0.1, None, dropout_p=0.1)
    q = jax.ShapeDtypeStruct((2, 2, 128, 64), jnp.bfloat16)
    seeds = jax.ShapeDtypeStruct((2, 2), jnp.uint32)
    mask = None if mask_shape is None else jnp.ones(mask_shape, bool)

    def training(q, d_out, seeds):
        _, vjp = jax.vjp(lambda q: _pallas_attention.attention_pallas(q, q, q, static, mask,
                                                                      seeds), q)
        return vjp(d_out)

    program = jax.jit(training).trace(q, q, seeds).lower(lowering_platforms=("cuda",)).as_text()
    assert "func.func private @mosaic_attention_bwd(" in program
    assert "func.func private @mosaic_attention(" in program
    assert "xla.gpu.triton" not in program


@pytest.mark.gpu
@hopper
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("q_shape, kv_shape, causal, dtype", CASES)
def test_gradients_match_reference_with_dropout(rng, q_shape, kv_shape, causal, dtype, config,
                                                masked):
    """Dropout 0.3 drawn again in the backward: gradients against those of the float32
    computation with the same pattern (``dropout_keep``), from its output and the logsumexp
    of every weight; with a key padding mask too."""
    q, k, v, d_out = (normal(rng, s, dtype) for s in (q_shape, kv_shape, kv_shape, q_shape))
    scale = q_shape[-1] ** -0.5
    seeds = jnp.asarray(rng.integers(0, 2**32, q_shape[:2]), jnp.uint32)
    mask = _padding_masks(q_shape[0], kv_shape[2])[0] if masked else None
    full = jnp.ones((1, 1, 1, kv_shape[2]), bool) if mask is None else mask
    lse = _reference_with_lse(q, k, v, full, causal, scale)[1]

    def expected(q, k, v):
        return dropped_reference(q, k, v, mask, causal, scale, seeds, 0.3)

    out, vjp = jax.vjp(expected, *(x.astype(jnp.float32) for x in (q, k, v)))
    grads = mosaic_attention_bwd(q, k, v, out.astype(dtype), lse, d_out,
                                 None if mask is None else key_bias_rows(mask), seeds,
                                 scale=scale, is_causal=causal, config=config, dropout_p=0.3)
    for name, g, e in zip("qkv", grads, vjp(d_out.astype(jnp.float32))):
        assert bool(jnp.all(jnp.isfinite(g))), name
        assert rel_err(g, e) < 5 * TOL[dtype], (name, rel_err(g, e))


@pytest.mark.gpu
@hopper
@pytest.mark.parametrize("q_shape, kv_shape, causal, dtype", CASES[:2] + CASES[3:])
def test_mosaic_and_triton_kernels_draw_one_pattern(rng, q_shape, kv_shape, causal, dtype):
    """Training with dropout by the Mosaic kernels and by the Triton ones (a tile config given)
    with the same seeds: the same output and gradients (one pattern, ``dropout_keep``)."""
    q, k, v, d_out = (normal(rng, s, dtype) for s in (q_shape, kv_shape, kv_shape, q_shape))
    seeds = jnp.asarray(rng.integers(0, 2**32, q_shape[:2]), jnp.uint32)
    scale = q_shape[-1] ** -0.5

    def training(static):
        def run(q, k, v):
            return _pallas_attention.attention_pallas(q, k, v, static, None, seeds)

        out, vjp = jax.vjp(run, q, k, v)
        return out, vjp(d_out)

    config = _pallas_attention.default_config(q_shape[-1])
    mosaic = training(AttentionStatic(causal, scale, None, dropout_p=0.2))
    triton = training(AttentionStatic(causal, scale, config, dropout_p=0.2))
    for name, a, b in zip(["out", "dq", "dk", "dv"], [mosaic[0], *mosaic[1]],
                          [triton[0], *triton[1]]):
        assert rel_err(a, b) < 2 * TOL[dtype], (name, rel_err(a, b))
