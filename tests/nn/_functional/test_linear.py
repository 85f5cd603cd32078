"""nn.functional linear and bilinear against torch.nn.functional."""

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import torch.nn.functional as TF

import torsh_fn.nn.functional as F
from tests.oracle import assert_close, check_vs_torch, to_torch


def _normal(rng, *shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


def test_linear(rng, variant):
    x, w, b = _normal(rng, 3, 2, 5), _normal(rng, 7, 5), _normal(rng, 7)
    check_vs_torch(F.linear, TF.linear, x, w, b, variant=variant, rng=rng)
    check_vs_torch(F.linear, TF.linear, x, w, variant=variant, rng=rng)
    check_vs_torch(F.linear, TF.linear, _normal(rng, 5), w, b, variant=variant, rng=rng)


def test_linear_bfloat16_and_vmap(rng):
    bf16 = ml_dtypes.bfloat16
    x, w = _normal(rng, 3, 5, dtype=bf16), _normal(rng, 7, 5, dtype=bf16)
    b = _normal(rng, 7, dtype=bf16)
    out = F.linear(*map(jnp.asarray, (x, w, b)))
    assert out.dtype == jnp.bfloat16
    assert_close(out, TF.linear(*map(to_torch, (x, w, b))), rtol=3e-2, atol=3e-2)
    xf = _normal(rng, 4, 3, 5)
    wf = _normal(rng, 7, 5)
    assert_close(jax.vmap(lambda x: F.linear(x, jnp.asarray(wf)))(jnp.asarray(xf)),
                 TF.linear(to_torch(xf), to_torch(wf)), rtol=1e-5, atol=1e-5)


def test_bilinear(rng, variant):
    x1, x2 = _normal(rng, 3, 4), _normal(rng, 3, 5)
    w, b = _normal(rng, 6, 4, 5), _normal(rng, 6)
    check_vs_torch(F.bilinear, TF.bilinear, x1, x2, w, b, variant=variant, rng=rng,
                   rtol=1e-4, atol=1e-4)


def test_errors_name_function_and_shapes():
    with pytest.raises(ValueError, match=r"linear: input's last dim must equal in_features=5 .*"
                                         r"got input shape \(2, 4\)"):
        F.linear(jnp.zeros((2, 4)), jnp.zeros((3, 5)))
    with pytest.raises(ValueError, match=r"bilinear: expected inputs ending in \(4,\) and \(5,\)"):
        F.bilinear(jnp.zeros((2, 4)), jnp.zeros((2, 3)), jnp.zeros((6, 4, 5)))
