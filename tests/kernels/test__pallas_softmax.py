"""Pallas softmax / log-softmax against jax.nn, forward and gradient (interpret mode on CPU)."""

import jax
import jax.numpy as jnp
import pytest

from tests.kernels.pallas_helpers import check_fwd_and_grad, normal
from torsh_fn.kernels._pallas_softmax import softmax_pallas

CASES = [  # shape, axis, log, dtype: one row in registers, a moved axis, rows longer than a block
    ((3, 5), -1, False, jnp.float32),
    ((2, 3, 130), -1, True, jnp.float32),
    ((2, 3, 130), -1, False, jnp.bfloat16),
    ((4, 7), 0, True, jnp.bfloat16),
    ((2, 9001), -1, False, jnp.float32),
    ((2, 9001), -1, True, jnp.bfloat16),
]


@pytest.mark.parametrize("shape, axis, log, dtype", CASES)
def test_matches_reference(rng, shape, axis, log, dtype):
    x = normal(rng, shape, dtype, scale=3.0)
    ref = jax.nn.log_softmax if log else jax.nn.softmax
    check_fwd_and_grad(
        lambda x: softmax_pallas(x, axis, log=log),
        lambda x: ref(x.astype(jnp.float32), axis=axis).astype(dtype),
        (x,),
        rng,
        dtype,
    )


def test_extreme_logits_stay_finite():
    x = jnp.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4]], jnp.float32)
    out = softmax_pallas(x, log=True)
    assert jnp.isfinite(out).all()
    assert jnp.allclose(out, jax.nn.log_softmax(x, -1))


def test_empty_input_passes_through():
    assert softmax_pallas(jnp.zeros((0, 4))).shape == (0, 4)
