"""Pallas 2-D pooling against the XLA references of kernels.pooling, forward and gradient."""

import jax.numpy as jnp
import pytest

from tests.kernels.pallas_helpers import check_fwd_and_grad, normal
from torsh_fn.kernels._pallas_pool import PoolConfig, pool2d_pallas
from torsh_fn.kernels.pooling import (
    _divisor,
    avg_pool_reference,
    max_pool_reference,
    pool_output_size,
)

CASES = [  # shape, kernel, stride, padding, ceil_mode, dtype
    ((2, 3, 7, 9), (2, 2), (2, 2), (0, 0), False, jnp.float32),
    ((1, 2, 8, 11), (3, 3), (2, 2), (1, 1), True, jnp.bfloat16),
    ((2, 2, 5, 6), (3, 2), (1, 2), (1, 0), False, jnp.float32),
]


def _config(op, shape, k, s, p, ceil):
    out = tuple(pool_output_size(n, kk, ss, pp, 1, ceil) for n, kk, ss, pp in
                zip(shape[2:], k, s, p))
    return PoolConfig(op, k, s, p, shape[2:], out)


@pytest.mark.parametrize("shape, k, s, p, ceil, dtype", CASES)
def test_max_pool(rng, shape, k, s, p, ceil, dtype):
    def ref(x):
        return max_pool_reference(x, k, s, p, (1, 1), ceil)

    cfg = _config("max", shape, k, s, p, ceil)
    check_fwd_and_grad(lambda x: pool2d_pallas(x, cfg, None, ref), ref,
                       (normal(rng, shape, dtype),), rng, dtype)


@pytest.mark.parametrize("shape, k, s, p, ceil, dtype", CASES)
@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avg_pool(rng, shape, k, s, p, ceil, dtype, count_include_pad):
    def ref(x):
        return avg_pool_reference(x, k, s, p, ceil, count_include_pad)

    cfg = _config("avg", shape, k, s, p, ceil)
    div = _divisor(shape[2:], k, s, p, ceil, count_include_pad)
    check_fwd_and_grad(lambda x: pool2d_pallas(x, cfg, div, ref), ref,
                       (normal(rng, shape, dtype),), rng, dtype)
