"""The Adam family as in PyTorch: Adam, AdamW, Adamax, NAdam, RAdam.

Shared conventions (PyTorch's): ``step`` is a float32 count per parameter; ``weight_decay`` is
added to the gradient (L2, "coupled") unless ``decoupled_weight_decay`` (AdamW), which first
scales the parameter by ``1 - lr * weight_decay``; ``maximize`` negates the gradient first;
moments are updated with ``torch.lerp``'s formula.

Where optax differs:

* ``optax.adam`` divides by ``sqrt(nu_hat) + eps`` with ``nu_hat = nu / bc2``; PyTorch by
  ``sqrt(nu) / sqrt(bc2) + eps``: the same up to rounding. ``optax.adam(eps_root=0)`` has no
  ``amsgrad`` (``optax.amsgrad`` keeps the max of the *bias-corrected* second moment) and no
  coupled weight decay.
* ``optax.adamw`` multiplies the decay by the learning rate the same way, but adds it to the
  update after the Adam step rather than scaling the parameter before it.
* ``optax.adamax`` bias-corrects the first moment the same way, but adds ``eps`` outside the
  infinity norm; PyTorch takes ``max(beta2 * u, |g| + eps)``.
* ``optax.nadam`` uses a constant momentum; PyTorch's NAdam uses the momentum schedule
  ``mu_t = beta1 * (1 - 0.5 * 0.96 ** (t * momentum_decay))`` of Dozat (2016).
* ``optax.radam`` switches on ``rho_t >= threshold`` (5 by default) and adds ``eps`` inside the
  square root; PyTorch switches on ``rho_t > 5`` and adds ``eps`` to ``sqrt(v)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

from ._rule import LeafState, coupled_weight_decay, from_rule, lerp
from .optimizer import Optimizer, check_nonnegative, check_unit, torch_flags


def _moments_init(param: jax.Array, *names: str) -> LeafState:
    return {"step": jnp.zeros([], jnp.float32), **{n: jnp.zeros_like(param) for n in names}}


def _decay(p, g, hp, opts):
    """PyTorch's weight decay: decoupled scales the parameter, coupled adds to the gradient;
    neither where it is 0."""
    if not opts["decoupled_weight_decay"]:
        return p, coupled_weight_decay(g, p, hp, opts)
    return (p * (1 - hp["lr"] * hp["weight_decay"]) if opts["nonzero_weight_decay"] else p), g


def adam_init(param: jax.Array, group: Mapping[str, Any]) -> LeafState:
    names = ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if group["amsgrad"] else ())
    return _moments_init(param, *names)


def adam_update(p, grad, state, hp, opts):
    """m = lerp(m, g, 1 - b1); v = b2 v + (1 - b2) g^2;
    p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)  (v -> max(v) with amsgrad)."""
    beta1, beta2 = hp["betas"]
    step = state["step"] + 1
    g = -grad if opts["maximize"] else grad
    p, g = _decay(p, g, hp, opts)
    exp_avg = lerp(state["exp_avg"], g, 1 - beta1)
    exp_avg_sq = state["exp_avg_sq"] * beta2 + (1 - beta2) * g * g
    new = {"step": step, "exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq}
    step_size = hp["lr"] / (1 - beta1**step)
    bias_correction2_sqrt = jnp.sqrt(1 - beta2**step)
    second = exp_avg_sq
    if opts["amsgrad"]:
        second = new["max_exp_avg_sq"] = jnp.maximum(state["max_exp_avg_sq"], exp_avg_sq)
    denom = jnp.sqrt(second) / bias_correction2_sqrt + hp["eps"]
    return p + (-step_size) * (exp_avg / denom), new


def adamax_init(param: jax.Array, group: Mapping[str, Any]) -> LeafState:
    return _moments_init(param, "exp_avg", "exp_inf")


def adamax_update(p, grad, state, hp, opts):
    """m = lerp(m, g, 1 - b1); u = max(b2 u, |g| + eps); p -= lr / (1 - b1^t) * m / u."""
    beta1, beta2 = hp["betas"]
    step = state["step"] + 1
    g = coupled_weight_decay(-grad if opts["maximize"] else grad, p, hp, opts)
    exp_avg = lerp(state["exp_avg"], g, 1 - beta1)
    exp_inf = jnp.maximum(state["exp_inf"] * beta2, jnp.abs(g) + hp["eps"])
    clr = hp["lr"] / (1 - beta1**step)
    return p + (-clr) * (exp_avg / exp_inf), {"step": step, "exp_avg": exp_avg, "exp_inf": exp_inf}


def nadam_init(param: jax.Array, group: Mapping[str, Any]) -> LeafState:
    state = _moments_init(param, "exp_avg", "exp_avg_sq")
    return {"step": state["step"], "mu_product": jnp.ones([], jnp.float32),
            "exp_avg": state["exp_avg"], "exp_avg_sq": state["exp_avg_sq"]}


def nadam_update(p, grad, state, hp, opts):
    """Adam with Nesterov momentum and the momentum schedule
    mu_t = b1 (1 - 0.5 * 0.96^(t * momentum_decay))."""
    beta1, beta2 = hp["betas"]
    step = state["step"] + 1
    g = -grad if opts["maximize"] else grad
    bias_correction2 = 1 - beta2**step
    p, g = _decay(p, g, hp, opts)
    mu = beta1 * (1.0 - 0.5 * (0.96 ** (step * hp["momentum_decay"])))
    mu_next = beta1 * (1.0 - 0.5 * (0.96 ** ((step + 1) * hp["momentum_decay"])))
    mu_product = state["mu_product"] * mu
    exp_avg = lerp(state["exp_avg"], g, 1 - beta1)
    exp_avg_sq = state["exp_avg_sq"] * beta2 + (1 - beta2) * g * g
    denom = jnp.sqrt(exp_avg_sq / bias_correction2) + hp["eps"]
    mu_product_next = mu_product * mu_next
    p = p + (-hp["lr"] * (1.0 - mu) / (1.0 - mu_product)) * (g / denom)
    p = p + ((-hp["lr"] * mu_next) / (1.0 - mu_product_next)) * (exp_avg / denom)
    return p, {"step": step, "mu_product": mu_product, "exp_avg": exp_avg,
               "exp_avg_sq": exp_avg_sq}


def radam_init(param: jax.Array, group: Mapping[str, Any]) -> LeafState:
    return _moments_init(param, "exp_avg", "exp_avg_sq")


def radam_update(p, grad, state, hp, opts):
    """Adam whose adaptive term is switched on (with the variance rectification) once
    rho_t = rho_inf - 2 t b2^t / (1 - b2^t) exceeds 5; before, plain momentum SGD."""
    beta1, beta2 = hp["betas"]
    step = state["step"] + 1
    g = -grad if opts["maximize"] else grad
    p, g = _decay(p, g, hp, opts)
    exp_avg = lerp(state["exp_avg"], g, 1 - beta1)
    exp_avg_sq = state["exp_avg_sq"] * beta2 + (1 - beta2) * g * g
    bias_correction1 = 1 - beta1**step
    bias_correction2 = 1 - beta2**step
    # rho_t cancels ~2000 against ~2000: expm1 keeps 1 - b2^t accurate in float32.
    accurate_bc2 = -jnp.expm1(step * jnp.log(beta2))
    corrected = exp_avg / bias_correction1
    rho_inf = 2 / (1 - beta2) - 1
    rho_t = rho_inf - 2 * step * (beta2**step) / accurate_bc2
    rect = jnp.sqrt(jnp.maximum(
        (rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t), 0))
    adaptive = jnp.sqrt(bias_correction2) / (jnp.sqrt(exp_avg_sq) + hp["eps"])
    update = jnp.where(rho_t > 5.0, corrected * hp["lr"] * adaptive * rect, corrected * hp["lr"])
    return p - update, {"step": step, "exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq}


def _check(owner: str, group: Mapping[str, Any]) -> None:
    check_nonnegative(owner, "lr", group["lr"])
    check_nonnegative(owner, "eps", group["eps"])
    check_unit(owner, "betas[0]", group["betas"][0])
    check_unit(owner, "betas[1]", group["betas"][1])
    check_nonnegative(owner, "weight_decay", group["weight_decay"])
    if "momentum_decay" in group:
        check_nonnegative(owner, "momentum_decay", group["momentum_decay"])


class _AdamLike(Optimizer):
    hyperparams = ("lr", "betas", "eps", "weight_decay")
    flags = ("maximize", "decoupled_weight_decay")

    def validate_group(self, group):
        _check(type(self).__name__, group)


class Adam(_AdamLike):
    """``torch.optim.Adam`` (and AdamW with ``decoupled_weight_decay=True``)."""

    init = staticmethod(adam_init)
    update = staticmethod(adam_update)
    flags = ("amsgrad", "maximize", "decoupled_weight_decay")

    def __init__(self, params: Iterable[Any], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0, amsgrad: bool = False, *, foreach: bool | None = None,
                 maximize: bool = False, capturable: bool = False, differentiable: bool = False,
                 fused: bool | None = None, decoupled_weight_decay: bool = False,
                 master_weights: bool = False) -> None:
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
                    "amsgrad": amsgrad, "maximize": maximize,
                    "decoupled_weight_decay": decoupled_weight_decay,
                    **torch_flags(foreach=foreach, capturable=capturable,
                                  differentiable=differentiable, fused=fused)}
        super().__init__(params, defaults, master_weights=master_weights)


class AdamW(Adam):
    """``torch.optim.AdamW``: Adam with decoupled weight decay, ``weight_decay=1e-2``."""

    def __init__(self, params: Iterable[Any], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, *,
                 maximize: bool = False, foreach: bool | None = None, capturable: bool = False,
                 differentiable: bool = False, fused: bool | None = None,
                 master_weights: bool = False) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach,
                         maximize=maximize, capturable=capturable,
                         differentiable=differentiable, fused=fused,
                         decoupled_weight_decay=True, master_weights=master_weights)


class Adamax(_AdamLike):
    """``torch.optim.Adamax``."""

    init = staticmethod(adamax_init)
    update = staticmethod(adamax_update)
    flags = ("maximize",)

    def __init__(self, params: Iterable[Any], lr: float = 2e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0, foreach: bool | None = None, *,
                 maximize: bool = False, differentiable: bool = False,
                 capturable: bool = False, master_weights: bool = False) -> None:
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
                    "maximize": maximize,
                    **torch_flags(foreach=foreach, capturable=capturable,
                                  differentiable=differentiable)}
        del defaults["fused"]
        super().__init__(params, defaults, master_weights=master_weights)


class NAdam(_AdamLike):
    """``torch.optim.NAdam`` (NAdamW with ``decoupled_weight_decay=True``)."""

    init = staticmethod(nadam_init)
    update = staticmethod(nadam_update)
    hyperparams = ("lr", "betas", "eps", "weight_decay", "momentum_decay")

    def __init__(self, params: Iterable[Any], lr: float = 2e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0, momentum_decay: float = 4e-3,
                 decoupled_weight_decay: bool = False, *, foreach: bool | None = None,
                 maximize: bool = False, capturable: bool = False,
                 differentiable: bool = False, master_weights: bool = False) -> None:
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
                    "momentum_decay": momentum_decay,
                    "decoupled_weight_decay": decoupled_weight_decay, "maximize": maximize,
                    **torch_flags(foreach=foreach, capturable=capturable,
                                  differentiable=differentiable)}
        del defaults["fused"]
        super().__init__(params, defaults, master_weights=master_weights)


class RAdam(_AdamLike):
    """``torch.optim.RAdam`` (RAdamW with ``decoupled_weight_decay=True``)."""

    init = staticmethod(radam_init)
    update = staticmethod(radam_update)

    def __init__(self, params: Iterable[Any], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0, decoupled_weight_decay: bool = False, *,
                 foreach: bool | None = None, maximize: bool = False, capturable: bool = False,
                 differentiable: bool = False, master_weights: bool = False) -> None:
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
                    "decoupled_weight_decay": decoupled_weight_decay, "maximize": maximize,
                    **torch_flags(foreach=foreach, capturable=capturable,
                                  differentiable=differentiable)}
        del defaults["fused"]
        super().__init__(params, defaults, master_weights=master_weights)


def _functional(init, update, hp, opts, owner) -> optax.GradientTransformation:
    _check(owner, {**hp, "lr": 0.0 if callable(hp["lr"]) else hp["lr"]})
    return from_rule(init, update, hp, opts)


def adam(lr: float | optax.Schedule = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
         eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False, *,
         maximize: bool = False, decoupled_weight_decay: bool = False
         ) -> optax.GradientTransformation:
    """``torch.optim.Adam``'s rule as an optax transformation (see the module docstring).

    Example::

        tx = torsh_fn.optim.adam(1e-3, amsgrad=True)
        updates, state = tx.update(grads, tx.init(params), params)
    """
    hp = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay}
    opts = {"amsgrad": amsgrad, "maximize": maximize,
            "decoupled_weight_decay": decoupled_weight_decay}
    return _functional(adam_init, adam_update, hp, opts, "adam")


def adamw(lr: float | optax.Schedule = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
          eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False, *,
          maximize: bool = False) -> optax.GradientTransformation:
    """``torch.optim.AdamW``'s rule: :func:`adam` with ``decoupled_weight_decay=True``."""
    return adam(lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                decoupled_weight_decay=True)


