"""SGD and ASGD (``torsh_fn.optim._sgd``) against PyTorch: parity one update at a time over 50
steps, state_dict round trips, the optax face (with an optax schedule), no recompilation, half
precision (see ``_parity.py``)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
import torch

import torsh_fn.optim as optim
from tests.optim import _parity as parity
from tests.optim._problem import Problem
from tests.oracle import assert_close

CASES = [
    ("SGD", {"lr": 0.1}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "dampening": 0.3}),
    ("ASGD", {"lr": 1e-2, "t0": 10, "weight_decay": 0.1}),
]

FUNCTIONAL = [
    (optim.sgd(0.1, momentum=0.9, nesterov=True, weight_decay=0.01), "SGD",
     {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    (optim.asgd(t0=5), "ASGD", {"t0": 5}),
]

# test_matches_torch_for_50_steps and the other parity tests of _parity.family_tests
globals().update(parity.family_tests(CASES, FUNCTIONAL, half_precision=CASES[:1]))


def test_functional_face_takes_an_optax_schedule(rng):
    problem = Problem(rng)
    params = [jnp.asarray(a) for a in problem.init]
    schedule = optax.exponential_decay(0.1, transition_steps=1, decay_rate=0.9)
    tx = optim.sgd(schedule, momentum=0.9)
    tensors = problem.torch_params()
    topt = torch.optim.SGD(tensors, lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.ExponentialLR(topt, gamma=0.9)
    state = tx.init(params)
    for _ in range(10):
        grads = jax.grad(problem.loss)(params)
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        problem.torch_step(topt, tensors)
        sched.step()
    for p, t in zip(params, tensors):
        assert_close(p, t, rtol=1e-5, atol=1e-6)
