"""Flash attention backward on Hopper through Mosaic GPU (``plgpu.kernel``: TMA, wgmma), in one
kernel: FlashAttention-3's, with ``dQ`` added into a float32 buffer by TMA reductions.

A key tile is ``2 * block_kv`` keys of one (batch, key/value head): two compute warpgroups own
``block_kv`` keys each (their rows of K and V, their dK and dV accumulators), and walk the query
tiles of ``block_q`` rows of every query head that shares the key/value head; a third warpgroup
only issues TMA copies: the tile's keys and values, then those query tiles (Q, dO, the rows'
logsumexp and delta) into ``stages`` shared-memory slots. With ``c = scale * log2(e)`` and the
forward's base-2 logsumexp, per query tile each warpgroup computes, transposed so that its keys
are the rows:

    Pᵀ = exp2(c K Qᵀ - lse),   dSᵀ = Pᵀ * (V dOᵀ - delta),   dV += Pᵀ dO,   dK += dSᵀ Q

then both write dSᵀ to shared memory, and each computes half of the head dim of
``dQ = dS K`` over the tile's keys and adds it to the float32 ``dQ`` in global memory with a TMA
reduction. The scale of dK and dQ is applied once at the end. The CTAs' reductions into one
query tile land in any order, so dQ may differ between runs in its last bits (dK and dV do not).

The grid is persistent: one CTA per SM walks the key tiles that ``tile_table`` deals it (heads
first, then key tiles first to last, the longest causal ones first, then batches; each tile to the
CTA with the least work so far, as the hardware deals a grid of one tile per CTA). The copy
warpgroup loads a tile's keys and values as soon as both compute warpgroups are done with the last
tile's that took steps, then its query tiles as slots free up, while the compute warpgroups write
the last tile's dK and dV out through the memory of dSᵀ and dQ. On an H200 (B4 S4096 H16 D128 bf16,
in interleaved rounds against the grid of one tile per CTA): 1.03x causal (1.032x and 1.028x in
two blocks of rounds), 0.99-1.00x without the mask. Where the compute warpgroups wait for the
last dK and dV to be out matters: at a tile's start (no check in the loop) 1.00-1.01x causal, in
the first step (a check in every step) 0.97-0.99x without the mask; so causal waits in its
first step, whose check only the masked steps carry, and without the mask at the tile's start.
dK and dV through a buffer of their own ran 1.03-1.04x causal but 0.97-0.98x without the mask,
as did the grid of one tile per CTA with 32 KiB of shared memory more (less left to L1), and
the first step taken out of the loop 0.89x causal, 0.95x without the mask.

A key bias of one row for every head (a bool key padding mask, ``key_bias_rows``) is loaded once per
key tile, each warpgroup its keys' rows, and starts Sᵀ's accumulator (with the causal mask's -inf
where it applies), so a step costs what it costs without it; a key tile whose keys it hides wholly
(a key padding mask's padding) takes no steps and loads no keys or values (only its 128 floats of
bias): its dK and dV are zeros, and it adds nothing to dQ. On an H200 (B4 H16 D128 bf16, a key
padding mask, forward and backward by the Mosaic kernels, dense TFLOP/s): 577 at S4096 and 471
causal, against 399 and 319 by the Triton kernels and PyTorch SDPA's 365 and 287; skipping the
hidden key tiles (batch rows keeping S, 3S/4, S/2 and S/4 keys): 794 and 543, PyTorch's 368 and 294
in the same run.

Dropout: each step draws the forward's pattern again for Pᵀ (each warpgroup's keys hashed once
per key tile, the step's queries once per step; ``_dropout_hash.attention_keeps``): dV takes
the weights kept, ``dSᵀ = Pᵀ * (dPᵀ where kept - (1 - p) delta)``, and dropout's 1 / (1 - p)
scales dK, dV and dQ once at the end (delta comes in times 1 - p). On an H200 (causal B4 S4096
H16 D128 bf16, dropout 0.1, forward and backward by the Mosaic kernels): 332 TFLOP/s, against
the Triton kernels' 228 and PyTorch SDPA's 346.

Inputs as ``_mosaic_attention``'s (B, H, L, D) queries and (B, Hk, S, D) keys and values,
bfloat16 or float16, D 64 or 128, ``L`` a multiple of ``block_q``, ``S`` of ``2 * block_kv``;
causal only with L == S (``mosaic_attention_bwd_can``). Hopper GPUs only; on the CPU the tests
check the lowering (the Mosaic GPU interpreter has no stores into wgmma accumulators).

On an H200 (B4 S4096 H16 D128 bf16, the backward alone with the XLA work around the kernel,
in the 2.5x-forward FLOPs of ``benchmarks/kernels.py``; ``benchmarks/attention_schedules.py
--backward``, two runs, with one CTA per tile): 456-462 TFLOP/s causal, 1.03-1.05x PyTorch's
(cuDNN's kernels, without XLA's clearing of their outputs) and 1.10-1.11x cuDNN's through JAX in
the same rounds; 497-502 without the mask, 0.98-1.00x PyTorch's and 1.03-1.04x cuDNN's through
JAX. Forward and backward with the persistent grids (``benchmarks/kernels.py --only attention``,
one run): 516 TFLOP/s causal, PyTorch 501, cuDNN through JAX 451.

Each step slices K's and V's rows through a zero that LLVM cannot fold, so that their wgmma
descriptors are computed in the step. Without it, LLVM hoisted the 24 loop-invariant
descriptors (48 registers) out of the loop, ptxas spilled (264 bytes stored, 468 loaded,
causal), these among them, and every step reloaded them from local memory (21 local loads per
warp per step causal, 20 without the mask, in Nsight Compute's SASS counts). With it the kernel
is 1.06x faster causal and 1.14x without the mask in interleaved rounds, and ptxas spills 4
bytes causal, none without the mask (60 and 64 bytes causal in two of the persistent grid's
variants, which hold the tile's numbers in registers). Each step also computes dSᵀ before it
issues dV's product: issued first, that product held Pᵀ's 16-bit registers while dSᵀ was
computed, and the kernel ran 0.87-0.90x as fast as with dSᵀ first. The causal mask is -inf in
Sᵀ's accumulator before its product. Measured slower and dropped
(``benchmarks/results/kernels_matmul_attention_h200.md``):

- against the kernel with the descriptors per step, in the same runs: FlashAttention-3's order
  of dQ's product before dK's (0.84x causal, 0.93x without the mask), three query slots (0.99x,
  0.98x);
- earlier, against the kernel of the time, in TFLOP/s causal (it ran 393-404): issuing the
  next step's two products before this step's dQ completes (188-204; ptxas then serializes the
  wgmmas, C7511), three query slots (287-309), dS from the 16-bit probabilities (389), dK's dSᵀ
  read from shared memory (346-370), each warpgroup adding up dQ over its own keys (307);
- earlier, against the kernel of the same run, causal: a second dQ buffer (0.87x), other grid
  orders (0.96-0.98x), the logsumexp and delta as the accumulators' starting values
  (0.94-0.98x), one loop for masked and unmasked tiles (0.76x), the loop unrolled by two for
  static query slots (0.55x).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import mosaic_gpu as plgpu

from ._dropout_hash import attention_keeps, key_bits, query_bits
from ._mosaic_attention import bias_index, check_dropout, check_operands, shape_refusal
from ._mosaic_common import load_whole, swizzled_smem
from ._pallas_common import sm_count
from ._persistent_grid import tile_table, walk_dealt_tiles

__all__ = ["MosaicAttentionBwdConfig", "mosaic_attention_bwd", "mosaic_attention_bwd_can"]

_LOG2E = math.log2(math.e)
@dataclasses.dataclass(frozen=True)
class MosaicAttentionBwdConfig:
    """Tiles of the backward: ``block_kv`` keys per compute warpgroup (two per CTA),
    ``block_q`` query rows per step, ``stages`` query tiles in flight; ``ctas``: CTAs in the
    persistent grid, None for one per SM (at most one per tile)."""

    block_q: int = 64
    block_kv: int = 64
    stages: int = 2
    ctas: int | None = None


def mosaic_attention_bwd_can(q_shape, k_shape, dtype, is_causal: bool,
                             config: MosaicAttentionBwdConfig = MosaicAttentionBwdConfig()
                             ) -> bool:
    """Whether ``mosaic_attention_bwd`` takes these shapes (it raises ``ValueError``
    otherwise)."""
    return _refusal(q_shape, k_shape, dtype, is_causal, config) is None


def _refusal(q_shape, k_shape, dtype, is_causal, config) -> str | None:
    if config.block_q % 64 or config.block_kv % 64 or config.stages < 1:
        return (f"config needs block_q and block_kv multiples of 64 (wgmma rows) and stages "
                f">= 1, got {config}")
    if config.ctas is not None and config.ctas < 1:
        return f"ctas must be None or at least 1, got {config.ctas}"
    return shape_refusal(q_shape, k_shape, dtype, is_causal, config.block_q, 2 * config.block_kv)


def _query_tiles(kv_tile, *, causal: bool, block_q: int, block_kv: int, q_tiles: int):
    """The query tiles of one head that key tile ``kv_tile`` (``2 * block_kv`` keys) meets:
    causal, those from the first whose rows reach its keys; else all ``q_tiles``. On ints for
    ``tile_table``, on traced ints in the kernel."""
    return q_tiles - kv_tile * 2 * block_kv // block_q if causal else q_tiles


def _shown_key_tiles(key_bias: jax.Array, tile: int) -> jax.Array:
    """(Bm, S / tile) int32: 1 for the key tiles of ``tile`` keys that ``key_bias``
    (Bm, 1, S) shows a key of, 0 for those it hides wholly (their gradients are zeros: the
    kernel loads none of their keys or values and takes no steps for them, so a key padding
    mask's padding costs next to nothing)."""
    tiles = key_bias.reshape(key_bias.shape[0], -1, tile)
    return jnp.any(tiles > -jnp.inf, axis=2).astype(jnp.int32)


def _kernel(q_ref, k_ref, v_ref, do_ref, lse_ref, delta_ref, tiles_ref, bias_ref, shown_ref,
            seeds_ref, dq_ref, dk_ref, dv_ref,
            k_smem, v_smem, q_smem, do_smem, lse_smem, delta_smem, ds_smem, dq_smem, dk_smem,
            dv_smem, k_ready, v_ready, kv_free, staged, q_ready, do_ready, lse_ready, delta_ready,
            free, ds_ready, *, config, scale, causal, heads_per_kv, dropout_p):
    block_q, block_kv, stages = config.block_q, config.block_kv, config.stages
    q_tiles = q_ref.shape[2] // block_q
    kv_heads, kv_tiles = k_ref.shape[1], k_ref.shape[2] // (2 * block_kv)
    query_tiles_of = functools.partial(_query_tiles, causal=causal, block_q=block_q,
                                       block_kv=block_kv, q_tiles=q_tiles)
    wg = lax.axis_index("wg")
    kept = 1.0 / (1.0 - dropout_p)  # dropout's rescaling of the weights it keeps

    def if_shown(steps):
        """Runs a tile's work on its keys where it has steps (``pl.when``): with a key bias, a
        tile it hides wholly has none; without one, every tile has some (no check)."""
        return (lambda work: work()) if shown_ref is None else pl.when(steps > 0)

    def walk_tiles(one_tile):
        """``one_tile(batch, kv_head, kv_tile, first_step, steps, query_tile)`` for each of
        this CTA's key tiles: ``first_step``: the query ring's steps taken by earlier tiles;
        ``steps``: this tile's, a query tile each, the same number of each query head's (none
        for a tile whose keys the key bias hides wholly); ``query_tile(step)``: (query head,
        first query row) of each step."""

        def tile(batch, kv_head, kv_tile, first_step):
            per_head = query_tiles_of(kv_tile)
            first = q_tiles - per_head  # causal: earlier queries see none of these keys

            def query_tile(step):
                head = kv_head * heads_per_kv + step // per_head
                return head, (first + lax.rem(step, per_head)) * block_q

            steps = heads_per_kv * per_head
            if shown_ref is not None:
                steps *= shown_ref[batch if shown_ref.shape[0] > 1 else 0, kv_tile]
            one_tile(batch, kv_head, kv_tile, first_step, steps, query_tile)
            return first_step + steps

        walk_dealt_tiles(tiles_ref, kv_heads, kv_tiles, tile)

    @pl.when(wg < 2)
    def _compute():
        plgpu.set_max_registers(240, action="increase")  # 2 x 240 + 24: the 64K file
        head_dim = q_ref.shape[-1]
        half = head_dim // 2
        my_keys = pl.ds(wg * block_kv, block_kv)
        c = scale * _LOG2E
        layout = plgpu.Layout.WGMMA
        per_query = layout.reduce(0)  # a (block_q,) row statistic broadcast down the keys

        def zeros(shape):
            return plgpu.layout_cast(jnp.zeros(shape, jnp.float32), layout)

        def body(acc_dk, acc_dv, acc_s, acc_dp, acc_dq):
            def one_tile(batch, kv_head, kv_tile, first_step, steps, query_tile):
                tile_k0 = kv_tile * 2 * block_kv
                k0 = tile_k0 + wg * block_kv
                per_head = steps // heads_per_kv
                first_q0 = query_tile(0)[1]
                # causal: the query tiles from the first that start before the keys end
                masked_tiles = pl.cdiv(tile_k0 + 2 * block_kv - first_q0, block_q)

                def last_gradients_out():
                    """Waits until both warpgroups' copies of the last tile's dK and dV have
                    read them, before dSᵀ and dQ overwrite the memory they share: causal, in
                    the tile's first step (a masked one), else at the tile's start (the
                    module's docstring says why)."""
                    plgpu.wait_smem_to_gmem(0, wait_read_only=True)
                    plgpu.barrier_arrive(staged)
                    plgpu.barrier_wait(staged)

                if bias_ref is None:
                    def start(shape):
                        return zeros(shape)
                else:  # this warpgroup's keys' bias, in the accumulator's units (times c, the
                    # base-2 bias): the keys are Sᵀ's rows
                    bias = load_whole(bias_ref.at[(*bias_index(bias_ref, batch, 0),
                                                   pl.ds(k0, block_kv))],
                                      layout.reduce(1), optimized=False) * (1.0 / c)

                    def start(shape):
                        return lax.broadcast_in_dim(bias, shape, [0])

                if seeds_ref is not None:  # dropout: this warpgroup's keys hashed once a tile
                    keys = plgpu.broadcasted_iota(jnp.int32, (block_kv,), 0,
                                                  layout=layout.reduce(1))
                    keys = lax.broadcast_in_dim(key_bits(keys + k0), acc_s.shape, [0])

                def keep_of(head, q0):
                    """Dropout's pattern of Pᵀ (keys by queries), or None without dropout."""
                    if seeds_ref is None:
                        return None
                    rows = plgpu.broadcasted_iota(jnp.int32, (block_q,), 0, layout=per_query)
                    queries = query_bits(seeds_ref[batch, head], rows + q0)
                    return attention_keeps(lax.broadcast_in_dim(queries, keys.shape, [1]), keys,
                                           dropout_p)

                def masked_scores(shape, q0):
                    """Sᵀ's accumulator before its product: 0 (or the key bias), or -inf where a
                    query precedes a key (so that its probability comes out 0)."""
                    keys = plgpu.broadcasted_iota(jnp.int32, shape, 0, layout=layout) + k0
                    queries = plgpu.broadcasted_iota(jnp.int32, shape, 1, layout=layout) + q0
                    return jnp.where(queries >= keys, start(shape), -jnp.inf)

                def step(t, _, mask):
                    ring_step = first_step + t
                    slot, buf = lax.rem(ring_step, stages), lax.rem(ring_step, 2)
                    head, q0 = query_tile(t)
                    q, d_o = q_smem.at[slot], do_smem.at[slot]
                    # K's and V's rows through a zero that LLVM cannot fold, so that their wgmma
                    # descriptors are computed here, not hoisted out of the loop and spilled (see
                    # the module's docstring); times 2 * block_kv so that the layout inference
                    # still sees the slices' alignment
                    zero = lax.optimization_barrier(jnp.int32(0)) * (2 * block_kv)
                    kv_rows = pl.ds(wg * block_kv + zero, block_kv)
                    acc_s[...] = masked_scores(acc_s.shape, q0) if mask else start(acc_s.shape)
                    acc_dp[...] = zeros(acc_dp.shape)
                    plgpu.barrier_wait(q_ready.at[slot])
                    plgpu.wgmma(acc_s, k_smem.at[kv_rows], q.T)  # Sᵀ = K Qᵀ
                    plgpu.barrier_wait(do_ready.at[slot])
                    plgpu.wgmma(acc_dp, v_smem.at[kv_rows], d_o.T)  # dPᵀ = V dOᵀ
                    plgpu.barrier_wait(lse_ready.at[slot])
                    lse = load_whole(lse_smem.at[slot], per_query)
                    s = plgpu.wgmma_accumulator_load(acc_s, wait_n=1)  # dPᵀ may still run
                    p = jnp.exp2(s * c - lax.broadcast_in_dim(lse, s.shape, [1]))
                    plgpu.barrier_wait(delta_ready.at[slot])
                    delta = load_whole(delta_smem.at[slot], per_query)
                    dp = plgpu.wgmma_accumulator_load(acc_dp)
                    # dSᵀ before dV's product: issued first, that product pins Pᵀ's 16-bit
                    # registers while dSᵀ is computed, and ptxas spills in the loop
                    keep = keep_of(head, q0)
                    if keep is not None:  # the weights dropout kept, and their dP (the scale
                        # 1 / (1 - p) of both applied at the end; delta came in times 1 - p)
                        p_16 = jnp.where(keep, p, 0.0).astype(q.dtype)
                        dp = jnp.where(keep, dp, 0.0)
                    else:
                        p_16 = p.astype(q.dtype)
                    ds = (p * (dp - lax.broadcast_in_dim(delta, dp.shape, [1]))).astype(q.dtype)
                    plgpu.wgmma(acc_dv, p_16, d_o)  # dV += Pᵀ dO
                    plgpu.wgmma(acc_dk, ds, q)  # dK += dSᵀ Q
                    if mask:  # causal: the tile's first step is a masked one
                        pl.when(t == 0)(last_gradients_out)
                    ds_smem.at[buf, my_keys][...] = ds
                    plgpu.commit_smem()
                    plgpu.barrier_arrive(ds_ready.at[buf])
                    plgpu.barrier_wait(ds_ready.at[buf])  # both halves of dSᵀ are in
                    acc_dq[...] = zeros(acc_dq.shape)
                    plgpu.wgmma(acc_dq, ds_smem.at[buf].T,
                                k_smem.at[pl.ds(zero, 2 * block_kv), pl.ds(wg * half, half)])
                    dq = plgpu.wgmma_accumulator_load(acc_dq)  # and every product before it
                    plgpu.barrier_arrive(free.at[slot])
                    plgpu.wait_smem_to_gmem(0, wait_read_only=True)  # the last dQ is out
                    dq_smem.at[wg][...] = dq
                    plgpu.commit_smem()
                    plgpu.copy_smem_to_gmem(
                        dq_smem.at[wg],
                        dq_ref.at[batch, head, pl.ds(q0, block_q), pl.ds(wg * half, half)],
                        reduction_op="add")
                    return ()

                def per_query_head(g, _):
                    start = g * per_head
                    end = start + per_head
                    if not causal:
                        return lax.fori_loop(start, end, functools.partial(step, mask=False), ())
                    split = jnp.minimum(start + masked_tiles, end)
                    lax.fori_loop(start, split, functools.partial(step, mask=True), ())
                    return lax.fori_loop(split, end, functools.partial(step, mask=False), ())

                acc_dk[...] = zeros(acc_dk.shape)
                acc_dv[...] = zeros(acc_dv.shape)

                @if_shown(steps)
                def _gradients():
                    plgpu.barrier_wait(k_ready)
                    plgpu.barrier_wait(v_ready)
                    if not causal:
                        last_gradients_out()
                    lax.fori_loop(0, heads_per_kv, per_query_head, ())
                    plgpu.wait_smem_to_gmem(0, wait_read_only=True)  # the last dQ is out
                    plgpu.barrier_arrive(kv_free)
                    # both warpgroups' products are done with K and V, and their dSᵀ and dQ
                    # with the memory where dK and dV go
                    plgpu.barrier_wait(kv_free)

                # a tile the bias hides wholly: its zeros wait for this warpgroup's last dK and
                # dV to be out (after a tile with steps, a no-op). No wait for the other
                # warpgroup: it passed kv_free after its last dQ was out, and before it writes
                # dSᵀ over this memory it waits at ``staged`` for this one's copies to be read
                plgpu.wait_smem_to_gmem(0, wait_read_only=True)
                rows = (batch, kv_head, pl.ds(k0, block_kv))
                dk_smem.at[wg][...] = (acc_dk[...] * (scale * kept)).astype(dk_smem.dtype)
                dv = acc_dv[...] if seeds_ref is None else acc_dv[...] * kept
                dv_smem.at[wg][...] = dv.astype(dv_smem.dtype)
                plgpu.commit_smem()
                plgpu.copy_smem_to_gmem(dk_smem.at[wg], dk_ref.at[rows])
                plgpu.copy_smem_to_gmem(dv_smem.at[wg], dv_ref.at[rows])

            walk_tiles(one_tile)

        pl.run_scoped(body,
                      plgpu.ACC((block_kv, head_dim), jnp.float32),
                      plgpu.ACC((block_kv, head_dim), jnp.float32),
                      plgpu.ACC((block_kv, block_q), jnp.float32),
                      plgpu.ACC((block_kv, block_q), jnp.float32),
                      plgpu.ACC((block_q, half), jnp.float32))
        plgpu.wait_smem_to_gmem(0)

    @pl.when(wg == 2)
    def _copy():
        plgpu.set_max_registers(24, action="decrease")

        def one_tile(batch, kv_head, kv_tile, first_step, steps, query_tile):
            @if_shown(steps)
            def _keys_and_values():
                # the compute warpgroups' products are done with the last tile's keys and
                # values (a tile with steps before: the compute warpgroups signal kv_free for
                # those alone)
                pl.when(first_step > 0)(functools.partial(plgpu.barrier_wait, kv_free))
                keys = (batch, kv_head, pl.ds(kv_tile * 2 * block_kv, 2 * block_kv))
                plgpu.copy_gmem_to_smem(k_ref.at[keys], k_smem, k_ready)
                plgpu.copy_gmem_to_smem(v_ref.at[keys], v_smem, v_ready)

            @pl.loop(0, steps)
            def _issue(t):
                ring_step = first_step + t
                slot = lax.rem(ring_step, stages)
                head, q0 = query_tile(t)
                rows = (batch, head, pl.ds(q0, block_q))

                @pl.when(ring_step >= stages)  # wait until both warpgroups are done with it
                def _():
                    plgpu.barrier_wait(free.at[slot])
                plgpu.copy_gmem_to_smem(q_ref.at[rows], q_smem.at[slot], q_ready.at[slot])
                plgpu.copy_gmem_to_smem(do_ref.at[rows], do_smem.at[slot], do_ready.at[slot])
                plgpu.copy_gmem_to_smem(lse_ref.at[rows], lse_smem.at[slot],
                                        lse_ready.at[slot])
                plgpu.copy_gmem_to_smem(delta_ref.at[rows], delta_smem.at[slot],
                                        delta_ready.at[slot])

        walk_tiles(one_tile)


@functools.partial(jax.jit, static_argnames=("scale", "is_causal", "config", "dropout_p"))
def mosaic_attention_bwd(q: jax.Array, k: jax.Array, v: jax.Array, out: jax.Array,
                         lse: jax.Array, d_out: jax.Array, key_bias: jax.Array | None = None,
                         seeds: jax.Array | None = None, *, scale: float, is_causal: bool,
                         config: MosaicAttentionBwdConfig = MosaicAttentionBwdConfig(),
                         dropout_p: float = 0.0) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Gradients (dq, dk, dv) of flash attention, from the forward's output and base-2
    logsumexp (``mosaic_attention(..., with_lse=True)``).

    Args:
        q: (B, H, L, D); k, v: (B, Hk, S, D), Hk dividing H; out, d_out: (B, H, L, D);
            lse: (B, H, L) float32, the rows' logsumexp of the scaled scores in base 2 (+inf
            for rows the key bias hides wholly).
        key_bias: None, or the forward's (Bm, 1, S) float32 base-2 key bias
            (``_mosaic_attention.key_bias_rows``), Bm in (1, B), one for every head: each
            compute warpgroup loads its keys' once per key tile into Sᵀ's accumulator; key
            tiles it hides wholly are skipped.
        seeds, dropout_p: the forward's dropout (``mosaic_attention``): each step draws its
            pattern again (``_dropout_hash.attention_keeps``).
        scale: the forward's score scale; is_causal: its top-left causal mask.

    Returns:
        dq, dk, dv in the shapes of q, k, v and their dtype (dk and dv summed over the query
        heads that share each key/value head).

    Raises:
        ValueError: for what ``mosaic_attention_bwd_can`` refuses, a scale that is not
            positive, k and v that differ in shape or from q in dtype, or dropout as
            ``mosaic_attention`` refuses it.

    Example (on a Hopper GPU):
        >>> q = k = v = jnp.ones((1, 2, 128, 64), jnp.bfloat16)
        >>> out, lse = mosaic_attention(q, k, v, scale=0.125, is_causal=True, with_lse=True)
        >>> dq, dk, dv = mosaic_attention_bwd(q, k, v, out, lse, jnp.ones_like(out),
        ...                                   scale=0.125, is_causal=True)
    """
    check_operands("mosaic_attention_bwd", q, k, v, scale,
                   _refusal(q.shape, k.shape, q.dtype, is_causal, config))
    if key_bias is not None and (
            key_bias.dtype != jnp.float32 or key_bias.ndim != 3
            or key_bias.shape[0] not in (1, q.shape[0]) or key_bias.shape[1:] != (1, k.shape[2])):
        raise ValueError(f"mosaic_attention_bwd: key_bias must be float32 (1 or {q.shape[0]}, "
                         f"1, {k.shape[2]}), got {key_bias.dtype} {key_bias.shape}")
    check_dropout("mosaic_attention_bwd", q, dropout_p, seeds)
    b, h, q_len, d = q.shape
    kv_heads, kv_len = k.shape[1:3]
    bq, bkv, stages = config.block_q, config.block_kv, config.stages
    # times 1 - dropout_p: the kernel's dSᵀ takes dropout's 1 / (1 - p) out (module docstring)
    delta = jnp.einsum("bhld,bhld->bhl", out.astype(jnp.float32),
                       d_out.astype(jnp.float32)) * (1.0 - dropout_p)
    heads_per_kv = h // kv_heads
    body = functools.partial(_kernel, config=config, scale=float(scale), causal=is_causal,
                             heads_per_kv=heads_per_kv, dropout_p=float(dropout_p))
    # key tiles first to last (causal: those that take the most query tiles first); a tile's
    # work: its query tiles and one more for its keys, values and gradients
    work = tuple(1 + heads_per_kv * _query_tiles(i, causal=is_causal, block_q=bq, block_kv=bkv,
                                                 q_tiles=q_len // bq)
                 for i in range(kv_len // (2 * bkv)))
    tiles = tile_table(b, kv_heads, work, config.ctas or sm_count())

    # each warpgroup reads half of K's columns for dQ: that half must be whole swizzle tiles,
    # and the operands of one product must share their swizzle
    smem = functools.partial(swizzled_smem, dtype=q.dtype,
                             swizzle=min(128, d // 2 * q.dtype.itemsize))

    def entry(*refs):
        refs = list(refs)  # the kernel's bias_ref, shown_ref and seeds_ref after the tile table
        if key_bias is None:
            refs[7:7] = [None, None]
        if seeds is None:
            refs[9:9] = [None]

        def scoped(k_smem, v_smem, q_smem, do_smem, lse_smem, delta_smem, shared, *barriers):
            (ds_smem, dq_smem), (dk_smem, dv_smem) = shared
            body(*refs, k_smem, v_smem, q_smem, do_smem, lse_smem, delta_smem, ds_smem, dq_smem,
                 dk_smem, dv_smem, *barriers)

        pl.run_scoped(
            scoped,
            smem((2 * bkv, d)),
            smem((2 * bkv, d)),
            smem((stages, bq, d)),
            smem((stages, bq, d)),
            plgpu.SMEM((stages, bq), jnp.float32),
            plgpu.SMEM((stages, bq), jnp.float32),
            # dSᵀ and dQ share their memory with dK and dV on their way out: a buffer of
            # their own measured 0.97-0.98x without the mask (less of the SM's memory left
            # to L1)
            plgpu.RefUnion((smem((2, 2 * bkv, bq)), swizzled_smem((2, bq, d // 2), jnp.float32)),
                           (smem((2, bkv, d)), smem((2, bkv, d)))),
            plgpu.Barrier(),  # K's
            plgpu.Barrier(),  # V's
            plgpu.Barrier(num_arrivals=2),  # both warpgroups are done with them, dSᵀ and dQ
            plgpu.Barrier(num_arrivals=2),  # both have their last dK and dV out
            *[plgpu.Barrier(num_barriers=stages)] * 4,
            plgpu.Barrier(num_arrivals=2, num_barriers=stages),
            plgpu.Barrier(num_arrivals=2, num_barriers=2),
            collective_axes="wg",
        )

    kernel = pl.kernel(  # plgpu.kernel's batching wrapper does not take Refs; pl.kernel does
        entry,
        out_type=(),
        mesh=plgpu.Mesh(grid=(tiles.shape[0],), grid_names=("cta",), num_threads=3,
                        thread_name="wg"),
        compiler_params=plgpu.CompilerParams(approx_math=True),
        name="flash_attention_bwd_mosaic",
    )

    def on_refs(refs):
        kernel(q, k, v, d_out.astype(q.dtype), lse, delta, jnp.asarray(tiles),
               *([] if key_bias is None else [key_bias, _shown_key_tiles(key_bias, 2 * bkv)]),
               *([] if seeds is None else [seeds]), *refs)

    # run_state gives the kernel dQ's zeroed float32 sum and dK, dV to write (uninitialised,
    # lax.empty) as Refs, and returns them as values: a pure call, which custom_partitioning
    # can lower (a jax.new_ref here could not be lowered under partition_rows)
    dq_sum, dk, dv = pl.run_state(on_refs)(
        (jnp.zeros(q.shape, jnp.float32), lax.empty(k.shape, k.dtype), lax.empty(v.shape, v.dtype)))
    return (dq_sum * (scale / (1.0 - dropout_p))).astype(q.dtype), dk, dv
