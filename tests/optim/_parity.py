"""Parity of the optimizers with PyTorch's, shared by the per-family test files
(``test__adam.py``, ``test__rmsprop.py``, ``test__sgd.py``, ``test__rprop.py``) and
``test_optimizer.py``: the comparison helpers and the parametrized tests every family runs over
its own cases.

A case is ``(name, kwargs)``: the class ``name`` of ``torsh_fn.optim`` and of ``torch.optim``,
built with the same keyword arguments. A functional case is ``(tx, name, kwargs)``: the optax
transformation of ``torsh_fn.optim`` and the PyTorch class and arguments it must match.

Parity over many steps is checked one update at a time, each from the same values: both sides
get the same gradient, and after each step ours continue from PyTorch's parameters and state
(see :func:`step_beside_torch`). Two libraries' gradients and fifty free-running steps are not
comparable at float32 tolerances on every problem: an Adam-type step divides the gradient by
its own size, so where a gradient sums to nearly 0 it is about +-lr whatever the rounding made
of that gradient (13% apart between jax and torch in one run), and the trajectory can be
chaotic: PyTorch itself, started one ulp away, ends up to 7e-3 away (``FAILED_RUNS`` in
``test__adam.py``). With fresh data per run (``TORSH_TEST_SEED``) such problems came up in about
one run in ten.

A family's file binds its tests with ``globals().update(family_tests(...))``: the factories
behind :func:`family_tests` return new test functions per call (pytest stores marks on the
function, so one function object cannot be parametrized by several modules), under the names
pytest collects.
"""

from __future__ import annotations

import copy

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import torsh_fn.optim as optim
from tests.optim._problem import Problem
from tests.oracle import assert_close, to_numpy
from torsh_fn.nn import Parameter
from torsh_fn.optim.optimizer import _group_step

STEPS = 50


def case_ids(cases) -> list[str]:
    """``"SGD-lr-momentum"``: the class and the names of the options given."""
    return [f"{name}-{'-'.join(map(str, kw))}" for name, kw in cases]


def over_cases(cases):
    """``pytest.mark.parametrize`` over ``(name, kwargs)`` cases, with :func:`case_ids`."""
    return pytest.mark.parametrize(("name", "kwargs"), cases, ids=case_ids(cases))


def over_functional(functional):
    """``pytest.mark.parametrize`` over ``(tx, name, kwargs)`` cases, named by the class."""
    return pytest.mark.parametrize(("tx", "name", "kwargs"), functional,
                                   ids=[c[1] for c in functional])


# -- comparisons --------------------------------------------------------------------------------


def pair(problem: Problem, name: str, kwargs: dict):
    """Ours and PyTorch's optimizer ``name`` over the problem's parameters:
    ``(params, opt, tensors, topt)``."""
    params, tensors = problem.params(), problem.torch_params()
    return (params, getattr(optim, name)(params, **kwargs),
            tensors, getattr(torch.optim, name)(tensors, **kwargs))


def assert_params(params, tensors, msg="", atol=None):
    for i, (p, t) in enumerate(zip(params, tensors)):
        assert_close(p.data, t, atol=atol, err_msg=f"{msg} parameter {i}")


def assert_state(ours, theirs, msg=""):
    """Per-parameter state dicts (``state_dict()["state"]`` of either side) hold the same
    entries, each to 0.1% of its largest element: an entry can be a sum of larger terms that
    cancel (RMSprop's centered momentum buffer), and float32 hyperparameters such as 1 - beta2
    are 1.3e-5 away from PyTorch's float64 ones (Adam's exp_avg_sq)."""
    assert ours.keys() == theirs.keys(), msg
    for i, state in theirs.items():
        assert ours[i].keys() == state.keys(), f"{msg} parameter {i}"
        for key, value in state.items():
            if value is None:
                assert ours[i][key] is None, f"{msg} parameter {i} {key}"
            else:
                scale = float(np.max(np.abs(to_numpy(value)), initial=0.0))
                assert_close(ours[i][key], value, atol=1e-3 * scale,
                             err_msg=f"{msg} parameter {i} {key}")


