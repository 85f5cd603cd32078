"""torsh_fn.jit: stateful arguments (Modules, anything with ``_jit_slots``) compiled into one
program, state written back, traced once, global RNG threaded through."""

from __future__ import annotations

import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import torsh_fn
from tests.oracle import assert_close
from torsh_fn import backward, jit, nn


class _Counter(nn.Module):
    """A layer with state: counts its training calls, keeps a running mean of its input."""

    def __init__(self, features):
        super().__init__()
        self.fc = nn.Linear(features, features)
        self.register_buffer("calls", jnp.zeros((), jnp.int32))
        self.register_buffer("mean", jnp.zeros(features))

    def forward(self, x):
        if self.training:
            self.calls = self.calls + 1
            self.mean = 0.9 * self.mean + 0.1 * x.mean(0)
        return self.fc(x)


class _Holder:
    """A minimal stateful object: a Python float, an int and a dict entry as slots."""

    def __init__(self, param):
        self.lr, self.count, self.extra = 0.1, 0, {"acc": jnp.zeros(())}
        self.param = param

    def _jit_slots(self):
        return [(self, "lr"), (self, "count"), (self.extra, "acc"), (self.param, "data")]


def _sgd_step(model, x):
    loss = backward(lambda: (model(x) ** 2).mean())
    for p in model.parameters():
        p.data = p.data - 0.1 * p.grad
    model.zero_grad()
    return loss


def test_pure_functions_work_as_with_jax_jit(rng):
    x = jnp.asarray(rng.standard_normal((3, 5)).astype(np.float32))
    f = jit(lambda a, n: jnp.sin(a) * n, static_argnums=1)
    assert_close(f(x, 3), jnp.sin(x) * 3)

    @jit(static_argnames="mode")
    def g(a, mode="sum"):
        return a.sum() if mode == "sum" else a.max()

    assert_close(g(x, mode="max"), x.max())
    with pytest.raises(TypeError, match=r"torsh_fn\.jit: argument of type set is neither"):
        jit(lambda a, b: a)(x, b={1})


def test_state_written_back_matches_eager_and_traces_once(rng):
    x = jnp.asarray(rng.standard_normal((4, 3)).astype(np.float32))
    torsh_fn.manual_seed(0)
    jitted_model = _Counter(3)
    torsh_fn.manual_seed(0)
    eager_model = _Counter(3)
    traces = []

    @jit
    def step(model, x):
        traces.append(None)
        return _sgd_step(model, x)

    for _ in range(5):
        assert_close(step(jitted_model, x), _sgd_step(eager_model, x), rtol=1e-5, atol=1e-6)
    assert len(traces) == 1
    assert int(jitted_model.calls) == 5 == int(eager_model.calls)
    for (name, a), (_, b) in zip(jitted_model.state_dict().items(),
                                 eager_model.state_dict().items()):
        assert_close(a, b, rtol=1e-5, atol=1e-6, err_msg=name)
    assert all(p.grad is None for p in jitted_model.parameters())


def test_train_eval_and_frozen_switches_retrace_once_each(rng):
    model = _Counter(3)
    x = jnp.ones((2, 3))
    traces = []
    forward = jit(lambda m, x: traces.append(None) or m(x))
    for mode in ("train", "eval", "train", "eval"):
        getattr(model, mode)()
        forward(model, x)
        forward(model, x)
    assert len(traces) == 2
    assert int(model.calls) == 4  # only training calls count
    model.fc.requires_grad_(False)
    forward(model, x)
    assert len(traces) == 3
    forward(model, jnp.ones((5, 3)))  # a new shape
    assert len(traces) == 4


def test_python_number_slots_no_retrace_and_keep_their_type():
    p = nn.Parameter(jnp.ones(2))
    holder = _Holder(p)
    traces = []

    @jit
    def step(h):
        traces.append(None)
        h.param.data = h.param.data - h.lr
        h.count = h.count + 1
        h.extra["acc"] = h.extra["acc"] + h.lr

    for lr in (0.1, 0.2, 0.3):
        holder.lr = lr
        step(holder)
    assert len(traces) == 1
    assert holder.lr == 0.3 and type(holder.lr) is float  # unchanged: not rounded via float32
    assert holder.count == 3 and type(holder.count) is int
    assert_close(p.data, jnp.full(2, 1 - 0.6), rtol=1e-6)
    assert_close(holder.extra["acc"], 0.6, rtol=1e-6)


