"""Rprop (``torsh_fn.optim._rprop``) against PyTorch: parity one update at a time over 50 steps,
state_dict round trips, the optax face, no recompilation, half precision (see ``_parity.py``)."""

from __future__ import annotations

import torsh_fn.optim as optim
from tests.optim import _parity as parity

CASES = [
    ("Rprop", {"lr": 1e-2, "etas": (0.4, 1.3), "step_sizes": (1e-5, 1.0)}),
]

FUNCTIONAL = [
    (optim.rprop(), "Rprop", {}),
]

# test_matches_torch_for_50_steps and the other parity tests of _parity.family_tests
globals().update(parity.family_tests(CASES, FUNCTIONAL, half_precision=CASES))
