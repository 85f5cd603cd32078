"""float32_sums: 16-bit products with float32 sums, against float32 products of the same values,
and derivatives that are 16-bit products (reverse mode) or agree with reverse mode (forward)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend.core import jaxprs_in_params

from tests.kernels.pallas_helpers import normal
from torsh_fn.kernels._float32_sums import float32_sums

BF16 = jnp.bfloat16
SCORES = functools.partial(jnp.einsum, "...le,...se->...ls")
PRODUCTS = {"matmul": (jnp.matmul, (3, 37, 29), (29, 41)),
            "einsum": (SCORES, (2, 3, 19, 24), (2, 3, 31, 24))}


def dot_operand_dtypes(jaxpr) -> list[list]:
    """The operand dtypes of every dot_general in ``jaxpr`` and the jaxprs inside it."""
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            found.append([v.aval.dtype for v in eqn.invars])
        for sub in jaxprs_in_params(eqn.params):
            found += dot_operand_dtypes(sub)
    return found


@pytest.mark.parametrize("name", list(PRODUCTS))
@pytest.mark.parametrize("dtype", [BF16, jnp.float16])
def test_values_are_the_float32_product_of_the_same_values(rng, name, dtype):
    product, a_shape, b_shape = PRODUCTS[name]
    a, b = normal(rng, a_shape, dtype), normal(rng, b_shape, dtype)
    out = float32_sums(product, a, b)
    want = product(a.astype(jnp.float32), b.astype(jnp.float32), precision="highest")
    assert out.dtype == jnp.float32 and out.shape == want.shape
    # 16-bit products are exact in float32: only the order of the sums differs
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5 * float(jnp.abs(want).max()))


@pytest.mark.parametrize("name", list(PRODUCTS))
def test_reverse_mode_rounds_the_cotangent_and_runs_16_bit_products(rng, name):
    product, a_shape, b_shape = PRODUCTS[name]
    a, b = normal(rng, a_shape, BF16), normal(rng, b_shape, BF16)
    cot = normal(rng, jax.eval_shape(product, a, b).shape, jnp.float32)

    def pullback(a, b, cot):
        return jax.vjp(functools.partial(float32_sums, product), a, b)[1](cot)

    backward = jax.make_jaxpr(pullback)(a, b, cot).jaxpr
    dtypes = dot_operand_dtypes(backward)
    assert len(dtypes) >= 2 and all(d == BF16 for pair in dtypes for d in pair), dtypes
    got = pullback(a, b, cot)
    want = jax.vjp(product, a, b)[1](cot.astype(BF16))  # the 16-bit product's own backward
    for g, w in zip(got, want, strict=True):
        assert g.dtype == BF16
        np.testing.assert_array_equal(np.asarray(g, np.float32), np.asarray(w, np.float32))


def test_a_gradient_of_one_operand_runs_one_product(rng):
    a, b = normal(rng, (5, 7), BF16), normal(rng, (7, 3), BF16)

    def loss(a):
        return jnp.sum(float32_sums(jnp.matmul, a, b) ** 2)

    assert len(dot_operand_dtypes(jax.make_jaxpr(jax.grad(loss))(a).jaxpr)) == 2  # fwd, dA


def test_forward_mode_agrees_with_reverse_mode(rng):
    a, b = normal(rng, (4, 6), BF16), normal(rng, (6, 3), BF16)

    def f(a):
        return float32_sums(jnp.matmul, a, b)

    np.testing.assert_allclose(jax.jacfwd(f)(a), jax.jacrev(f)(a), rtol=1e-2, atol=1e-2)
    np.testing.assert_allclose(jax.jacfwd(f)(a)[1, 2, 1], np.asarray(b[:, 2], np.float32))
