"""A whole training step under ``torsh_fn.jit``: one program over many calls (scheduler changes
included), the same numbers as the eager step."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import torsh_fn
import torsh_fn.nn as nn
import torsh_fn.nn.functional as F
import torsh_fn.optim as optim
from tests.optim._problem import Problem
from torsh_fn import backward, jit

CONFIGS = [
    ("Adam", {"lr": 1e-2, "amsgrad": True},
     lambda o: optim.lr_scheduler.OneCycleLR(o, max_lr=0.05, total_steps=40)),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True},
     lambda o: optim.lr_scheduler.CyclicLR(o, 0.01, 0.1, step_size_up=3)),
    ("RMSprop", {"lr": 1e-3, "centered": True},
     lambda o: optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.7)),
    ("Rprop", {}, lambda o: optim.lr_scheduler.ExponentialLR(o, gamma=0.9)),
]


def _closure_step(problem, opt, params):
    def closure():
        opt.zero_grad()
        return problem.loss(params)

    return opt.step(closure)


@pytest.mark.parametrize(("name", "kwargs", "make_scheduler"), CONFIGS,
                         ids=[c[0] for c in CONFIGS])
def test_jitted_step_matches_eager_and_compiles_once(rng, name, kwargs, make_scheduler):
    problem = Problem(rng)
    traces = []

    @jit
    def step(opt, params):
        traces.append(None)
        return _closure_step(problem, opt, params)

    runs = []
    for jitted in (True, False):
        params = problem.params()
        opt = getattr(optim, name)(params, **kwargs)
        scheduler = make_scheduler(opt)
        losses = []
        for _ in range(12):
            loss = step(opt, params) if jitted else _closure_step(problem, opt, params)
            losses.append(float(loss))
            scheduler.step()
        runs.append((params, opt, losses))
    (params, opt, losses), (eager_params, eager_opt, eager_losses) = runs
    np.testing.assert_allclose(losses, eager_losses, rtol=1e-5)
    # atol: the output bias's gradients are means of residuals that nearly cancel (4.9e-5 in one
    # step against ~1e-3 in the others, rng seed 748), whose jitted and eager roundings part by
    # 1e-4 of it, and an Adam step divides a gradient by its running size: up to ~lr * 1e-4 a
    # step (2.1e-6 after 12 steps there); a wrong learning rate or step count moves by ~lr.
    for p, q in zip(params, eager_params):
        np.testing.assert_allclose(p.data, q.data, rtol=1e-5, atol=1e-5)
    assert type(opt.param_groups[0]["lr"]) is float
    assert opt.param_groups[0]["lr"] == eager_opt.param_groups[0]["lr"]
    # One program for all 12 steps: the first call (no gradients yet) runs the program of the
    # later ones with zeros for the gradients, which the closure overwrites unread.
    assert len(traces) == 1


def test_no_retrace_once_gradients_exist(rng):
    problem = Problem(rng)
    params = problem.params()
    opt = optim.Adam(params, lr=1e-2)
    scheduler = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=5)
    traces = []

    @jit
    def step(opt, params):
        traces.append(None)
        opt.zero_grad()
        loss = backward(lambda: problem.loss(params))
        opt.step()
        return loss

    problem.step(opt, params)  # eager: gradients and state exist
    for _ in range(8):
        step(opt, params)
        scheduler.step()
    assert len(traces) == 1
    assert all(isinstance(v, jnp.ndarray) for v in opt.state[params[0]].values())
    assert float(opt.state[params[0]]["step"]) == 9.0


def test_closure_step_with_batchnorm_updates_statistics_once(rng):
    x = jnp.asarray(rng.standard_normal((16, 4)), jnp.float32)
    y = jnp.arange(16) % 3
    results = []
    for jitted in (True, False):
        torsh_fn.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
        opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

        def step(model, opt, x, y):
            def closure():
                opt.zero_grad()
                return F.cross_entropy(model(x), y)

            return opt.step(closure)

        run = jit(step) if jitted else step
        losses = [float(run(model, opt, x, y)) for _ in range(3)]
        results.append((losses, model))
    (losses, model), (eager_losses, eager_model) = results
    np.testing.assert_allclose(losses, eager_losses, rtol=1e-5)
    assert int(model[1].num_batches_tracked) == 3
    np.testing.assert_allclose(model[1].running_mean, eager_model[1].running_mean, rtol=1e-5,
                               atol=1e-6)


@pytest.mark.parametrize("jitted", [False, True])
def test_closure_leaves_a_parameter_the_loss_never_reads_alone_as_torch(rng, jitted):
    """``step(closure)``: a parameter outside the loss keeps ``.grad`` None, so AdamW's weight
    decay does not touch it (PyTorch skips parameters without a gradient)."""
    import torch

    # Positive inputs and tanh away from saturation: no gradient sums to nearly 0, where AdamW's
    # first step, lr * g / (|g| + eps), would turn the two libraries' roundings of it into more
    # than the tolerance (9.3e-6 with TORSH_TEST_SEED=690396854 and standard normal data).
    x = rng.uniform(0.5, 1.5, (6, 4)).astype(np.float32)
    used, unused = ((0.5 * rng.standard_normal((4, 3))).astype(np.float32) for _ in range(2))
    ours = [nn.Parameter(jnp.asarray(used)), nn.Parameter(jnp.asarray(unused))]
    theirs = [torch.nn.Parameter(torch.tensor(used)), torch.nn.Parameter(torch.tensor(unused))]
    opt = optim.AdamW(ours, lr=0.1, weight_decay=0.5)
    topt = torch.optim.AdamW(theirs, lr=0.1, weight_decay=0.5)

    def step(opt):
        def closure():
            opt.zero_grad()
            return jnp.sum(jnp.tanh(jnp.asarray(x) @ ours[0]))
        return opt.step(closure)

    def torch_closure():
        topt.zero_grad()
        loss = torch.tanh(torch.tensor(x) @ theirs[0]).sum()
        loss.backward()
        return loss

    run = jit(step) if jitted else step
    for _ in range(3):
        run(opt)
        topt.step(torch_closure)
    assert ours[1].grad is None and theirs[1].grad is None
    for p, q in zip(ours, theirs):
        np.testing.assert_allclose(np.asarray(p.data), q.detach().numpy(), rtol=1e-5, atol=1e-6)


_CHANGES = {
    "lr": lambda opt, rest: opt.param_groups[0].__setitem__("lr", 0.05),
    "weight decay turns on": lambda opt, rest: opt.param_groups[0].__setitem__("weight_decay", 0.1),
    "a new group": lambda opt, rest: opt.add_param_group({"params": rest, "lr": 0.02}),
    "a parameter frozen": lambda opt, rest: opt.param_groups[0]["params"][0].requires_grad_(False),
}


@pytest.mark.parametrize("change", list(_CHANGES))
def test_a_change_between_jitted_steps_applies_as_in_torch(rng, change):
    """Calls like the previous one reuse its slots and program: a change of the optimizer in
    between (a hyperparameter, a zero weight decay turning non-zero, a new group, a frozen
    parameter) must still take effect on the next step."""
    import torch

    problem = Problem(rng)
    params, tparams = problem.params(), problem.torch_params()
    opt, topt = optim.Adam(params[:2], lr=1e-2), torch.optim.Adam(tparams[:2], lr=1e-2)

    @jit
    def step(opt, params):
        opt.zero_grad()
        loss = backward(lambda: problem.loss(params))
        opt.step()
        return loss

    def torch_step():
        """PyTorch's step with the gradients ours just used: an Adam step divides a gradient by
        its own size, so where one sums to nearly 0 the libraries' roundings of it part by more
        than the tolerance."""
        topt.zero_grad()
        loss = problem.torch_loss(tparams)
        loss.backward()
        for p, q in zip(params, tparams):
            if q.grad is not None:
                q.grad = torch.tensor(np.asarray(p.grad))
        topt.step()
        return loss

    for i in range(6):
        if i == 3:
            _CHANGES[change](opt, params[2:])
            _CHANGES[change](topt, tparams[2:])
        np.testing.assert_allclose(float(step(opt, params)), float(torch_step()), rtol=1e-5)
    for p, q in zip(params, tparams):
        np.testing.assert_allclose(np.asarray(p.data), q.detach().numpy(), rtol=1e-5, atol=1e-6)
