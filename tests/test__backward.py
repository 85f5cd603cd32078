"""torsh_fn.backward: PyTorch's ``loss.backward()`` as one call; gradients equal torch's and
accumulate, state changed by the closure is written once, works eagerly and under jit."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import torch

import torsh_fn
from tests.oracle import assert_close
from torsh_fn import backward, jit, nn


class _Running(nn.Module):
    """Linear layer that keeps a running mean of its output (like BatchNorm's statistics)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)
        self.register_buffer("running", jnp.zeros(2))

    def forward(self, x):
        y = self.fc(x)
        if self.training:
            self.running = 0.5 * self.running + 0.5 * y.mean(0)
        return y


def _pair(rng):
    ours, theirs = nn.Linear(3, 2), torch.nn.Linear(3, 2)
    ours.load_state_dict(theirs.state_dict())
    x = rng.standard_normal((5, 3)).astype(np.float32)
    return ours, theirs, x


def test_gradients_match_torch_and_accumulate(rng):
    ours, theirs, x = _pair(rng)
    for _ in range(2):  # the second call adds to .grad, as loss.backward() does
        loss = backward(lambda: (ours(jnp.asarray(x)) ** 2).mean())
        t_loss = (theirs(torch.from_numpy(x)) ** 2).mean()
        t_loss.backward()
        assert_close(loss, t_loss)
    assert_close(ours.weight.grad, theirs.weight.grad)
    assert_close(ours.bias.grad, theirs.bias.grad)


def test_only_read_trainable_parameters_get_gradients(rng):
    used, unused = nn.Linear(3, 2), nn.Linear(3, 2)
    used.bias.requires_grad_(False)
    backward(lambda: used(jnp.ones((1, 3))).sum())
    assert used.weight.grad is not None and used.bias.grad is None
    assert unused.weight.grad is None
    backward(lambda: unused(jnp.ones((1, 3))).sum(), params=[unused.weight])
    assert unused.weight.grad is not None and unused.bias.grad is None


def test_state_written_by_the_closure_is_updated_once(rng):
    model = _Running()
    x = jnp.asarray(rng.standard_normal((4, 3)).astype(np.float32))
    expected = 0.5 * model(x).mean(0)  # one plain forward's update from zero...
    model.running = jnp.zeros(2)
    backward(lambda: model(x).sum(), params=model)
    assert_close(model.running, expected)  # ...not two, and concrete (no tracer leaked)
    assert isinstance(model.running + 1, jnp.ndarray)


def test_global_generator_advances_as_in_one_forward():
    layer = nn.RReLU()
    torsh_fn.manual_seed(1)
    layer(jnp.ones(3))
    after_forward = np.asarray(torsh_fn.get_rng_state())
    torsh_fn.manual_seed(1)
    backward(lambda: layer(jnp.ones(3)).sum() + nn.Parameter(jnp.ones(1)).sum())
    assert np.array_equal(np.asarray(torsh_fn.get_rng_state()), after_forward)


def test_inside_jit_matches_eager(rng):
    eager, jitted = _Running(), _Running()
    jitted.load_state_dict(eager.state_dict())
    x = jnp.asarray(rng.standard_normal((4, 3)).astype(np.float32))

    def step(model, x):
        model.zero_grad()
        return backward(lambda: (model(x) ** 2).sum())

    compiled = jit(step)
    for _ in range(3):
        assert_close(compiled(jitted, x), step(eager, x))
    assert_close(jitted.fc.weight.grad, eager.fc.weight.grad)
    assert_close(jitted.running, eager.running)


def test_non_scalar_loss_is_an_error():
    model = nn.Linear(2, 2)
    with pytest.raises(ValueError, match=r"backward: the closure must return a scalar loss, "
                       r"got an array of shape \(1, 2\)"):
        backward(lambda: model(jnp.ones((1, 2))))
    with pytest.raises(TypeError, match="backward: params must be Parameters"):
        backward(lambda: model(jnp.ones(2)).sum(), params=[jnp.ones(2)])


def test_chosen_parameters_the_closure_never_reads_keep_their_grad(rng):
    """With ``params=``, a parameter outside the loss gets no gradient added: None stays None
    (PyTorch leaves it out of the graph), an existing gradient is kept as it is."""
    ours, theirs, x = _pair(rng)
    spare, kept = nn.Parameter(jnp.ones(4)), nn.Parameter(jnp.ones(2))
    kept.grad = jnp.full(2, 7.0)
    loss = backward(lambda: ours(jnp.asarray(x)).sum(), params=[*ours.parameters(), spare, kept])
    theirs(torch.tensor(x)).sum().backward()
    assert spare.grad is None
    np.testing.assert_array_equal(kept.grad, np.full(2, 7.0))
    assert_close(ours.weight.grad, theirs.weight.grad)
    assert_close(loss, theirs(torch.tensor(x)).sum())
