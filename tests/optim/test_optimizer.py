"""``torsh_fn.optim.optimizer``: the ``Optimizer`` base of every PyTorch-face optimizer. Param
groups, ``add_param_group``, ``zero_grad``, ``step(closure)``, frozen parameters, master
weights, the state_dict layout and its errors, bad options, the repr, and the
``torsh_fn.jit`` protocol (``_jit_slots``, ``_jit_guard``, ``_opts``: a weight decay of 0 is
compiled in). Each optimizer's own rule is checked in its family's file (``test__adam.py``,
...)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import torsh_fn.optim as optim
from tests.optim._parity import assert_params, pair
from tests.optim._problem import Problem
from tests.oracle import assert_close
from torsh_fn import jit
from torsh_fn.nn import Parameter
from torsh_fn.optim.optimizer import _group_step


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
    assert_params(params, tensors)
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

    def torch_closure():  # with ours' gradients, as in _parity.step_beside_torch
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
    assert_params(params, tensors)
    assert all(p.grad is not None for p in params)


def test_state_dict_layout_is_pytorch_s(rng):
    problem = Problem(rng)
    params, opt, tensors, topt = pair(problem, "Adam", {"lr": 1e-2, "amsgrad": True})
    problem.step(opt, params)
    problem.torch_step(topt, tensors)
    ours, theirs = opt.state_dict(), topt.state_dict()
    assert ours["param_groups"][0].keys() == theirs["param_groups"][0].keys()
    assert ours["state"].keys() == theirs["state"].keys()
    assert ours["state"][0].keys() == theirs["state"][0].keys()


@pytest.mark.parametrize(("name", "kwargs"), [("SGD", {"lr": 0.1, "momentum": 0.9}),
                                              ("Adam", {"amsgrad": True}), ("Rprop", {})])
def test_repr_of_one_group_is_pytorch_s(name, kwargs):
    ours = getattr(optim, name)([Parameter(jnp.ones(2))], **kwargs)
    theirs = getattr(torch.optim, name)([torch.ones(2, requires_grad=True)], **kwargs)
    assert repr(ours) == repr(theirs)


# -- torsh_fn.jit: slots, static key, guard ------------------------------------------------------


def test_opts_are_the_flags_and_whether_weight_decay_is_nonzero(rng):
    params = Problem(rng).params()
    adam = optim.Adam([{"params": params[:2]}, {"params": params[2:], "weight_decay": 0.1}],
                      amsgrad=True)
    flags = (("amsgrad", True), ("maximize", False), ("decoupled_weight_decay", False))
    assert adam._opts(adam.param_groups[0]) == (*flags, ("nonzero_weight_decay", False))
    assert adam._opts(adam.param_groups[1]) == (*flags, ("nonzero_weight_decay", True))
    # no weight decay at all: the flags alone
    rprop = optim.Rprop(params, maximize=True)
    assert rprop._opts(rprop.param_groups[0]) == (("maximize", True),)


def test_jit_slots_hold_what_a_step_reads_and_writes_but_a_zero_weight_decay(rng):
    params = Problem(rng).params()
    params[3].requires_grad = False
    opt = optim.Adam([{"params": params[:2]}, {"params": params[2:], "weight_decay": 0.1}])
    slots = opt._jit_slots()
    assert set(opt.state) == set(params[:3])  # created for the trainable parameters
    keys = {(id(c), k) for c, k in slots}
    assert len(keys) == len(slots)
    for p in params:
        assert {(id(p), "data"), (id(p), "grad")} <= keys
    for p in params[:3]:
        assert {(id(opt.state[p]), k) for k in ("step", "exp_avg", "exp_avg_sq")} <= keys
    group0, group1 = (id(g) for g in opt.param_groups)
    assert {k for i, k in keys if i == group0} == {"lr", "betas", "eps"}
    assert {k for i, k in keys if i == group1} == {"lr", "betas", "eps", "weight_decay"}
    assert len(slots) == 2 * 4 + 3 * 3 + 3 + 4


def test_jit_guard_follows_the_structure_not_the_values(rng):
    problem = Problem(rng)
    params = problem.params()
    opt = optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=0.0)
    problem.step(opt, params)
    guard = opt._jit_guard()
    opt.param_groups[0]["lr"] = 0.05
    problem.step(opt, params)  # new values, in the same state dicts
    assert opt._jit_guard() == guard
    changes = [
        lambda: opt.param_groups[0].__setitem__("weight_decay", 0.1),  # now non-zero
        lambda: params[0].requires_grad_(False),
        lambda: opt.add_param_group({"params": [Parameter(jnp.ones(3))]}),
        lambda: opt.load_state_dict(opt.state_dict()),  # new per-parameter state dicts
        lambda: opt.state[params[1]].__setitem__("extra", jnp.ones(2)),  # a key added in place
    ]
    for change in changes:
        change()
        assert opt._jit_guard() != guard
        guard = opt._jit_guard()
    opt.param_groups[0]["weight_decay"] = 0.2  # non-zero to non-zero: a value
    assert opt._jit_guard() == guard


def test_jit_guard_is_none_where_a_subclass_has_its_own_slots(rng):
    params = Problem(rng).params()

    class OwnStatic(optim.SGD):
        def _jit_static(self):
            return "own"

    assert optim.LBFGS(params)._jit_guard() is None
    assert OwnStatic(params, lr=0.1)._jit_guard() is None
    assert optim.SGD(params, lr=0.1)._jit_guard() is not None


@pytest.mark.parametrize("jitted", [False, True])
def test_a_zero_weight_decay_is_left_out_of_the_program_as_pytorch_leaves_it_out(jitted):
    """PyTorch skips ``grad + weight_decay * param`` when the decay is 0, so an infinite
    parameter stays infinite; ``grad + 0 * inf`` would make it NaN. Under ``torsh_fn.jit`` the 0
    stays a Python number (not a slot), so the program leaves the term out too."""
    start = np.array([np.inf, 1.0, -2.0], np.float32)
    param = Parameter(jnp.asarray(start))
    tensor = torch.tensor(start, requires_grad=True)
    opt = optim.SGD([param], lr=0.1, momentum=0.9, weight_decay=0)
    topt = torch.optim.SGD([tensor], lr=0.1, momentum=0.9, weight_decay=0)

    def step(opt):
        opt.step()

    run = jit(step) if jitted else step
    for _ in range(3):
        param.grad, tensor.grad = jnp.ones(3), torch.ones(3)
        run(opt)
        topt.step()
    assert_close(param.data, tensor)
    assert np.isinf(np.asarray(param.data)[0])


def test_weight_decay_turning_nonzero_compiles_once_more(rng):
    problem = Problem(rng)
    params = problem.params()
    opt = optim.SGD(params, lr=0.1, momentum=0.9)
    problem.step(opt, params)
    compiled = _group_step._cache_size()
    problem.step(opt, params)
    assert _group_step._cache_size() == compiled
    opt.param_groups[0]["weight_decay"] = 0.1
    problem.step(opt, params)
    assert _group_step._cache_size() == compiled + 1
    opt.param_groups[0]["weight_decay"] = 0.2
    problem.step(opt, params)
    assert _group_step._cache_size() == compiled + 1


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


def test_state_dict_of_other_shapes_or_indices_is_a_value_error(rng):
    problem = Problem(rng)
    params = problem.params()
    opt = optim.Adam(params)
    problem.step(opt, params)
    saved = opt.state_dict()
    saved["state"][1]["exp_avg"] = jnp.zeros(5)
    with pytest.raises(ValueError, match=r"state 'exp_avg' of parameter 1 has shape \(5,\), the "
                                         r"parameter needs \(8,\)"):
        optim.Adam(params).load_state_dict(saved)
    saved = opt.state_dict()
    saved["state"][7] = saved["state"][0]
    with pytest.raises(ValueError, match="state for parameter 7, which no parameter group lists"):
        optim.Adam(params).load_state_dict(saved)


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


def test_repr_of_several_groups_is_pytorch_s():
    ours = optim.SGD([{"params": [Parameter(jnp.ones(2))]},
                      {"params": [Parameter(jnp.ones(3))], "lr": 0.5, "momentum": 0.9}], lr=0.1)
    theirs = torch.optim.SGD([{"params": [torch.ones(2, requires_grad=True)]},
                              {"params": [torch.ones(3, requires_grad=True)], "lr": 0.5,
                               "momentum": 0.9}], lr=0.1)
    assert repr(ours) == repr(theirs)


def test_a_state_key_added_between_jitted_calls_is_seen():
    """A key added to a per-parameter state dict in place is a new slot: the next call of a
    jitted step must read it, not reuse the previous call's program."""
    param = Parameter(jnp.ones(3))
    opt = optim.SGD([param], lr=0.1, momentum=0.9)
    step = jit(lambda opt: opt.state[param].get("extra", jnp.zeros(())) + 0.0)
    param.grad = jnp.ones(3)
    opt.step()
    assert float(step(opt)) == 0.0
    opt.state[param]["extra"] = jnp.asarray(5.0)
    assert float(step(opt)) == 5.0
    opt.state[param]["extra"] = jnp.asarray(7.0)  # a new value in the same slot
    assert float(step(opt)) == 7.0
