"""kernels.cross_entropy against a float64 numpy reference: per-row losses and their gradient."""

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from tests.oracle import assert_close
from torsh_fn.kernels.cross_entropy import cross_entropy, cross_entropy_reference


def reference64(x, labels, ignore_index=-100, eps=0.0):
    """Losses and d(sum(g * loss))/dx / g in float64 numpy, softmax written out."""
    x = np.asarray(x, np.float64)
    rows, classes = x.shape
    shifted = x - x.max(-1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    p = np.exp(log_p)
    target = np.full_like(x, eps / classes)
    keep = labels != ignore_index
    target[np.arange(rows)[keep], labels[keep]] += 1 - eps
    loss = -(target * log_p).sum(-1)
    grad = p - target
    loss[~keep], grad[~keep] = 0.0, 0.0
    return loss, grad


@pytest.mark.parametrize(("rows", "classes"), [(1, 1), (5, 7), (13, 130)])
@pytest.mark.parametrize("eps", [0.0, 0.25])
def test_matches_float64_reference(rows, classes, eps, rng):
    x = (3 * rng.standard_normal((rows, classes))).astype(np.float32)
    labels = rng.integers(0, classes, rows)
    labels[rows // 2] = -100
    g = rng.standard_normal(rows).astype(np.float32)
    loss, grad = reference64(x, labels, eps=eps)

    op = jax.jit(lambda x: cross_entropy(x, jnp.asarray(labels), label_smoothing=eps))
    out = op(x)
    assert out.dtype == jnp.float32
    assert_close(out, loss, rtol=1e-5, atol=1e-5)
    ours = jax.jit(jax.grad(lambda x: jnp.sum(op(x) * g)))(x)
    assert_close(ours, grad * g[:, None], rtol=1e-5, atol=1e-6)


def test_bfloat16_logits_give_float32_losses(rng):
    x = rng.standard_normal((6, 9)).astype(ml_dtypes.bfloat16)
    labels = rng.integers(0, 9, 6)
    out = cross_entropy_reference(jnp.asarray(x), jnp.asarray(labels))
    assert out.dtype == jnp.float32
    assert_close(out, reference64(x.astype(np.float64), labels)[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("impl", ["xla", "pallas"])
def test_extreme_logits_stay_finite(impl):
    x = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4], [1e4, 1e4, 1e4]], np.float32)
    labels = np.array([1, 0, 2])
    loss, grad = reference64(x, labels, eps=0.1)
    out, vjp = jax.vjp(lambda x: cross_entropy(x, jnp.asarray(labels), label_smoothing=0.1,
                                               impl=impl), x)
    assert_close(out, loss, rtol=1e-6, atol=1e-3)  # float32 spacing at 1e4 is ~1e-3
    assert_close(vjp(jnp.ones(3))[0], grad, atol=1e-6)


def test_ignore_index_and_impl_choice():
    x, labels = jnp.ones((2, 3)), jnp.array([5, 1])
    out = cross_entropy(x, labels, ignore_index=5, impl="xla")
    assert_close(out, np.array([0.0, np.log(3.0)], np.float32))
    with pytest.raises(ValueError, match="cross_entropy: impl must be one of"):
        cross_entropy(x, labels, impl="cuda")


def test_bad_shapes_and_dtypes():
    with pytest.raises(ValueError, match=r"expected logits of shape \(N, C\), got shape \(3,\)"):
        cross_entropy(jnp.ones(3), jnp.array([0]))
    with pytest.raises(ValueError, match=r"expected labels of shape \(2,\) for logits of shape "
                                         r"\(2, 3\), got \(3,\)"):
        cross_entropy(jnp.ones((2, 3)), jnp.array([0, 1, 2]))
    with pytest.raises(TypeError, match="labels must be integers, got dtype float32"):
        cross_entropy(jnp.ones((2, 3)), jnp.array([0.0, 1.0]))
