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
    _, lse = _pallas_attention._forward(q, k, v, AttentionStatic(causal, 0.3, SMALL))
    assert lse.shape == q.shape[:3] and lse.dtype == jnp.float32
    assert float(jnp.max(jnp.abs(lse - reference_lse(q, k, causal, 0.3)))) < 1e-2


def test_cudnn_backward_takes_the_forward_residuals(rng, monkeypatch):
    """``cudnn_backward=True`` hands the forward's output and base-2 logsumexp to cuDNN's
    backward (here a stand-in that computes them by the Triton kernels, which take the same
    residuals: cuDNN needs a GPU) and returns its gradients."""
    calls = []

    def cudnn_attention_bwd(q, k, v, out, lse, d_out, *, scale, is_causal):
        calls.append((lse.shape, lse.dtype, scale, is_causal))  # traced: no values
        return _pallas_attention._backward(q, k, v, out, lse, d_out,
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
    with pytest.raises(ValueError, match="attention: the Pallas kernel does not take an attn mask"):
        attention(q, q, q, jnp.ones((5, 5), bool), impl="pallas")
    with pytest.raises(ValueError, match="does not take dropout_p > 0"):
        attention(q, q, q, dropout_p=0.5, key=jax.random.PRNGKey(0), impl="pallas")
    with pytest.raises(ValueError, match="does not take key/value heads that do not divide"):
        attention(q, q[:, :1].repeat(3, 1), q[:, :1].repeat(3, 1), impl="pallas")


def test_auto_is_xla_on_the_cpu(rng):
    q = normal(rng, (1, 2, 9, 8), jnp.float32)
    assert jnp.array_equal(attention(q, q, q, is_causal=True),
                           attention(q, q, q, is_causal=True, impl="xla"))
