"""nn.functional activations against torch.nn.functional: values, gradients, bf16, jit, vmap."""

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import torsh_fn.nn.functional as F
from tests.oracle import assert_close, check_vs_torch, to_torch

POINTWISE = {  # name -> (kwargs for both sides)
    "relu": {}, "relu6": {}, "leaky_relu": {"negative_slope": 0.2}, "elu": {"alpha": 0.7},
    "celu": {"alpha": 1.3}, "selu": {}, "gelu": {}, "silu": {}, "mish": {},
    "softplus": {"beta": 2.0, "threshold": 3.0}, "sigmoid": {}, "tanh": {},
    "hardtanh": {"min_val": -0.5, "max_val": 1.5}, "hardswish": {}, "hardsigmoid": {},
    "logsigmoid": {}, "softsign": {}, "tanhshrink": {}, "softshrink": {"lambd": 0.3},
    "hardshrink": {"lambd": 0.4}, "threshold": {"threshold": 0.1, "value": -2.0},
}


def _fns(name, kwargs):
    return (lambda x: getattr(F, name)(x, **kwargs)), (lambda x: getattr(TF, name)(x, **kwargs))


@pytest.mark.parametrize("name", sorted(POINTWISE))
def test_pointwise_matches_torch(name, rng, variant):
    x = (rng.standard_normal((3, 7, 5)) * 3).astype(np.float32)
    check_vs_torch(*_fns(name, POINTWISE[name]), x, variant=variant, rng=rng)


@pytest.mark.parametrize("name", ["relu", "gelu", "silu", "softplus", "hardswish", "elu"])
def test_pointwise_bfloat16_forward(name, rng):
    x = (rng.standard_normal((5, 9)) * 3).astype(ml_dtypes.bfloat16)
    jax_fn, torch_fn = _fns(name, POINTWISE[name])
    out = jax_fn(jnp.asarray(x))
    assert out.dtype == jnp.bfloat16
    assert_close(out, torch_fn(to_torch(x)))


def test_gelu_tanh_and_bad_mode(rng, variant):
    x = rng.standard_normal((4, 5)).astype(np.float32)
    check_vs_torch(lambda x: F.gelu(x, approximate="tanh"),
                   lambda x: TF.gelu(x, approximate="tanh"), x, variant=variant, rng=rng)
    with pytest.raises(ValueError, match="gelu: approximate must be 'none' or 'tanh', got 'erf'"):
        F.gelu(jnp.zeros(3), approximate="erf")


def test_kinks_have_torch_gradients():
    x = np.array([-3.0, -1.0, 0.0, 1.0, 3.0, 6.0], np.float32)
    for name in ["relu", "relu6", "hardtanh", "leaky_relu", "elu", "hardswish", "hardsigmoid"]:
        check_vs_torch(getattr(F, name), getattr(TF, name), x)


def test_softplus_does_not_overflow():
    x = np.array([-1e4, -50.0, 0.0, 30.0, 1e4, 3e38], np.float32)
    check_vs_torch(F.softplus, TF.softplus, x)
    check_vs_torch(lambda x: F.softplus(x, beta=0.5, threshold=5.0),
                   lambda x: TF.softplus(x, beta=0.5, threshold=5.0), x)


@pytest.mark.parametrize("name", ["softmax", "log_softmax", "softmin"])
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_softmax_family(name, dim, rng, variant):
    x = (rng.standard_normal((3, 5, 7)) * 4).astype(np.float32)
    check_vs_torch(lambda x: getattr(F, name)(x, dim), lambda x: getattr(TF, name)(x, dim), x,
                   variant=variant, rng=rng)


def test_softmax_dtype_argument_and_bf16(rng):
    x = rng.standard_normal((4, 6)).astype(np.float32)
    out = F.log_softmax(jnp.asarray(x), dim=1, dtype=jnp.bfloat16)
    assert out.dtype == jnp.bfloat16
    assert_close(out, TF.log_softmax(to_torch(x), 1, dtype=torch.bfloat16))
    xb = x.astype(ml_dtypes.bfloat16)
    assert_close(F.softmax(jnp.asarray(xb), 1), TF.softmax(to_torch(xb), 1))


def test_log_softmax_extreme_logits_finite():
    x = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4, -1e4]], np.float32)
    check_vs_torch(lambda x: F.log_softmax(x, -1), lambda x: TF.log_softmax(x, -1), x)
    assert np.isfinite(np.asarray(F.log_softmax(jnp.asarray(x), -1))).all()


def test_softmax_implicit_dim_warns_like_torch():
    x = jnp.ones((2, 3))
    with pytest.warns(UserWarning, match="softmax: implicit dim"):
        out = F.softmax(x)
    assert_close(out, np.full((2, 3), 1 / 3, np.float32))


def test_prelu_glu_rrelu_eval(rng, variant):
    x = rng.standard_normal((3, 4, 5)).astype(np.float32)
    w = rng.uniform(0.0, 0.5, (4,)).astype(np.float32)
    check_vs_torch(F.prelu, TF.prelu, x, w, variant=variant, rng=rng)
    check_vs_torch(F.prelu, TF.prelu, x, w[:1], variant=variant, rng=rng)
    check_vs_torch(lambda x: F.glu(x, 1), lambda x: TF.glu(x, 1),
                   rng.standard_normal((3, 6, 5)).astype(np.float32), variant=variant, rng=rng)
    check_vs_torch(F.rrelu, TF.rrelu, x, variant=variant, rng=rng)


def test_prelu_and_glu_errors():
    with pytest.raises(ValueError, match=r"prelu: weight must have 1 or 4 elements .* got 3"):
        F.prelu(jnp.zeros((2, 4)), jnp.zeros(3))
    with pytest.raises(ValueError, match=r"glu: dim -1 must have an even size, got shape \(2, 5\)"):
        F.glu(jnp.zeros((2, 5)))


def test_random_activations_use_key():
    x = jnp.linspace(-2, 2, 50)
    key = jax.random.PRNGKey(3)
    a = F.rrelu(x, training=True, key=key)
    assert jnp.array_equal(a, F.rrelu(x, training=True, key=key))
    slopes = (a / x)[x < 0]
    assert ((slopes >= 1 / 8) & (slopes <= 1 / 3)).all()
    hard = F.gumbel_softmax(jnp.zeros((4, 5)), hard=True, key=key)
    assert jnp.array_equal(hard.sum(-1), jnp.ones(4)) and set(np.unique(hard)) <= {0.0, 1.0}
    g = jax.grad(lambda z: (F.gumbel_softmax(z, tau=0.5, key=key) ** 2).sum())(jnp.ones((2, 3)))
    assert jnp.isfinite(g).all()


def test_under_vmap(rng):
    x = rng.standard_normal((4, 3, 5)).astype(np.float32)
    for name in ["gelu", "softplus", "hardswish"]:
        assert_close(jax.vmap(getattr(F, name))(jnp.asarray(x)), getattr(TF, name)(to_torch(x)))
    assert_close(jax.vmap(lambda r: F.log_softmax(r, 1))(jnp.asarray(x)),
                 TF.log_softmax(to_torch(x), 2))
