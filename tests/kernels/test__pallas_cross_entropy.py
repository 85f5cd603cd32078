"""Fused Pallas cross-entropy against a float64 numpy reference, forward and gradient."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.kernels.pallas_helpers import normal, rel_err
from torsh_fn.kernels._pallas_cross_entropy import cross_entropy_pallas


def reference(x, labels, ignore_index, eps):
    """Losses and d(sum(g * loss))/dx in float64 numpy."""
    x = np.asarray(x, np.float64)
    lse = np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1)) + x.max(-1)
    picked = x[np.arange(len(x)), np.clip(labels, 0, x.shape[1] - 1)]
    loss = (1 - eps) * (lse - picked) + eps * (lse - x.mean(-1))
    ignored = labels == ignore_index
    loss[ignored] = 0.0
    p = np.exp(x - lse[:, None])
    target = np.full_like(x, eps / x.shape[1])
    target[np.arange(len(x)), np.clip(labels, 0, x.shape[1] - 1)] += 1 - eps
    grad = p - target
    grad[ignored] = 0.0
    return loss, grad


@pytest.mark.parametrize(
    "rows, classes, eps, dtype",
    [
        (5, 7, 0.0, jnp.float32),
        (9, 130, 0.1, jnp.float32),
        (9, 130, 0.0, jnp.bfloat16),
        (3, 9001, 0.1, jnp.bfloat16),
    ],
)
def test_matches_float64_reference(rng, rows, classes, eps, dtype):
    x = normal(rng, (rows, classes), dtype, scale=4.0)
    labels = rng.integers(0, classes, rows)
    labels[1] = -100
    g = rng.standard_normal(rows)
    loss, grad = reference(x, labels, -100, eps)
    out = cross_entropy_pallas(x, jnp.asarray(labels), label_smoothing=eps)
    assert out.dtype == jnp.float32
    tol = 1e-5 if dtype == jnp.float32 else 2e-2
    assert rel_err(out, loss) < tol
    ours = jax.grad(
        lambda x: (
            cross_entropy_pallas(x, jnp.asarray(labels), label_smoothing=eps)
            * jnp.asarray(g, jnp.float32)
        ).sum()
    )(x)
    assert ours.dtype == dtype
    assert rel_err(ours, grad * g[:, None]) < 5 * tol
    assert (np.asarray(ours[1], np.float32) == 0).all()


def test_extreme_logits():
    x = jnp.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4]], jnp.float32)
    out = cross_entropy_pallas(x, jnp.array([1, 0]))
    assert np.allclose(out, [2e4, 2e4 + np.log(2)], rtol=1e-6)
