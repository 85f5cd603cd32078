"""Every optimizer against PyTorch: one registry of (class, options), checked for parity over
50 steps, state_dict round trips, no recompilation, dtype preservation.

Parity over many steps is checked one update at a time, each from the same values: both sides
get the same gradient, and after each step ours continue from PyTorch's parameters and state
(see :func:`_step_beside_torch`). Two libraries' gradients and fifty free-running steps are not
comparable at float32 tolerances on every problem: an Adam-type step divides the gradient by
its own size, so where a gradient sums to nearly 0 it is about +-lr whatever the rounding made
of that gradient (13% apart between jax and torch in one run), and the trajectory can be
chaotic: PyTorch itself, started one ulp away, ends up to 7e-3 away (``FAILED_RUNS`` below).
With fresh data per run (``TORSH_TEST_SEED``) such problems came up in about one run in ten."""

from __future__ import annotations

import copy
import zlib

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

CASES = [
    ("SGD", {"lr": 0.1}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "dampening": 0.3}),
    ("Adam", {"lr": 1e-2}),
    ("Adam", {"lr": 1e-2, "amsgrad": True, "weight_decay": 0.1, "betas": (0.8, 0.99)}),
    ("Adam", {"lr": 1e-2, "maximize": True, "decoupled_weight_decay": True,
              "weight_decay": 0.1}),
    ("AdamW", {"lr": 1e-2, "amsgrad": True}),
    ("RMSprop", {"lr": 1e-3}),
    ("RMSprop", {"lr": 1e-3, "centered": True, "momentum": 0.9, "weight_decay": 0.1}),
    ("Adagrad", {"lr": 0.1, "lr_decay": 0.01, "initial_accumulator_value": 0.1,
                 "weight_decay": 0.1}),
    ("Adadelta", {"lr": 1.0, "weight_decay": 0.1, "maximize": True}),
    ("Adamax", {"lr": 1e-2, "weight_decay": 0.1}),
    ("NAdam", {"lr": 3e-3}),
    ("NAdam", {"lr": 3e-3, "weight_decay": 0.1, "decoupled_weight_decay": True}),
    ("RAdam", {"lr": 1e-2}),
    ("RAdam", {"lr": 1e-2, "weight_decay": 0.1, "decoupled_weight_decay": True}),
    ("ASGD", {"lr": 1e-2, "t0": 10, "weight_decay": 0.1}),
    ("Rprop", {"lr": 1e-2, "etas": (0.4, 1.3), "step_sizes": (1e-5, 1.0)}),
]
IDS = [f"{name}-{'-'.join(map(str, kw))}" for name, kw in CASES]
STEPS = 50


def _pair(problem: Problem, name: str, kwargs: dict):
    params, tensors = problem.params(), problem.torch_params()
    return (params, getattr(optim, name)(params, **kwargs),
            tensors, getattr(torch.optim, name)(tensors, **kwargs))


def _assert_params(params, tensors, msg="", atol=None):
    for i, (p, t) in enumerate(zip(params, tensors)):
        assert_close(p.data, t, atol=atol, err_msg=f"{msg} parameter {i}")


def _assert_state(ours, theirs, msg=""):
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


def _torch_step_with(topt, tensors, grads):
    """PyTorch's step with the given gradients (copies)."""
    for t, g in zip(tensors, grads):
        t.grad = torch.tensor(np.asarray(g))
    topt.step()


def _step_beside_torch(problem, params, opt, tensors, topt, steps, msg=""):
    """``steps`` steps of ours and of PyTorch, both with the gradient ours computed, each checked
    against PyTorch's (loss, parameters, optimizer state), after which ours continue from
    PyTorch's parameters and state. One update from the same values moves a parameter at most
    6.6e-7 away from PyTorch's (40 problems, all of ``CASES``), well within float32's
    tolerances; separate gradients and free-running trajectories can part by far more (see
    ``FAILED_RUNS``)."""
    for k in range(steps):
        torch_loss = problem.torch_loss(tensors).item()
        loss = problem.step(opt, params)
        _torch_step_with(topt, tensors, [p.grad for p in params])
        np.testing.assert_allclose(loss, torch_loss, rtol=1e-5, err_msg=f"{msg} loss, step {k}")
        _assert_params(params, tensors, f"{msg} step {k + 1}")
        _assert_state(opt.state_dict()["state"], topt.state_dict()["state"],
                      f"{msg} step {k + 1}")
        _from_torch(tensors, topt, params, opt)


