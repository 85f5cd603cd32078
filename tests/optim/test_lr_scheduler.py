"""Every scheduler reproduces PyTorch's learning-rate (and momentum) sequence, resumes from
``last_epoch`` and from a state_dict, and rejects bad input."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import torch

import torsh_fn.optim as optim
from torsh_fn.nn import Parameter
from torsh_fn.optim import lr_scheduler

EPOCHS = 40
pytestmark = pytest.mark.filterwarnings("ignore:Detected call of:UserWarning")


def _scale(epoch):
    return 0.95**epoch


SCHEDULERS = {
    "LambdaLR": lambda m, o: m.LambdaLR(o, _scale),
    "LambdaLR-per-group": lambda m, o: m.LambdaLR(o, [_scale, lambda e: 1 / (e + 1)]),
    "MultiplicativeLR": lambda m, o: m.MultiplicativeLR(o, lambda e: 0.97),
    "StepLR": lambda m, o: m.StepLR(o, step_size=7, gamma=0.5),
    "MultiStepLR": lambda m, o: m.MultiStepLR(o, milestones=[5, 12, 12, 30], gamma=0.3),
    "ConstantLR": lambda m, o: m.ConstantLR(o, factor=0.25, total_iters=6),
    "LinearLR": lambda m, o: m.LinearLR(o, start_factor=0.1, end_factor=0.9, total_iters=9),
    "ExponentialLR": lambda m, o: m.ExponentialLR(o, gamma=0.9),
    "PolynomialLR": lambda m, o: m.PolynomialLR(o, total_iters=25, power=2.0),
    "CosineAnnealingLR": lambda m, o: m.CosineAnnealingLR(o, T_max=15, eta_min=1e-3),
    "CosineAnnealingWarmRestarts": lambda m, o: m.CosineAnnealingWarmRestarts(
        o, T_0=5, T_mult=2, eta_min=1e-4),
    "CyclicLR-triangular2": lambda m, o: m.CyclicLR(
        o, base_lr=0.01, max_lr=0.1, step_size_up=4, step_size_down=6, mode="triangular2"),
    "CyclicLR-exp_range": lambda m, o: m.CyclicLR(
        o, base_lr=[0.01, 0.02], max_lr=0.1, step_size_up=5, mode="exp_range", gamma=0.97),
    "OneCycleLR": lambda m, o: m.OneCycleLR(o, max_lr=0.5, total_steps=EPOCHS + 1),
    "OneCycleLR-three-phase-linear": lambda m, o: m.OneCycleLR(
        o, max_lr=[0.5, 0.2], epochs=EPOCHS + 1, steps_per_epoch=1, three_phase=True,
        anneal_strategy="linear", pct_start=0.25),
    "SequentialLR": lambda m, o: m.SequentialLR(
        o, [m.LinearLR(o, start_factor=0.2, total_iters=5), m.ExponentialLR(o, gamma=0.9),
            m.StepLR(o, step_size=3)], milestones=[5, 20]),
    "ChainedScheduler": lambda m, o: m.ChainedScheduler(
        [m.ConstantLR(o, factor=0.5, total_iters=4), m.ExponentialLR(o, gamma=0.95)]),
}


def _optimizers(momentum_kind: str = "SGD"):
    """Ours and PyTorch's, two param groups each (the second with its own lr)."""
    ours = [Parameter(jnp.ones(2)), Parameter(jnp.ones(3))]
    theirs = [torch.ones(2, requires_grad=True), torch.ones(3, requires_grad=True)]
    groups = lambda ps: [{"params": [ps[0]]}, {"params": [ps[1]], "lr": 0.05}]
    kwargs = {"lr": 0.1, "momentum": 0.9} if momentum_kind == "SGD" else {"lr": 0.1}
    return (getattr(optim, momentum_kind)(groups(ours), **kwargs),
            getattr(torch.optim, momentum_kind)(groups(theirs), **kwargs))


