"""Shared helpers of the tiled (matrix-unit) Pallas kernels: matmul and flash attention.

Tiled kernels address whole arrays from inside the kernel (``pl.ds`` windows with masked edges)
rather than through block specs, so one kernel serves arbitrary sizes. Everything backend- or
version-specific about them lives here (the Triton launch parameters are ``_pallas_common``'s,
shared with the row kernels): the in-kernel dot's precision, and index arithmetic that stays
int32 under ``jax_enable_x64``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from ._pallas_common import interpret_mode, next_power_of_2

SUPPORTED_DTYPES = (jnp.float32, jnp.bfloat16, jnp.float16)  # what the tiled kernels take


def tile_size(n: int, cap: int | None = None) -> int:
    """A tile edge for ``n`` elements: the next power of two, at least 16 (the matrix units'
    smallest operand), at most ``cap``."""
    size = max(16, next_power_of_2(n))
    return size if cap is None else min(cap, size)


def dot_precision(dtype) -> lax.DotAlgorithmPreset | lax.Precision | None:
    """The precision of an in-kernel ``plgpu.dot`` of ``dtype`` tiles (accumulating in float32).

    float32: three TF32 tensor-core products (``TF32_TF32_F32_X3``, float32-class accuracy) on
    the GPU and full float32 in interpret mode (the CPU has no TF32); 16-bit inputs: the tensor
    cores' own (None).
    """
    if jnp.dtype(dtype) != jnp.float32:
        return None
    return lax.Precision.HIGHEST if interpret_mode() else lax.DotAlgorithmPreset.TF32_TF32_F32_X3


def idiv(a, b) -> jax.Array:
    """Integer ``a // b`` of non-negative in-kernel indices, in int32."""
    return lax.div(jnp.asarray(a, jnp.int32), jnp.asarray(b, jnp.int32))


def irem(a, b) -> jax.Array:
    """Integer ``a % b`` of non-negative in-kernel indices, in int32."""
    return lax.rem(jnp.asarray(a, jnp.int32), jnp.asarray(b, jnp.int32))
