"""cuDNN's attention on (B, H, S, D) inputs against the float32 HIGHEST-precision reference,
forward and gradient, and its backward alone from the reference's output and logsumexp (GPU
only: cuDNN has no CPU path); on any machine, the seams on JAX's private functions. Odd lengths
are not cuDNN's (its backward refuses them); ``attention._cudnn_can`` keeps them from it,
tested in ``test_attention``."""

import jax
import jax.numpy as jnp
import pytest

from tests.kernels.pallas_helpers import TOL, check_fwd_and_grad_jit, normal, rel_err
from tests.kernels.test__pallas_attention import reference, reference_lse
from torsh_fn.kernels import _cudnn_attention
from torsh_fn.kernels._cudnn_attention import (
    cudnn_attention,
    cudnn_attention_bwd,
    has_backward,
    takes_bhsd,
)


def test_the_supported_jax_versions_take_bhsd_as_it_is():
    # 0.10.2 (CPU) and 0.11.2 (GPU) both have the private layout argument; if a JAX release
    # drops it, the fallback with transposes keeps working and this test says so.
    assert takes_bhsd()


def test_the_fallback_transposes_to_the_public_function(monkeypatch):
    seen = {}

    def public(q, k, v, *, scale, is_causal, implementation):
        seen.update(shape=q.shape, scale=scale, causal=is_causal, impl=implementation)
        return q * 2

    monkeypatch.setattr(_cudnn_attention, "_cudnn_dot_product_attention", None)
    monkeypatch.setattr(_cudnn_attention.jax.nn, "dot_product_attention", public)
    _cudnn_attention.takes_bhsd.cache_clear()
    try:
        q = jnp.arange(2 * 3 * 5 * 4, dtype=jnp.float32).reshape(2, 3, 5, 4)
        out = cudnn_attention(q, q, q, scale=0.5, is_causal=True)
    finally:
        _cudnn_attention.takes_bhsd.cache_clear()
    assert seen == dict(shape=(2, 5, 3, 4), scale=0.5, causal=True, impl="cudnn")
    assert jnp.array_equal(out, q * 2)


def test_the_backward_alone_binds_on_the_supported_jax_versions():
    """The private backward's signature is the one ``cudnn_attention_bwd`` calls (else
    ``has_backward`` is False and ``attention`` never chooses it), and it accepts these
    arguments (JAX's abstract evaluation needs no GPU; what it computes is tested on one)."""
    assert has_backward()
    q = jax.ShapeDtypeStruct((2, 4, 256, 64), jnp.bfloat16)
    kv = jax.ShapeDtypeStruct((2, 2, 256, 64), jnp.bfloat16)
    lse = jax.ShapeDtypeStruct((2, 4, 256), jnp.float32)
    grads = jax.eval_shape(lambda q, k, v, out, lse, d_out: cudnn_attention_bwd(
        q, k, v, out, lse, d_out, scale=0.125, is_causal=True), q, kv, kv, q, lse, q)
    assert [(g.shape, g.dtype) for g in grads] == [(x.shape, x.dtype) for x in (q, kv, kv)]


def test_a_changed_backward_is_not_called(monkeypatch):
    """A JAX whose private backward takes other arguments: ``has_backward`` says so, and a
    call says why instead of passing it arguments it does not take."""
    monkeypatch.setattr(_cudnn_attention, "_cudnn_backward", lambda query, key, value: None)
    _cudnn_attention.has_backward.cache_clear()
    try:
        assert not has_backward()
        q = jnp.zeros((1, 1, 8, 8), jnp.bfloat16)
        with pytest.raises(RuntimeError, match="no cuDNN backward to call alone"):
            cudnn_attention_bwd(q, q, q, q, jnp.zeros((1, 1, 8)), q, scale=1.0, is_causal=True)
    finally:
        _cudnn_attention.has_backward.cache_clear()


def test_the_backward_alone_refuses_float32():
    q = jnp.zeros((1, 1, 8, 8), jnp.float32)
    with pytest.raises(TypeError, match="cudnn_attention_bwd: q must be float16 or bfloat16, "
                                        "got float32"):
        cudnn_attention_bwd(q, q, q, q, jnp.zeros((1, 1, 8)), q, scale=1.0, is_causal=True)


@pytest.mark.gpu
@pytest.mark.parametrize("q_shape, kv_shape, causal", [
    ((2, 8, 1000, 128), (2, 8, 1000, 128), True),
    ((2, 8, 334, 64), (2, 2, 334, 64), True),  # grouped heads
    ((1, 4, 200, 64), (1, 4, 518, 64), False),
])
def test_backward_alone_matches_reference(rng, q_shape, kv_shape, causal):
    """From the float32 reference's output and base-2 logsumexp: the convention of the
    statistics that cuDNN is handed (its own are natural logs)."""
    q, k, v, d_out = (normal(rng, s, jnp.bfloat16) for s in (q_shape, kv_shape, kv_shape,
                                                              q_shape))
    scale = q_shape[-1] ** -0.5
    out, vjp = jax.vjp(lambda q, k, v: reference(q, k, v, causal, scale), q, k, v)
    grads = cudnn_attention_bwd(q, k, v, out, reference_lse(q, k, causal, scale), d_out,
                                scale=scale, is_causal=causal)
    for got, want in zip(grads, vjp(d_out), strict=True):
        assert got.shape == want.shape and got.dtype == want.dtype
        assert rel_err(got, want) < 5 * TOL[jnp.bfloat16]


@pytest.mark.gpu
@pytest.mark.parametrize("q_shape, kv_shape, causal, dtype", [
    ((2, 8, 1000, 128), (2, 8, 1000, 128), True, jnp.bfloat16),
    ((2, 8, 334, 64), (2, 2, 334, 64), True, jnp.float16),  # grouped heads, no tile multiple
    ((1, 4, 200, 64), (1, 4, 518, 64), False, jnp.bfloat16),  # L != S without a mask
])
def test_matches_reference(rng, q_shape, kv_shape, causal, dtype):
    q, k, v = (normal(rng, s, dtype) for s in (q_shape, kv_shape, kv_shape))
    scale = q_shape[-1] ** -0.5
    check_fwd_and_grad_jit(lambda q, k, v: cudnn_attention(q, k, v, scale=scale,
                                                           is_causal=causal),
                           lambda q, k, v: reference(q, k, v, causal, scale),
                           (q, k, v), rng, dtype)
