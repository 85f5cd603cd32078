"""torsh_fn.func: torch.func's names over JAX transforms, checked against torch.func."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch

from tests.oracle import assert_close, to_torch
from torsh_fn import func


def _f(x):
    return (jnp.sin(x) * x**2).sum()


def _tf(x):
    return (torch.sin(x) * x**2).sum()


def test_grad_and_value_order_matches_torch_func(rng):
    x = rng.standard_normal(7).astype(np.float32)
    g, v = func.grad_and_value(_f)(jnp.asarray(x))
    tg, tv = torch.func.grad_and_value(_tf)(to_torch(x))
    assert_close(g, tg)
    assert_close(v, tv)


def test_grad_and_value_with_aux(rng):
    x = jnp.asarray(rng.standard_normal(5).astype(np.float32))
    g, (v, aux) = func.grad_and_value(lambda x: (_f(x), x.mean()), has_aux=True)(x)
    assert_close(aux, x.mean())
    assert_close(v, _f(x))


@pytest.mark.parametrize("name", ["jacrev", "jacfwd", "hessian"])
def test_jacobians_match_torch_func(rng, name):
    x = rng.standard_normal(6).astype(np.float32)
    ours = getattr(func, name)(_f if name == "hessian" else jnp.sin)(jnp.asarray(x))
    theirs = getattr(torch.func, name)(_tf if name == "hessian" else torch.sin)(to_torch(x))
    assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("chunk_size", [None, 1, 3, 16])
def test_vmap_in_out_dims_and_chunks(rng, chunk_size):
    x = rng.standard_normal((4, 11)).astype(np.float32)
    w = rng.standard_normal(4).astype(np.float32)
    ours = func.vmap(lambda a, b: a * b, in_dims=(1, None), out_dims=1, chunk_size=chunk_size)(
        jnp.asarray(x), jnp.asarray(w))
    theirs = torch.func.vmap(lambda a, b: a * b, in_dims=(1, None), out_dims=1)(
        to_torch(x), to_torch(w))
    assert_close(ours, theirs)


def test_vmap_rejects_bad_options():
    with pytest.raises(ValueError, match="randomness must be"):
        func.vmap(jnp.sin, randomness="sometimes")
    with pytest.raises(ValueError, match="chunk_size must be a positive int"):
        func.vmap(jnp.sin, chunk_size=0)
