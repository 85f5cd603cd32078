"""The top level: subpackages reachable as attributes (``torsh_fn.nn`` like ``torch.nn``)."""

import pytest

import torsh_fn


def test_subpackages_are_attributes():
    from torsh_fn.nn import Linear
    from torsh_fn.optim import GradScaler

    assert torsh_fn.nn.Linear is Linear
    assert torsh_fn.amp.GradScaler is GradScaler
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        torsh_fn.nope


def test_jit_and_backward_are_the_stateful_ones():
    from torsh_fn._backward import backward
    from torsh_fn._jit import jit

    assert torsh_fn.jit is jit and torsh_fn.backward is backward
