"""Training steps of whole models under ``torsh_fn.jit`` follow PyTorch: the models of
``test_model_parity`` (ResNet block, LSTM language model, Transformer encoder), loaded with the
same weights, take the same SGD steps (Nesterov momentum, weight decay) on the same batches;
losses, parameters, BatchNorm statistics and optimizer state agree after every step."""

from __future__ import annotations

import jax.numpy as jnp
import pytest
import torch

from tests.nn.test_model_parity import MODELS, _pair, _set_mode
from tests.oracle import assert_close, to_torch
from torsh_fn import backward, jit, optim

SGD = {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3}


@jit
def jitted_step(model, optimizer, *inputs):
    optimizer.zero_grad()
    loss = backward(lambda: (model(*inputs) ** 2).mean())
    optimizer.step()
    return loss


@pytest.mark.parametrize("name", ["resnet_basic_block", "lstm_language_model",
                                  "transformer_encoder"])
def test_jitted_sgd_steps_follow_torch(name, rng):
    ours, theirs = _pair(name)
    ours.load_state_dict(theirs.state_dict())
    _set_mode(ours, theirs, training=True)
    opt, t_opt = optim.SGD(ours.parameters(), **SGD), torch.optim.SGD(theirs.parameters(), **SGD)
    for k in range(3):
        inputs = MODELS[name][1](rng)
        t_opt.zero_grad()
        t_loss = (theirs(*[to_torch(x) for x in inputs]) ** 2).mean()
        t_loss.backward()
        t_opt.step()
        loss = jitted_step(ours, opt, *[jnp.asarray(x) for x in inputs])
        assert_close(loss, t_loss, 1e-4, 1e-5, err_msg=f"loss, step {k}")
        for key, value in theirs.state_dict().items():
            assert_close(ours.state_dict()[key], value, 1e-4, 1e-5, err_msg=f"{key}, step {k}")
    momenta = [opt.state[p]["momentum_buffer"] for p in ours.parameters()]
    t_momenta = [t_opt.state[p]["momentum_buffer"] for p in theirs.parameters()]
    for k, (m, t) in enumerate(zip(momenta, t_momenta)):
        assert_close(m, t, 1e-4, 1e-5, err_msg=f"momentum of parameter {k}")