def _trace(opt, scheduler, epochs=EPOCHS):
    out = []
    for _ in range(epochs):
        out.append((scheduler.get_last_lr(),
                    [g.get("momentum", g.get("betas")) for g in opt.param_groups]))
        scheduler.step()
    return out


@pytest.mark.parametrize("kind", SCHEDULERS)
def test_sequence_matches_torch(kind):
    ours, theirs = _optimizers()
    ours_trace = _trace(ours, SCHEDULERS[kind](lr_scheduler, ours))
    theirs_trace = _trace(theirs, SCHEDULERS[kind](torch.optim.lr_scheduler, theirs))
    assert ours_trace == theirs_trace  # same formulas, same order: equal to the last bit


@pytest.mark.parametrize("kind", ["CyclicLR-triangular2", "OneCycleLR"])
def test_momentum_cycling_on_adam_betas_matches_torch(kind):
    ours, theirs = _optimizers("Adam")
    ours_trace = _trace(ours, SCHEDULERS[kind](lr_scheduler, ours))
    theirs_trace = _trace(theirs, SCHEDULERS[kind](torch.optim.lr_scheduler, theirs))
    assert ours_trace == theirs_trace


@pytest.mark.parametrize("kind", SCHEDULERS)
def test_state_dict_resumes_the_sequence(kind):
    ours, _ = _optimizers()
    scheduler = SCHEDULERS[kind](lr_scheduler, ours)
    head = _trace(ours, scheduler, 17)
    saved_sched, saved_opt = scheduler.state_dict(), ours.state_dict()
    tail = _trace(ours, scheduler, 10)
    resumed, _ = _optimizers()
    again = SCHEDULERS[kind](lr_scheduler, resumed)  # PyTorch's order: build, then load both
    resumed.load_state_dict(saved_opt)
    again.load_state_dict(saved_sched)
    assert head and _trace(resumed, again, 10) == tail


RESUMABLE = {
    "StepLR": {"step_size": 7, "gamma": 0.5},
    "MultiStepLR": {"milestones": [5, 12, 30], "gamma": 0.3},
    "ConstantLR": {"factor": 0.25, "total_iters": 12},
    "LinearLR": {"start_factor": 0.1, "end_factor": 0.9, "total_iters": 15},
    "ExponentialLR": {"gamma": 0.9},
    "PolynomialLR": {"total_iters": 25, "power": 2.0},
    "CosineAnnealingLR": {"T_max": 15, "eta_min": 1e-3},
    "CosineAnnealingWarmRestarts": {"T_0": 5, "T_mult": 2},
}


@pytest.mark.parametrize("kind", RESUMABLE)
def test_last_epoch_resume_matches_torch(kind):
    traces = []
    for opt, module in zip(_optimizers(), (lr_scheduler, torch.optim.lr_scheduler)):
        for group in opt.param_groups:
            group["initial_lr"] = group["lr"]
        scheduler = getattr(module, kind)(opt, **RESUMABLE[kind], last_epoch=9)
        traces.append(_trace(opt, scheduler, 20))
    assert traces[0] == traces[1]


def test_torch_scheduler_state_dict_loads():
    ours, theirs = _optimizers()
    theirs_sched = torch.optim.lr_scheduler.CosineAnnealingLR(theirs, T_max=15)
    ours_sched = lr_scheduler.CosineAnnealingLR(ours, T_max=15)
    _trace(theirs, theirs_sched, 7)
    ours.load_state_dict({"state": {}, "param_groups": theirs.state_dict()["param_groups"]})
    ours_sched.load_state_dict(theirs_sched.state_dict())
    assert _trace(ours, ours_sched, 20) == _trace(theirs, theirs_sched, 20)


