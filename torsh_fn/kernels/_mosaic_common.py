"""Helpers shared by the Mosaic GPU kernels (``_mosaic_*``): swizzled shared memory, what
wgmma and TMA read and write, and whole-ref loads into a register layout across jax versions.
"""

from __future__ import annotations

import inspect

import jax.numpy as jnp
from jax.experimental.pallas import mosaic_gpu as plgpu

__all__ = ["SWIZZLE_BYTES", "load_whole", "swizzle_cols", "swizzled_smem"]

SWIZZLE_BYTES = 128
_LOAD_NEEDS_INDEX = inspect.signature(plgpu.load).parameters["idx"].default is (
    inspect.Parameter.empty)


def swizzle_cols(dtype, swizzle: int = SWIZZLE_BYTES) -> int:
    """Values of ``dtype`` in one swizzle row of ``swizzle`` bytes (64 bf16 or 32 float32 in
    128 bytes): a swizzled tile's columns."""
    return swizzle // jnp.dtype(dtype).itemsize


def swizzled_smem(shape, dtype, swizzle: int = SWIZZLE_BYTES):
    """Shared memory in tiles of 8 rows by ``swizzle`` bytes, swizzled (what wgmma reads)."""
    tiling = plgpu.TilingTransform((8, swizzle_cols(dtype, swizzle)))
    return plgpu.SMEM(shape, dtype, transforms=(tiling, plgpu.SwizzleTransform(swizzle)))


def load_whole(ref, layout, optimized: bool = True):
    """The whole of ``ref`` into registers in ``layout`` (jax 0.10 needs the index ``()``;
    0.11 warns when given one); ``optimized=False`` for a ``ref`` in global memory (the
    optimized transfers read shared memory only)."""
    if _LOAD_NEEDS_INDEX:
        return plgpu.load(ref, (), layout=layout, optimized=optimized)
    return plgpu.load(ref, layout=layout, optimized=optimized)
