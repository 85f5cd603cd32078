"""PyTorch's learning-rate schedules as optax schedules (``count -> lr``) for the functional face.

``schedule(t)`` is the learning rate PyTorch's scheduler sets after ``t`` calls of
``scheduler.step()`` (its closed form), so ``torsh_fn.optim.adam(lr=step_lr(1e-3, 30))`` follows
``StepLR(Adam(...), 30)`` when the schedule counts epochs the way the scheduler is stepped.
Each is a pure function of ``count``, safe under ``jit``; optax's own schedule is returned where
it already is PyTorch's formula.

Where optax's similarly named schedules differ: ``optax.cosine_decay_schedule`` stays at its
final value after ``decay_steps``; PyTorch's ``CosineAnnealingLR`` keeps following the cosine
(up again after ``T_max``), as :func:`cosine_annealing_lr` does. ``optax.cosine_onecycle_schedule``
counts its phases from ``pct_start * total_steps`` without PyTorch's ``- 1`` and has no
three-phase or linear variant; use :func:`one_cycle_lr`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax.numpy as jnp
import optax


def lambda_lr(base_lr: float, lr_lambda: Callable) -> optax.Schedule:
    """``LambdaLR``: ``base_lr * lr_lambda(t)`` (``lr_lambda`` must be traceable)."""
    return lambda count: base_lr * lr_lambda(count)


def step_lr(base_lr: float, step_size: int, gamma: float = 0.1) -> optax.Schedule:
    """``StepLR``: ``base_lr * gamma ** (t // step_size)``."""
    return optax.exponential_decay(base_lr, step_size, gamma, staircase=True)


def multi_step_lr(base_lr: float, milestones: Sequence[int],
                  gamma: float = 0.1) -> optax.Schedule:
    """``MultiStepLR``: ``base_lr * gamma ** (number of milestones <= t)``."""
    marks = jnp.asarray(sorted(milestones))
    return lambda count: base_lr * gamma ** jnp.sum(marks <= count)


def constant_lr(base_lr: float, factor: float = 1.0 / 3, total_iters: int = 5) -> optax.Schedule:
    """``ConstantLR``: ``base_lr * factor`` before ``total_iters``, then ``base_lr``."""
    return lambda count: jnp.where(count < total_iters, base_lr * factor, base_lr)


def linear_lr(base_lr: float, start_factor: float = 1.0 / 3, end_factor: float = 1.0,
              total_iters: int = 5) -> optax.Schedule:
    """``LinearLR``: the factor goes linearly from ``start_factor`` to ``end_factor``."""
    return optax.linear_schedule(base_lr * start_factor, base_lr * end_factor, total_iters)


def exponential_lr(base_lr: float, gamma: float) -> optax.Schedule:
    """``ExponentialLR``: ``base_lr * gamma ** t``."""
    return optax.exponential_decay(base_lr, 1, gamma)


def polynomial_lr(base_lr: float, total_iters: int = 5, power: float = 1.0) -> optax.Schedule:
    """``PolynomialLR``: ``base_lr * (1 - min(t, total_iters) / total_iters) ** power``."""
    return optax.polynomial_schedule(base_lr, 0.0, power, total_iters)


def cosine_annealing_lr(base_lr: float, T_max: int, eta_min: float = 0.0) -> optax.Schedule:
    """``CosineAnnealingLR``: ``eta_min + (base_lr - eta_min) (1 + cos(pi t / T_max)) / 2``."""
    return lambda count: eta_min + (base_lr - eta_min) * (1 + jnp.cos(jnp.pi * count / T_max)) / 2


def cosine_annealing_warm_restarts(base_lr: float, T_0: int, T_mult: int = 1,
                                   eta_min: float = 0.0) -> optax.Schedule:
    """``CosineAnnealingWarmRestarts``: cosine annealing restarted after ``T_0``,
    ``T_0 * T_mult``, ... epochs."""

    def schedule(count):
        t = jnp.asarray(count, jnp.float32)
        if T_mult == 1:
            t_cur, t_i = t % T_0, T_0
        else:
            n = jnp.floor(jnp.log(t / T_0 * (T_mult - 1) + 1) / math.log(T_mult))
            t_cur = t - T_0 * (T_mult**n - 1) / (T_mult - 1)
            t_i = T_0 * T_mult**n
        return eta_min + (base_lr - eta_min) * (1 + jnp.cos(jnp.pi * t_cur / t_i)) / 2

    return schedule


def cyclic_lr(base_lr: float, max_lr: float, step_size_up: int = 2000,
              step_size_down: int | None = None, mode: str = "triangular",
              gamma: float = 1.0) -> optax.Schedule:
    """``CyclicLR`` (``triangular``, ``triangular2``, ``exp_range``), stepped per batch."""
    if mode not in ("triangular", "triangular2", "exp_range"):
        raise ValueError(f"cyclic_lr: unknown mode={mode!r}: expected 'triangular', "
                         f"'triangular2' or 'exp_range'")
    up = float(step_size_up)
    total = up + (float(step_size_down) if step_size_down is not None else up)
    ratio = up / total

    def schedule(count):
        t = jnp.asarray(count, jnp.float32)
        cycle = jnp.floor(1 + t / total)
        x = 1.0 + t / total - cycle
        factor = jnp.where(x <= ratio, x / ratio, (x - 1) / (ratio - 1))
        scale = {"triangular": 1.0, "triangular2": 1 / 2.0 ** (cycle - 1),
                 "exp_range": gamma**t}[mode]
        return base_lr + (max_lr - base_lr) * factor * scale

    return schedule


def one_cycle_lr(max_lr: float, total_steps: int, pct_start: float = 0.3,
                 anneal_strategy: str = "cos", div_factor: float = 25.0,
                 final_div_factor: float = 1e4, three_phase: bool = False) -> optax.Schedule:
    """``OneCycleLR``'s learning rate (its momentum cycling is the stateful face's)."""
    initial = max_lr / div_factor
    low = initial / final_div_factor
    up = float(pct_start * total_steps) - 1
    if three_phase:
        phases = [(up, initial, max_lr), (float(2 * pct_start * total_steps) - 2, max_lr, initial),
                  (total_steps - 1, initial, low)]
    else:
        phases = [(up, initial, max_lr), (total_steps - 1, max_lr, low)]

    def anneal(start, end, pct):
        if anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (jnp.cos(jnp.pi * pct) + 1)
        return (end - start) * pct + start

    begins = [0.0] + [end for end, _, _ in phases[:-1]]

    def schedule(count):
        t = jnp.asarray(count, jnp.float32)
        (end, start_lr, end_lr), begin = phases[-1], begins[-1]
        lr = anneal(start_lr, end_lr, (t - begin) / (end - begin))
        for (end, start_lr, end_lr), begin in reversed(list(zip(phases[:-1], begins[:-1]))):
            lr = jnp.where(t <= end, anneal(start_lr, end_lr, (t - begin) / (end - begin)), lr)
        return lr

    return schedule


def sequential_lr(schedules: Sequence[optax.Schedule], milestones: Sequence[int]
                  ) -> optax.Schedule:
    """``SequentialLR``: ``schedules[i]`` restarted at ``milestones[i - 1]``
    (``optax.join_schedules``)."""
    return optax.join_schedules(list(schedules), list(milestones))
