"""``torsh_fn.optim._rule``: the helpers every optimizer rule is written with, ``apply_leaf`` and
``from_rule``."""

from __future__ import annotations

import jax.numpy as jnp
import pytest

import torsh_fn.optim as optim


def test_functional_transform_needs_params():
    tx = optim.adam()
    params = [jnp.ones(3)]
    with pytest.raises(ValueError, match=r"needs `params` in update\(\)"):
        tx.update(params, tx.init(params))
