"""The Mosaic kernels' shared helpers: swizzled shared memory in tiles of 8 rows by the swizzle's
bytes for each dtype, and ``load_whole`` lowered (on the CPU) and run (on a Hopper GPU) into a
register layout, against ``x + 1`` computed by ``jax.numpy``."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental.pallas import mosaic_gpu as plgpu

from torsh_fn.kernels._mosaic_common import SWIZZLE_BYTES, load_whole, swizzle_cols, swizzled_smem
from torsh_fn.kernels._pallas_common import on_hopper


@pytest.mark.parametrize("dtype, swizzle, cols", [(jnp.bfloat16, SWIZZLE_BYTES, 64),
                                                  (jnp.float16, 64, 32),
                                                  (jnp.float32, SWIZZLE_BYTES, 32),
                                                  (jnp.float32, 32, 8)])
def test_swizzled_smem_tiles_8_rows_by_the_swizzle_s_bytes(dtype, swizzle, cols):
    assert swizzle_cols(dtype, swizzle) == cols
    ref = swizzled_smem((3, 40, 96), dtype, swizzle)
    assert ref.shape == (3, 40, 96) and ref.dtype == dtype
    tiling, swizzling = ref.transforms
    assert isinstance(tiling, plgpu.TilingTransform) and tiling.tiling == (8, cols)
    assert isinstance(swizzling, plgpu.SwizzleTransform) and swizzling.swizzle == swizzle


def _plus_one(x):
    """``x + 1`` for a (256,) float32 ``x``: through shared memory, ``load_whole`` into the
    layout of a wgmma accumulator's row, and back."""
    def kernel(x_ref, out_ref, smem, done):
        plgpu.copy_gmem_to_smem(x_ref, smem, done)
        plgpu.barrier_wait(done)
        smem[...] = load_whole(smem, plgpu.Layout.WGMMA.reduce(0)) + 1.0
        plgpu.commit_smem()
        plgpu.copy_smem_to_gmem(smem, out_ref)
        plgpu.wait_smem_to_gmem(0)

    return plgpu.kernel(kernel, out_type=jax.ShapeDtypeStruct(x.shape, x.dtype),
                        scratch_types=[plgpu.SMEM(x.shape, x.dtype), plgpu.Barrier()])(x)


def test_load_whole_lowers():
    x = jax.ShapeDtypeStruct((256,), jnp.float32)
    assert "mosaic_gpu" in jax.jit(_plus_one).trace(x).lower(
        lowering_platforms=("cuda",)).as_text()


@pytest.mark.gpu
@pytest.mark.skipif(not on_hopper(), reason="needs a Hopper GPU (wgmma, TMA)")
def test_load_whole_reads_every_value(rng):
    x = jnp.asarray(rng.standard_normal(256), jnp.float32)
    np.testing.assert_array_equal(np.asarray(jax.jit(_plus_one)(x)), np.asarray(x + 1))
