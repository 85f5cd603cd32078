"""Pallas layer norm, RMS norm and add + layer norm against jax.numpy references."""

import jax
import jax.numpy as jnp
import pytest

from tests.kernels.pallas_helpers import check_fwd_and_grad, normal
from torsh_fn.kernels._pallas_norm import add_layer_norm_pallas, layer_norm_pallas, rms_norm_pallas

SHAPES = [((2, 7, 130), jnp.float32), ((3, 9001), jnp.bfloat16), ((3, 5), jnp.bfloat16)]


def layer_norm_ref(x, w, b, eps=1e-5):
    x32 = x.astype(jnp.float32)
    mean = x32.mean(-1, keepdims=True)
    var = ((x32 - mean) ** 2).mean(-1, keepdims=True)
    return ((x32 - mean) * jax.lax.rsqrt(var + eps) * w + b).astype(x.dtype)


def rms_norm_ref(x, w, eps=1e-6):
    x32 = x.astype(jnp.float32)
    return (x32 * jax.lax.rsqrt((x32**2).mean(-1, keepdims=True) + eps) * w).astype(x.dtype)


@pytest.mark.parametrize("shape, dtype", SHAPES)
def test_layer_norm(rng, shape, dtype):
    n = shape[-1]
    args = (normal(rng, shape, dtype, 2.0, 1.0), normal(rng, (n,), dtype), normal(rng, (n,), dtype))
    check_fwd_and_grad(layer_norm_pallas, layer_norm_ref, args, rng, dtype, argnums=(0, 1, 2))


@pytest.mark.parametrize("shape, dtype", SHAPES)
def test_rms_norm(rng, shape, dtype):
    args = (normal(rng, shape, dtype, 2.0, 1.0), normal(rng, (shape[-1],), dtype))
    check_fwd_and_grad(rms_norm_pallas, rms_norm_ref, args, rng, dtype, argnums=(0, 1))


@pytest.mark.parametrize("shape, dtype", SHAPES[:2])
def test_add_layer_norm_returns_norm_and_sum(rng, shape, dtype):
    n = shape[-1]
    args = (
        normal(rng, shape, dtype),
        normal(rng, shape, dtype),
        normal(rng, (n,), dtype),
        normal(rng, (n,), dtype),
    )

    def ref(x, r, w, b):
        return layer_norm_ref(x + r, w, b), x + r

    check_fwd_and_grad(add_layer_norm_pallas, ref, args, rng, dtype, argnums=(0, 1, 2, 3))


def test_without_weight_and_over_two_trailing_dims(rng):
    x = normal(rng, (3, 4, 5), jnp.float32)
    expected = layer_norm_ref(x.reshape(3, 20), 1.0, 0.0).reshape(3, 4, 5)
    assert jnp.allclose(layer_norm_pallas(x, normalized_ndim=2), expected, atol=1e-5)
    assert jnp.allclose(rms_norm_pallas(x), rms_norm_ref(x, 1.0), atol=1e-5)