@pytest.mark.parametrize(("name", "kwargs"), CASES, ids=IDS)
def test_matches_torch_for_50_steps(rng, name, kwargs):
    problem = Problem(rng)
    params, opt, tensors, topt = _pair(problem, name, kwargs)
    _step_beside_torch(problem, params, opt, tensors, topt, STEPS)


@pytest.mark.parametrize(("name", "kwargs"), CASES, ids=IDS)
def test_state_dict_round_trips_continue_the_trajectory(rng, name, kwargs):
    problem = Problem(rng)
    params, opt, tensors, topt = _pair(problem, name, kwargs)
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
    _step_beside_torch(problem, from_torch, loaded, tensors, topt, STEPS - half, "torch -> ours")


FUNCTIONAL = [
    (optim.sgd(0.1, momentum=0.9, nesterov=True, weight_decay=0.01), "SGD",
     {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    (optim.adamw(1e-2, amsgrad=True), "AdamW", {"lr": 1e-2, "amsgrad": True}),
    (optim.rmsprop(1e-3, centered=True, momentum=0.5), "RMSprop",
     {"lr": 1e-3, "centered": True, "momentum": 0.5}),
    (optim.adagrad(0.1, lr_decay=0.01), "Adagrad", {"lr": 0.1, "lr_decay": 0.01}),
    (optim.adadelta(), "Adadelta", {}),
    (optim.adamax(), "Adamax", {}),
    (optim.nadam(), "NAdam", {}),
    (optim.radam(), "RAdam", {}),
    (optim.asgd(t0=5), "ASGD", {"t0": 5}),
    (optim.rprop(), "Rprop", {}),
]


@pytest.mark.parametrize(("tx", "name", "kwargs"), FUNCTIONAL, ids=[c[1] for c in FUNCTIONAL])
def test_functional_face_matches_torch(rng, tx, name, kwargs):
    problem = Problem(rng)
    params = [jnp.asarray(a) for a in problem.init]
    tensors = problem.torch_params()
    topt = getattr(torch.optim, name)(tensors, **kwargs)

    @jax.jit
    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    state = tx.init(params)
    for k in range(STEPS):  # one update at a time, as _step_beside_torch
        grads = jax.grad(problem.loss)(params)
        params, state = step(params, state, grads)
        _torch_step_with(topt, tensors, grads)
        for p, t in zip(params, tensors):
            assert_close(p, t, err_msg=f"step {k + 1}")
        for s, t in zip(state.per_param, tensors):
            _assert_state({0: s}, {0: topt.state[t]}, f"step {k + 1}")
        params = [jnp.array(t.detach().numpy()) for t in tensors]
        state = state._replace(per_param=[
            {key: None if v is None else jnp.array(topt.state[t][key].numpy(), v.dtype)
             for key, v in s.items()} for s, t in zip(state.per_param, tensors)])


# Runs whose comparisons with PyTorch failed before they were made one update at a time from
# the same gradient: (TORSH_TEST_SEED, test, case). Their data is rebuilt from the seed.
FAILED_RUNS = {  # the largest difference then
    "NAdam 50 steps": (364522461, "test_matches_torch_for_50_steps",  # 7.5e-3
                       "NAdam-lr-weight_decay-decoupled_weight_decay"),
    "NAdam round trip": (951701753, "test_state_dict_round_trips_continue_the_trajectory",
                         "NAdam-lr-weight_decay-decoupled_weight_decay"),  # 1.4e-4
    "AdamW functional": (56433, "test_functional_face_matches_torch", "AdamW"),  # 1.5e-4
}


def _run_data(name: str) -> np.random.Generator:
    seed, test, case = FAILED_RUNS[name]
    node = f"tests/optim/test_optimizers.py::{test}[{case}]"
    return np.random.default_rng([seed, zlib.crc32(node.encode())])  # that run's rng


def _case_args(test: str, case: str) -> tuple:
    if test == "test_functional_face_matches_torch":
        return FUNCTIONAL[[c[1] for c in FUNCTIONAL].index(case)]
    return CASES[IDS.index(case)]


@pytest.mark.parametrize("run", list(FAILED_RUNS))
def test_parity_holds_on_the_runs_that_failed(run):
    _, test, case = FAILED_RUNS[run]
    globals()[test](_run_data(run), *_case_args(test, case))


@pytest.mark.parametrize("run", ["NAdam 50 steps", "NAdam round trip"])
def test_those_nadam_runs_are_chaotic_in_torch_itself(run):
    """PyTorch alone, started one ulp away, ends more than 1e-3 away after 50 steps."""
    name, kwargs = _case_args(*FAILED_RUNS[run][1:])
    problem = Problem(_run_data(run))
    ends = []
    for init in (problem.init, [np.nextafter(a, np.float32(np.inf)) for a in problem.init]):
        tensors = [torch.tensor(a, requires_grad=True) for a in init]
        topt = getattr(torch.optim, name)(tensors, **kwargs)
        for _ in range(STEPS):
            problem.torch_step(topt, tensors)
        ends.append(np.concatenate([t.detach().numpy().ravel() for t in tensors]))
    assert np.max(np.abs(ends[0] - ends[1])) > 1e-3


def test_that_adamw_run_has_a_gradient_the_libraries_round_apart():
    """A gradient that sums to nearly 0 (-6e-8): jax's and torch's differ by more than 10%, and
    Adam's first step, lr * g / (|g| + eps), by more than 1e-4."""
    problem = Problem(_run_data("AdamW functional"))
    ours = jax.grad(problem.loss)([jnp.asarray(a) for a in problem.init])[2]
    tensors = problem.torch_params()
    problem.torch_loss(tensors).backward()
    theirs = tensors[2].grad.numpy()
    at = np.unravel_index(np.argmin(np.abs(theirs)), theirs.shape)
    g, h = float(ours[at]), float(theirs[at])
    assert abs(g - h) > 0.1 * abs(h)
    assert abs(1e-2 * (g / (abs(g) + 1e-8) - h / (abs(h) + 1e-8))) > 1e-4


@pytest.mark.parametrize(("tx", "name", "kwargs"), FUNCTIONAL, ids=[c[1] for c in FUNCTIONAL])
def test_functional_face_compiles_once_and_keeps_bfloat16(rng, tx, name, kwargs):
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


@pytest.mark.parametrize(("name", "kwargs"), CASES, ids=IDS)
def test_second_step_and_lr_changes_do_not_recompile(rng, name, kwargs):
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


@pytest.mark.parametrize(("name", "kwargs"), CASES[::3], ids=IDS[::3])
@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_half_precision_parameters_keep_their_dtype(rng, name, kwargs, dtype):
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


def test_master_weights_track_the_float32_trajectory(rng):
    problem = Problem(rng)
    half = problem.params(jnp.bfloat16)
    naive = problem.params(jnp.bfloat16)
    reference = [Parameter(p.data.astype(jnp.float32)) for p in half]
    opts = [optim.Adam(ps, lr=1e-3, master_weights=m)
            for ps, m in ((half, True), (naive, False), (reference, False))]
    for _ in range(20):
        grads = jax.grad(problem.loss)([p.data for p in reference])
        for h, n, r, g in zip(half, naive, reference, grads):
            h.grad = n.grad = g.astype(jnp.bfloat16)
            r.grad = h.grad.astype(jnp.float32)
        for opt in opts:
            opt.step()
    master = [opts[0].state[p]["master_weight"] for p in half]
    for m, p, r in zip(master, half, reference):
        assert m.dtype == jnp.float32 and p.data.dtype == jnp.bfloat16
        np.testing.assert_array_equal(m, r.data)
        np.testing.assert_array_equal(m.astype(jnp.bfloat16), p.data)
    naive_err = max(float(jnp.max(jnp.abs(n.data.astype(jnp.float32) - r.data)))
                    for n, r in zip(naive, reference))
    assert naive_err > 1e-3  # without a master copy, bfloat16 rounds the 1e-3 steps away


def test_frozen_parameters_and_missing_grads_are_skipped(rng):
    problem = Problem(rng)
    params = problem.params()
    params[0].requires_grad = False
    opt = optim.Adam(params, lr=0.1)
    before = [p.data for p in params]
    problem.step(opt, params)
    params[1].grad = None
    params[2].grad = jnp.ones_like(params[2].data)
    opt.step()
    np.testing.assert_array_equal(params[0].data, before[0])
    assert params[0] not in opt.state
    assert float(opt.state[params[1]]["step"]) == 1.0
    assert float(opt.state[params[2]]["step"]) == 2.0


def test_param_groups_have_their_own_options(rng):
    problem = Problem(rng)
    params, tensors = problem.params(), problem.torch_params()
    groups = lambda ps: [{"params": ps[:2]}, {"params": ps[2:], "lr": 1e-3, "momentum": 0.5}]
    opt = optim.SGD(groups(params), lr=0.1, momentum=0.9)
    topt = torch.optim.SGD(groups(tensors), lr=0.1, momentum=0.9)
    for _ in range(10):
        problem.step(opt, params)
        problem.torch_step(topt, tensors)
    _assert_params(params, tensors)
    assert opt.param_groups[1]["momentum"] == 0.5 and opt.param_groups[1]["nesterov"] is False


def test_add_param_group_and_zero_grad(rng):
    problem = Problem(rng)
    params = problem.params()
    opt = optim.SGD(params[:2], lr=0.1)
    opt.add_param_group({"params": params[2:], "lr": 0.01})
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.01]
    for p in params:
        p.grad = jnp.ones_like(p.data)
    opt.zero_grad(set_to_none=False)
    assert all(float(jnp.abs(p.grad).sum()) == 0 for p in params)
    opt.zero_grad()
    assert all(p.grad is None for p in params)


def test_step_with_closure_returns_the_loss(rng):
    problem = Problem(rng)
    params, tensors = problem.params(), problem.torch_params()
    opt = optim.Adam(params, lr=1e-2)
    topt = torch.optim.Adam(tensors, lr=1e-2)

    def closure():
        opt.zero_grad()
        return problem.loss(params)

    def torch_closure():  # with ours' gradients, as in _step_beside_torch
        topt.zero_grad()
        loss = problem.torch_loss(tensors)
        loss.backward()
        for t, p in zip(tensors, params):
            t.grad = torch.tensor(np.asarray(p.grad))
        return loss

    for _ in range(5):
        loss = opt.step(closure)
        torch_loss = topt.step(torch_closure)
        assert_close(loss, torch_loss)
    _assert_params(params, tensors)
    assert all(p.grad is not None for p in params)


def test_state_dict_layout_is_pytorch_s(rng):
    problem = Problem(rng)
    params, opt, tensors, topt = _pair(problem, "Adam", {"lr": 1e-2, "amsgrad": True})
    problem.step(opt, params)
    problem.torch_step(topt, tensors)
    ours, theirs = opt.state_dict(), topt.state_dict()
    assert ours["param_groups"][0].keys() == theirs["param_groups"][0].keys()
    assert ours["state"].keys() == theirs["state"].keys()
    assert ours["state"][0].keys() == theirs["state"][0].keys()


# -- bad input ----------------------------------------------------------------------------------


def test_unknown_option_is_a_type_error(rng):
    with pytest.raises(TypeError, match="momentm"):
        optim.SGD(Problem(rng).params(), lr=0.1, momentm=0.9)


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adadelta",
                                  "Adamax", "NAdam", "RAdam", "ASGD", "Rprop"])
