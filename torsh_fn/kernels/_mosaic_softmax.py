"""Row softmax forward on Pallas' Mosaic GPU backend (Hopper), beside the Triton kernel.

Not dispatched yet: ``softmax.py`` keeps using ``_pallas_softmax`` (Triton lowering) until a GPU
measurement shows this kernel faster (``benchmarks/mosaic_softmax.py`` measures it).

The kernel is a ``plgpu.kernel`` (JAX 0.11 lowers ``pallas_call`` only through Triton on GPUs):
a persistent grid of one-warpgroup (128-thread) CTAs, each walking a contiguous run of row blocks
through a software pipeline of ``stages`` shared-memory slots. Block ``s + stages`` is fetched by
TMA while blocks ``s .. s + stages - 1`` are in flight, and each result block goes back to global
memory by TMA while the next one is computed; nothing but the copies touches global memory.

Layout: a row of ``n`` elements is viewed as ``[n // lane, lane]`` (a free reshape), because a TMA
copy moves at most 256 elements along a dim; a block is ``[block_rows, n // lane, lane]``. Each row
is loaded into registers (``n / 128`` values a thread) and reduced over all its elements in
float32: ``softmax = exp(x - max) * (1 / sum)``. ``block_rows`` is always a divisor of the row
count, so no copy ever reaches past the array.

``interpret=True`` runs the same kernel in Pallas' Mosaic GPU interpreter on the CPU.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import mosaic_gpu as plgpu

from ._pallas_common import mosaic_gpu_interpret_params, sm_count

DTYPES = (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float32))
LANES = 128  # threads of a warpgroup: n must be a multiple
MAX_N = 8192  # n / 128 = 64 float32 values a thread per row
SMEM_BYTES = 227 * 1024  # shared memory a Hopper CTA may use


@dataclasses.dataclass(frozen=True)
class MosaicSoftmaxConfig:
    """Launch knobs.

    Attributes:
        block_rows: rows per pipeline slot; lowered to the largest divisor of the row count not
            above it whose slots fit the shared memory.
        stages: shared-memory slots of the pipeline (blocks in flight per CTA).
        ctas_per_sm: persistent CTAs per SM (the grid is ``min(blocks, SMs * ctas_per_sm)``).
        warpgroup_semantics: lower with Mosaic GPU's warpgroup semantics (layout inference)
            instead of lane semantics.
        approx_math: let Mosaic GPU use approximate ``exp``.
    """

    block_rows: int = 2
    stages: int = 2
    ctas_per_sm: int = 2
    warpgroup_semantics: bool = False
    approx_math: bool = False

    def __post_init__(self):
        for name in ("block_rows", "stages", "ctas_per_sm"):
            if getattr(self, name) < 1:
                raise ValueError(
                    f"MosaicSoftmaxConfig: {name} must be >= 1, got {getattr(self, name)}"
                )


def _check_input(x: jax.Array) -> None:
    if x.ndim != 2:
        raise ValueError(f"softmax_mosaic: x must be 2-D (rows, n), got shape {x.shape}")
    if x.dtype not in DTYPES:
        raise ValueError(f"softmax_mosaic: x must be bfloat16 or float32, got {x.dtype}")
    n = x.shape[1]
    if n % LANES or not LANES <= n <= MAX_N:
        raise ValueError(
            f"softmax_mosaic: x's rows must have a length that is a multiple of {LANES} and at"
            f" most {MAX_N}, got {n} (shape {x.shape}); use softmax_pallas for other lengths"
        )


def _lane(n: int) -> int:
    """The minor dim of a row's ``[n // lane, lane]`` view (TMA moves <= 256 along a dim)."""
    return 256 if n % 256 == 0 else 128


