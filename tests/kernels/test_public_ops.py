"""The public kernel ops: impl="pallas" (interpreted on the CPU) against impl="xla", forward and
gradient, on odd shapes; the references against torch."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch.nn.functional as TF

from tests.kernels.pallas_helpers import check_fwd_and_grad, normal
from tests.oracle import assert_close, check_vs_torch, to_torch
from torsh_fn import kernels


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_cross_entropy_pallas_matches_xla(rng, dtype, smoothing):
    x = normal(rng, (7, 131), dtype, 3.0)
    labels = jnp.asarray(rng.integers(0, 131, 7)).at[3].set(-100)

    def op(impl):
        return lambda x: kernels.cross_entropy(x, labels, label_smoothing=smoothing, impl=impl)

    # the loss is float32 either way; a bfloat16 gradient is rounded to 8 bits, where the two
    # lowerings' last-bit differences before rounding can move an element by one step
    check_fwd_and_grad(op("pallas"), op("xla"), (x,), rng, jnp.float32,
                       grad_tol=None if dtype == jnp.float32 else 2.0 ** -8)


def test_add_layer_norm_pallas_matches_xla_and_checks_residual(rng):
    x, r = normal(rng, (3, 5, 37), jnp.float32), normal(rng, (3, 5, 37), jnp.float32)
    w, b = normal(rng, (37,), jnp.float32), normal(rng, (37,), jnp.float32)

    def op(impl):
        return lambda x, r, w, b: kernels.add_layer_norm(x, r, w, b, 1e-5, impl=impl)

    check_fwd_and_grad(op("pallas"), op("xla"), (x, r, w, b), rng, jnp.float32,
                       argnums=(0, 1, 2, 3))
    y, s = kernels.add_layer_norm(x, r, w, b)
    assert_close(y, TF.layer_norm(*map(to_torch, (x + r, (37,), w, b))), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(s, x + r, rtol=1e-6)
    with pytest.raises(ValueError, match=r"add_layer_norm: residual must have x's shape"):
        kernels.add_layer_norm(x, r[0], impl="pallas")


@pytest.mark.parametrize("shape", [(4, 3, 5, 7), (6, 5)])
def test_batch_norm_pallas_matches_xla_and_torch(rng, shape):
    x = normal(rng, shape, jnp.float32, 2.0, 1.0)
    w, b = normal(rng, shape[1:2], jnp.float32), normal(rng, shape[1:2], jnp.float32)

    def op(impl):
        return lambda x, w, b: kernels.batch_norm(x, w, b, 1e-5, impl=impl)

    check_fwd_and_grad(op("pallas"), op("xla"), (x, w, b), rng, jnp.float32, argnums=(0, 1, 2))
    check_vs_torch(lambda x, w, b: kernels.batch_norm(x, w, b)[0],
                   lambda x, w, b: TF.batch_norm(x, None, None, w, b, training=True),
                   *map(np.asarray, (x, w, b)), rng=rng, rtol=1e-4, atol=1e-4)
    _, mean, var = kernels.batch_norm(x)
    axes = (0, *range(2, x.ndim))
    np.testing.assert_allclose(mean, np.asarray(x).mean(axes), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(var, np.asarray(x).var(axes), rtol=1e-5, atol=1e-6)


def test_batch_norm_bad_input():
    with pytest.raises(ValueError, match=r"weight must have shape \(3,\) for 3 channels"):
        kernels.batch_norm(jnp.ones((2, 3, 4)), jnp.ones(4))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        kernels.batch_norm(jnp.ones((1, 3)))
    with pytest.raises(TypeError, match="Pallas kernel takes float16/bfloat16/float32"):
        kernels.batch_norm(jnp.ones((2, 3), jnp.int32), impl="pallas")


POOL_CASES = [  # shape, kernel, stride, padding, ceil_mode
    ((2, 3, 9, 11), (3, 3), (2, 2), (1, 1), True),
    ((3, 7, 6), (2, 3), (2, 1), (0, 1), False),
]


@pytest.mark.parametrize("shape, k, s, p, ceil", POOL_CASES)
def test_pooling_pallas_matches_xla(rng, shape, k, s, p, ceil):
    x = normal(rng, shape, jnp.float32)
    check_fwd_and_grad(lambda x: kernels.max_pool(x, k, s, p, (1, 1), ceil, impl="pallas"),
                       lambda x: kernels.max_pool(x, k, s, p, (1, 1), ceil, impl="xla"), (x,),
                       rng, jnp.float32)
    for include, override in [(True, None), (False, None), (True, 5)]:
        def avg(impl, include=include, override=override):
            return lambda x: kernels.avg_pool(x, k, s, p, ceil, include, override, impl=impl)

        check_fwd_and_grad(avg("pallas"), avg("xla"), (x,), rng, jnp.float32)


def test_pooling_pallas_refuses_what_it_does_not_cover():
    with pytest.raises(ValueError, match=r"max_pool: the Pallas kernel takes 2-D pooling"):
        kernels.max_pool(jnp.ones((1, 1, 5)), (2,), (2,), (0,), (1,), impl="pallas")
    with pytest.raises(ValueError, match=r"dilation \(2, 2\)"):
        kernels.max_pool(jnp.ones((1, 1, 5, 5)), (2, 2), (1, 1), (0, 0), (2, 2), impl="pallas")
