"""Per-coordinate step sizes from squared-gradient accumulators, as in PyTorch: RMSprop, Adagrad,
Adadelta.

Where optax differs:

* ``optax.rmsprop`` adds ``eps`` inside the square root (``g / sqrt(nu + eps)``); PyTorch adds it
  outside (``g / (sqrt(v) + eps)``), and PyTorch's ``centered`` subtracts the squared mean under
  the root before adding ``eps``. Its momentum is ``optax.trace`` of the scaled gradient, which
  matches PyTorch's ``buf = momentum * buf + g / avg``.
* ``optax.adagrad`` adds ``eps`` inside the square root and has no ``lr_decay``; PyTorch uses
  ``lr / (1 + (t - 1) * lr_decay) * g / (sqrt(sum) + eps)``.
* ``optax.adadelta`` is the same rule (``eps`` inside both roots) with ``rho`` and ``eps``;
  PyTorch adds a learning rate (default 1.0) and coupled weight decay.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

from ._rule import LeafState, coupled_weight_decay, from_rule, lerp
from .optimizer import Optimizer, check_nonnegative, check_unit, torch_flags


def _gradient(p, grad, hp, opts):
    return coupled_weight_decay(-grad if opts["maximize"] else grad, p, hp, opts)


def rmsprop_init(param: jax.Array, group: Mapping[str, Any]) -> LeafState:
    state = {"step": jnp.zeros([], jnp.float32), "square_avg": jnp.zeros_like(param)}
    if group["momentum"] > 0:
        state["momentum_buffer"] = jnp.zeros_like(param)
    if group["centered"]:
        state["grad_avg"] = jnp.zeros_like(param)
    return state


def rmsprop_update(p, grad, state, hp, opts):
    """v = alpha v + (1 - alpha) g^2; avg = sqrt(v - mean(g)^2 if centered else v) + eps;
    buf = momentum buf + g / avg; p -= lr buf (p -= lr g / avg without momentum)."""
    g = _gradient(p, grad, hp, opts)
    alpha = hp["alpha"]
    new = {"step": state["step"] + 1,
           "square_avg": state["square_avg"] * alpha + (1 - alpha) * g * g}
    if opts["centered"]:
        new["grad_avg"] = lerp(state["grad_avg"], g, 1 - alpha)
        avg = jnp.sqrt(new["square_avg"] + (-1) * new["grad_avg"] * new["grad_avg"])
    else:
        avg = jnp.sqrt(new["square_avg"])
    avg = avg + hp["eps"]
    if "momentum_buffer" not in state:
        return p + (-hp["lr"]) * (g / avg), new
    new["momentum_buffer"] = state["momentum_buffer"] * hp["momentum"] + g / avg
    return p - hp["lr"] * new["momentum_buffer"], new


def adagrad_init(param: jax.Array, group: Mapping[str, Any]) -> LeafState:
    return {"step": jnp.zeros([], jnp.float32),
            "sum": jnp.full_like(param, group["initial_accumulator_value"])}


def adagrad_update(p, grad, state, hp, opts):
    """sum += g^2; p -= lr / (1 + (t - 1) lr_decay) * g / (sqrt(sum) + eps)."""
    step = state["step"] + 1
    g = _gradient(p, grad, hp, opts)
    clr = hp["lr"] / (1 + (step - 1) * hp["lr_decay"])
    total = state["sum"] + g * g
    std = jnp.sqrt(total) + hp["eps"]
    return p + (-clr) * (g / std), {"step": step, "sum": total}


def adadelta_init(param: jax.Array, group: Mapping[str, Any]) -> LeafState:
    return {"step": jnp.zeros([], jnp.float32), "square_avg": jnp.zeros_like(param),
            "acc_delta": jnp.zeros_like(param)}


def adadelta_update(p, grad, state, hp, opts):
    """v = rho v + (1 - rho) g^2; d = sqrt(u + eps) / sqrt(v + eps) * g;
    u = rho u + (1 - rho) d^2; p -= lr d."""
    rho, eps = hp["rho"], hp["eps"]
    g = _gradient(p, grad, hp, opts)
    square_avg = state["square_avg"] * rho + (1 - rho) * g * g
    delta = jnp.sqrt(state["acc_delta"] + eps) / jnp.sqrt(square_avg + eps) * g
    acc_delta = state["acc_delta"] * rho + (1 - rho) * delta * delta
    return p - hp["lr"] * delta, {"step": state["step"] + 1, "square_avg": square_avg,
                                  "acc_delta": acc_delta}


def _check(owner: str, group: Mapping[str, Any]) -> None:
    for name in ("lr", "eps", "weight_decay", "momentum", "alpha", "lr_decay",
                 "initial_accumulator_value"):
        if name in group:
            check_nonnegative(owner, name, group[name])
    if "rho" in group:
        check_unit(owner, "rho", group["rho"], upper_open=False)


class _Checked(Optimizer):
    def validate_group(self, group):
        _check(type(self).__name__, group)


class RMSprop(_Checked):
    """``torch.optim.RMSprop``."""

    init = staticmethod(rmsprop_init)
    update = staticmethod(rmsprop_update)
    hyperparams = ("lr", "alpha", "eps", "weight_decay", "momentum")
    flags = ("centered", "maximize")

    def __init__(self, params: Iterable[Any], lr: float = 1e-2, alpha: float = 0.99,
                 eps: float = 1e-8, weight_decay: float = 0, momentum: float = 0,
                 centered: bool = False, capturable: bool = False,
                 foreach: bool | None = None, maximize: bool = False,
                 differentiable: bool = False, *, master_weights: bool = False) -> None:
        defaults = {"lr": lr, "momentum": momentum, "alpha": alpha, "eps": eps,
                    "centered": centered, "weight_decay": weight_decay, "maximize": maximize,
                    **torch_flags(foreach=foreach, capturable=capturable,
                                  differentiable=differentiable)}
        del defaults["fused"]
        super().__init__(params, defaults, master_weights=master_weights)


class Adagrad(_Checked):
    """``torch.optim.Adagrad``; as in PyTorch its state exists from construction."""

    init = staticmethod(adagrad_init)
    update = staticmethod(adagrad_update)
    hyperparams = ("lr", "lr_decay", "weight_decay", "eps")
    flags = ("maximize",)

    def __init__(self, params: Iterable[Any], lr: float = 1e-2, lr_decay: float = 0,
                 weight_decay: float = 0, initial_accumulator_value: float = 0,
                 eps: float = 1e-10, foreach: bool | None = None, *, maximize: bool = False,
                 differentiable: bool = False, fused: bool | None = None,
                 master_weights: bool = False) -> None:
        defaults = {"lr": lr, "lr_decay": lr_decay, "eps": eps, "weight_decay": weight_decay,
                    "initial_accumulator_value": initial_accumulator_value,
                    "maximize": maximize,
                    **torch_flags(foreach=foreach, differentiable=differentiable, fused=fused)}
        del defaults["capturable"]
        super().__init__(params, defaults, master_weights=master_weights)
        self._ensure_state()


class Adadelta(_Checked):
    """``torch.optim.Adadelta``."""

    init = staticmethod(adadelta_init)
    update = staticmethod(adadelta_update)
    hyperparams = ("lr", "rho", "eps", "weight_decay")
    flags = ("maximize",)

    def __init__(self, params: Iterable[Any], lr: float = 1.0, rho: float = 0.9,
                 eps: float = 1e-6, weight_decay: float = 0, foreach: bool | None = None, *,
                 capturable: bool = False, maximize: bool = False,
                 differentiable: bool = False, master_weights: bool = False) -> None:
        defaults = {"lr": lr, "rho": rho, "eps": eps, "weight_decay": weight_decay,
                    "maximize": maximize,
                    **torch_flags(foreach=foreach, capturable=capturable,
                                  differentiable=differentiable)}
        del defaults["fused"]
        super().__init__(params, defaults, master_weights=master_weights)


def rmsprop(lr: float | optax.Schedule = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
            weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False, *,
            maximize: bool = False) -> optax.GradientTransformation:
    """``torch.optim.RMSprop``'s rule as an optax transformation (see the module docstring).

    Example::

        tx = torsh_fn.optim.rmsprop(1e-2, momentum=0.9, centered=True)
    """
    hp = {"lr": lr, "alpha": alpha, "eps": eps, "weight_decay": weight_decay,
          "momentum": momentum}
    _check("rmsprop", {**hp, "lr": 0.0 if callable(lr) else lr})
    return from_rule(rmsprop_init, rmsprop_update, hp,
                     {"centered": centered, "maximize": maximize})


def adagrad(lr: float | optax.Schedule = 1e-2, lr_decay: float = 0.0, weight_decay: float = 0.0,
            initial_accumulator_value: float = 0.0, eps: float = 1e-10, *,
            maximize: bool = False) -> optax.GradientTransformation:
    """``torch.optim.Adagrad``'s rule as an optax transformation."""
    hp = {"lr": lr, "lr_decay": lr_decay, "weight_decay": weight_decay, "eps": eps}
    _check("adagrad", {**hp, "lr": 0.0 if callable(lr) else lr,
                       "initial_accumulator_value": initial_accumulator_value})
    return from_rule(adagrad_init, adagrad_update, hp,
                     {"maximize": maximize,
                      "initial_accumulator_value": initial_accumulator_value})


def adadelta(lr: float | optax.Schedule = 1.0, rho: float = 0.9, eps: float = 1e-6,
             weight_decay: float = 0.0, *, maximize: bool = False) -> optax.GradientTransformation:
    """``torch.optim.Adadelta``'s rule as an optax transformation."""
    hp = {"lr": lr, "rho": rho, "eps": eps, "weight_decay": weight_decay}
    _check("adadelta", {**hp, "lr": 0.0 if callable(lr) else lr})
    return from_rule(adadelta_init, adadelta_update, hp, {"maximize": maximize})