def _block_rows(config: MosaicSoftmaxConfig, rows: int, row_bytes: int) -> int:
    """The largest divisor of ``rows`` not above ``config.block_rows`` whose input and output
    slots fit the shared memory."""
    slot_bytes = 2 * config.stages * row_bytes  # one row's input and output, in every stage
    fits = min(config.block_rows, rows, SMEM_BYTES // slot_bytes)
    if fits < 1:
        raise ValueError(
            f"softmax_mosaic: {config.stages} stage(s) of rows of {row_bytes} bytes need"
            f" {slot_bytes} bytes of shared memory for one row's input and output slots, more"
            f" than the {SMEM_BYTES} a CTA has; use fewer stages"
        )
    return next(b for b in range(fits, 0, -1) if rows % b == 0)


def _kernel(x_gmem, o_gmem, x_smem, o_smem, loaded, *, block, stages, per_cta, num_blocks):
    # x_gmem, o_gmem: [rows, n // lane, lane]; x_smem, o_smem: [stages, block, n // lane, lane].
    first = lax.axis_index("cta") * per_cta
    count = jnp.minimum(per_cta, num_blocks - first)  # this CTA's blocks: first .. first+count-1

    def fetch(step, slot):
        rows = pl.ds((first + step) * block, block)
        plgpu.copy_gmem_to_smem(x_gmem.at[rows], x_smem.at[slot], loaded.at[slot])

    for step in range(stages):
        pl.when(step < count)(functools.partial(fetch, step, step))

    def body(step, carry):
        slot = lax.rem(step, stages)
        plgpu.barrier_wait(loaded.at[slot])
        plgpu.wait_smem_to_gmem(stages - 1, wait_read_only=True)  # o_smem[slot] is free again
        for r in range(block):
            x = x_smem[slot, r].astype(jnp.float32)  # [n // lane, lane]
            e = jnp.exp(x - jnp.max(x))
            o_smem[slot, r] = (e * (1.0 / jnp.sum(e))).astype(o_smem.dtype)  # one division a row
        plgpu.commit_smem()
        plgpu.copy_smem_to_gmem(o_smem.at[slot], o_gmem.at[pl.ds((first + step) * block, block)])
        pl.when(step + stages < count)(functools.partial(fetch, step + stages, slot))
        return carry

    lax.fori_loop(0, count, body, None)
    plgpu.wait_smem_to_gmem(0)


@functools.partial(jax.jit, static_argnames=("interpret", "config"))
def softmax_mosaic(
    x: jax.Array, interpret: bool, config: MosaicSoftmaxConfig = MosaicSoftmaxConfig()
) -> jax.Array:
    """Softmax of each row of ``x`` by the Mosaic GPU kernel (forward only).

    Args:
        x: ``[rows, n]`` bfloat16 or float32, ``n`` a multiple of 128 and at most 8192.
        interpret: run in Pallas' Mosaic GPU interpreter (the CPU) instead of compiling for the
            GPU.
        config: launch knobs (:class:`MosaicSoftmaxConfig`).

    Returns:
        ``[rows, n]`` of ``x``'s dtype; the arithmetic is float32.

    Raises:
        ValueError: for other ranks, dtypes or row lengths, or slots over the shared memory.

    Example:
        >>> softmax_mosaic(jnp.zeros((4, 256)), interpret=True)[0, :2]
        Array([0.00390625, 0.00390625], dtype=float32)
    """
    _check_input(x)
    rows, n = x.shape
    if rows == 0:
        return x
    lane = _lane(n)
    block = _block_rows(config, rows, n * x.dtype.itemsize)
    num_blocks = rows // block
    per_cta = pl.cdiv(num_blocks, min(num_blocks, sm_count() * config.ctas_per_sm))
    slot = plgpu.SMEM((config.stages, block, n // lane, lane), x.dtype)
    semantics = plgpu.LoweringSemantics
    params = plgpu.CompilerParams(
        approx_math=config.approx_math,
        lowering_semantics=semantics.Warpgroup if config.warpgroup_semantics else semantics.Lane,
    )
    call = plgpu.kernel(
        functools.partial(
            _kernel, block=block, stages=config.stages, per_cta=per_cta, num_blocks=num_blocks
        ),
        out_type=jax.ShapeDtypeStruct((rows, n // lane, lane), x.dtype),
        scratch_types=[slot, slot, plgpu.Barrier(num_barriers=config.stages)],
        grid=(pl.cdiv(num_blocks, per_cta),),
        grid_names=("cta",),
        compiler_params=params,
        interpret=mosaic_gpu_interpret_params() if interpret else None,
        kernel_name="softmax_fwd_mosaic",
    )
    return call(x.reshape(rows, n // lane, lane)).reshape(rows, n)


def softmax_mosaic_reference(x: jax.Array) -> jax.Array:
    """The same function in ``jax.numpy``: row softmax in float32, cast back to ``x``'s dtype."""
    return jax.nn.softmax(x.astype(jnp.float32), axis=-1).astype(x.dtype)
