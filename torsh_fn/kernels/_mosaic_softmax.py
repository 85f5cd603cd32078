"""Row softmax forward on Pallas' Mosaic GPU lowering (Hopper), beside the Triton kernel.

Not dispatched yet: ``softmax.py`` keeps using ``_pallas_softmax`` (Triton lowering) until an H200
measurement shows this kernel faster (``benchmarks/mosaic_softmax.py`` measures it; it has not run
on a GPU yet).

A ``pallas_call`` selects the Mosaic GPU lowering by its ``compiler_params`` type
(``plgpu_mosaic.CompilerParams``); its grid's parallel dims become the CUDA grid of one-warpgroup
(128-thread) CTAs, and sequential dims are software-pipelined inside a CTA, each block moved
between global and shared memory by TMA. The kernel body uses only core Pallas ops (ref indexing,
``jnp``), so ``interpret=True`` runs it on the CPU through Pallas' generic interpreter.

Layout: a row of ``n`` elements is viewed as ``[n // lane, lane]`` (a free reshape), because a
TMA copy moves at most 256 elements along each dim; a block is ``[block_rows, n // lane, lane]``.
Each row is loaded into registers in the strided warpgroup layout (``n / 128`` values a thread)
and reduced over all its elements: ``softmax = exp(x - max) / sum``, float32 arithmetic.
Rows past the array's end in the last block are read as zeros by TMA and never written back.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import mosaic_gpu as plgpu_mosaic

DTYPES = (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float32))
LANES = 128  # threads of a warpgroup: n must be a multiple
MAX_N = 8192  # n / 128 = 64 float32 values a thread per row
SMEM_BYTES = 227 * 1024  # shared memory a Hopper CTA may use
AUTO_SMEM_BYTES = 64 * 1024  # auto block_rows: in + out blocks within this, so 3 CTAs fit an SM


@dataclasses.dataclass(frozen=True)
class MosaicSoftmaxConfig:
    """Launch knobs.

    Attributes:
        block_rows: rows per block (``None``: as many as fit ``AUTO_SMEM_BYTES``, at most 4).
        steps: row blocks each CTA walks through, pipelined (``max_concurrent_steps=2``) so the
            next block's TMA load overlaps this block's compute; 1 is one block a CTA. Lowered to
            the largest divisor of the block count not above it.
        warpgroup_semantics: lower with Mosaic GPU's warpgroup semantics (layout inference; the
            default from jax 0.11) instead of lane semantics (the default in jax 0.10).
        approx_math: let Mosaic GPU use approximate ``exp``.
    """

    block_rows: int | None = None
    steps: int = 1
    warpgroup_semantics: bool = False
    approx_math: bool = False

    def __post_init__(self):
        if self.block_rows is not None and self.block_rows < 1:
            raise ValueError(f"MosaicSoftmaxConfig: block_rows must be >= 1, got {self.block_rows}")
        if self.steps < 1:
            raise ValueError(f"MosaicSoftmaxConfig: steps must be >= 1, got {self.steps}")


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


def _block_rows(config: MosaicSoftmaxConfig, rows: int, row_bytes: int, stages: int) -> int:
    """Rows per block: the configured count, or the auto one, never more than ``rows``."""
    if config.block_rows is not None:
        block = config.block_rows
    else:
        block = max(1, min(4, AUTO_SMEM_BYTES // (2 * row_bytes * stages)))
    block = min(block, rows)
    smem = 2 * block * row_bytes * stages  # input and output blocks, per pipeline stage
    if smem > SMEM_BYTES:
        raise ValueError(
            f"softmax_mosaic: block_rows={block} x {stages} stage(s) of rows of {row_bytes} bytes"
            f" needs {smem} bytes of shared memory for its input and output blocks, more than"
            f" the {SMEM_BYTES} a CTA has; use fewer block_rows or steps=1"
        )
    return block


def _steps(config: MosaicSoftmaxConfig, num_blocks: int) -> int:
    """The largest divisor of ``num_blocks`` not above ``config.steps``."""
    return next(s for s in range(min(config.steps, num_blocks), 0, -1) if num_blocks % s == 0)


def _kernel(x_ref, o_ref, *, block_rows: int):
    # x_ref, o_ref: [block_rows, n // lane, lane]; one row at a time across the warpgroup.
    for r in range(block_rows):
        x = x_ref[r].astype(jnp.float32)  # [n // lane, lane], n / 128 values a thread
        e = jnp.exp(x - jnp.max(x))
        o_ref[r] = (e / jnp.sum(e)).astype(o_ref.dtype)


def _compiler_params(config: MosaicSoftmaxConfig, steps: int) -> plgpu_mosaic.CompilerParams:
    semantics = plgpu_mosaic.LoweringSemantics
    return plgpu_mosaic.CompilerParams(
        approx_math=config.approx_math,
        dimension_semantics=("parallel", "sequential"),
        max_concurrent_steps=min(steps, 2),
        lowering_semantics=semantics.Warpgroup if config.warpgroup_semantics else semantics.Lane,
    )


@functools.partial(jax.jit, static_argnames=("interpret", "config"))
def softmax_mosaic(
    x: jax.Array, interpret: bool, config: MosaicSoftmaxConfig = MosaicSoftmaxConfig()
) -> jax.Array:
    """Softmax of each row of ``x`` by the Mosaic GPU kernel (forward only).

    Args:
        x: ``[rows, n]`` bfloat16 or float32, ``n`` a multiple of 128 and at most 8192.
        interpret: run in Pallas' interpreter (the CPU) instead of compiling for the GPU.
        config: launch knobs (:class:`MosaicSoftmaxConfig`).

    Returns:
        ``[rows, n]`` of ``x``'s dtype; the arithmetic is float32.

    Raises:
        ValueError: for other ranks, dtypes or row lengths, or blocks over the shared memory.
    """
    _check_input(x)
    rows, n = x.shape
    if rows == 0:
        return x
    lane = _lane(n)
    stages = min(config.steps, 2)
    block = _block_rows(config, rows, n * x.dtype.itemsize, stages)
    num_blocks = pl.cdiv(rows, block)
    steps = _steps(config, num_blocks)
    spec = pl.BlockSpec((block, n // lane, lane), lambda i, j: (i * steps + j, 0, 0))
    out = pl.pallas_call(
        functools.partial(_kernel, block_rows=block),
        out_shape=jax.ShapeDtypeStruct((rows, n // lane, lane), x.dtype),
        grid=(num_blocks // steps, steps),
        in_specs=[spec],
        out_specs=spec,
        compiler_params=_compiler_params(config, steps),
        interpret=interpret,
        name="softmax_fwd_mosaic",
    )(x.reshape(rows, n // lane, lane))
    return out.reshape(rows, n)


def softmax_mosaic_reference(x: jax.Array) -> jax.Array:
    """The same function in ``jax.numpy``: row softmax in float32, cast back to ``x``'s dtype."""
    return jax.nn.softmax(x.astype(jnp.float32), axis=-1).astype(x.dtype)
