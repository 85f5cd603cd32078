"""RMSprop, Adagrad and Adadelta (``torsh_fn.optim._rmsprop``) against PyTorch: parity one
update at a time over 50 steps, state_dict round trips, the optax face, no recompilation, half
precision (see ``_parity.py``)."""

from __future__ import annotations

import torsh_fn.optim as optim
from tests.optim import _parity as parity

CASES = [
    ("RMSprop", {"lr": 1e-3}),
    ("RMSprop", {"lr": 1e-3, "centered": True, "momentum": 0.9, "weight_decay": 0.1}),
    ("Adagrad", {"lr": 0.1, "lr_decay": 0.01, "initial_accumulator_value": 0.1,
                 "weight_decay": 0.1}),
    ("Adadelta", {"lr": 1.0, "weight_decay": 0.1, "maximize": True}),
]

FUNCTIONAL = [
    (optim.rmsprop(1e-3, centered=True, momentum=0.5), "RMSprop",
     {"lr": 1e-3, "centered": True, "momentum": 0.5}),
    (optim.adagrad(0.1, lr_decay=0.01), "Adagrad", {"lr": 0.1, "lr_decay": 0.01}),
    (optim.adadelta(), "Adadelta", {}),
]

# test_matches_torch_for_50_steps and the other parity tests of _parity.family_tests
globals().update(parity.family_tests(CASES, FUNCTIONAL, half_precision=CASES[2:3]))
