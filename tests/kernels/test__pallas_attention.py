"""Pallas flash attention against the float32 HIGHEST-precision reference, forward and gradient.

On the CPU the kernels run in Pallas' interpreter with small tiles, so a few dozen rows already
span several tiles, ragged edges and the causal diagonal; ``@pytest.mark.gpu`` tests run the
compiled kernels with their default tiles at the head dims that matter (64, 128, 256).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from tests.kernels.pallas_helpers import TOL, check_fwd_and_grad_jit, normal, rel_err
from torsh_fn.kernels import _pallas_attention
from torsh_fn.kernels._pallas_attention import (
    AttentionConfig,
    AttentionStatic,
    attention_pallas,
    dropout_keep,
    mask_as_bhls,
)
from torsh_fn.kernels.attention import attention, attention_reference

SMALL = AttentionConfig(16, 16, 16, 16, 16, 16)


def _grouped(q, kv):
    """(B, Hk, S, D) key/value heads repeated to q's H."""
    return jnp.repeat(kv, q.shape[1] // kv.shape[1], axis=1)


def reference(q, k, v, causal, scale):
    """Grouped heads repeated, then the jax.numpy reference at Precision.HIGHEST."""
    return attention_reference(q, _grouped(q, k), _grouped(q, v), is_causal=causal, scale=scale)


def reference_lse(q, k, causal, scale):
    """The rows' logsumexp of the scaled scores in base 2, (B, H, L), in float32 HIGHEST: what
    the forward saves for the backward."""
    s = jnp.einsum("bhqd,bhkd->bhqk", q.astype(jnp.float32), _grouped(q, k).astype(jnp.float32),
                   precision="highest") * scale
    if causal:
        s = jnp.where(jnp.tril(jnp.ones(s.shape[-2:], bool)), s, -jnp.inf)
    return jax.nn.logsumexp(s, axis=-1) / jnp.log(2.0)


def check_batch_sharded_training(rng, monkeypatch, axis_type, backward: str, impl: str):
    """Under ``jit`` with the batch of (n, 4, 256, 128) bf16 queries over grouped (n, 2, 256, 128)
    keys sharded over the n GPUs (a mesh of ``axis_type`` axes), causal
    ``attention(impl=impl)`` trains with ``_pallas_attention``'s ``backward`` on each device's
    own rows (traced with one row, no all-gather), and the gradients stay sharded and match the
    reference."""
    traced_batches = []
    run_backward = getattr(_pallas_attention, backward)

    def spy(q, *args, **kwargs):
        traced_batches.append(q.shape[0])
        return run_backward(q, *args, **kwargs)

    monkeypatch.setattr(_pallas_attention, backward, spy)
    n = jax.device_count()
    mesh = jax.make_mesh((n,), ("data",), axis_types=(axis_type,))
    q, k, v = (jax.device_put(normal(rng, s, jnp.bfloat16), NamedSharding(mesh, P("data")))
               for s in ((n, 4, 256, 128), (n, 2, 256, 128), (n, 2, 256, 128)))

    def loss(q, k, v):
        out = attention(q, k, v, is_causal=True, impl=impl)
        return jnp.sum(out.astype(jnp.float32) * q.astype(jnp.float32))

    training = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
    with jax.set_mesh(mesh):
        assert "all-gather" not in training.lower(q, k, v).compile().as_text()
        grads = training(q, k, v)
    assert 1 in traced_batches, traced_batches  # the per-device program (shapes are traced whole)
    expected = jax.grad(lambda *a: jnp.sum(reference(*a, True, 128 ** -0.5) * a[0]),
                        argnums=(0, 1, 2))(*(np.asarray(x, np.float32) for x in (q, k, v)))
    for name, g, e in zip("qkv", grads, expected, strict=True):
        assert g.sharding.spec[0] == "data", (name, g.sharding)
        assert rel_err(g, e) < 5 * TOL[jnp.bfloat16], (name, rel_err(g, e))


def check(rng, dtype, shapes, causal, scale, cfg, cudnn_backward=False):
    q, k, v = (normal(rng, s, dtype) for s in shapes)
    static = AttentionStatic(causal, scale, cfg, cudnn_backward)
    check_fwd_and_grad_jit(lambda q, k, v: attention_pallas(q, k, v, static),
                           lambda q, k, v: reference(q, k, v, causal, scale),
                           (q, k, v), rng, dtype)


CASES = [  # q, k, v shapes; causal; dtype: ragged tiles, grouped heads, odd head dims
    (((1, 4, 37, 24), (1, 2, 37, 24), (1, 2, 37, 24)), True, jnp.float32),
    (((2, 2, 20, 16), (2, 1, 45, 16), (2, 1, 45, 8)), False, jnp.bfloat16),
    (((1, 2, 45, 8), (1, 2, 19, 8), (1, 2, 19, 8)), True, jnp.float16),
]


@pytest.mark.parametrize("shapes, causal, dtype", CASES)
def test_matches_reference(rng, shapes, causal, dtype):
    check(rng, dtype, shapes, causal, 0.3, SMALL)


@pytest.mark.parametrize("scale", [-0.3, 0.0])
def test_matches_reference_with_a_scale_that_is_not_positive(rng, scale):
    """PyTorch takes any scale; the Mosaic GPU kernels refuse these (``mosaic_takes``) and the
    Triton kernels take them, causal masks included."""
    shapes, causal, dtype = CASES[0]
    check(rng, dtype, shapes, causal, scale, SMALL)


@pytest.mark.parametrize("shapes, causal, dtype", CASES[:2])
def test_forward_without_gradient_matches_reference(rng, shapes, causal, dtype):
    """A call that is not differentiated takes the custom_vjp's primal (``_any_forward``
    without the logsumexp), not its forward rule."""
    q, k, v = (normal(rng, s, dtype) for s in shapes)
    out = attention_pallas(q, k, v, AttentionStatic(causal, 0.3, SMALL))
    assert out.shape == (*q.shape[:3], v.shape[-1]) and out.dtype == dtype
    assert rel_err(out, reference(q, k, v, causal, 0.3)) < TOL[dtype]


@pytest.mark.parametrize("shapes, causal, dtype", CASES[:2])
def test_forward_saves_the_base2_logsumexp(rng, shapes, causal, dtype):
    """The residual the backward (and the Mosaic forward's ``with_lse``) agree on."""
    q, k, v = (normal(rng, s, dtype) for s in shapes)
    _, lse, _ = _pallas_attention._forward(q, k, v, None,
                                            AttentionStatic(causal, 0.3, SMALL))
    assert lse.shape == q.shape[:3] and lse.dtype == jnp.float32
    assert float(jnp.max(jnp.abs(lse - reference_lse(q, k, causal, 0.3)))) < 1e-2


def test_cudnn_backward_takes_the_forward_residuals(rng, monkeypatch):
    """``cudnn_backward=True`` hands the forward's output and base-2 logsumexp to cuDNN's
    backward (here a stand-in that computes them by the Triton kernels, which take the same
    residuals: cuDNN needs a GPU) and returns its gradients."""
    calls = []

    def cudnn_attention_bwd(q, k, v, out, lse, d_out, *, scale, is_causal):
        calls.append((lse.shape, lse.dtype, scale, is_causal))  # traced: no values
        return _pallas_attention._backward(q, k, v, None, out, lse, d_out,
                                           AttentionStatic(is_causal, scale, SMALL))

    monkeypatch.setattr(_pallas_attention, "cudnn_attention_bwd", cudnn_attention_bwd)
    shapes = ((1, 4, 37, 24), (1, 2, 37, 24), (1, 2, 37, 24))
    q, k, v = (normal(rng, s, jnp.float32) for s in shapes)
    static = AttentionStatic(True, 0.3, SMALL, cudnn_backward=True)
    check_fwd_and_grad_jit(lambda q, k, v: attention_pallas(q, k, v, static),
                           lambda q, k, v: reference(q, k, v, True, 0.3), (q, k, v), rng,
                           jnp.float32)
    assert calls and set(calls) == {(q.shape[:3], jnp.dtype(jnp.float32), 0.3, True)}


@pytest.mark.gpu
@pytest.mark.parametrize("shapes", [
    ((2, 8, 1024, 128), (2, 8, 1024, 128), (2, 8, 1024, 128)),  # the Mosaic forward
    ((2, 8, 334, 64), (2, 2, 334, 64), (2, 2, 334, 64)),  # grouped heads, the Triton forward
])
def test_compiled_forward_with_cudnn_backward_matches_reference(rng, shapes):
    check(rng, jnp.bfloat16, shapes, True, shapes[0][-1] ** -0.5, None, cudnn_backward=True)


@pytest.mark.gpu
@pytest.mark.parametrize("head_dim, causal", [(64, True), (128, False), (256, True)])
def test_compiled_kernels_match_reference(rng, head_dim, causal):
    q_shape, kv_shape = (2, 8, 1000, head_dim), (2, 2, 1000, head_dim)
    check(rng, jnp.bfloat16, (q_shape, kv_shape, kv_shape), causal, head_dim**-0.5, None)


@pytest.mark.gpu
def test_compiled_float32_and_odd_sizes(rng):
    shapes = ((1, 4, 333, 40), (1, 4, 517, 40), (1, 4, 517, 40))
    check(rng, jnp.float32, shapes, True, 0.2, None)


def test_config_rejects_bad_blocks():
    with pytest.raises(ValueError, match="block_k must be a power of two >= 16, got 24"):
        AttentionConfig(block_k=24)


def test_public_op_refuses_what_the_kernel_does_not_cover():
    q = jnp.ones((1, 2, 5, 8))
    with pytest.raises(ValueError, match="does not take a mask of dtype int32 \\(bool or float"):
        attention(q, q, q, jnp.ones((5, 5), jnp.int32), impl="pallas")
    with pytest.raises(ValueError, match=r"attention: mask of shape \(3, 5\) does not broadcast "
                       r"to \(batch, heads, L, S\) = \(1, 2, 5, 5\)"):
        attention(q, q, q, jnp.ones((3, 5), bool), impl="pallas")
    with pytest.raises(ValueError, match="does not take dropout_p = 1"):
        attention(q, q, q, dropout_p=1.0, key=jax.random.PRNGKey(0), impl="pallas")
    with pytest.raises(ValueError, match=r"attention: dropout_p=0.5 needs a PRNG key \(key=\)"):
        attention(q, q, q, dropout_p=0.5, impl="pallas")
    with pytest.raises(ValueError, match=r"dropout_p must be in \[0, 1\], got -0.1"):
        attention(q, q, q, dropout_p=-0.1, impl="pallas")
    with pytest.raises(ValueError, match=r"with dropout_p 0\.5 seeds must be uint32 of shape"):
        attention_pallas(q, q, q, AttentionStatic(False, 0.1, None, dropout_p=0.5))
    with pytest.raises(ValueError, match="does not take key/value heads that do not divide"):
        attention(q, q[:, :1].repeat(3, 1), q[:, :1].repeat(3, 1), impl="pallas")


def test_auto_is_xla_on_the_cpu(rng):
    q = normal(rng, (1, 2, 9, 8), jnp.float32)
    assert jnp.array_equal(attention(q, q, q, is_causal=True),
                           attention(q, q, q, is_causal=True, impl="xla"))


def masked_reference(q, k, v, mask, causal, scale):
    """The reference with grouped heads repeated and an attention mask."""
    return attention_reference(q, _grouped(q, k), _grouped(q, v), mask, is_causal=causal,
                               scale=scale)


MASK_CASES = [  # q, k/v shapes; the mask's shape and dtype; causal: every broadcast the kernels
    # read (batch, heads and query rows each 1 or whole), ragged tiles, grouped heads
    (((2, 4, 37, 24), (2, 2, 45, 24)), (2, 1, 1, 45), jnp.bool_, False),  # key padding
    (((2, 4, 37, 24), (2, 2, 45, 24)), (1, 4, 37, 45), jnp.float32, True),  # per-head bias
    (((2, 2, 29, 16), (2, 2, 29, 16)), (2, 2, 29, 29), jnp.bool_, True),  # all dims
    (((1, 2, 20, 16), (1, 1, 33, 16)), (20, 1), jnp.bool_, False),  # per query: some rows hidden
    (((2, 2, 20, 16), (2, 1, 33, 16)), (2, 1, 33), jnp.float32, False),  # per-head key bias
]


def random_mask(rng, shape, dtype):
    if dtype == jnp.bool_:
        return jnp.asarray(rng.random(shape) < 0.7)
    return normal(rng, shape, dtype)


@pytest.mark.parametrize("shapes, mask_shape, mask_dtype, causal", MASK_CASES)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_masks_match_reference(rng, shapes, mask_shape, mask_dtype, causal, dtype):
    """Outputs and gradients (of a float mask too) against the reference, the kernels reading
    the mask as ``mask_as_bhls`` lays it out."""
    q_shape, kv_shape = shapes
    q, k, v = (normal(rng, s, dtype) for s in (q_shape, kv_shape, kv_shape))
    mask = random_mask(rng, mask_shape, mask_dtype)
    static = AttentionStatic(causal, 0.3, SMALL)

    def kernels(q, k, v, mask):
        bhls = mask_as_bhls(mask, q.shape[:1], *q.shape[1:3], k.shape[2])
        return attention_pallas(q, k, v, static, bhls)

    args = (q, k, v, mask)
    if mask_dtype == jnp.bool_:  # not differentiable: closed over
        check_fwd_and_grad_jit(lambda q, k, v: kernels(q, k, v, mask),
                               lambda q, k, v: masked_reference(q, k, v, mask, causal, 0.3),
                               args[:3], rng, dtype)
    else:
        check_fwd_and_grad_jit(kernels, lambda *a: masked_reference(*a, causal, 0.3), args, rng,
                               dtype)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_hidden_rows_give_zeros_and_zero_gradients(rng, dtype):
    """A query row that sees no key (a mask of False, or of -inf, over every key) gives zeros
    and passes no gradient, as PyTorch's math path; the others match the reference."""
    q, k, v = (normal(rng, (1, 2, 21, 16), dtype) for _ in range(3))
    hidden = np.zeros((21, 1), bool)
    hidden[[0, 7, 20]] = True
    for mask in (jnp.asarray(~hidden & (rng.random((21, 21)) < 0.8)),
                 jnp.where(hidden, -jnp.inf, normal(rng, (21, 21), jnp.float32))):
        def loss(q, k, v, fn):
            return jnp.sum(fn(q, k, v).astype(jnp.float32) ** 2)

        def kernels(q, k, v, mask=mask):
            return attention(q, k, v, mask, impl="pallas", config=SMALL)

        out = kernels(q, k, v)
        assert not np.asarray(out[:, :, hidden[:, 0]], np.float32).any()
        assert rel_err(out, masked_reference(q, k, v, mask, False, None)) < TOL[dtype]
        grads = jax.grad(loss, argnums=(0, 1, 2))(q, k, v, kernels)
        assert all(np.isfinite(np.asarray(g, np.float32)).all() for g in grads)
        assert not np.asarray(grads[0][:, :, hidden[:, 0]], np.float32).any()
        expected = jax.grad(loss, argnums=(0, 1, 2))(
            q, k, v, lambda *a, mask=mask: masked_reference(*a, mask, False, None))
        for g, e in zip(grads, expected, strict=True):
            assert rel_err(g, e) < 5 * TOL[dtype]


def test_the_mask_gradient_is_computed_only_where_it_is_differentiated(rng, monkeypatch):
    """dS, a [Sq, Sk] matrix per head, is written only for a float mask that is differentiated;
    a constant float mask and a bool mask do without."""
    asked = []

    def spy(q, k, v, mask, out, lse, d_out, static, mask_grad, seeds, log2l):
        asked.append(mask_grad)
        return backward(q, k, v, mask, out, lse, d_out, static, mask_grad, seeds, log2l)

    backward = _pallas_attention._backward
    monkeypatch.setattr(_pallas_attention, "_backward", spy)
    q = normal(rng, (2, 2, 19, 16), jnp.float32)
    bias = normal(rng, (2, 1, 1, 19), jnp.float32)

    def loss(q, mask):
        return jnp.sum(attention(q, q, q, mask, impl="pallas", config=SMALL) ** 2)

    jax.grad(loss)(q, bias)
    jax.grad(loss)(q, bias > 0)
    assert asked and not any(asked)
    asked.clear()
    grad_q, grad_bias = jax.grad(loss, argnums=(0, 1))(q, bias)
    assert asked and all(asked)
    expected = jax.grad(lambda q, m: jnp.sum(masked_reference(q, q, q, m, False, None) ** 2),
                        argnums=(0, 1))(q, bias)
    assert grad_bias.shape == bias.shape
    assert rel_err(grad_bias, expected[1]) < 5 * TOL[jnp.float32]
    assert rel_err(grad_q, expected[0]) < 5 * TOL[jnp.float32]


@pytest.mark.parametrize("mask_shape, batch_shape, laid_out", [
    ((2, 1, 1, 7), (2,), (2, 1, 1, 7)),  # key padding
    ((7,), (2,), (1, 1, 1, 7)),  # one row for every batch, head and query
    ((5, 1), (2,), (1, 1, 5, 7)),  # per query: the keys broadcast
    ((1, 3, 8, 1, 7), (2, 3), (6, 8, 1, 7)),  # one batch dim broadcast: both laid out
    ((1, 1, 1, 5, 7), (2, 3), (1, 1, 5, 7)),
])
def test_mask_as_bhls_keeps_what_varies(mask_shape, batch_shape, laid_out):
    mask = jnp.arange(np.prod(mask_shape)).reshape(mask_shape)
    got = mask_as_bhls(mask, batch_shape, 8, 5, 7)
    assert got.shape == laid_out
    np.testing.assert_array_equal(
        np.broadcast_to(got.reshape(*(batch_shape if got.shape[0] > 1 else (1,) * len(batch_shape)),
                                    *got.shape[1:]), (*batch_shape, 8, 5, 7)),
        np.broadcast_to(mask, (*batch_shape, 8, 5, 7)))


def test_masked_training_lowers_to_the_mosaic_and_the_triton_kernels(monkeypatch):
    """On Hopper a bool key padding mask takes the Mosaic GPU forward and backward, a float bias
    of a row per query the three Triton kernels: the program of a training step with both,
    lowered for CUDA on the CPU."""
    monkeypatch.setattr(_pallas_attention, "interpret_mode", lambda: False)
    monkeypatch.setattr(_pallas_attention, "on_hopper", lambda: True)
    q = jnp.zeros((2, 4, 256, 128), jnp.bfloat16)
    mask = jnp.zeros((2, 1, 1, 256), bool)

    def loss(q, bias):
        static = AttentionStatic(False, 0.1, None)
        return jnp.sum(attention_pallas(q, q, q, static, mask) + attention_pallas(
            q, q, q, static, bias).astype(jnp.float32))

    text = jax.jit(jax.grad(loss, argnums=(0, 1))).trace(
        q, jnp.zeros((1, 4, 256, 256), jnp.bfloat16)).lower(lowering_platforms=("cuda",)).as_text()
    assert text.count("xla.gpu.triton") == 3 and "flash_attention_fwd_mosaic" in text
    assert "func.func private @mosaic_attention_bwd" in text


@pytest.mark.gpu
@pytest.mark.parametrize("head_dim, causal", [(64, True), (128, False)])
def test_compiled_masks_match_reference(rng, head_dim, causal):
    q_shape, kv_shape = (2, 8, 1000, head_dim), (2, 2, 1000, head_dim)
    q, k, v = (normal(rng, s, jnp.bfloat16) for s in (q_shape, kv_shape, kv_shape))
    padding = jnp.arange(1000) < jnp.array([1000, 613])[:, None, None, None]
    bias = normal(rng, (1, 8, 1000, 1000), jnp.bfloat16)
    static = AttentionStatic(causal, head_dim ** -0.5, None)
    check_fwd_and_grad_jit(
        lambda q, k, v, bias: attention_pallas(q, k, v, static, jnp.where(padding, bias, -jnp.inf)),
        lambda q, k, v, bias: masked_reference(q, k, v, jnp.where(padding, bias, -jnp.inf), causal,
                                               head_dim ** -0.5),
        (q, k, v, bias), rng, jnp.bfloat16)


@pytest.mark.parametrize("float_mask", [False, True])
def test_tiles_the_mask_hides_are_skipped(rng, float_mask):
    """Key tiles that the mask hides wholly (padding keys) are never read: NaN keys and values
    there leave outputs and gradients finite, equal to attention over the kept keys alone (with
    a tile read, 0 * NaN would spread)."""
    q = normal(rng, (2, 2, 21, 16), jnp.float32)
    k, v = (normal(rng, (2, 1, 48, 16), jnp.float32) for _ in range(2))
    kept = jnp.arange(48) < jnp.array([32, 16])[:, None, None, None]  # whole 16-key tiles
    mask = jnp.where(kept, 0.0, -jnp.inf) if float_mask else kept
    k_nan, v_nan = (jnp.where(kept[:, :, 0, :, None], x, jnp.nan) for x in (k, v))

    def loss(q, k, v, mask):
        out = attention(q, k, v, mask, impl="pallas", config=SMALL)
        return jnp.sum(out * q), out

    (_, out), grads = jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)(
        q, k_nan, v_nan, mask)
    for b, n in enumerate((32, 16)):  # the reference over each row's kept keys
        def kept_loss(q, k, v, n=n):
            out = masked_reference(q, k[:, :, :n], v[:, :, :n], None, False, 16 ** -0.5)
            return jnp.sum(out * q), out

        (_, want), want_grads = jax.value_and_grad(kept_loss, argnums=(0, 1, 2), has_aux=True)(
            q[b:b + 1], k[b:b + 1], v[b:b + 1])
        assert rel_err(out[b:b + 1], want) < TOL[jnp.float32]
        for g, w in zip(grads, want_grads, strict=True):
            assert rel_err(g[b:b + 1, :, :w.shape[2]], w) < 5 * TOL[jnp.float32]
            assert not np.asarray(g[b:b + 1, :, w.shape[2]:]).any()  # hidden keys: zeros


