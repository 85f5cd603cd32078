"""Seeds, generators and keys: reproducibility, independence, state round trips."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import torsh_fn as T
from torsh_fn import random


def test_manual_seed_reproduces_bit_for_bit():
    T.manual_seed(123)
    a = (T.randn(5), T.rand(3), T.randint(0, 100, (4,)), T.randperm(6))
    T.manual_seed(123)
    b = (T.randn(5), T.rand(3), T.randint(0, 100, (4,)), T.randperm(6))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert T.initial_seed() == 123


def test_successive_draws_differ_and_seeds_differ():
    T.manual_seed(0)
    a, b = T.randn(8), T.randn(8)
    assert not (a == b).all()
    T.manual_seed(1)
    assert not (T.randn(8) == a).all()


def test_generator_objects_are_independent_of_the_global_one():
    g1 = T.Generator().manual_seed(7)
    g2 = T.Generator().manual_seed(7)
    T.manual_seed(0)
    state = T.get_rng_state()
    x = T.rand(4, generator=g1)
    assert (T.get_rng_state() == state).all()
    assert (x == T.rand(4, generator=g2)).all()
    assert isinstance(g1.manual_seed(3), T.Generator)  # chaining, as torch.Generator


def test_state_round_trip_and_fork_rng():
    T.manual_seed(5)
    state = T.get_rng_state()
    a = T.randn(3)
    T.set_rng_state(state)
    assert (T.randn(3) == a).all()
    with random.fork_rng():
        T.randn(10)
    assert not (T.randn(3) == a).all()  # state moved on from after `a`, not reset to it
    T.set_rng_state(state)
    with random.fork_rng():
        T.manual_seed(99)
        T.randn(3)
    assert (T.randn(3) == a).all()


def test_large_and_negative_seeds_are_accepted():
    T.manual_seed(2**63 + 5)
    T.manual_seed(-1)
    assert T.randn(2).shape == (2,)


def test_seed_is_nondeterministic_and_returned():
    s = T.seed()
    assert isinstance(s, int) and T.initial_seed() == s


def test_generator_state_is_threadable_through_jit():
    g = T.Generator().manual_seed(0)

    @jax.jit
    def draw(state):
        g2 = T.Generator().set_state(state)
        x = T.randn(3, generator=g2)
        return x, g2.get_state()

    x, new_state = draw(g.get_state())
    assert (x == T.randn(3, generator=g)).all()
    assert (new_state == g.get_state()).all()


@pytest.mark.parametrize("bad, error, match", [
    ("7", TypeError, "manual_seed: expected an int seed, got str"),
    (1.5, TypeError, "got float"),
])
def test_bad_seed(bad, error, match):
    with pytest.raises(error, match=match):
        T.manual_seed(bad)


def test_bad_state_and_generator():
    with pytest.raises(ValueError, match=r"expected a uint32 array of shape \(2,\)"):
        T.set_rng_state(jnp.zeros(3, jnp.uint32))
    with pytest.raises(TypeError, match="generator: expected a torsh_fn Generator"):
        T.rand(2, generator=np.random.default_rng())


def test_next_key_and_split_key():
    key = jax.random.PRNGKey(0)
    assert random.next_key(key) is key
    assert random.split_key(key, 3).shape[0] == 3
