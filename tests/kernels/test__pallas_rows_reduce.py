"""Pallas last-dim reductions against jax.numpy, forward and gradient."""

import jax.numpy as jnp
import pytest

from tests.kernels.pallas_helpers import check_fwd_and_grad, normal
from torsh_fn.kernels._pallas_rows_reduce import reduce_last_dim_pallas, row_mean_var_pallas

REFS = {
    "sum": jnp.sum,
    "mean": jnp.mean,
    "amax": jnp.max,
    "amin": jnp.min,
    "var": lambda x, axis: jnp.var(x, axis=axis, ddof=1),
}


@pytest.mark.parametrize("shape, dtype", [((2, 4, 130), jnp.float32), ((3, 9001), jnp.bfloat16)])
@pytest.mark.parametrize("op", sorted(REFS))
def test_matches_reference(rng, shape, op, dtype):
    x = normal(rng, shape, dtype, 1.0, 2.0)

    def ref(x):
        return REFS[op](x.astype(jnp.float32), axis=-1).astype(dtype)

    check_fwd_and_grad(lambda x: reduce_last_dim_pallas(x, op), ref, (x,), rng, dtype)


def test_keepdim_and_bad_op(rng):
    x = normal(rng, (2, 3), jnp.float32)
    assert reduce_last_dim_pallas(x, "sum", keepdim=True).shape == (2, 1)
    with pytest.raises(ValueError, match="op must be one of"):
        reduce_last_dim_pallas(x, "median")


def test_row_mean_var(rng):
    x = normal(rng, (6, 33), jnp.float32, 3.0, 5.0)
    mean, var = row_mean_var_pallas(x)
    assert jnp.allclose(mean, x.mean(-1), atol=1e-5)
    assert jnp.allclose(var, x.var(-1), atol=1e-4)
