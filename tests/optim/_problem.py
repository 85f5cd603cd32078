"""A small regression problem with the same numbers on the torsh_fn and the PyTorch side.

An MLP 4-8-3 (tanh) with a mean-squared loss: small enough that 50 steps of every optimizer take
milliseconds, non-linear enough that every state entry matters.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import torch

from torsh_fn.nn import Parameter

SHAPES = [(4, 8), (8,), (8, 3), (3,)]


class Problem:
    def __init__(self, rng: np.random.Generator) -> None:
        self.init = [(0.5 * rng.standard_normal(s)).astype(np.float32) for s in SHAPES]
        self.x = rng.standard_normal((64, 4)).astype(np.float32)
        self.y = rng.standard_normal((64, 3)).astype(np.float32)

    def loss(self, datas):
        w1, b1, w2, b2 = datas
        return jnp.mean((jnp.tanh(self.x @ w1 + b1) @ w2 + b2 - self.y) ** 2)

    def torch_loss(self, tensors):
        w1, b1, w2, b2 = tensors
        x, y = torch.from_numpy(self.x), torch.from_numpy(self.y)
        return torch.mean((torch.tanh(x @ w1 + b1) @ w2 + b2 - y) ** 2)

    def params(self, dtype=jnp.float32) -> list[Parameter]:
        return [Parameter(jnp.asarray(a, dtype)) for a in self.init]

    def torch_params(self) -> list[torch.Tensor]:
        return [torch.tensor(a, requires_grad=True) for a in self.init]

    def step(self, opt, params) -> float:
        """Fill .grad from the loss and step; returns the loss before the step."""
        loss, grads = jax.value_and_grad(self.loss)([p.data for p in params])
        for p, g in zip(params, grads):
            p.grad = g
        opt.step()
        return float(loss)

    def torch_step(self, opt, tensors) -> float:
        opt.zero_grad()
        loss = self.torch_loss(tensors)
        loss.backward()
        opt.step()
        return loss.item()