def test_negative_lr_is_a_value_error(rng, name):
    with pytest.raises(ValueError, match=rf"{name}: invalid lr=-0.1: expected a value >= 0"):
        getattr(optim, name)(Problem(rng).params(), lr=-0.1)


def test_bad_options_are_value_errors(rng):
    params = Problem(rng).params()
    with pytest.raises(ValueError, match=r"Adam: invalid betas\[1\]=1.0"):
        optim.Adam(params, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="nesterov=True needs momentum > 0"):
        optim.SGD(params, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="Rprop: invalid etas"):
        optim.Rprop(params, etas=(1.5, 1.2))
    with pytest.raises(ValueError, match="SGD: invalid lr=-1"):
        optim.SGD(params[:2], lr=0.1).add_param_group({"params": params[2:], "lr": -1})


def test_parameters_given_twice_are_a_value_error(rng):
    params = Problem(rng).params()
    with pytest.raises(ValueError, match="contains the same parameter twice"):
        optim.SGD([params[0], params[0]], lr=0.1)
    with pytest.raises(ValueError, match="appear in more than one parameter group"):
        optim.SGD([{"params": params[:2]}, {"params": params[1:]}], lr=0.1)


def test_params_must_be_parameters(rng):
    params = Problem(rng).params()
    with pytest.raises(TypeError, match="got a single Parameter; wrap it in a list"):
        optim.SGD(params[0], lr=0.1)
    with pytest.raises(TypeError, match=r"can only optimize torsh_fn\.nn\.Parameter objects, got"):
        optim.SGD([jnp.ones(3)], lr=0.1)
    with pytest.raises(ValueError, match="SGD got an empty parameter list"):
        optim.SGD([], lr=0.1)