def test_reduce_lr_on_plateau_matches_torch():
    ours, theirs = _optimizers()
    kwargs = {"mode": "max", "factor": 0.5, "patience": 2, "cooldown": 1, "min_lr": [0.01, 0.0],
              "threshold_mode": "abs", "threshold": 0.1}
    a = lr_scheduler.ReduceLROnPlateau(ours, **kwargs)
    b = torch.optim.lr_scheduler.ReduceLROnPlateau(theirs, **kwargs)
    metrics = [1.0, 1.05, 1.2, 1.1, 1.0, 1.3, 1.3, 1.3, 1.3, 1.25, 1.2, 1.1, 1.0, 0.9, 0.8]
    for m in metrics:
        a.step(m)
        b.step(m)
        assert a.get_last_lr() == b.get_last_lr()
    assert a.get_last_lr() != [0.1, 0.05]


def test_bad_input_is_rejected():
    ours, _ = _optimizers()
    with pytest.raises(TypeError, match=r"StepLR: expected a torsh_fn\.optim\.Optimizer, got SGD"):
        lr_scheduler.StepLR(torch.optim.SGD([torch.ones(1)], lr=0.1), step_size=2)
    with pytest.raises(KeyError, match=r"param_groups\[0\] has no 'initial_lr'"):
        lr_scheduler.StepLR(ours, step_size=2, last_epoch=3)
    with pytest.raises(ValueError, match="max_lr has 3 values, the optimizer has 2 param groups"):
        lr_scheduler.OneCycleLR(ours, max_lr=[1, 2, 3], total_steps=10)
    with pytest.raises(ValueError, match="cycle_momentum=True needs an optimizer with"):
        lr_scheduler.CyclicLR(optim.Adagrad(ours.param_groups[0]["params"]), 0.1, 1.0)
    with pytest.raises(ValueError, match="SequentialLR: expected 1 milestones for 2 schedulers"):
        lr_scheduler.SequentialLR(ours, [lr_scheduler.StepLR(ours, 2),
                                         lr_scheduler.StepLR(ours, 3)], milestones=[])
    one_cycle = lr_scheduler.OneCycleLR(ours, max_lr=0.1, total_steps=2)
    one_cycle.step()
    one_cycle.step()
    with pytest.raises(ValueError, match="stepped 3 times, more than total_steps=2"):
        one_cycle.step()


@pytest.mark.parametrize("kind", ["OneCycleLR", "CosineAnnealingWarmRestarts", "SequentialLR",
                                  "ChainedScheduler"])
def test_step_inside_a_compiled_step_is_refused(kind):
    import torsh_fn

    opt, _ = _optimizers()
    scheduler = SCHEDULERS[kind](lr_scheduler, opt)

    @torsh_fn.jit
    def step(opt, scheduler):
        scheduler.step()

    with pytest.raises(RuntimeError, match=f"{kind.split('-')[0]}.step\\(\\) called inside a "
                                           "compiled function"):
        step(opt, scheduler)


def test_scheduler_stepped_outside_drives_the_compiled_step_like_torch():
    """The new lr reaches the jitted SGD step every call (no freezing, no recompiling)."""
    import torsh_fn

    ours, theirs = _optimizers()
    ours_s = lr_scheduler.OneCycleLR(ours, max_lr=0.5, total_steps=12)
    theirs_s = torch.optim.lr_scheduler.OneCycleLR(theirs, max_lr=0.5, total_steps=12)

    @torsh_fn.jit
    def step(opt):
        for group in opt.param_groups:
            for p in group["params"]:
                p.grad = jnp.ones_like(p.data)
        opt.step()

    for _ in range(11):
        step(ours)
        for group in theirs.param_groups:
            for p in group["params"]:
                p.grad = torch.ones_like(p)
        theirs.step()
        ours_s.step()
        theirs_s.step()
    for ours_g, theirs_g in zip(ours.param_groups, theirs.param_groups, strict=True):
        for p, q in zip(ours_g["params"], theirs_g["params"], strict=True):
            np.testing.assert_allclose(p.data, q.detach().numpy(), rtol=1e-5, atol=1e-6)
