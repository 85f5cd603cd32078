"""kernels.softmax / log_softmax: dispatch, the reference against torch, Pallas against it."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch

from tests.oracle import check_vs_torch
from torsh_fn import kernels
from torsh_fn.kernels.softmax import log_softmax, softmax, softmax_reference


@pytest.mark.parametrize("dim", [0, -1])
@pytest.mark.parametrize("log", [False, True])
def test_reference_matches_torch(dim, log, rng):
    x = (rng.standard_normal((5, 7)) * 3).astype(np.float32)
    check_vs_torch(lambda x: softmax_reference(x, dim, log=log),
                   lambda x: (torch.log_softmax if log else torch.softmax)(x, dim), x, rng=rng)


@pytest.mark.parametrize("op", [softmax, log_softmax])
def test_impls_agree(op, rng):
    x = jnp.asarray(rng.standard_normal((3, 9)), jnp.float32)
    np.testing.assert_allclose(op(x, -1, impl="pallas"), op(x, -1, impl="xla"), rtol=2e-6,
                               atol=2e-6)
    assert jnp.array_equal(op(x, -1), op(x, -1, impl="xla"))


def test_default_impl_and_bad_impl():
    x = jnp.ones((2, 3))
    kernels.set_default_impl("xla")
    try:
        assert kernels.get_default_impl() == "xla"
        assert jnp.allclose(kernels.softmax(x), 1 / 3)
    finally:
        kernels.set_default_impl("auto")
    with pytest.raises(ValueError, match="softmax: impl must be one of"):
        softmax(x, impl="cuda")