def test_state_dict_of_another_optimizer_is_a_value_error(rng):
    problem = Problem(rng)
    params = problem.params()
    sgd = optim.SGD(params, lr=0.1, momentum=0.9)
    problem.step(sgd, params)
    with pytest.raises(ValueError, match=r"lacks \['betas', 'eps'.*another optimizer"):
        optim.Adam(params).load_state_dict(sgd.state_dict())
    rms = optim.RMSprop(params)
    problem.step(rms, params)
    saved = rms.state_dict()
    saved["param_groups"][0].update(betas=(0.9, 0.999), amsgrad=False,
                                    decoupled_weight_decay=False)
    with pytest.raises(ValueError, match=r"state of parameter 0 has keys \['square_avg', 'step'\]"
                                         r", expected \['exp_avg', 'exp_avg_sq', 'step'\]"):
        optim.Adam(params).load_state_dict(saved)


def test_state_dict_of_another_parameter_count_is_a_value_error(rng):
    problem = Problem(rng)
    params = problem.params()
    opt = optim.Adam(params)
    problem.step(opt, params)
    with pytest.raises(ValueError, match="parameter group 0 has 4 parameters in the state_dict, "
                                         "3 in the optimizer"):
        optim.Adam(params[:3]).load_state_dict(opt.state_dict())
    with pytest.raises(ValueError, match="the state_dict has 1 parameter groups, the optimizer "
                                         "has 2"):
        optim.Adam([{"params": params[:2]}, {"params": params[2:]}]).load_state_dict(
            opt.state_dict())
    with pytest.raises(ValueError, match="expected a dict with keys 'state' and 'param_groups'"):
        opt.load_state_dict({"state": {}})


def test_functional_transform_needs_params():
    tx = optim.adam()
    params = [jnp.ones(3)]
    with pytest.raises(ValueError, match=r"needs `params` in update\(\)"):
        tx.update(params, tx.init(params))


def test_loaded_state_does_not_alias_torch_memory():
    big = torch.zeros(1 << 20, requires_grad=True)  # large: jnp.asarray would alias its buffer
    topt = torch.optim.SGD([big], lr=0.1, momentum=0.9)
    big.grad = torch.ones_like(big)
    topt.step()
    param = Parameter(jnp.zeros(1 << 20))
    opt = optim.SGD([param], lr=0.1, momentum=0.9)
    opt.load_state_dict(topt.state_dict())
    topt.state[big]["momentum_buffer"].add_(1.0)
    assert float(opt.state[param]["momentum_buffer"][-1]) == 1.0