def test_shared_parameter_is_one_slot():
    model = nn.Linear(2, 2)
    holder = _Holder(model.weight)

    @jit
    def step(m, h):
        m.weight.data = m.weight.data + 1
        h.param.data = h.param.data * 2  # the same Parameter: sees the +1

    before = model.weight.data
    step(model, holder)
    assert_close(model.weight.data, (before + 1) * 2)


def test_arrays_held_elsewhere_survive_donation():
    model = nn.Linear(2, 2)
    kept = model.weight.data
    snapshot = np.asarray(kept)
    jit(lambda m: setattr(m.weight, "data", m.weight.data * 0))(model)
    assert_close(kept, snapshot)
    assert float(jnp.abs(model.weight.data).sum()) == 0


def test_global_generator_is_threaded_through_jit(rng):
    layer = nn.RReLU()  # draws random slopes from the global generator in training
    x = jnp.asarray(-np.abs(rng.standard_normal(16)).astype(np.float32))
    torsh_fn.manual_seed(3)
    eager = [layer(x), layer(x)]
    torsh_fn.manual_seed(3)
    forward = jit(lambda m, x: m(x))
    jitted = [forward(layer, x), forward(layer, x)]
    assert_close(jitted[0], eager[0])
    assert_close(jitted[1], eager[1])
    assert not np.allclose(jitted[0], jitted[1])


def test_methods_and_nested_containers_of_modules():
    a, b = nn.Linear(2, 2), nn.Linear(2, 2)

    @jit
    def scale_all(models, factor):
        for m in models["all"]:
            m.bias.data = m.bias.data * factor
        return factor

    a.bias.data, b.bias.data = jnp.ones(2), jnp.ones(2) * 2
    scale_all({"all": [a, b]}, 3.0)
    assert_close(b.bias.data, jnp.full(2, 6.0))
    assert isinstance(scale_all({"all": [a]}, jnp.float32(2)), jax.Array)


def test_every_state_buffer_is_donated_even_when_unread(rng):
    """The step drops .grad before reading it: those inputs are unused, yet every parameter,
    gradient and buffer must still be donated: updated in place, in its own buffer."""
    x = jnp.asarray(rng.standard_normal((4, 3)).astype(np.float32))
    model = _Counter(3)

    @jit
    def step(model, x):
        model.zero_grad()
        loss = backward(lambda: (model(x) ** 2).mean())
        for p in model.parameters():
            p.data = p.data - 0.1 * p.grad
        return loss

    def buffers():  # addresses only: holding the arrays would make jit copy them
        state = [p.data for p in model.parameters()] + [p.grad for p in model.parameters()]
        return [a.unsafe_buffer_pointer() for a in state + list(model.buffers())]

    step(model, x)
    step(model, x)  # .grad now arrays on entry: the program that runs from here on
    before = buffers()
    step(model, x)
    assert buffers() == before


def test_host_arrays_are_copied_not_aliased():
    host = np.ones((3, 3), np.float32)
    p = nn.Parameter(host)
    p.data = p.data * 2  # the Parameter's new value; the caller's array is untouched
    host[0, 0] = 7.0
    assert np.array_equal(np.asarray(p.data), np.full((3, 3), 2.0, np.float32))
    assert host[1, 1] == 1.0


def test_jax_options_that_would_break_donation_are_refused():
    model = nn.Linear(3, 2)
    with pytest.raises(TypeError, match="does not support \\['donate_argnums'\\]"):
        jit(lambda m: m.weight.sum(), donate_argnums=0)
    with pytest.raises(TypeError, match="keep_unused=False is not supported"):
        jit(lambda m: m.weight.sum(), keep_unused=False)
    assert jit(lambda m: m.weight.sum(), keep_unused=True)(model).shape == ()


class _TwoHeads(nn.Module):
    """``head_b`` is trainable but unused by the loss below: its gradient stays None."""

    def __init__(self):
        super().__init__()
        self.body, self.head_a, self.head_b = nn.Linear(5, 4), nn.Linear(4, 3), nn.Linear(4, 3)

    def forward(self, x):
        return self.head_a(jnp.maximum(self.body(x), 0))


