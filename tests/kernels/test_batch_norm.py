"""``kernels.batch_norm``'s XLA path: its hand-written gradient against autodiff of the
``jax.numpy`` reference in float64 (all three outputs' cotangents), and against PyTorch."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from tests.oracle import assert_close, to_torch
from torsh_fn import _compat
from torsh_fn.kernels._pallas_batch_norm import batch_norm_reference
from torsh_fn.kernels.batch_norm import batch_norm


def _reference64(x, w, b):
    """The reference's formula in float64 (it computes in float32 itself)."""
    axes = (0, *range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mean = x.mean(axes)
    var = ((x - mean.reshape(shape)) ** 2).mean(axes)
    y = (x - mean.reshape(shape)) / jnp.sqrt(var.reshape(shape) + 1e-5)
    if w is not None:
        y = y * w.reshape(shape)
    if b is not None:
        y = y + b.reshape(shape)
    return y, mean, var


@pytest.mark.parametrize("shape", [(5, 3, 7, 9), (6, 4), (3, 2, 5, 3, 4)])
@pytest.mark.parametrize("affine", [True, False])
def test_gradient_of_all_outputs_matches_float64_autodiff(rng, shape, affine):
    c = shape[1]
    x = rng.standard_normal(shape) * 3 + 2
    w, b = (rng.standard_normal(c), rng.standard_normal(c)) if affine else (None, None)
    cots = [rng.standard_normal(shape), rng.standard_normal(c), rng.standard_normal(c)]
    params = (x, w, b)

    def pull(fn, dtype):
        args = [None if a is None else jnp.asarray(a, dtype) for a in params]
        outs, vjp = jax.vjp(fn, *args)
        return outs, vjp(tuple(jnp.asarray(g, o.dtype) for g, o in zip(cots, outs)))

    with _compat.enable_x64(True):
        want_out, want_grads = pull(_reference64, jnp.float64)
        got_out, got_grads = pull(lambda x, w, b: batch_norm(x, w, b, impl="xla"), jnp.float32)
        for got, want in zip(got_out, want_out):
            assert_close(got, want, rtol=1e-5, atol=1e-5)
        for got, want in zip(got_grads, want_grads):
            if want is None:
                assert got is None
            else:
                assert got.dtype == jnp.float32
                assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_gradient_matches_torch(rng):
    x = rng.standard_normal((8, 5, 6, 7)).astype(np.float32) * 2 - 1
    w, b = rng.standard_normal(5).astype(np.float32), rng.standard_normal(5).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    grads = jax.grad(lambda x, w, b: jnp.sum(batch_norm(x, w, b, impl="xla")[0] * g),
                     argnums=(0, 1, 2))(jnp.asarray(x), jnp.asarray(w), jnp.asarray(b))
    tx, tw, tb = (to_torch(a).requires_grad_() for a in (x, w, b))
    (torch.nn.functional.batch_norm(tx, None, None, tw, tb, training=True) * to_torch(g)).sum(
        ).backward()
    for got, want in zip(grads, (tx.grad, tw.grad, tb.grad)):
        assert_close(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_half_precision_gradients_keep_their_dtypes(rng, dtype):
    x = jnp.asarray(rng.standard_normal((4, 3, 5)), dtype)
    w, b = jnp.ones(3, jnp.float32), jnp.zeros(3, jnp.float32)
    g = jnp.asarray(rng.standard_normal((4, 3, 5)), dtype)
    grads = jax.grad(lambda x, w, b: jnp.sum(batch_norm(x, w, b, impl="xla")[0].astype(
        jnp.float32) * g), argnums=(0, 1, 2))(x, w, b)
    want = jax.grad(lambda x, w, b: jnp.sum(batch_norm_reference(x, w, b, 1e-5)[0].astype(
        jnp.float32) * g), argnums=(0, 1, 2))(x, w, b)
    assert [a.dtype for a in grads] == [dtype, jnp.float32, jnp.float32]
    for got, ref in zip(grads, want):
        assert_close(got.astype(jnp.float32), ref.astype(jnp.float32), rtol=2e-2, atol=2e-2)
