"""Top-level transforms are JAX's; no_grad and friends are do-nothing context managers."""

import jax
import jax.numpy as jnp

import torsh_fn as T


def test_transforms_are_jaxs():
    assert T.grad is jax.grad and T.vmap is jax.vmap and T.checkpoint is jax.checkpoint
    assert T.hessian(lambda x: (x**3).sum())(jnp.ones(2)).shape == (2, 2)
    assert T.value_and_grad(lambda x: (x**2).sum())(jnp.ones(3))[1].tolist() == [2.0] * 3


def test_no_grad_is_a_context_manager_and_decorator_that_changes_nothing():
    with T.no_grad():
        g = T.grad(lambda x: x**2)(3.0)
    assert g == 6.0

    @T.no_grad()
    def f(x):
        return x + 1

    assert f(1) == 2
    with T.enable_grad(), T.inference_mode(), T.set_grad_enabled(False):
        assert T.is_grad_enabled()