def _eager_and_jitted(step, prepare=None, between=None, calls=4):
    """``step(model, opt, x)`` (AdamW, weight decay) eagerly and under torsh_fn.jit from the same
    start: ``prepare`` runs before the first call, ``between`` after it. Checks that both end
    with the same state, losses and None gradients; returns both models and the trace count."""
    rng = np.random.default_rng(1)
    xs = [jnp.asarray(rng.standard_normal((6, 5)), jnp.float32) for _ in range(calls)]
    traces, runs = [], []
    for compiled in (False, True):
        torsh_fn.manual_seed(0)
        model = _TwoHeads()
        opt = torsh_fn.optim.AdamW(model.parameters(), lr=0.05, weight_decay=0.5)
        if prepare is not None:
            prepare(model, xs[0])
        run = jit(lambda m, o, x: traces.append(None) or step(m, o, x)) if compiled else step
        losses = []
        for k, x in enumerate(xs):
            losses.append(float(run(model, opt, x)))
            if between is not None and k == 0:
                between(opt)
        runs.append((model, losses))
    (eager, eager_losses), (jitted, losses) = runs
    np.testing.assert_allclose(losses, eager_losses, rtol=1e-5)
    for (name, a), (_, b) in zip(jitted.state_dict().items(), eager.state_dict().items()):
        assert_close(a, b, rtol=1e-5, atol=1e-6, err_msg=name)
    for (name, p), (_, q) in zip(jitted.named_parameters(), eager.named_parameters()):
        assert (p.grad is None) == (q.grad is None), name
    return eager, jitted, len(traces)


@pytest.fixture
def jit_zeros(monkeypatch):
    """Shapes of the zeros torsh_fn.jit makes itself (stand-ins for None gradients)."""
    made = []
    real = jnp.zeros_like

    def zeros_like(a, *args, **kwargs):
        if sys._getframe(1).f_code.co_filename.endswith("_jit.py"):
            made.append(a.shape)
        return real(a, *args, **kwargs)

    monkeypatch.setattr(jnp, "zeros_like", zeros_like)
    return made


def _loss(model, x):
    return backward(lambda: (model(x) ** 2).mean())


def test_training_step_compiles_once_and_matches_eager():
    def step(model, opt, x):
        opt.zero_grad()
        loss = _loss(model, x)
        opt.step()
        return loss

    _, jitted, traces = _eager_and_jitted(step)
    assert traces == 1
    assert jitted.body.weight.grad is not None
    assert jitted.head_b.weight.grad is None  # never reached by backward: None, not decayed


def test_unused_parameter_and_accumulating_steps_keep_pytorch_semantics():
    """Gradients added into across calls (no zero_grad in the step) and a trainable parameter
    the loss never reaches (None gradient: AdamW must not decay it) stay as eager."""
    def step(model, opt, x):
        loss = _loss(model, x)
        opt.step()
        return loss

    _, jitted, traces = _eager_and_jitted(step)
    assert jitted.head_b.weight.grad is None
    assert traces == 3  # the zeros-for-None trial, the None-gradient program, the array one


def test_failed_trial_is_not_repeated(jit_zeros):
    """A step whose gradients are None at every call and added into (zero_grad at its end):
    after the first call no zeros are made for them (no per-step allocation)."""
    def step(model, opt, x):
        loss = _loss(model, x)
        opt.step()
        opt.zero_grad()
        return loss

    _, _, traces = _eager_and_jitted(step, calls=5)
    assert traces == 2  # the trial and the None-gradient program, then nothing
    assert len(jit_zeros) == 6  # one trial: zeros for the 6 trainable tensors, once


def test_zero_grad_without_none_leaves_unreached_parameters_alone():
    """zero_grad(set_to_none=False) makes zeros only for gradients that exist: a parameter the
    loss never reaches keeps a None gradient and AdamW leaves it alone, as in PyTorch."""
    def step(model, opt, x):
        opt.zero_grad(set_to_none=False)
        loss = _loss(model, x)
        opt.step()
        return loss

    _, jitted, _ = _eager_and_jitted(step, calls=3)
    assert jitted.head_b.weight.grad is None


