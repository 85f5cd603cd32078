"""SGD with momentum, dampening, Nesterov and coupled weight decay, as ``torch.optim.SGD``.

Update rule (PyTorch's)::

    g = -grad if maximize else grad
    g = g + weight_decay * p
    buf = g (first step) or momentum * buf + (1 - dampening) * g
    g = g + momentum * buf if nesterov else buf
    p = p - lr * g

Where optax differs: ``optax.sgd(lr, momentum, nesterov)`` is the same rule when
``dampening == 0`` (its ``trace`` starts from zeros, and ``0 * momentum + g == g``); it has no
``dampening``, and its weight decay is a separate ``add_decayed_weights`` link.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

from ._rule import LeafState, coupled_weight_decay, from_rule
from .optimizer import Optimizer, check_nonnegative, torch_flags


def sgd_init(param: jax.Array, group: Mapping[str, Any]) -> LeafState:
    """``momentum_buffer`` starts at zeros (exact when ``dampening == 0``), else at None."""
    if group["momentum"] == 0:
        return {}
    if group["dampening"] == 0:
        return {"momentum_buffer": jnp.zeros_like(param)}
    return {"momentum_buffer": None}


def sgd_update(p, grad, state, hp, opts):
    g = coupled_weight_decay(-grad if opts["maximize"] else grad, p, hp, opts)
    if not state:
        return p - hp["lr"] * g, state
    buf = state["momentum_buffer"]
    buf = g if buf is None else buf * hp["momentum"] + (1 - hp["dampening"]) * g
    g = g + hp["momentum"] * buf if opts["nesterov"] else buf
    return p - hp["lr"] * g, {"momentum_buffer": buf}


def _check(owner: str, lr, momentum, dampening, weight_decay, nesterov) -> None:
    check_nonnegative(owner, "lr", lr)
    check_nonnegative(owner, "momentum", momentum)
    check_nonnegative(owner, "weight_decay", weight_decay)
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError(f"{owner}: nesterov=True needs momentum > 0 and dampening == 0, got "
                         f"momentum={momentum!r}, dampening={dampening!r}")


def sgd(lr: float | optax.Schedule = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
        weight_decay: float = 0.0, nesterov: bool = False, *,
        maximize: bool = False) -> optax.GradientTransformation:
    """``torch.optim.SGD``'s rule as an optax transformation (see the module docstring).

    Example::

        tx = torsh_fn.optim.sgd(0.1, momentum=0.9, nesterov=True)
        state = tx.init(params)
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
    """
    _check("sgd", 0.0 if callable(lr) else lr, momentum, dampening, weight_decay, nesterov)
    hp = {"lr": lr, "momentum": momentum, "dampening": dampening, "weight_decay": weight_decay}
    return from_rule(sgd_init, sgd_update, hp, {"nesterov": nesterov, "maximize": maximize})


class SGD(Optimizer):
    """``torch.optim.SGD``: same signature, defaults, update rule and state_dict.

    ``momentum_buffer`` exists from the start when ``dampening == 0`` (PyTorch creates it at the
    first step; the numbers are the same), so a jitted step compiles once.
    """

    init = staticmethod(sgd_init)
    update = staticmethod(sgd_update)
    hyperparams = ("lr", "momentum", "dampening", "weight_decay")
    flags = ("nesterov", "maximize")

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, momentum: float = 0,
                 dampening: float = 0, weight_decay: float = 0, nesterov: bool = False, *,
                 maximize: bool = False, foreach: bool | None = None,
                 differentiable: bool = False, fused: bool | None = None,
                 master_weights: bool = False) -> None:
        defaults = {"lr": lr, "momentum": momentum, "dampening": dampening,
                    "weight_decay": weight_decay, "nesterov": nesterov, "maximize": maximize,
                    **torch_flags(foreach=foreach, differentiable=differentiable, fused=fused)}
        del defaults["capturable"]
        super().__init__(params, defaults, master_weights=master_weights)

    def validate_group(self, group):
        _check("SGD", group["lr"], group["momentum"], group["dampening"],
               group["weight_decay"], group["nesterov"])


def asgd_init(param: jax.Array, group: Mapping[str, Any]) -> LeafState:
    return {"step": jnp.zeros([], jnp.float32), "eta": jnp.asarray(group["lr"], jnp.float32),
            "mu": jnp.ones([], jnp.float32), "ax": jnp.zeros_like(param)}


def asgd_update(p, grad, state, hp, opts):
    """Averaged SGD (Polyak & Juditsky)::

        p = p * (1 - lambd * eta) - eta * g
        ax = p if mu == 1 else ax + mu * (p - ax)
        eta = lr / (1 + lambd * lr * t) ** alpha;  mu = 1 / max(1, t - t0)
    """
    step = state["step"] + 1
    g = coupled_weight_decay(-grad if opts["maximize"] else grad, p, hp, opts)
    eta, mu = state["eta"], state["mu"]
    p = p * (1 - hp["lambd"] * eta)
    p = p + (-eta) * g
    ax = jnp.where(mu == 1, p, state["ax"] + (p - state["ax"]) * mu)
    new_eta = hp["lr"] / ((1 + hp["lambd"] * hp["lr"] * step) ** hp["alpha"])
    new_mu = 1 / jnp.maximum(1.0, step - hp["t0"])
    return p, {"step": step, "eta": new_eta, "mu": new_mu, "ax": ax}


class ASGD(Optimizer):
    """``torch.optim.ASGD``; the averaged parameters are ``state[p]["ax"]``."""

    init = staticmethod(asgd_init)
    update = staticmethod(asgd_update)
    hyperparams = ("lr", "lambd", "alpha", "t0", "weight_decay")
    flags = ("maximize",)

    def __init__(self, params: Iterable[Any], lr: float = 1e-2, lambd: float = 1e-4,
                 alpha: float = 0.75, t0: float = 1e6, weight_decay: float = 0,
                 foreach: bool | None = None, maximize: bool = False,
                 differentiable: bool = False, capturable: bool = False, *,
                 master_weights: bool = False) -> None:
        defaults = {"lr": lr, "lambd": lambd, "alpha": alpha, "t0": t0,
                    "weight_decay": weight_decay, "maximize": maximize,
                    **torch_flags(foreach=foreach, capturable=capturable,
                                  differentiable=differentiable)}
        del defaults["fused"]
        super().__init__(params, defaults, master_weights=master_weights)

    def validate_group(self, group):
        check_nonnegative("ASGD", "lr", group["lr"])
        check_nonnegative("ASGD", "weight_decay", group["weight_decay"])


def asgd(lr: float = 1e-2, lambd: float = 1e-4, alpha: float = 0.75, t0: float = 1e6,
         weight_decay: float = 0.0, *, maximize: bool = False) -> optax.GradientTransformation:
    """``torch.optim.ASGD``'s rule as an optax transformation (optax has no ASGD)."""
    check_nonnegative("asgd", "lr", lr)
    check_nonnegative("asgd", "weight_decay", weight_decay)
    hp = {"lr": lr, "lambd": lambd, "alpha": alpha, "t0": t0, "weight_decay": weight_decay}
    return from_rule(asgd_init, asgd_update, hp, {"maximize": maximize})
