"""Seeds and keys: the global generator of the PyTorch face, ``Generator`` objects, key helpers.

JAX randomness is explicit: every random function takes a PRNG key. PyTorch's is implicit: a
global generator, reseeded by ``manual_seed``. torsh_fn offers both. Every random function takes
``key=`` (a JAX key; then no global state is touched) or ``generator=`` (a :class:`Generator`);
with neither it draws from :data:`default_generator`.

A generator's whole state is one small array (a raw threefry key), so ``torsh_fn.jit`` can pass
it into a compiled step and write the advanced state back, and a checkpoint can store it.

Example:
    >>> import torsh_fn
    >>> torsh_fn.manual_seed(0)
    >>> a = torsh_fn.randn(3)
    >>> torsh_fn.manual_seed(0)
    >>> bool((torsh_fn.randn(3) == a).all())
    True
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "Generator", "default_generator", "manual_seed", "seed", "initial_seed", "get_rng_state",
    "set_rng_state", "fork_rng", "next_key", "split_key",
]

_DEFAULT_SEED = 67280421310721  # PyTorch's default_generator starts from this seed too.


def _key_from_seed(seed: int) -> np.ndarray:
    if not isinstance(seed, int | np.integer) or isinstance(seed, bool):
        raise TypeError(f"manual_seed: expected an int seed, got {type(seed).__name__}")
    seed = int(seed) % (1 << 64)  # PyTorch accepts any int and reduces it the same way
    hi, lo = seed >> 32, seed & 0xFFFFFFFF
    # numpy, not jax: seeding must not start XLA's backend (import time, memory settings).
    return np.array([hi, lo], dtype=np.uint32)


class Generator:
    """A source of PRNG keys with PyTorch's ``torch.Generator`` interface.

    Its state is a raw threefry key of shape ``(2,)`` and dtype uint32; each draw splits it.

    Example:
        >>> g = Generator().manual_seed(42)
        >>> k = g.next_key()          # a fresh JAX key; g's state advanced
    """

    def __init__(self, device: Any = "cpu") -> None:
        self.device = device
        self._seed = _DEFAULT_SEED
        self._key = _key_from_seed(_DEFAULT_SEED)

    def manual_seed(self, seed: int) -> Generator:
        """Reset the state from ``seed``; returns ``self`` as in PyTorch."""
        self._key = _key_from_seed(seed)
        self._seed = int(seed)
        return self

    def seed(self) -> int:
        """Seed from a non-deterministic source and return the seed used."""
        new_seed = int(np.random.SeedSequence().generate_state(1, np.uint64)[0])
        self.manual_seed(new_seed)
        return new_seed

    def initial_seed(self) -> int:
        return self._seed

    def get_state(self) -> jax.Array | np.ndarray:
        """The state: a uint32 array of shape (2,) (numpy until the first draw, then JAX)."""
        return self._key

    def set_state(self, state: Any) -> Generator:
        state = jnp.asarray(state)
        if state.shape != (2,) or state.dtype != jnp.uint32:
            raise ValueError(
                f"Generator.set_state: expected a uint32 array of shape (2,), "
                f"got {state.dtype} {state.shape}"
            )
        self._key = state
        return self

    def next_key(self) -> jax.Array:
        """Return a fresh key and advance the state (works under tracing; see torsh_fn.jit)."""
        self._key, sub = jax.random.split(self._key)
        return sub

    def __repr__(self) -> str:
        return f"Generator(device={self.device!r}, initial_seed={self._seed})"


default_generator = Generator()


def manual_seed(seed: int) -> Generator:
    """Seed the global generator, as ``torch.manual_seed``; returns it."""
    return default_generator.manual_seed(seed)


def seed() -> int:
    """Seed the global generator non-deterministically and return the seed."""
    return default_generator.seed()


def initial_seed() -> int:
    return default_generator.initial_seed()


def get_rng_state() -> jax.Array:
    """The global generator's state (a uint32 array of shape (2,))."""
    return default_generator.get_state()


def set_rng_state(state: Any) -> None:
    default_generator.set_state(state)


@contextlib.contextmanager
def fork_rng(enabled: bool = True) -> Iterator[None]:
    """Restore the global generator's state on exit, as ``torch.random.fork_rng``."""
    if not enabled:
        yield
        return
    saved = default_generator.get_state()
    try:
        yield
    finally:
        default_generator.set_state(saved)


def next_key(key: jax.Array | None = None, generator: Generator | None = None) -> jax.Array:
    """The key a random function should use: ``key`` if given, else one drawn from a generator.

    Args:
        key: an explicit JAX PRNG key; when given, no global state is read or changed.
        generator: a :class:`Generator` to draw from; defaults to :data:`default_generator`.
    """
    if key is not None:
        if generator is not None:
            raise ValueError("pass either key= or generator=, not both")
        return key
    if generator is not None and not isinstance(generator, Generator):
        raise TypeError(f"generator: expected a torsh_fn Generator, got {type(generator).__name__}")
    return (generator or default_generator).next_key()


def split_key(key: jax.Array, num: int = 2) -> jax.Array:
    """``jax.random.split`` under a PyTorch-face name, for code that threads keys by hand."""
    return jax.random.split(key, num)
