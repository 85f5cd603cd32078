"""``_pallas_tiles``: the tiled kernels' in-kernel dot precision and int32 index arithmetic."""

import jax
import jax.numpy as jnp
import numpy as np

from torsh_fn.kernels import _pallas_tiles as tiles
from torsh_fn.kernels._pallas_common import interpret_mode


def test_dot_precision_is_float32_class_for_float32_and_native_for_16_bit():
    assert tiles.dot_precision(jnp.bfloat16) is None
    assert tiles.dot_precision(jnp.float16) is None
    want = (jax.lax.Precision.HIGHEST if interpret_mode()
            else jax.lax.DotAlgorithmPreset.TF32_TF32_F32_X3)
    assert tiles.dot_precision(jnp.float32) == want


def test_integer_division_and_remainder_stay_int32():
    a = np.array([0, 7, 64, 1000], np.int64)
    q, r = tiles.idiv(a, 8), tiles.irem(a, 8)
    assert q.dtype == r.dtype == jnp.int32
    np.testing.assert_array_equal(q, a // 8)
    np.testing.assert_array_equal(r, a % 8)
    assert int(tiles.idiv(jnp.int32(17), 5)) == 3 and int(tiles.irem(jnp.int32(17), 5)) == 2


def test_tile_size_is_a_power_of_two_of_at_least_16_under_the_cap():
    assert [tiles.tile_size(n) for n in (1, 16, 17, 100, 128)] == [16, 16, 32, 128, 128]
    assert tiles.tile_size(1000, 256) == 256 and tiles.tile_size(40, 256) == 64
    assert jnp.bfloat16 in tiles.SUPPORTED_DTYPES and jnp.float64 not in tiles.SUPPORTED_DTYPES