def _from_torch(tensors, topt, params, opt):
    """Set ours to PyTorch's parameters and optimizer state (copies: no memory shared)."""
    for p, t in zip(params, tensors):
        p.data = jnp.array(t.detach().numpy())
    opt.load_state_dict(copy.deepcopy(topt.state_dict()))


def torch_step_with(topt, tensors, grads):
    """PyTorch's step with the given gradients (copies)."""
    for t, g in zip(tensors, grads):
        t.grad = torch.tensor(np.asarray(g))
    topt.step()


def step_beside_torch(problem, params, opt, tensors, topt, steps, msg=""):
    """``steps`` steps of ours and of PyTorch, both with the gradient ours computed, each checked
    against PyTorch's (loss, parameters, optimizer state), after which ours continue from
    PyTorch's parameters and state. One update from the same values moves a parameter at most
    6.6e-7 away from PyTorch's (40 problems, every family's cases), well within float32's
    tolerances; separate gradients and free-running trajectories can part by far more (see
    ``FAILED_RUNS`` in ``test__adam.py``)."""
    for k in range(steps):
        torch_loss = problem.torch_loss(tensors).item()
        loss = problem.step(opt, params)
        torch_step_with(topt, tensors, [p.grad for p in params])
        np.testing.assert_allclose(loss, torch_loss, rtol=1e-5, err_msg=f"{msg} loss, step {k}")
        assert_params(params, tensors, f"{msg} step {k + 1}")
        assert_state(opt.state_dict()["state"], topt.state_dict()["state"],
                     f"{msg} step {k + 1}")
        _from_torch(tensors, topt, params, opt)


# -- the tests every family runs over its cases ---------------------------------------------------


def family_tests(cases, functional, half_precision) -> dict:
    """The parity tests of one family, by name: over its ``cases`` (``(name, kwargs)``), its
    ``functional`` cases (``(tx, name, kwargs)``) and, in bfloat16 and float16, the cases
    ``half_precision`` (a few: each compiles the steps twice more)."""
    return {
        "test_matches_torch_for_50_steps": _matches_torch_for_50_steps(cases),
        "test_state_dict_round_trips_continue_the_trajectory":
            _state_dict_round_trips_continue_the_trajectory(cases),
        "test_second_step_and_lr_changes_do_not_recompile":
            _second_step_and_lr_changes_do_not_recompile(cases),
        "test_half_precision_parameters_keep_their_dtype":
            _half_precision_parameters_keep_their_dtype(half_precision),
        "test_functional_face_matches_torch": _functional_face_matches_torch(functional),
        "test_functional_face_compiles_once_and_keeps_bfloat16":
            _functional_face_compiles_once_and_keeps_bfloat16(functional),
    }


def _matches_torch_for_50_steps(cases):
    @over_cases(cases)
    def test(rng, name, kwargs):
        problem = Problem(rng)
        params, opt, tensors, topt = pair(problem, name, kwargs)
        step_beside_torch(problem, params, opt, tensors, topt, STEPS)

    return test


def _state_dict_round_trips_continue_the_trajectory(cases):
    @over_cases(cases)
    def test(rng, name, kwargs):
        problem = Problem(rng)
        params, opt, tensors, topt = pair(problem, name, kwargs)
        half = STEPS // 2
        for _ in range(half):
            problem.step(opt, params)
            problem.torch_step(topt, tensors)
        # ours -> ours: a fresh optimizer on copies of the parameters
        copies = [Parameter(p.data) for p in params]
        resumed = getattr(optim, name)(copies, **kwargs)
        resumed.load_state_dict(copy.deepcopy(opt.state_dict()))
        # torch -> ours: the PyTorch optimizer's state_dict, torch tensors and all
        from_torch = [Parameter(jnp.asarray(t.detach().numpy())) for t in tensors]
        loaded = getattr(optim, name)(from_torch, **kwargs)
        loaded.load_state_dict(topt.state_dict())
        for _ in range(STEPS - half):
            problem.step(opt, params)
            problem.step(resumed, copies)
        for a, b in zip(copies, params):
            np.testing.assert_array_equal(a.data, b.data)
        # the first step after the hand-over from torch's float32 state (NAdam's mu_product, the
        # step counts), then one update at a time
        step_beside_torch(problem, from_torch, loaded, tensors, topt, STEPS - half,
                          "torch -> ours")

    return test


