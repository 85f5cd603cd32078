"""LBFGS against ``torch.optim.LBFGS``: with and without the strong-Wolfe line search, over
several ``step(closure)`` calls, and after loading PyTorch's state."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import torch

import torsh_fn.optim as optim
from tests.optim._problem import Problem
from tests.oracle import assert_close
from torsh_fn.nn import Parameter


def _closures(problem, opt, params, topt, tensors):
    def closure():
        opt.zero_grad()
        return problem.loss(params)

    def torch_closure():
        topt.zero_grad()
        loss = problem.torch_loss(tensors)
        loss.backward()
        return loss

    return closure, torch_closure


@pytest.mark.parametrize("kwargs", [{"lr": 0.5, "max_iter": 5, "history_size": 3},
                                    {"line_search_fn": "strong_wolfe", "max_iter": 4}],
                         ids=["fixed-step", "strong-wolfe"])
def test_matches_torch(rng, kwargs):
    problem = Problem(rng)
    params, tensors = problem.params(), problem.torch_params()
    opt, topt = optim.LBFGS(params, **kwargs), torch.optim.LBFGS(tensors, **kwargs)
    closure, torch_closure = _closures(problem, opt, params, topt, tensors)
    for _ in range(2):
        loss, torch_loss = opt.step(closure), topt.step(torch_closure)
        assert_close(loss, torch_loss, rtol=1e-4)
    for p, t in zip(params, tensors):
        assert_close(p.data, t, rtol=1e-4, atol=1e-4)
    state, torch_state = opt.state[params[0]], topt.state[tensors[0]]
    assert state["func_evals"] == torch_state["func_evals"]
    assert state["n_iter"] == torch_state["n_iter"]


def test_loads_torch_state_and_continues(rng):
    problem = Problem(rng)
    tensors = problem.torch_params()
    topt = torch.optim.LBFGS(tensors, lr=0.5, max_iter=4)
    params = problem.params()
    opt = optim.LBFGS(params, lr=0.5, max_iter=4)
    closure, torch_closure = _closures(problem, opt, params, topt, tensors)
    topt.step(torch_closure)
    for p, t in zip(params, tensors):
        p.data = jnp.asarray(t.detach().numpy().copy())
    opt.load_state_dict(topt.state_dict())
    opt.step(closure)
    topt.step(torch_closure)
    for p, t in zip(params, tensors):
        assert_close(p.data, t, rtol=1e-4, atol=1e-4)


def test_bad_input():
    params = [Parameter(jnp.ones(3)), Parameter(jnp.ones(2))]
    with pytest.raises(ValueError, match="LBFGS doesn't support per-parameter options"):
        optim.LBFGS([{"params": params[:1]}, {"params": params[1:]}])
    with pytest.raises(ValueError, match="unknown line_search_fn='wolfe'"):
        optim.LBFGS(params, line_search_fn="wolfe")
    with pytest.raises(TypeError, match=r"cannot be traced by torsh_fn\.jit"):
        optim.LBFGS(params)._jit_slots()
    np.testing.assert_array_equal(params[0].data, jnp.ones(3))