def dropped_reference(q, k, v, mask, causal, scale, seeds, p):
    """The float32 HIGHEST computation with the kernels' dropout pattern (``dropout_keep`` of
    each head's seed) on the softmax weights, kept ones scaled by 1 / (1 - p)."""
    k, v = (_grouped(q, x).astype(jnp.float32) for x in (k, v))
    s = jnp.einsum("bhqd,bhkd->bhqk", q.astype(jnp.float32), k, precision="highest") * scale
    length, keys = s.shape[-2:]
    if causal:
        s = jnp.where(jnp.tril(jnp.ones((length, keys), bool)), s, -jnp.inf)
    if mask is not None:
        s = jnp.where(mask, s, -jnp.inf)
    w = jax.nn.softmax(s, axis=-1)
    w = jnp.where(jnp.isnan(w), 0.0, w)  # rows the mask hides wholly
    keep = dropout_keep(seeds[:, :, None, None], jnp.arange(length)[:, None], jnp.arange(keys),
                        p)
    out = jnp.einsum("bhqk,bhkd->bhqd", jnp.where(keep, w, 0.0) / (1 - p), v,
                     precision="highest")
    return out.astype(q.dtype)


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_dropout_matches_the_reference_with_its_pattern(rng, masked, causal, dtype):
    """Dropout inside the kernels: outputs and gradients against the float32 computation with
    the same pattern (``dropout_keep``), grouped heads, ragged tiles, with a padding mask."""
    q = normal(rng, (2, 4, 37, 24), dtype)
    k, v = (normal(rng, (2, 2, 45, 24), dtype) for _ in range(2))
    seeds = jnp.asarray(rng.integers(0, 2**32, (2, 4)), jnp.uint32)
    mask = jnp.asarray(rng.random((2, 1, 1, 45)) < 0.7) if masked else None
    static = AttentionStatic(causal, 0.3, SMALL, dropout_p=0.3)
    check_fwd_and_grad_jit(
        lambda q, k, v: attention_pallas(q, k, v, static, mask, seeds),
        lambda q, k, v: dropped_reference(q, k, v, mask, causal, 0.3, seeds, 0.3),
        (q, k, v), rng, dtype)


