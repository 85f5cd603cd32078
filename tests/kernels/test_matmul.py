"""kernels.matmul / matmul_bias_act: the reference against torch (shape rules, epilogues), the
Pallas path against it through the public op, dispatch and errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

from tests.kernels.pallas_helpers import check_fwd_and_grad_jit, normal
from tests.oracle import check_vs_torch
from torsh_fn import kernels
from torsh_fn.kernels._pallas_matmul import MatmulConfig
from torsh_fn.kernels.matmul import matmul, matmul_bias_act

SMALL = MatmulConfig(16, 16, 16, group_m=2, num_warps=4, num_stages=1)
SHAPES = [((3, 4), (4, 5)), ((2, 3, 4), (4, 5)), ((4,), (2, 4, 5)), ((3, 4), (4,)),
          ((2, 1, 3, 4), (5, 4, 2)), ((3, 4), (2, 4, 6))]


@pytest.mark.parametrize("a_shape, b_shape", SHAPES)
def test_reference_follows_torch_matmul(rng, variant, a_shape, b_shape):
    a, b = (rng.standard_normal(s).astype(np.float32) for s in (a_shape, b_shape))
    check_vs_torch(lambda a, b: matmul(a, b, impl="xla"), torch.matmul, a, b, rng=rng,
                   variant=variant)


TORCH_ACTS = {"relu": torch.relu, "gelu": TF.gelu, "silu": TF.silu,
              "gelu_tanh": lambda z: TF.gelu(z, approximate="tanh"), None: lambda z: z}


@pytest.mark.parametrize("act", list(TORCH_ACTS))
def test_bias_act_reference_matches_torch_linear(rng, act):
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((2, 3, 6), (5, 6), (5,)))
    check_vs_torch(lambda x, w, b: matmul_bias_act(x, w.T, b, act, impl="xla"),
                   lambda x, w, b: TORCH_ACTS[act](TF.linear(x, w, b)), x, w, b, rng=rng)


def test_16_bit_reference_and_its_gradients_follow_torch_in_16_bit_products(rng):
    """bf16 values and gradients as torch's (float32 accumulation, one rounding), and every
    product of the backward on 16-bit operands: float32 cotangents made XLA run them in
    float32, 0.46x as fast on an H200."""
    a, b = (rng.standard_normal(s).astype(np.float32) for s in ((3, 37, 29), (29, 41)))
    ja, jb = jnp.asarray(a, jnp.bfloat16), jnp.asarray(b, jnp.bfloat16)

    def loss(a, b):
        return jnp.sum(matmul(a, b, impl="xla").astype(jnp.float32) ** 2)

    products = [eqn for eqn in jax.make_jaxpr(jax.value_and_grad(loss, (0, 1)))(ja, jb).eqns
                if eqn.primitive.name == "dot_general"]
    assert len(products) == 3
    assert all(v.aval.dtype == jnp.bfloat16 for eqn in products for v in eqn.invars)
    ta, tb = (torch.tensor(x, dtype=torch.bfloat16, requires_grad=True) for x in (a, b))
    out = torch.matmul(ta, tb)
    torch_loss = out.float().pow(2).sum()
    torch_loss.backward()
    value, grads = jax.value_and_grad(loss, (0, 1))(ja, jb)
    np.testing.assert_allclose(float(value), torch_loss.item(), rtol=2e-2)
    np.testing.assert_allclose(np.asarray(matmul(ja, jb, impl="xla"), np.float32),
                               out.detach().float().numpy(), rtol=2e-2, atol=2e-2)
    for got, want in zip(grads, (ta.grad, tb.grad), strict=True):
        assert got.dtype == jnp.bfloat16
        np.testing.assert_allclose(np.asarray(got, np.float32), want.float().numpy(),
                                   rtol=3e-2, atol=0.5)


@pytest.mark.parametrize("act", ["gelu", "silu"])
def test_16_bit_epilogue_reference_backward_runs_16_bit_products_as_torch(rng, act):
    """bf16 ``act(x @ W.T + b)`` against torch's ``act(F.linear(x, W, b))`` in bf16, values and
    gradients; the backward's products on 16-bit operands (a float32 cotangent made XLA run
    them in float32, 0.5x as fast on an H200), and forward mode agrees with reverse mode."""
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((3, 37, 29), (41, 29), (41,)))
    jx, jw, jb = (jnp.asarray(v, jnp.bfloat16) for v in (x, w, b))

    def loss(x, w, b):
        out = matmul_bias_act(x, w.T, b, act, impl="xla")
        return jnp.sum(out.astype(jnp.float32) ** 2)

    products = [eqn for eqn in jax.make_jaxpr(jax.grad(loss, (0, 1, 2)))(jx, jw, jb).eqns
                if eqn.primitive.name == "dot_general"]
    assert len(products) == 2  # dx and dW; the forward's is inside its custom JVP
    assert all(v.aval.dtype == jnp.bfloat16 for eqn in products for v in eqn.invars)
    tx, tw, tb = (torch.tensor(v, dtype=torch.bfloat16, requires_grad=True) for v in (x, w, b))
    out = TORCH_ACTS[act](TF.linear(tx, tw, tb))
    out.float().pow(2).sum().backward()
    np.testing.assert_allclose(np.asarray(matmul_bias_act(jx, jw.T, jb, act, impl="xla"),
                                          np.float32),
                               out.detach().float().numpy(), rtol=2e-2, atol=2e-2)
    for got, want in zip(jax.grad(loss, (0, 1, 2))(jx, jw, jb), (tx.grad, tw.grad, tb.grad),
                         strict=True):
        assert got.dtype == jnp.bfloat16
        want = want.float().numpy()
        np.testing.assert_allclose(np.asarray(got, np.float32), want, rtol=3e-2,
                                   atol=1e-2 * np.abs(want).max())

    def one_row(row):
        return matmul_bias_act(row, jw.T, jb, act, impl="xla")

    np.testing.assert_allclose(np.asarray(jax.jacfwd(one_row)(jx[0, 0]), np.float32),
                               np.asarray(jax.jacrev(one_row)(jx[0, 0]), np.float32),
                               rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("a_shape, b_shape, dtype", [((2, 1, 21, 18), (1, 3, 18, 17), jnp.float32),
                                                     ((18,), (2, 18, 20), jnp.bfloat16)])
def test_pallas_path_matches_xla(rng, a_shape, b_shape, dtype):
    args = (normal(rng, a_shape, dtype), normal(rng, b_shape, dtype))
    check_fwd_and_grad_jit(lambda a, b: matmul(a, b, impl="pallas", config=SMALL),
                           lambda a, b: matmul(a, b, impl="xla"), args, rng, dtype)


def test_pallas_bias_act_on_a_batch_of_rows(rng):
    args = tuple(normal(rng, s, jnp.float32) for s in ((2, 9, 20), (20, 18), (18,)))
    check_fwd_and_grad_jit(lambda x, w, b: matmul_bias_act(x, w, b, "relu", impl="pallas"),
                           lambda x, w, b: matmul_bias_act(x, w, b, "relu", impl="xla"),
                           args, rng, jnp.float32)


def test_auto_is_xla_on_the_cpu(rng):
    a, b = normal(rng, (5, 7), jnp.float32), normal(rng, (7, 3), jnp.float32)
    assert jnp.array_equal(kernels.matmul(a, b), matmul(a, b, impl="xla"))
    bias = jnp.ones(3)
    assert jnp.array_equal(kernels.matmul_bias_act(a, b, bias, "gelu"),
                           matmul_bias_act(a, b, bias, "gelu", impl="xla"))


def test_integer_inputs_take_the_reference():
    a = jnp.arange(6).reshape(2, 3)
    assert jnp.array_equal(matmul(a, a.T), a @ a.T)
    with pytest.raises(ValueError, match="matmul: the Pallas kernel does not take dtype int"):
        matmul(a, a.T, impl="pallas")


def test_bad_input_is_named():
    a = jnp.ones((2, 3))
    with pytest.raises(ValueError, match=r"matmul: a's last dim must equal b's contracted dim"):
        matmul(a, jnp.ones((4, 2)))
    with pytest.raises(ValueError, match="matmul: expected arrays of rank >= 1"):
        matmul(a, jnp.float32(2.0))
    with pytest.raises(ValueError, match="matmul_bias_act: act must be one of"):
        matmul_bias_act(a, a.T, None, "tanh")
    with pytest.raises(ValueError, match=r"matmul_bias_act: bias must have shape \(2,\)"):
        matmul_bias_act(a, a.T, jnp.ones(3), "relu")
    with pytest.raises(ValueError, match="matmul: impl must be one of"):
        matmul(a, a.T, impl="triton")


def test_exported_at_package_level():
    assert kernels.matmul is matmul and kernels.matmul_bias_act is matmul_bias_act
    assert jax.eval_shape(kernels.matmul, jnp.ones((4, 3)), jnp.ones(3)).shape == (4,)
