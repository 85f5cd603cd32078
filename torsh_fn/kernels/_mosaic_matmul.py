"""Matrix multiplication on Hopper through Mosaic GPU (``plgpu.kernel``: TMA, wgmma), with the
bias + activation epilogue of ``_pallas_matmul``.

    out[b] = act(op(a[b]) @ op(b[b]) + bias)        op: identity or transpose (static flags)

A CTA computes ``block_m x block_n`` tiles of the output: two compute warpgroups own
``block_m / 2`` rows each and accumulate in float32 with asynchronous wgmma, while a third
warpgroup only issues TMA copies of the ``block_k`` slices of A and B into a ring of ``stages``
shared-memory slots; a warpgroup frees a slot once the product after the one that read it has
been issued and the one that read it is done. The grid is persistent: one CTA per SM walks
tiles ``cta, cta + ctas, ...`` numbered in groups of ``group_m`` tile rows (neighbouring tiles
share A's and B's slices in L2), and the copy warpgroup loads the next tile's first slices while
the compute warpgroups run the last one's epilogue: bias and activation in registers, then the
result through two shared-memory buffers of ``epilogue_n`` columns per warpgroup and TMA stores.
With ``save_preact`` the same buffers also take the pre-activation (bias added, activation not
yet applied) in the inputs' dtype, slice by slice, for the activation's backward.

Edges: TMA fills what lies past an operand's end with zeros and clips stores to the output, so
the tiles need not divide M, N or K; but its copies of swizzled memory move whole tiles of 8 rows
by 128 bytes (64 16-bit values), so every stored 16-bit matrix (A, B as stored, the output) must
have a multiple of 8 rows and of 64 columns, what ``mosaic_matmul_can`` checks with the rest
(output in the inputs' dtype).

float32 runs as three TF32 products (``TF32_TF32_F32_X3``, as the Triton kernel: float32-class
accuracy, ~1e-6 relative): XLA splits each operand into its nearest TF32 value and the TF32
rest, lays them out K-major (the only layout TF32 wgmma reads) and side by side along K,
``[a_lo, a_hi, a_hi] @ [b_hi; b_lo; b_hi]``, padded to whole swizzle tiles (8 rows by 32
values), so float32 takes any shape; the kernel runs one TF32 product over 3K.

``_pallas_matmul`` launches it on Hopper GPUs for what it takes and its Triton kernel for the
rest (a 16-bit matrix off the tiles, an output in another dtype). Hopper GPUs only: on the CPU
the tests check the lowering.

On an H200 (bf16 8192^3, ``benchmarks/kernels.py --only matmul``): 746-756 TFLOP/s against
XLA's 732-785 in the same runs (the clocks moved between runs), 0.99x XLA's in interleaved
rounds at 8192^3 and 4096^3; the Triton kernel 635-652, JAX's own Mosaic matmul 714-777, PyTorch
757-795. With the bias and activation fused, 1.02-1.12x XLA's; the backward's products
0.94-1.01x (``benchmarks/results/kernels_matmul_attention_h200.md``, stop 31). float32 8192^3:
107 TFLOP/s against XLA's HIGHEST 42 in interleaved rounds (the Triton kernel 29, PyTorch 51 in
another run), 1.81x XLA's in the dispatch sweep's worse of forward and training step; XLA's
TF32_TF32_F32_X3 runs 111 with 20x the error (stop 33). bf16 bias + GELU saving the
pre-activation (a differentiated forward): 0.91-0.98x XLA's forward, where the Triton kernel
that saved it before ran 0.58-0.70x; a training step of it 0.94-0.97x XLA's (stop 34).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import mosaic_gpu as plgpu

from ._mosaic_common import load_whole, swizzle_cols, swizzled_smem
from ._pallas_common import sm_count
from .bias_act import _act

__all__ = ["DEFAULT_CONFIGS", "MosaicMatmulConfig", "mosaic_matmul", "mosaic_matmul_can"]

_TILE_ROWS = 8  # a TMA copy of swizzled memory moves whole tiles of 8 rows by SWIZZLE_BYTES
_DTYPES = tuple(jnp.dtype(t) for t in (jnp.bfloat16, jnp.float16, jnp.float32))


@dataclasses.dataclass(frozen=True)
class MosaicMatmulConfig:
    """Tiles of the kernel: ``block_m`` rows (``block_m / 2`` per compute warpgroup: 64 or
    128), ``block_n`` columns (a multiple of 64 up to 256), ``block_k`` per step (one 128-byte
    swizzle row: 64 16-bit values, 32 float32), ``stages`` slots in flight, ``group_m`` tile
    rows per group of the walk, ``epilogue_n`` columns per output store (whole swizzle rows),
    ``ctas`` persistent CTAs (None: one per SM), ``flush_steps``: add the tensor cores'
    accumulator into a float32 sum in registers every so many steps (None: never; see
    ``DEFAULT_CONFIGS``)."""

    block_m: int = 128
    block_n: int = 256
    block_k: int = 64
    stages: int = 4
    group_m: int = 8
    epilogue_n: int = 64
    ctas: int | None = None
    flush_steps: int | None = None


# float32: wgmma's float32 accumulator drops what falls below its last bit instead of rounding
# it, an error that grows with K (2.0e-5 of the largest output at 8192^3, as XLA's own
# TF32_TF32_F32_X3; XLA's HIGHEST 1.7e-6); summed into registers every 8 steps (256 of K),
# 7.0e-7 (every 4: 6.0e-7 but 0.94x as fast; every 16: 1.3e-6). The second sum costs
# registers: 128-column tiles (on an H200, 107 TFLOP/s; 114 without the sums).
DEFAULT_CONFIGS = {"bfloat16": MosaicMatmulConfig(), "float16": MosaicMatmulConfig(),
                   "float32": MosaicMatmulConfig(block_n=128, block_k=32, stages=5,
                                                 flush_steps=8)}


def _config_refusal(config: MosaicMatmulConfig, dtype) -> str | None:
    cols = swizzle_cols(dtype)
    if config.block_m not in (128, 256):
        return f"block_m must be 128 or 256 (two warpgroups of 64 or 128 rows), got " \
               f"{config.block_m}"
    if config.block_n % 64 or not 64 <= config.block_n <= 256:
        return f"block_n must be a multiple of 64 up to 256, got {config.block_n}"
    if config.block_k != cols:
        return f"block_k must be {cols} for {jnp.dtype(dtype)} (one 128-byte swizzle row), " \
               f"got {config.block_k}"
    if config.epilogue_n % cols or config.block_n % config.epilogue_n:
        return f"epilogue_n must be a multiple of {cols} dividing block_n, got " \
               f"{config.epilogue_n}"
    optional = (v for v in (config.ctas, config.flush_steps) if v is not None)
    if min(config.stages, config.group_m, *optional) < 1:
        return f"stages, group_m, ctas and flush_steps must be at least 1, got {config}"
    return None


def mosaic_matmul_can(a_shape, b_shape, dtype, out_dtype, *, trans_a: bool, trans_b: bool,
                      config: MosaicMatmulConfig | None = None) -> bool:
    """Whether ``mosaic_matmul`` takes these operands (it raises ``ValueError`` otherwise)."""
    return _refusal(a_shape, b_shape, dtype, out_dtype, trans_a, trans_b, config) is None


def _refusal(a_shape, b_shape, dtype, out_dtype, trans_a, trans_b, config) -> str | None:
    if jnp.dtype(dtype) not in _DTYPES:
        return f"dtype must be bfloat16, float16 or float32, got {jnp.dtype(dtype)}"
    if (why := _config_refusal(config or DEFAULT_CONFIGS[jnp.dtype(dtype).name], dtype)):
        return why
    if jnp.dtype(out_dtype) != jnp.dtype(dtype):
        return f"the output's dtype must be the inputs' ({jnp.dtype(dtype)}), got " \
               f"{jnp.dtype(out_dtype)}"
    if len(a_shape) != 3 or len(b_shape) != 3:
        return f"a and b must be 3-D (batch, rows, columns), got {a_shape} and {b_shape}"
    m, k = a_shape[1:][::-1] if trans_a else a_shape[1:]
    k_b, n = b_shape[1:][::-1] if trans_b else b_shape[1:]
    if k != k_b:
        return f"a {a_shape} and b {b_shape} do not share K (trans_a={trans_a}, " \
               f"trans_b={trans_b})"
    batch_a, batch_b = a_shape[0], b_shape[0]
    if min(m, n, k, batch_a, batch_b) == 0 or (batch_a != batch_b and 1 not in (batch_a,
                                                                                 batch_b)):
        return f"empty operands or batches that do not broadcast: {a_shape} and {b_shape}"
    if jnp.dtype(dtype) == jnp.float32:  # laid out anew, padded to whole tiles
        return None
    tile_rows, tile_cols = _TILE_ROWS, swizzle_cols(dtype)
    for name, (rows, cols) in (("a", a_shape[1:]), ("b", b_shape[1:]), ("the output", (m, n))):
        if rows % tile_rows or cols % tile_cols:
            return (f"{name}'s stored matrices must have a multiple of {tile_rows} rows and of "
                    f"{tile_cols} columns (TMA copies whole swizzle tiles), got {rows}x{cols}")
    return None


def _tile_origin(tile, *, grid_m: int, grid_n: int, group_m: int):
    """Tile number -> (batch, tile row, tile column): batches one after another, each walked
    in groups of ``group_m`` tile rows, column by column within a group."""
    per_batch = grid_m * grid_n
    batch, tile = tile // per_batch, lax.rem(tile, per_batch)
    width = group_m * grid_n
    first_m = tile // width * group_m
    rows = jnp.minimum(grid_m - first_m, group_m)
    in_group = lax.rem(tile, width)
    return batch, first_m + lax.rem(in_group, rows), in_group // rows


def _kernel(a_ref, b_ref, bias_ref, out_ref, preact_ref, a_smem, b_smem, out_smem, bias_smem,
            loaded, freed, bias_loaded, *, config: MosaicMatmulConfig, trans_a: bool,
            trans_b: bool, act: str | None, ctas: int):
    bm, bn, bk, stages = config.block_m, config.block_n, config.block_k, config.stages
    half_m, en = bm // 2, config.epilogue_n
    m = a_ref.shape[2] if trans_a else a_ref.shape[1]
    k = a_ref.shape[1] if trans_a else a_ref.shape[2]
    n = out_ref.shape[2]
    grid_m, grid_n, k_steps = pl.cdiv(m, bm), pl.cdiv(n, bn), pl.cdiv(k, bk)
    tiles = out_ref.shape[0] * grid_m * grid_n
    wg, cta = lax.axis_index("wg"), lax.axis_index("cta")
    origin = functools.partial(_tile_origin, grid_m=grid_m, grid_n=grid_n, group_m=config.group_m)

    def walk_tiles(one_tile):
        """``one_tile(i, batch, row0, col0)`` for this CTA's tiles, ``i`` counting them."""
        @pl.loop(0, pl.cdiv(tiles - cta, ctas))
        def _(i):
            batch, tile_m, tile_n = origin(cta + i * ctas)
            one_tile(i, batch, tile_m * bm, tile_n * bn)

    def operand_batch(ref, batch):
        return batch if ref.shape[0] > 1 else 0

    @pl.when(wg < 2)
    def _compute():
        plgpu.set_max_registers(232, action="increase")  # 2 x 232 + 40 per lane: the 64K file

        def tiles_with(acc):
            def one_tile(i, batch, row0, col0):
                if bias_ref is not None:  # arrives during the products
                    plgpu.copy_gmem_to_smem(bias_ref.at[pl.ds(col0, bn)], bias_smem.at[wg],
                                            bias_loaded.at[wg])
                first = i * k_steps  # the ring's steps taken by earlier tiles

                def products(start, count: int):
                    """The wgmma accumulator over steps ``start + [0, count)``."""
                    acc[...] = plgpu.layout_cast(jnp.zeros(acc.shape, jnp.float32),
                                                 plgpu.Layout.WGMMA)

                    @pl.loop(0, count)
                    def _(j):
                        slot = lax.rem(first + start + j, stages)
                        plgpu.barrier_wait(loaded.at[slot])
                        a = a_smem.at[slot, wg]
                        b = b_smem.at[slot]
                        plgpu.wgmma(acc, a.T if trans_a else a, b.T if trans_b else b)
                        plgpu.wgmma_wait(1)  # the step before is done: its slot is free

                        @pl.when(j > 0)
                        def _():
                            plgpu.barrier_arrive(freed.at[lax.rem(first + start + j - 1,
                                                                  stages)])

                    plgpu.wgmma_wait(0)
                    plgpu.barrier_arrive(freed.at[lax.rem(first + start + count - 1, stages)])
                    return acc[...]

                flush = config.flush_steps
                if flush is None or flush >= k_steps:
                    z = products(0, k_steps)
                else:  # partial sums of ``flush`` steps, added up outside the tensor cores
                    z = lax.fori_loop(0, k_steps // flush,
                                      lambda c, total: total + products(c * flush, flush),
                                      plgpu.layout_cast(jnp.zeros(acc.shape, jnp.float32),
                                                        plgpu.Layout.WGMMA))
                    if k_steps % flush:
                        z = z + products(k_steps - k_steps % flush, k_steps % flush)
                if bias_ref is not None:
                    plgpu.barrier_wait(bias_loaded.at[wg])
                    bias = load_whole(bias_smem.at[wg], plgpu.Layout.WGMMA.reduce(0))
                    z = z + lax.broadcast_in_dim(bias.astype(jnp.float32), z.shape, [1])
                row = row0 + wg * half_m
                stores = []  # (output, column, value): the slices of this tile, in order
                for col in range(0, bn, en):
                    z_slice = z[:, col:col + en]
                    if preact_ref is not None:
                        stores.append((preact_ref, col, z_slice))
                    stores.append((out_ref, col, z_slice if act is None else _act(z_slice, act)))
                for s, (ref, col, value) in enumerate(stores):
                    # two buffers, a store leaving one while the next fills the other; counted
                    # over the CTA's tiles, so that an odd count per tile alternates too
                    buffer = out_smem.at[wg, lax.rem(i * len(stores) + s, 2)]
                    plgpu.wait_smem_to_gmem(1, wait_read_only=True)
                    buffer[...] = value.astype(ref.dtype)
                    plgpu.commit_smem()
                    plgpu.copy_smem_to_gmem(
                        buffer, ref.at[batch, pl.ds(row, half_m), pl.ds(col0 + col, en)])

            walk_tiles(one_tile)

        pl.run_scoped(tiles_with, plgpu.ACC((half_m, bn), jnp.float32))
        plgpu.wait_smem_to_gmem(0)

    @pl.when(wg == 2)
    def _copy():
        plgpu.set_max_registers(40, action="decrease")

        def one_tile(i, batch, row0, col0):
            a_batch, b_batch = operand_batch(a_ref, batch), operand_batch(b_ref, batch)

            @pl.loop(0, k_steps)
            def _(step):
                ring_step = i * k_steps + step
                slot = lax.rem(ring_step, stages)

                @pl.when(ring_step >= stages)  # both compute warpgroups are done with the slot
                def _():
                    plgpu.barrier_wait(freed.at[slot])
                k0 = step * bk
                for w in range(2):  # each compute warpgroup's rows of A
                    rows = pl.ds(row0 + w * half_m, half_m)
                    a_tile = (a_ref.at[a_batch, pl.ds(k0, bk), rows] if trans_a
                              else a_ref.at[a_batch, rows, pl.ds(k0, bk)])
                    plgpu.copy_gmem_to_smem(a_tile, a_smem.at[slot, w], loaded.at[slot])
                b_tile = (b_ref.at[b_batch, pl.ds(col0, bn), pl.ds(k0, bk)] if trans_b
                          else b_ref.at[b_batch, pl.ds(k0, bk), pl.ds(col0, bn)])
                plgpu.copy_gmem_to_smem(b_tile, b_smem.at[slot], loaded.at[slot])

        walk_tiles(one_tile)