def test_dropout_keeps_one_minus_p_with_no_pattern():
    """The pattern's statistics: kept fractions near 1 - p for every seed, no correlation
    between neighbours along either axis or between seeds."""
    seeds = jnp.arange(8, dtype=jnp.uint32)[:, None, None] * jnp.uint32(2654435761)
    rows, cols = jnp.arange(256)[:, None], jnp.arange(300)[None, :]
    for p in (0.1, 0.5, 0.9):
        keep = np.asarray(dropout_keep(seeds, rows, cols, p), np.float64)  # (8, 256, 300)
        assert np.all(np.abs(keep.mean(axis=(1, 2)) - (1 - p)) < 0.01)
        centred = keep - keep.mean()
        var = (centred**2).mean()
        for a, b in ((centred[:, 1:], centred[:, :-1]), (centred[:, :, 1:], centred[:, :, :-1]),
                     (centred[1:], centred[:-1])):
            assert abs((a * b).mean() / var) < 0.02


def test_dropout_draws_by_the_key():
    """One key gives one pattern (forward and backward agree on it: the gradient tests), and
    another key another; in expectation the output is attention's without dropout."""
    q = jnp.asarray(np.random.default_rng(0).standard_normal((1, 2, 19, 16)), jnp.float32)

    def run(key):
        return attention(q, q, q, dropout_p=0.4, key=key, impl="pallas", config=SMALL)

    first, again, other = (run(jax.random.key(n)) for n in (1, 1, 2))
    assert jnp.array_equal(first, again) and not jnp.allclose(first, other)
    mean = jnp.mean(jnp.stack([run(jax.random.key(n)) for n in range(40)]), axis=0)
    plain = attention(q, q, q, impl="xla")
    assert rel_err(mean, plain) < 0.15  # 40 draws: the standard error of their mean


