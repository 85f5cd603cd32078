"""kernels.layer_norm / rms_norm: the reference against torch, the Pallas path against it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch.nn.functional as TF

from tests.oracle import check_vs_torch
from torsh_fn.kernels.norm import layer_norm, layer_norm_reference, rms_norm, rms_norm_reference


def test_references_match_torch(rng):
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in [(3, 4, 5), (4, 5), (4, 5)])
    tol = {"rng": rng, "variant": jax.jit, "rtol": 1e-4, "atol": 1e-5}
    check_vs_torch(lambda x, w, b: layer_norm_reference(x, 2, w, b),
                   lambda x, w, b: TF.layer_norm(x, (4, 5), w, b), x, w, b, **tol)
    check_vs_torch(lambda x, w: rms_norm_reference(x, 1, w[0], 1e-5),
                   lambda x, w: TF.rms_norm(x, (5,), w[0], 1e-5), x, w, **tol)


@pytest.mark.parametrize("op", [layer_norm, rms_norm])
def test_impls_agree(op, rng):
    x = jnp.asarray(rng.standard_normal((3, 7)), jnp.float32)
    w = jnp.asarray(rng.standard_normal(7), jnp.float32)
    np.testing.assert_allclose(op(x, 1, w, impl="pallas"), op(x, 1, w, impl="xla"), rtol=1e-5,
                               atol=1e-5)