def _nearest_tf32(x: jax.Array) -> jax.Array:
    """float32 rounded to the nearest TF32 value (10 mantissa bits; ties away from zero);
    what would round past float32's largest value is truncated instead, inf and NaN kept."""
    bits = lax.bitcast_convert_type(x, jnp.uint32)
    keep = jnp.uint32(0xFFFFE000)
    nearest = lax.bitcast_convert_type((bits + jnp.uint32(0x1000)) & keep, jnp.float32)
    truncated = lax.bitcast_convert_type(bits & keep, jnp.float32)
    return jnp.where(jnp.isfinite(x), jnp.where(jnp.isfinite(nearest), nearest, truncated), x)


def _tf32_halves(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(hi, lo)``: ``hi`` the nearest TF32 value of ``x``, ``lo`` the nearest to the rest
    (zero where ``x`` is not finite, which ``hi`` carries)."""
    hi = _nearest_tf32(x)
    return hi, _nearest_tf32(jnp.where(jnp.isfinite(x), x - hi, 0.0))


def _pad_to(x: jax.Array, rows: int, cols: int) -> jax.Array:
    """``x`` (batch, R, C) padded with zeros to multiples of ``rows`` and ``cols``."""
    return jnp.pad(x, [(0, 0), (0, -x.shape[1] % rows), (0, -x.shape[2] % cols)])


def _three_tf32_products(a, b, bias, trans_a, trans_b, act, config):
    """float32 ``act(op(a) @ op(b) + bias)`` as one TF32 product over 3K of K-major operands."""
    a = jnp.swapaxes(a, 1, 2) if trans_a else a  # (Ba, M, K)
    b = b if trans_b else jnp.swapaxes(b, 1, 2)  # (Bb, N, K): TF32 wgmma reads K-major only
    m, n = a.shape[1], b.shape[1]
    (a_hi, a_lo), (b_hi, b_lo) = _tf32_halves(a), _tf32_halves(b)
    cols = swizzle_cols(jnp.float32)
    # the small products first: they are added to the accumulator before the large one
    a3 = _pad_to(jnp.concatenate([a_lo, a_hi, a_hi], axis=2), _TILE_ROWS, cols)
    b3 = _pad_to(jnp.concatenate([b_hi, b_lo, b_hi], axis=2), cols, cols)  # N: output columns
    if bias is not None:
        bias = jnp.pad(bias, (0, b3.shape[1] - n))
    out = _kernel_call(a3, b3, bias, trans_a=False, trans_b=True, act=act, config=config)
    return out[:, :m, :n]


def _kernel_call(a, b, bias, *, trans_a, trans_b, act, config, save_preact=False):
    """The kernel's launch: its output, or (output, pre-activation) with ``save_preact``."""
    m = a.shape[2] if trans_a else a.shape[1]
    n = b.shape[1] if trans_b else b.shape[2]
    batch = max(a.shape[0], b.shape[0])
    bm, bn, bk, stages = config.block_m, config.block_n, config.block_k, config.stages
    tiles = batch * pl.cdiv(m, bm) * pl.cdiv(n, bn)
    ctas = min(config.ctas or sm_count(), tiles)
    half_m = bm // 2
    body = functools.partial(_kernel, config=config, trans_a=trans_a, trans_b=trans_b, act=act,
                             ctas=ctas)

    def entry(a_ref, b_ref, *refs):
        bias_ref, *refs = refs if bias is not None else (None, *refs)
        out_ref, preact_ref = refs if save_preact else (*refs, None)
        pl.run_scoped(
            lambda *scratch: body(a_ref, b_ref, bias_ref, out_ref, preact_ref, *scratch),
            swizzled_smem((stages, 2, *((bk, half_m) if trans_a else (half_m, bk))), a.dtype),
            swizzled_smem((stages, *((bn, bk) if trans_b else (bk, bn))), a.dtype),
            swizzled_smem((2, 2, half_m, config.epilogue_n), a.dtype),
            plgpu.SMEM((2, bn), a.dtype) if bias is not None else None,
            plgpu.Barrier(num_arrivals=3, num_barriers=stages),  # A's two halves and B
            plgpu.Barrier(num_arrivals=2, num_barriers=stages),  # both compute warpgroups
            plgpu.Barrier(num_barriers=2) if bias is not None else None,
            collective_axes="wg",
        )

    out_type = jax.ShapeDtypeStruct((batch, m, n), a.dtype)
    return plgpu.kernel(
        entry,
        out_type=(out_type, out_type) if save_preact else out_type,
        grid=(ctas,),
        grid_names=("cta",),
        num_threads=3,
        thread_name="wg",
        kernel_name=f"matmul_{act}_mosaic" if act else "matmul_mosaic",
    )(a, b, *([bias] if bias is not None else []))


@functools.partial(jax.jit,
                   static_argnames=("trans_a", "trans_b", "act", "config", "save_preact"))
def mosaic_matmul(a: jax.Array, b: jax.Array, bias: jax.Array | None = None, *,
                  trans_a: bool = False, trans_b: bool = False, act: str | None = None,
                  config: MosaicMatmulConfig | None = None,
                  save_preact: bool = False) -> jax.Array | tuple[jax.Array, jax.Array]:
    """``act(op(a) @ op(b) + bias)`` per batch entry, (batch, M, N) in the inputs' dtype.

    Args:
        a: (Ba, M, K), or (Ba, K, M) with ``trans_a``; b: (Bb, K, N), or (Bb, N, K) with
            ``trans_b``; Ba and Bb equal or 1 (one matrix for every entry); bfloat16, float16
            or float32 (three TF32 products).
        bias: (N,) in their dtype, or None; act: as ``bias_act`` names them, or None.
        config: tiles (None: ``DEFAULT_CONFIGS`` for the dtype).
        save_preact: also return the pre-activation ``op(a) @ op(b) + bias`` in the inputs'
            dtype, what the activation's backward reads (the output rounded from float32
            before the activation, as PyTorch's Linear and activation in that dtype save it).

    Returns:
        The output, or ``(output, pre-activation)`` with ``save_preact``.

    Raises:
        ValueError: for operands that ``mosaic_matmul_can`` refuses.

    Example (on a Hopper GPU):
        >>> a = jnp.ones((1, 320, 64), jnp.bfloat16)
        >>> mosaic_matmul(a, a, trans_b=True).shape  # a @ a.T
        (1, 320, 320)
    """
    why = _refusal(a.shape, b.shape, a.dtype, a.dtype, trans_a, trans_b, config)
    n = b.shape[1] if trans_b else b.shape[2]
    if why is None and b.dtype != a.dtype:
        why = f"a and b must share their dtype, got {a.dtype} and {b.dtype}"
    if why is None and bias is not None and (bias.shape != (n,) or bias.dtype != a.dtype):
        why = f"bias must be ({n},) {a.dtype}, got {bias.shape} {bias.dtype}"
    if why is not None:
        raise ValueError(f"mosaic_matmul: {why}")
    config = config or DEFAULT_CONFIGS[jnp.dtype(a.dtype).name]
    if a.dtype == jnp.float32:
        if save_preact:  # the kernel's output is the pre-activation
            preact = _three_tf32_products(a, b, bias, trans_a, trans_b, None, config)
            return (preact if act is None else _act(preact, act)), preact
        return _three_tf32_products(a, b, bias, trans_a, trans_b, act, config)
    call = functools.partial(_kernel_call, a, b, bias, trans_a=trans_a, trans_b=trans_b,
                             act=act, config=config)
    if save_preact and act is None:  # the output is its own pre-activation
        out = call()
        return out, out
    return call(save_preact=save_preact)