def test_dropout_training_lowers_to_the_triton_kernels(monkeypatch):
    """Dropout at a length the Mosaic GPU kernels refuse takes the three Triton kernels on a
    Hopper GPU (lowered for CUDA on the CPU): the hash's uint32 arithmetic lowers."""
    monkeypatch.setattr(_pallas_attention, "interpret_mode", lambda: False)
    monkeypatch.setattr(_pallas_attention, "on_hopper", lambda: True)
    q = jnp.zeros((2, 4, 250, 128), jnp.bfloat16)
    seeds = jnp.zeros((2, 4), jnp.uint32)

    def loss(q):
        static = AttentionStatic(True, 0.1, None, dropout_p=0.1)
        return jnp.sum(attention_pallas(q, q, q, static, None, seeds).astype(jnp.float32))

    text = jax.jit(jax.grad(loss)).trace(q).lower(lowering_platforms=("cuda",)).as_text()
    assert text.count("xla.gpu.triton") == 3 and "mosaic_gpu" not in text


@pytest.mark.gpu
@pytest.mark.parametrize("head_dim, causal", [(64, True), (128, False)])
def test_compiled_dropout_matches_reference(rng, head_dim, causal):
    q_shape, kv_shape = (2, 8, 1000, head_dim), (2, 2, 1000, head_dim)
    q, k, v = (normal(rng, s, jnp.bfloat16) for s in (q_shape, kv_shape, kv_shape))
    seeds = jnp.asarray(rng.integers(0, 2**32, (2, 8)), jnp.uint32)
    padding = jnp.arange(1000) < jnp.array([1000, 613])[:, None, None, None]
    static = AttentionStatic(causal, head_dim ** -0.5, None, dropout_p=0.2)
    check_fwd_and_grad_jit(
        lambda q, k, v: attention_pallas(q, k, v, static, padding, seeds),
        lambda q, k, v: dropped_reference(q, k, v, padding, causal, head_dim ** -0.5, seeds,
                                          0.2),
        (q, k, v), rng, jnp.bfloat16)


