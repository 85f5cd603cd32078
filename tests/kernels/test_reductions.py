"""``torsh_fn.kernels.reductions``: impl="pallas" (interpreted on the CPU) against impl="xla",
forward and gradient, on odd shapes; the reference against torch; dtypes and errors."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch

from tests.kernels.pallas_helpers import check_fwd_and_grad, normal
from tests.oracle import check_vs_torch
from torsh_fn.kernels import reductions


@pytest.mark.parametrize("op", ["sum", "mean", "amax", "amin", "var"])
@pytest.mark.parametrize("dim, keepdim", [(-1, False), (0, True), (1, False)])
def test_reductions_pallas_matches_xla_and_torch(rng, op, dim, keepdim):
    x = normal(rng, (5, 131, 3), jnp.float32)
    fn = getattr(reductions, op)

    def with_impl(impl):
        return lambda x: fn(x, dim, keepdim=keepdim, impl=impl)

    check_fwd_and_grad(with_impl("pallas"), with_impl("xla"), (x,), rng, jnp.float32)
    torch_fn = {"sum": torch.sum, "mean": torch.mean, "amax": torch.amax, "amin": torch.amin,
                "var": torch.var}[op]
    check_vs_torch(with_impl("xla"), lambda t: torch_fn(t, dim, keepdim=keepdim), np.asarray(x),
                   rng=rng, rtol=1e-5, atol=1e-5)


def test_reductions_ties_bfloat16_and_errors(rng):
    x = np.array([[1.0, 3.0, 3.0, 2.0]], np.float32)  # amax's gradient splits between ties
    check_vs_torch(lambda x: reductions.amax(x, 1), lambda t: torch.amax(t, 1), x, rng=rng)
    xb = normal(rng, (3, 257), jnp.bfloat16)
    out = reductions.var(xb, correction=0, impl="pallas")
    assert out.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(out, np.float32),
                               np.asarray(xb, np.float32).var(-1), rtol=2e-2)
    with pytest.raises(ValueError, match="dim 2 is out of range for an array of 2 dims"):
        reductions.sum(xb, 2)
    with pytest.raises(ValueError, match="amax: cannot reduce an empty dim"):
        reductions.amax(jnp.ones((2, 0)))
    with pytest.raises(TypeError, match="sum: the Pallas kernel takes"):
        reductions.sum(jnp.ones(3, jnp.int32), impl="pallas")
    assert reductions.sum(jnp.arange(4)).dtype == jnp.arange(4).sum().dtype
