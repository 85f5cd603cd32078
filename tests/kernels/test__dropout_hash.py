"""The in-kernel dropout hash: lowbias32 against a numpy oracle of its published steps, a
bijection that mixes every bit, and ``keeps``' rate."""

import jax.numpy as jnp
import numpy as np
import pytest

from torsh_fn.kernels._dropout_hash import keeps, mix32


def lowbias32(x: np.ndarray) -> np.ndarray:
    """Wellons' lowbias32 in numpy uint64 arithmetic, reduced mod 2**32 after each product."""
    x = x.astype(np.uint64)
    x ^= x >> np.uint64(16)
    x = (x * np.uint64(0x7FEB352D)) & np.uint64(0xFFFFFFFF)
    x ^= x >> np.uint64(15)
    x = (x * np.uint64(0x846CA68B)) & np.uint64(0xFFFFFFFF)
    x ^= x >> np.uint64(16)
    return x.astype(np.uint32)


def test_mix32_matches_lowbias32(rng):
    x = rng.integers(0, 2**32, 10_000, dtype=np.uint64).astype(np.uint32)
    got = np.asarray(mix32(jnp.asarray(x)))
    np.testing.assert_array_equal(got, lowbias32(x))


def test_mix32_is_a_bijection_that_mixes_every_bit(rng):
    """Distinct inputs give distinct outputs, and flipping any one input bit flips about half
    of the output bits."""
    x = rng.integers(0, 2**32, 4096, dtype=np.uint64).astype(np.uint32)
    x = np.unique(x)
    out = np.asarray(mix32(jnp.asarray(x)))
    assert len(np.unique(out)) == len(x)
    for bit in range(32):
        flipped = np.asarray(mix32(jnp.asarray(x ^ np.uint32(1 << bit))))
        changed = np.unpackbits((out ^ flipped).view(np.uint8)).mean()
        assert 0.45 < changed < 0.55, (bit, changed)


@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 0.9, 1 - 2**-40])
def test_keeps_one_minus_p_of_uniform_bits(rng, p):
    bits = jnp.asarray(rng.integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32))
    kept = np.asarray(keeps(bits, p))
    assert kept.dtype == np.bool_
    assert abs(kept.mean() - (1 - p)) < 0.005
    assert keeps(jnp.uint32(2**32 - 1), p)  # the largest hash is always kept when p < 1
