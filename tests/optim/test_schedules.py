"""The optax schedules of the functional face against PyTorch's schedulers, step by step."""

from __future__ import annotations

import jax
import numpy as np
import pytest
import torch

from torsh_fn.optim import schedules

STEPS = 40
LR = 0.1

CASES = [
    (schedules.step_lr(LR, 7, 0.5), lambda o: torch.optim.lr_scheduler.StepLR(o, 7, 0.5)),
    (schedules.multi_step_lr(LR, [5, 12, 12, 30], 0.3),
     lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [5, 12, 12, 30], 0.3)),
    (schedules.constant_lr(LR, 0.25, 6), lambda o: torch.optim.lr_scheduler.ConstantLR(o, 0.25, 6)),
    (schedules.linear_lr(LR, 0.1, 0.9, 9),
     lambda o: torch.optim.lr_scheduler.LinearLR(o, 0.1, 0.9, 9)),
    (schedules.exponential_lr(LR, 0.9), lambda o: torch.optim.lr_scheduler.ExponentialLR(o, 0.9)),
    (schedules.polynomial_lr(LR, 25, 2.0),
     lambda o: torch.optim.lr_scheduler.PolynomialLR(o, 25, 2.0)),
    (schedules.cosine_annealing_lr(LR, 15, 1e-3),
     lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 15, 1e-3)),
    (schedules.cosine_annealing_warm_restarts(LR, 5, 2, 1e-4),
     lambda o: torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(o, 5, 2, 1e-4)),
    (schedules.cosine_annealing_warm_restarts(LR, 6),
     lambda o: torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(o, 6)),
    (schedules.cyclic_lr(0.01, 0.1, 4, 6, "triangular2"),
     lambda o: torch.optim.lr_scheduler.CyclicLR(o, 0.01, 0.1, 4, 6, "triangular2",
                                                 cycle_momentum=False)),
    (schedules.cyclic_lr(0.01, 0.1, 5, mode="exp_range", gamma=0.97),
     lambda o: torch.optim.lr_scheduler.CyclicLR(o, 0.01, 0.1, 5, mode="exp_range", gamma=0.97,
                                                 cycle_momentum=False)),
    (schedules.one_cycle_lr(0.5, STEPS + 1),
     lambda o: torch.optim.lr_scheduler.OneCycleLR(o, 0.5, STEPS + 1)),
    (schedules.one_cycle_lr(0.5, STEPS + 1, 0.25, "linear", three_phase=True),
     lambda o: torch.optim.lr_scheduler.OneCycleLR(o, 0.5, STEPS + 1, pct_start=0.25,
                                                   anneal_strategy="linear", three_phase=True)),
    (schedules.sequential_lr([schedules.linear_lr(LR, 0.2, 1.0, 5),
                              schedules.exponential_lr(LR, 0.9)], [5]),
     lambda o: torch.optim.lr_scheduler.SequentialLR(
         o, [torch.optim.lr_scheduler.LinearLR(o, 0.2, 1.0, 5),
             torch.optim.lr_scheduler.ExponentialLR(o, 0.9)], [5])),
    (schedules.lambda_lr(LR, lambda t: 0.95**t),
     lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda t: 0.95**t)),
]

IDS = ["step", "multi_step", "constant", "linear", "exponential", "polynomial", "cosine",
       "warm_restarts-mult2", "warm_restarts", "cyclic-triangular2", "cyclic-exp_range",
       "one_cycle", "one_cycle-three-phase-linear", "sequential", "lambda"]


@pytest.mark.filterwarnings("ignore:Detected call of:UserWarning")
@pytest.mark.parametrize(("schedule", "make"), CASES, ids=IDS)
def test_schedule_matches_torch(schedule, make):
    opt = torch.optim.SGD([torch.ones(1, requires_grad=True)], lr=LR, momentum=0.9)
    scheduler = make(opt)
    expected = []
    for _ in range(STEPS):
        expected.append(scheduler.get_last_lr()[0])
        scheduler.step()
    actual = jax.jit(jax.vmap(schedule))(np.arange(STEPS))
    np.testing.assert_allclose(actual, expected, rtol=2e-6, atol=1e-7)


def test_cyclic_lr_rejects_unknown_mode():
    with pytest.raises(ValueError, match="cyclic_lr: unknown mode='sine'"):
        schedules.cyclic_lr(0.1, 1.0, mode="sine")