def adamax(lr: float | optax.Schedule = 2e-3, betas: tuple[float, float] = (0.9, 0.999),
           eps: float = 1e-8, weight_decay: float = 0.0, *,
           maximize: bool = False) -> optax.GradientTransformation:
    """``torch.optim.Adamax``'s rule as an optax transformation."""
    hp = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay}
    return _functional(adamax_init, adamax_update, hp, {"maximize": maximize}, "adamax")


def nadam(lr: float | optax.Schedule = 2e-3, betas: tuple[float, float] = (0.9, 0.999),
          eps: float = 1e-8, weight_decay: float = 0.0, momentum_decay: float = 4e-3,
          decoupled_weight_decay: bool = False, *,
          maximize: bool = False) -> optax.GradientTransformation:
    """``torch.optim.NAdam``'s rule as an optax transformation."""
    hp = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
          "momentum_decay": momentum_decay}
    opts = {"maximize": maximize, "decoupled_weight_decay": decoupled_weight_decay}
    return _functional(nadam_init, nadam_update, hp, opts, "nadam")


def radam(lr: float | optax.Schedule = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
          eps: float = 1e-8, weight_decay: float = 0.0, decoupled_weight_decay: bool = False, *,
          maximize: bool = False) -> optax.GradientTransformation:
    """``torch.optim.RAdam``'s rule as an optax transformation."""
    hp = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay}
    opts = {"maximize": maximize, "decoupled_weight_decay": decoupled_weight_decay}
    return _functional(radam_init, radam_update, hp, opts, "radam")
