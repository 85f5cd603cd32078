"""torsh_fn.func: torch.func's names over JAX transforms, checked against torch.func."""

import jax
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
    assert_close(g, jax.grad(_f)(x))
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


# -- functional_call and stack_module_state ------------------------------------------------------


def _mlp_pair():
    from torsh_fn import nn

    theirs = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    ours = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def test_functional_call_gradients_match_torch_func(rng):
    ours, theirs = _mlp_pair()
    x = rng.standard_normal((5, 3)).astype(np.float32)
    params = {k: v.detach() for k, v in ours.named_parameters()}
    t_params = {k: v.detach() for k, v in theirs.named_parameters()}

    def loss(p):
        return (func.functional_call(ours, p, (jnp.asarray(x),)) ** 2).sum()

    def t_loss(p):
        return (torch.func.functional_call(theirs, p, (to_torch(x),)) ** 2).sum()

    grads, t_grads = func.grad(loss)(params), torch.func.grad(t_loss)(t_params)
    assert set(grads) == set(t_grads)
    for k in grads:
        assert_close(grads[k], t_grads[k], rtol=1e-5, atol=1e-5)
    assert all(p.grad is None for p in ours.parameters())  # nothing was mutated


def test_functional_call_restores_state_and_checks_keys():
    from torsh_fn import nn

    model = nn.Linear(2, 2)
    before = model.weight.data
    out = func.functional_call(model, {"weight": jnp.zeros((2, 2))}, jnp.ones((1, 2)))
    assert_close(out, model.bias.data[None])
    assert model.weight.data is before
    with pytest.raises(ValueError, match=r"unexpected key\(s\) \['wieght'\]"):
        func.functional_call(model, {"wieght": jnp.zeros((2, 2))}, jnp.ones((1, 2)))
    with pytest.raises(ValueError, match=r"missing key\(s\) \['bias'\]"):
        func.functional_call(model, {"weight": before}, jnp.ones((1, 2)), strict=True)


def test_stack_module_state_ensemble_matches_torch():
    from torsh_fn import nn

    pairs = [_mlp_pair() for _ in range(3)]
    params, buffers = func.stack_module_state([m for m, _ in pairs])
    assert params["0.weight"].shape == (3, 4, 3) and buffers == {}
    x = jnp.linspace(-1, 1, 6).reshape(2, 3)
    base = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    outs = func.vmap(lambda p, b, x: func.functional_call(base, (p, b), (x,)),
                     in_dims=(0, 0, None))(params, buffers, x)
    for k, (_, theirs) in enumerate(pairs):
        assert_close(outs[k], theirs(to_torch(np.array(x))), rtol=1e-5, atol=1e-5)