def _second_step_and_lr_changes_do_not_recompile(cases):
    @over_cases(cases)
    def test(rng, name, kwargs):
        problem = Problem(rng)
        params = problem.params()
        opt = getattr(optim, name)(params, **kwargs)
        problem.step(opt, params)
        problem.step(opt, params)  # SGD with dampening creates its buffer at the first step
        compiled = _group_step._cache_size()
        for lr in (0.5, 0.25, 0.125):
            opt.param_groups[0]["lr"] *= lr
            problem.step(opt, params)
        assert _group_step._cache_size() == compiled

    return test


def _half_precision_parameters_keep_their_dtype(cases):
    @over_cases(cases)
    @pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
    def test(rng, name, kwargs, dtype):
        problem = Problem(rng)
        params = problem.params(dtype)
        opt = getattr(optim, name)(params, **kwargs)
        for _ in range(3):
            problem.step(opt, params)
        assert all(p.data.dtype == dtype for p in params)
        for state in opt.state.values():
            for key, value in state.items():
                if value is not None and key not in ("step", "eta", "mu", "mu_product"):
                    assert value.dtype == dtype, key

    return test


def _functional_face_matches_torch(functional):
    @over_functional(functional)
    def test(rng, tx, name, kwargs):
        problem = Problem(rng)
        params = [jnp.asarray(a) for a in problem.init]
        tensors = problem.torch_params()
        topt = getattr(torch.optim, name)(tensors, **kwargs)

        @jax.jit
        def step(params, state, grads):
            updates, state = tx.update(grads, state, params)
            return optax.apply_updates(params, updates), state

        state = tx.init(params)
        for k in range(STEPS):  # one update at a time, as step_beside_torch
            grads = jax.grad(problem.loss)(params)
            params, state = step(params, state, grads)
            torch_step_with(topt, tensors, grads)
            for p, t in zip(params, tensors):
                assert_close(p, t, err_msg=f"step {k + 1}")
            for s, t in zip(state.per_param, tensors):
                assert_state({0: s}, {0: topt.state[t]}, f"step {k + 1}")
            params = [jnp.array(t.detach().numpy()) for t in tensors]
            state = state._replace(per_param=[
                {key: None if v is None else jnp.array(topt.state[t][key].numpy(), v.dtype)
                 for key, v in s.items()} for s, t in zip(state.per_param, tensors)])

    return test


def _functional_face_compiles_once_and_keeps_bfloat16(functional):
    @over_functional(functional)
    def test(rng, tx, name, kwargs):
        dtype = jnp.bfloat16
        problem = Problem(rng)
        params = [jnp.asarray(a, dtype) for a in problem.init]
        update = jax.jit(tx.update)
        state = tx.init(params)
        compiled = []
        for _ in range(3):
            grads = jax.grad(lambda ps: problem.loss([p.astype(jnp.float32) for p in ps]))(params)
            updates, new_state = update(grads, state, params)
            assert jax.tree.structure(new_state) == jax.tree.structure(state)
            params, state = optax.apply_updates(params, updates), new_state
            compiled.append(update._cache_size())  # the cache is shared by jits of one function
        assert compiled[0] == compiled[-1]
        assert all(u.dtype == dtype for u in updates) and all(p.dtype == dtype for p in params)

    return test