@pytest.mark.parametrize("hidden_by", [-1e9, float(np.finfo(np.float32).min)])
def test_rows_hidden_by_a_finite_float_mask_match_reference(rng, hidden_by):
    """A float mask that hides a row with a large finite value (-1e9, or float32's min as
    Hugging Face masks padding) leaves it finite (no overflow to -inf), with the reference's
    weights (float32 rounds the scores' differences away there: uniform), and its gradients
    right and finite: the forward keeps the rows' max and log2 sums apart (their sum rounded
    the sums away), and the dQ kernel takes no probability past the last key (with lse far
    below zero it was inf, and NaN after). (With -1e4 the scores keep part of their
    differences, and float32's rounding of them differs between the two by ~1e-3.)"""
    q, k, v = (normal(rng, (1, 2, 20, 16), jnp.float32) for _ in range(3))
    bias = jnp.zeros((20, 20), jnp.float32).at[0].set(hidden_by).at[7, 3:].set(hidden_by)
    cot = normal(rng, (1, 2, 20, 16), jnp.float32)

    def loss(q, k, v, bias, impl):
        out = attention(q, k, v, bias, impl=impl, config=SMALL)
        return jnp.sum(out * cot), out

    (_, out), grads = jax.value_and_grad(loss, argnums=(0, 1, 2, 3), has_aux=True)(
        q, k, v, bias, "pallas")
    (_, want), want_grads = jax.value_and_grad(loss, argnums=(0, 1, 2, 3), has_aux=True)(
        q, k, v, bias, "xla")
    assert rel_err(out, want) < TOL[jnp.float32]
    for name, g, w in zip(("q", "k", "v", "bias"), grads, want_grads, strict=True):
        assert np.isfinite(np.asarray(g)).all(), name
        assert rel_err(g, w) < 5 * TOL[jnp.float32], (name, rel_err(g, w))
