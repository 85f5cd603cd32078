"""BatchNorm in training follows PyTorch step by step: a small CNN with BatchNorm2d and
BatchNorm1d (momentum 0.1, and ``None`` for the cumulative average) trained for a few SGD steps,
eagerly and under ``torsh_fn.jit``; after every step the running statistics,
``num_batches_tracked`` and the weights equal torch's, and the jitted step is traced once."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
import pytest
import torch

from tests.oracle import assert_close
from torsh_fn import backward, jit, nn, optim
from torsh_fn.nn import functional as F

STEPS = 5


def small_cnn(nn: Any, momentum: float | None) -> Any:
    """Written once for ``torsh_fn.nn`` and ``torch.nn``."""
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4, momentum=momentum), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(4 * 3 * 2, 6), nn.BatchNorm1d(6, momentum=momentum), nn.Tanh(),
        nn.Linear(6, 3))


def torch_step(model: Any, opt: Any, x: np.ndarray, y: np.ndarray) -> float:
    opt.zero_grad()
    loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y))
    loss.backward()
    opt.step()
    return loss.item()


def step(model: Any, opt: Any, x: Any, y: Any) -> Any:
    """The same step with the one line that changes: loss.backward() -> torsh_fn.backward."""
    opt.zero_grad()
    loss = backward(lambda: F.cross_entropy(model(x), y))
    opt.step()
    return loss


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "jit"])
def test_running_statistics_and_weights_follow_torch_each_step(compiled, momentum, rng):
    torch.manual_seed(0)
    theirs = small_cnn(torch.nn, momentum)
    ours = small_cnn(nn, momentum)
    ours.load_state_dict(theirs.state_dict())
    t_opt = torch.optim.SGD(theirs.parameters(), lr=0.2, momentum=0.9)
    opt = optim.SGD(ours.parameters(), lr=0.2, momentum=0.9)
    traces, k = [], 0

    def counted(model, opt, x, y):
        traces.append(k)  # the step being traced: under jit only when (re)traced
        return step(model, opt, x, y)

    run = jit(counted) if compiled else counted
    for k in range(STEPS):
        # fresh batches, shifted and scaled so the statistics move far from (0, 1)
        x = (rng.standard_normal((6, 3, 8, 7)) * (1 + k) + k).astype(np.float32)
        y = rng.integers(0, 3, 6)
        t_loss = torch_step(theirs, t_opt, x, y)
        loss = run(ours, opt, jnp.asarray(x), jnp.asarray(y))
        assert_close(loss, np.float32(t_loss), rtol=1e-4, atol=1e-5, err_msg=f"loss, step {k}")
        for key, value in theirs.state_dict().items():
            assert_close(ours.state_dict()[key], value, rtol=1e-4, atol=1e-5,
                         err_msg=f"{key} after step {k + 1}")
    assert int(ours[1].num_batches_tracked) == STEPS == int(ours[6].num_batches_tracked)
    if compiled:  # no trace after the second call (see test_jitted_training_step_is_traced_once)
        assert set(traces) <= {0, 1}
    else:
        assert traces == list(range(STEPS))


def test_jitted_training_step_is_traced_once(rng):
    model = small_cnn(nn, None)
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    traces = []

    @jit
    def counted(model, opt, x, y):
        traces.append(None)
        return step(model, opt, x, y)

    for _ in range(STEPS):
        x = rng.standard_normal((4, 3, 8, 7)).astype(np.float32)
        counted(model, opt, jnp.asarray(x), jnp.asarray(rng.integers(0, 3, 4)))
    assert int(model[1].num_batches_tracked) == STEPS
    assert len(traces) == 1


def test_statistics_really_moved_and_momentum_none_is_the_cumulative_average(rng):
    """Guards the parity test above: the statistics it compares are not the initial ones, and
    momentum=None averages every batch equally (not exponentially)."""
    bn = nn.BatchNorm1d(3, momentum=None)
    batches = [(rng.standard_normal((5, 3)) * 2 + 4).astype(np.float32) for _ in range(STEPS)]
    for b in batches:
        bn(jnp.asarray(b))
    assert_close(bn.running_mean, np.mean([b.mean(0) for b in batches], axis=0), rtol=1e-5)
    assert_close(bn.running_var, np.mean([b.var(0, ddof=1) for b in batches], axis=0),
                 rtol=1e-5)
    assert float(jnp.abs(bn.running_mean).min()) > 1.0


def test_eval_mode_step_leaves_statistics_alone(rng):
    model = small_cnn(nn, 0.1)
    model.eval()
    before = {k: np.asarray(v) for k, v in model.state_dict().items()}
    forward = jit(lambda m, x: m(x))
    forward(model, jnp.asarray(rng.standard_normal((2, 3, 8, 7)), jnp.float32))
    for key, value in model.state_dict().items():
        assert np.array_equal(np.asarray(value), before[key]), key
