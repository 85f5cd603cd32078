"""Pallas training-mode batch norm against its jax.numpy reference (and PyTorch)."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch

from tests.kernels.pallas_helpers import check_fwd_and_grad, normal
from tests.oracle import assert_close, to_torch
from torsh_fn.kernels._pallas_batch_norm import batch_norm_reference, batch_norm_train_pallas


@pytest.mark.parametrize("shape, dtype", [((4, 3, 5, 7), jnp.float32), ((3, 5, 9001), jnp.bfloat16),
                                          ((2, 3, 2, 3, 4), jnp.float32)])
@pytest.mark.parametrize("affine", [True, False])
def test_matches_reference(rng, shape, dtype, affine):
    c = shape[1]
    x = normal(rng, shape, dtype, 2.0, 1.0)
    w, b = (normal(rng, (c,), jnp.float32), normal(rng, (c,), jnp.float32)) if affine else (None,
                                                                                          None)
    check_fwd_and_grad(lambda x: batch_norm_train_pallas(x, w, b),
                       lambda x: batch_norm_reference(x, w, b, 1e-5), (x,), rng, dtype)


def test_matches_torch_training_batch_norm(rng):
    x = rng.standard_normal((4, 3, 6, 5)).astype(np.float32) * 3 + 2
    y, mean, var = batch_norm_train_pallas(jnp.asarray(x))
    tx = to_torch(x)
    assert_close(y, torch.nn.functional.batch_norm(tx, None, None, training=True), atol=1e-5)
    assert_close(mean, tx.mean((0, 2, 3)), atol=1e-5)
    assert_close(var, tx.var((0, 2, 3), unbiased=False), atol=1e-4)
