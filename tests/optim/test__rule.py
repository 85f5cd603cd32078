"""``torsh_fn.optim._rule``: the helpers every optimizer rule is written with (``lerp``, the
weight decay, the compute dtype), ``apply_leaf`` and ``from_rule``, against PyTorch and numpy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import optax
import pytest
import torch

import torsh_fn.optim as optim
from tests.oracle import assert_close
from torsh_fn.optim._rule import (
    TorchRuleState,
    apply_leaf,
    compute_dtype,
    coupled_weight_decay,
    decay_option,
    from_rule,
    lerp,
    zero_weight_decay,
)


def _normal(rng, *shape, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(np.float32)


# -- lerp ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("branch", ["weight < 0.5", "weight >= 0.5"])
def test_lerp_matches_torch_lerp(rng, branch):
    start, end = _normal(rng, 5, 7), _normal(rng, 5, 7, scale=100.0)
    low = 0.0 if branch == "weight < 0.5" else 0.5
    for weight in [low, *rng.uniform(low, low + 0.5, 4)]:
        expected = torch.lerp(torch.tensor(start), torch.tensor(end), float(weight))
        # as the rules call it: a 0-d float32 hyperparameter inside a compiled step
        ours = jax.jit(lerp)(jnp.asarray(start), jnp.asarray(end), jnp.float32(weight))
        assert_close(ours, expected, err_msg=f"weight {weight}")
        assert_close(lerp(jnp.asarray(start), jnp.asarray(end), float(weight)), expected,
                     err_msg=f"weight {weight}, a Python float")


def test_lerp_is_exact_at_both_ends(rng):
    """PyTorch's two branches give ``start`` at weight 0 and ``end`` at weight 1 exactly;
    ``start + weight * (end - start)`` alone misses ``end`` by a rounding."""
    start, end = _normal(rng, 1000), _normal(rng, 1000, scale=100.0)
    np.testing.assert_array_equal(lerp(jnp.asarray(start), jnp.asarray(end), 0.0), start)
    np.testing.assert_array_equal(lerp(jnp.asarray(start), jnp.asarray(end), 1.0), end)
    np.testing.assert_array_equal(
        torch.lerp(torch.tensor(start), torch.tensor(end), 1.0).numpy(), end)
    assert not np.array_equal(start + np.float32(1.0) * (end - start), end)


# -- weight decay -------------------------------------------------------------------------------


def test_coupled_weight_decay_is_pytorch_s_l2_term(rng):
    grad, param = _normal(rng, 4, 6), _normal(rng, 4, 6)
    weight_decay = float(rng.uniform(0.01, 1.0))
    hp = {"weight_decay": weight_decay}
    ours = coupled_weight_decay(jnp.asarray(grad), jnp.asarray(param), hp, decay_option(hp))
    # torch.optim.SGD's: grad = grad.add(param, alpha=weight_decay)
    assert_close(ours, torch.tensor(grad).add(torch.tensor(param), alpha=weight_decay))


def test_coupled_weight_decay_of_zero_leaves_the_term_out(rng):
    """With ``opts["nonzero_weight_decay"]`` False the gradient is returned as it is: the
    parameter is not read (an infinite one would make ``0 * inf`` NaN), whatever ``hp`` says."""
    grad = jnp.asarray(_normal(rng, 3, 5))
    param = jnp.asarray(_normal(rng, 3, 5)).at[0, 0].set(jnp.inf)
    hp = {"weight_decay": 0}
    assert decay_option(hp) == {"nonzero_weight_decay": False}
    assert coupled_weight_decay(grad, param, hp, decay_option(hp)) is grad
    # the option decides, not the value
    off = {"nonzero_weight_decay": False}
    assert coupled_weight_decay(grad, param, {"weight_decay": 0.5}, off) is grad
    assert np.isnan(coupled_weight_decay(grad, param, hp, {"nonzero_weight_decay": True})[0, 0])


@pytest.mark.parametrize(("weight_decay", "zero"), [
    (0, True), (0.0, True), (0.1, False), (1e-30, False),
    pytest.param(jnp.zeros([]), False, id="array"),  # may be a tracer: counts as non-zero
])
def test_zero_weight_decay_and_decay_option(weight_decay, zero):
    hp = {"lr": 0.1, "weight_decay": weight_decay}
    assert zero_weight_decay(hp) is zero
    assert decay_option(hp) == {"nonzero_weight_decay": not zero}


def test_without_weight_decay_there_is_no_option():
    hp = {"lr": 0.1, "etas": (0.5, 1.2)}
    assert zero_weight_decay(hp) is False
    assert decay_option(hp) == {}


# -- the compute dtype --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["float16", "bfloat16", "float32", "float64"])
def test_compute_dtype_is_float32_or_wider_as_pytorch_s_opmath(name):
    expected = torch.promote_types(getattr(torch, name), torch.float32)
    assert compute_dtype(jnp.dtype(name)) == jnp.dtype(str(expected).removeprefix("torch."))
    assert compute_dtype(jnp.dtype(name)).itemsize == max(jnp.dtype(name).itemsize, 4)


# -- apply_leaf ---------------------------------------------------------------------------------


def _recording_rule(seen: list):
    """A rule that records the dtypes it is given: p - lr * g, sum += g, a new entry ``g2``."""

    def update(p, grad, state, hp, opts):
        seen.append({"p": p.dtype, "grad": grad.dtype, "lr": hp["lr"].dtype,
                     **{k: None if v is None else v.dtype for k, v in state.items()}})
        new = {"sum": state["sum"] + grad, "none": None, "g2": grad * grad}
        return p - hp["lr"] * grad, new

    return update


def test_apply_leaf_runs_half_precision_in_float32_and_keeps_the_dtypes(rng):
    seen = []
    lr = float(rng.uniform(0.01, 0.1))
    p32, g32, s32 = _normal(rng, 6), _normal(rng, 6), _normal(rng, 6)
    bf16 = ml_dtypes.bfloat16
    param, grad = jnp.asarray(p32, jnp.bfloat16), jnp.asarray(g32, jnp.bfloat16)
    state = {"sum": jnp.asarray(s32, jnp.bfloat16), "none": None}
    new_p, new_state = apply_leaf(_recording_rule(seen), param, grad, state, {"lr": lr}, {})
    f32 = jnp.dtype(jnp.float32)
    assert seen == [{"p": f32, "grad": f32, "lr": f32, "sum": f32, "none": None}]
    assert new_p.dtype == jnp.bfloat16
    assert {k: None if v is None else v.dtype for k, v in new_state.items()} == {
        "sum": jnp.bfloat16, "none": None, "g2": jnp.bfloat16}  # a new entry: the parameter's
    p, g = p32.astype(bf16).astype(np.float32), g32.astype(bf16).astype(np.float32)
    np.testing.assert_array_equal(new_p, (p - np.float32(lr) * g).astype(bf16))
    np.testing.assert_array_equal(new_state["g2"], (g * g).astype(bf16))


def test_apply_leaf_updates_the_master_weight_and_rounds_it_into_the_parameter(rng):
    seen = []
    lr = float(rng.uniform(0.01, 0.1))
    master, g32 = _normal(rng, 6), _normal(rng, 6)
    param = jnp.zeros(6, jnp.bfloat16)  # not what the update reads
    grad = jnp.asarray(g32, jnp.bfloat16)
    state = {"sum": jnp.zeros(6, jnp.bfloat16), "none": None,
             "master_weight": jnp.asarray(master)}
    new_p, new_state = apply_leaf(_recording_rule(seen), param, grad, state, {"lr": lr}, {})
    assert "master_weight" not in seen[0]
    g = g32.astype(ml_dtypes.bfloat16).astype(np.float32)
    expected = master - np.float32(lr) * g
    assert new_state["master_weight"].dtype == jnp.float32
    np.testing.assert_array_equal(new_state["master_weight"], expected)
    np.testing.assert_array_equal(new_p, expected.astype(ml_dtypes.bfloat16))
    assert new_state["g2"].dtype == jnp.float32  # a new entry: the master weight's dtype


# -- from_rule ----------------------------------------------------------------------------------


def _decaying_sgd(groups: list, options: list):
    def init(param, group):
        groups.append(group)
        return {"step": jnp.zeros([], jnp.float32)}

    def update(p, grad, state, hp, opts):
        options.append(opts)
        g = coupled_weight_decay(grad, p, hp, opts)
        return p - hp["lr"] * g, {"step": state["step"] + 1}

    return init, update


@pytest.mark.parametrize("weight_decay", [0.0, 0.25])
def test_from_rule_is_an_optax_transformation_of_the_rule(rng, weight_decay):
    """Three steps on a pytree with an optax schedule for ``lr``, against numpy in float64."""
    groups, options = [], []
    schedule = optax.exponential_decay(0.1, transition_steps=1, decay_rate=0.5)
    tx = from_rule(*_decaying_sgd(groups, options), {"lr": schedule, "weight_decay": weight_decay},
                   {"flag": True})
    params = {"w": jnp.asarray(_normal(rng, 3, 2)), "b": jnp.asarray(_normal(rng, 2))}
    state = tx.init(params)
    assert isinstance(state, TorchRuleState) and int(state.count) == 0
    opts = {"flag": True, "nonzero_weight_decay": weight_decay != 0}
    assert len(groups) == 2  # init saw the hyperparameters at count 0, and the options
    for group in groups:
        assert group.keys() == {"lr", "weight_decay", *opts}
        assert float(group["lr"]) == pytest.approx(0.1) and group["weight_decay"] == weight_decay
        assert {k: group[k] for k in opts} == opts
    expected = {k: np.asarray(v, np.float64) for k, v in params.items()}
    for k in range(3):
        grads = {key: jnp.asarray(_normal(rng, *v.shape)) for key, v in params.items()}
        updates, state = tx.update(grads, state, params)
        new_params = optax.apply_updates(params, updates)
        for key in params:
            before = np.asarray(params[key], np.float64)
            expected[key] = before - 0.1 * 0.5**k * (grads[key] + weight_decay * before)
            assert_close(new_params[key], expected[key], err_msg=f"{key}, step {k + 1}")
        params = new_params
    assert options[-1] == opts
    assert int(state.count) == 3
    assert [float(s["step"]) for s in state.per_param] == [3.0, 3.0]
    assert jax.tree.structure(updates) == jax.tree.structure(params)


def test_from_rule_state_follows_the_leaves_order(rng):
    """``per_param`` holds one state per leaf in ``jax.tree.leaves`` order ("a" before "b")."""
    tx = optim.sgd(0.1, momentum=0.9)
    params = {"b": jnp.zeros(2), "a": jnp.zeros(3)}
    grads = {"b": jnp.asarray(_normal(rng, 2)), "a": jnp.asarray(_normal(rng, 3))}
    _, state = tx.update(grads, tx.init(params), params)
    assert [s["momentum_buffer"].shape for s in state.per_param] == [(3,), (2,)]
    np.testing.assert_array_equal(state.per_param[0]["momentum_buffer"], grads["a"])


def test_functional_transform_needs_params():
    tx = optim.adam()
    params = [jnp.ones(3)]
    with pytest.raises(ValueError, match=r"needs `params` in update\(\)"):
        tx.update(params, tx.init(params))
