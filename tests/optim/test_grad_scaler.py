"""GradScaler against ``torch.amp.GradScaler``: scale sequence, skipped steps, state_dict; and
the same loop under ``torsh_fn.jit``."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import torch

import torsh_fn.optim as optim
from tests.optim._problem import Problem
from tests.oracle import assert_close
from torsh_fn import backward, jit

BAD_STEPS = {2, 3, 9}  # steps whose loss is multiplied by inf: their update must be skipped


def _our_step(problem, opt, scaler, params, poison):
    opt.zero_grad()
    loss = backward(lambda: scaler.scale(problem.loss(params) * poison))
    scaler.step(opt)
    scaler.update()
    return loss


def _torch_step(problem, opt, scaler, tensors, poison):
    opt.zero_grad()
    loss = problem.torch_loss(tensors) * poison
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()


def _run(problem, jitted: bool):
    params = problem.params()
    opt = optim.Adam(params, lr=1e-2)
    scaler = optim.GradScaler("cpu", init_scale=2.0**10, growth_interval=3)
    step = jit(_our_step, static_argnums=0) if jitted else _our_step
    scales = []
    for i in range(14):
        step(problem, opt, scaler, params, jnp.float32(np.inf if i in BAD_STEPS else 1.0))
        scales.append(scaler.get_scale())
    return params, opt, scaler, scales


@pytest.mark.parametrize("jitted", [False, True], ids=["eager", "jit"])
def test_matches_torch_amp_grad_scaler(rng, jitted):
    problem = Problem(rng)
    params, opt, scaler, scales = _run(problem, jitted)
    tensors = problem.torch_params()
    topt = torch.optim.Adam(tensors, lr=1e-2)
    tscaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=3)
    torch_scales = []
    for i in range(14):
        _torch_step(problem, topt, tscaler, tensors, float("inf") if i in BAD_STEPS else 1.0)
        torch_scales.append(tscaler.get_scale())
    assert scales == torch_scales
    assert scaler.state_dict() == tscaler.state_dict()
    for p, t in zip(params, tensors):
        assert_close(p.data, t)
    assert float(opt.state[params[0]]["step"]) == 14 - len(BAD_STEPS)


def test_state_dict_round_trip_and_disabled_scaler():
    scaler = optim.GradScaler(init_scale=8.0, growth_interval=5)
    other = optim.GradScaler()
    other.load_state_dict(torch.amp.GradScaler("cpu", init_scale=8.0, growth_interval=5)
                          .state_dict())
    assert other.state_dict() == scaler.state_dict()
    off = optim.GradScaler(enabled=False)
    x = jnp.ones(3, jnp.float16)
    assert off.scale(x) is x and off.get_scale() == 1.0 and off.state_dict() == {}


def test_scale_keeps_the_dtype():
    scaler = optim.GradScaler(init_scale=4.0)
    out = scaler.scale({"a": jnp.ones(2, jnp.float16), "b": jnp.ones((), jnp.bfloat16)})
    assert out["a"].dtype == jnp.float16 and float(out["b"]) == 4.0


def test_misuse_is_an_error(rng):
    problem = Problem(rng)
    params = problem.params()
    opt = optim.SGD(params, lr=0.1)
    scaler = optim.GradScaler()
    with pytest.raises(ValueError, match="invalid backoff_factor=2"):
        optim.GradScaler(backoff_factor=2)
    backward(lambda: scaler.scale(problem.loss(params)))
    scaler.unscale_(opt)
    with pytest.raises(RuntimeError, match="unscale_\\(\\) has already been called"):
        scaler.unscale_(opt)
    with pytest.raises(RuntimeError, match="does not support a closure"):
        scaler.step(opt, closure=lambda: 0.0)
