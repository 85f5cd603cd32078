"""cuDNN's attention on (B, H, S, D) inputs against the float32 HIGHEST-precision reference,
forward and gradient (GPU only: cuDNN has no CPU path), and the layout seam on any machine.
Odd lengths are not cuDNN's (its backward refuses them); ``attention._cudnn_can`` keeps them
from it, tested in ``test__pallas_attention``."""

import jax.numpy as jnp
import pytest

from tests.kernels.pallas_helpers import check_fwd_and_grad_jit, normal
from tests.kernels.test__pallas_attention import reference
from torsh_fn.kernels import _cudnn_attention
from torsh_fn.kernels._cudnn_attention import cudnn_attention, takes_bhsd


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
