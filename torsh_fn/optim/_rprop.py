"""Rprop as ``torch.optim.Rprop``: per-coordinate step sizes from gradient signs.

Update rule (PyTorch's)::

    s = sign(g * prev)
    step_size = clip(step_size * (etaplus if s > 0 else etaminus if s < 0 else 1), *step_sizes)
    g = 0 where s < 0
    p = p - sign(g) * step_size;  prev = g

Where optax differs: ``optax.rprop`` is the same rule (iRprop-); it starts every step size at the
learning rate too, and takes the bounds as ``min_step_size``/``max_step_size``. PyTorch's initial
``prev`` is zeros, so its first step moves by ``lr`` (optax's too).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

from ._rule import LeafState, from_rule
from .optimizer import Optimizer, check_nonnegative, torch_flags


def rprop_init(param: jax.Array, group: Mapping[str, Any]) -> LeafState:
    return {"step": jnp.zeros([], jnp.float32), "prev": jnp.zeros_like(param),
            "step_size": jnp.full_like(param, group["lr"])}


def rprop_update(p, grad, state, hp, opts):
    etaminus, etaplus = hp["etas"]
    step_size_min, step_size_max = hp["step_sizes"]
    g = -grad if opts["maximize"] else grad
    sign = jnp.sign(g * state["prev"])
    factor = jnp.where(sign > 0, etaplus, jnp.where(sign < 0, etaminus, 1.0))
    step_size = jnp.clip(state["step_size"] * factor, step_size_min, step_size_max)
    g = jnp.where(factor == etaminus, 0.0, g)
    p = p + (-1) * jnp.sign(g) * step_size
    return p, {"step": state["step"] + 1, "prev": g, "step_size": step_size}


def _check(owner: str, lr: float, etas: tuple[float, float]) -> None:
    check_nonnegative(owner, "lr", lr)
    if not 0.0 < etas[0] < 1.0 < etas[1]:
        raise ValueError(f"{owner}: invalid etas={etas!r}: expected 0 < etaminus < 1 < etaplus")


class Rprop(Optimizer):
    """``torch.optim.Rprop``."""

    init = staticmethod(rprop_init)
    update = staticmethod(rprop_update)
    hyperparams = ("lr", "etas", "step_sizes")
    flags = ("maximize",)

    def __init__(self, params: Iterable[Any], lr: float = 1e-2,
                 etas: tuple[float, float] = (0.5, 1.2),
                 step_sizes: tuple[float, float] = (1e-6, 50), *, capturable: bool = False,
                 foreach: bool | None = None, maximize: bool = False,
                 differentiable: bool = False, master_weights: bool = False) -> None:
        defaults = {"lr": lr, "etas": tuple(etas), "step_sizes": tuple(step_sizes),
                    "maximize": maximize,
                    **torch_flags(foreach=foreach, capturable=capturable,
                                  differentiable=differentiable)}
        del defaults["fused"]
        super().__init__(params, defaults, master_weights=master_weights)

    def validate_group(self, group):
        _check("Rprop", group["lr"], group["etas"])


def rprop(lr: float = 1e-2, etas: tuple[float, float] = (0.5, 1.2),
          step_sizes: tuple[float, float] = (1e-6, 50), *,
          maximize: bool = False) -> optax.GradientTransformation:
    """``torch.optim.Rprop``'s rule as an optax transformation (see the module docstring)."""
    _check("rprop", lr, etas)
    hp = {"lr": lr, "etas": tuple(etas), "step_sizes": tuple(step_sizes)}
    return from_rule(rprop_init, rprop_update, hp, {"maximize": maximize})