def test_a_gradient_that_was_set_on_the_first_call_and_is_none_later_is_not_zeroed():
    """Call 1 has only some gradients None; an eager zero_grad() between calls makes the rest
    None too: the second call must not feed zeros for those to the optimizer."""
    def prepare(model, x):
        backward(lambda: (model.head_b(model.body(x)) ** 2).mean())  # head_b gets a gradient

    def step(model, opt, x):
        for p in model.head_a.parameters():
            p.grad = None
        loss = _loss(model, x)
        opt.step()
        return loss

    _eager_and_jitted(step, prepare, between=lambda opt: opt.zero_grad(), calls=3)


def test_step_zeroing_at_both_ends_makes_no_zeros_after_the_first_call(jit_zeros):
    def step(model, opt, x):
        opt.zero_grad()
        loss = _loss(model, x)
        opt.step()
        opt.zero_grad()
        return loss

    _eager_and_jitted(step)
    assert len(jit_zeros) == 6  # the first call's trial only


def _linear(seed, features=3):
    torsh_fn.manual_seed(seed)
    return nn.Linear(features, features)


# Changes between two calls that must reach the next program, each made through a different
# route: Module methods, attribute assignment, writes into the registries, Parameter flags.
_CHANGES = {
    "append a layer": lambda m: m.append(_linear(1)),
    "replace a layer in _modules": lambda m: m._modules.__setitem__("0", _linear(2)),
    "replace a parameter": lambda m: setattr(m[0], "bias", nn.Parameter(jnp.full(3, 0.5))),
    "write _parameters": lambda m: m[0]._parameters.__setitem__("bias", nn.Parameter(jnp.ones(3))),
    "freeze a weight": lambda m: setattr(m[0].weight, "requires_grad", False),
    "delete a layer": lambda m: m.__delitem__(0),
}


def _trainable_sgd_step(model, x):
    model.zero_grad()
    loss = backward(lambda: (model(x) ** 2).mean())
    for p in model.parameters():
        if p.requires_grad:
            p.data = p.data - 0.1 * p.grad
    return loss


@pytest.mark.parametrize("change", list(_CHANGES))
def test_a_change_between_calls_reaches_the_next_call_as_in_eager(rng, change):
    """Calls like the previous one reuse its slots and program; a change of structure in
    between must not be missed, whatever route it takes."""
    x = jnp.asarray(rng.standard_normal((4, 3)).astype(np.float32))
    step = jit(_trainable_sgd_step)
    eager, jitted = (nn.Sequential(_linear(0), nn.Tanh(), _linear(3)) for _ in range(2))
    for model in (eager, jitted):
        for _ in range(2):
            (step if model is jitted else _trainable_sgd_step)(model, x)
        _CHANGES[change](model)
    for _ in range(2):
        assert_close(step(jitted, x), _trainable_sgd_step(eager, x), rtol=1e-5, atol=1e-6)
    assert jitted.state_dict().keys() == eager.state_dict().keys()
    for (name, a), (_, b) in zip(jitted.state_dict().items(), eager.state_dict().items()):
        assert_close(a, b, rtol=1e-5, atol=1e-6, err_msg=name)


def test_the_reused_call_does_not_keep_the_objects_alive(rng):
    import gc
    import weakref

    model = nn.Linear(3, 3)
    step = jit(_sgd_step)
    x = jnp.ones((2, 3))
    step(model, x)
    step(model, x)
    weight = weakref.ref(model.weight)
    del model
    gc.collect()
    assert weight() is None


def test_state_a_step_leaves_alone_compiles_without_a_donation_warning(rng):
    # A step that only applies the optimizer reads each .grad and leaves it alone (and the
    # generator's key too): their donated buffers have no output to take them.
    param = nn.Parameter(jnp.asarray(rng.standard_normal((3, 11)), jnp.float32))
    opt = torsh_fn.optim.SGD([param], lr=0.5)
    step = jit(lambda opt: opt.step())
    start = np.asarray(param.data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            param.grad = jnp.ones((3, 11))
            step(opt)
    assert not [w for w in caught if "donated" in str(w.message)]
    np.testing.assert_allclose(param.data, start - 1.5, rtol=1e-6)
