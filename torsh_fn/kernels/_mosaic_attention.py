"""Flash attention forward on Hopper through Mosaic GPU (``plgpu.kernel``: TMA, wgmma).

A tile is ``2 * block_q`` query rows of one (batch, head): two compute warpgroups own
``block_q`` rows each, a third warpgroup only issues TMA copies of the key and value blocks into
a ring of ``stages`` shared-memory slots (and, in a persistent grid, of the queries). The compute
warpgroups keep the tensor cores busy while they compute the online softmax in registers, in
one of two schedules:

- ``"overlap"``: each warpgroup overlaps its own work: the scores of key block ``j + 1``
  (``Q K^T``, asynchronous wgmma) and the product of block ``j``'s probabilities with its values
  (``P V``) run while it computes the softmax of block ``j + 1``.
- ``"pingpong"``: the two warpgroups take turns: one's products run while the other computes its
  softmax (FlashAttention-3's warpgroup ping-pong). A turn queues ``P V`` of block ``j`` and
  ``Q K^T`` of block ``j + 1`` together, so the tensor cores never wait for the warpgroup to
  see the first done before it issues the second.

Tiles run heads first, then query tiles last to first (the longest causal rows first, so that
the short ones fill the tail), then batches, so that concurrent tiles share keys and values in
L2. With the pingpong schedule and more tiles than SMs, the grid is persistent: one CTA per SM,
each walking the tiles that ``_persistent_grid.tile_table`` deals it (each tile to the CTA with
the least work so far, as the hardware deals a grid of one tile per CTA), while the copy
warpgroup already loads the next tile's queries, keys and values as the last one's finish, so
that a CTA does not wait for a next tile's first loads, and the output leaves through a buffer
of its own. On an H200 (causal B4 S4096 H16 D128 bf16, in interleaved rounds): 1.03-1.07x the
grid of one tile per CTA (four runs); with the overlap schedule without the mask, 0.95-0.97x the
grid with the same two slots, so that schedule keeps one tile per CTA. Dealt round-robin, the
causal tiles left one CTA 29% more work than the mean (0.81x).

The rows' logsumexp goes from registers straight to global memory: through a shared-memory
buffer of its own (and a TMA copy), three key/value slots of head dim 128 no longer fit beside
it, and the overlap schedule with the logsumexp (training without the mask) ran two; from
registers it runs three, 1.01x as fast in interleaved rounds (1.015x and 1.012x in two runs on
an H200), outputs and logsumexp identical.

A key bias (a key padding mask, or a float bias per key, of each batch row and head or one for
all: ``key_bias_rows``) is added to the scores in base 2: each step loads its key block's row
from global memory (L2; 512 bytes) straight into the scores' column layout while its ``Q K^T``
runs, so no shared memory is taken from the slots, and a tile reads no key block past the last
one its bias shows a key of (a padding mask's padding). Rows the bias hides wholly give zeros
and lse = +inf. On an H200 (B4 H16 D128 bf16, a key padding mask keeping S, 3S/4, S/2 and S/4
keys of the batch rows, dense TFLOP/s): forward 683-722 at S4096, 458 causal, against the
Triton kernel's 412 and 309 and PyTorch SDPA's 403-420 and 361-367.

Dropout (``dropout_p``, with a uint32 seed per head) zeroes the weights that
``_dropout_hash.attention_keeps`` drops before their ``P V`` product, the row sums keeping every
weight, and scales the output by 1 / (1 - p): the pattern the Triton kernels and
``_pallas_attention.dropout_keep`` draw. Each warpgroup hashes its rows once per tile and its
key block's positions once per step, and mixes the two for every score (lowbias32: two integer
products, three shifts) once the scores are in registers. On an H200 (causal B4 S4096 H16 D128
bf16, dropout 0.1): 335 TFLOP/s, against the Triton kernel's 253 and PyTorch SDPA's 266.

Inputs: q (B, H, L, D), k and v (B, Hk, S, D) with Hk dividing H, bfloat16 or float16, D 64 or
128, ``L`` a multiple of ``2 * block_q`` and ``S`` of ``block_kv``; causal only with L == S (what
``mosaic_attention_can`` admits). ``_pallas_attention.attention_pallas`` runs it as its forward
(with the rows' logsumexp when differentiated; ``_mosaic_attention_bwd`` or the Triton kernels
take it from there). Hopper GPUs only: Pallas' Mosaic GPU interpreter (jax 0.10-0.11) has no
stores into wgmma accumulators, so on the CPU the tests check the lowering, and the numbers on a
GPU.

On an H200 (causal B4 S4096 H16 D128 bf16, ``benchmarks/kernels.py --only attention``):
pingpong 572 TFLOP/s, cuDNN 523, PyTorch 566; with the persistent grid 581, cuDNN 544, PyTorch
569. With one CTA per tile (before the persistent grid), speed against PyTorch's in the same round
(median of 12-15 interleaved rounds): pingpong with two slots 1.046x, with three 0.972x,
overlap 0.860x, cuDNN 0.934x; in another run 1.024x and 0.984x, while pingpong without the
queued turn (waiting for ``P V`` before issuing ``Q K^T``) gave 0.991x and 0.985x. Without the
mask: overlap 0.975-0.991x, pingpong 0.889-0.927x. ptxas reports the overlap schedule's wgmmas
serialized: the probabilities it carries to the next step come back as float32 and are
converted between the two products (a variant that uses them in the step that computes them
ran short of registers instead: 433-440 causal).
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
from ._mosaic_common import load_whole, swizzled_smem
from ._pallas_common import sm_count
from ._persistent_grid import tile_table, walk_dealt_tiles

__all__ = [
    "MosaicAttentionConfig",
    "base2_bias",
    "key_bias_rows",
    "mosaic_attention",
    "mosaic_attention_can",
]

_LOG2E = math.log2(math.e)
_SCHEDULES = (None, "pingpong", "overlap")


@dataclasses.dataclass(frozen=True)
class MosaicAttentionConfig:
    """Tiles of the kernel: ``block_q`` query rows per compute warpgroup (two per CTA),
    ``block_kv`` keys per step, ``stages`` key/value slots in flight; ``schedule`` how the
    compute warpgroups share the tensor cores: ``"pingpong"`` (in turns) or ``"overlap"`` (each
    overlaps its own products with its softmax); ``ctas``: a persistent grid of that many CTAs,
    each walking several tiles. None takes what was measured faster: pingpong for causal
    attention and overlap without the mask; two slots for pingpong, three for overlap (two
    beside a persistent grid's output buffer); a persistent grid of one CTA per SM for pingpong
    when there are more tiles than SMs, else one CTA per tile."""

    block_q: int = 64
    block_kv: int = 128
    stages: int | None = None
    schedule: str | None = None
    ctas: int | None = None


def mosaic_attention_can(q_shape, k_shape, dtype, is_causal: bool,
                         config: MosaicAttentionConfig = MosaicAttentionConfig()) -> bool:
    """Whether ``mosaic_attention`` takes these shapes (it raises ``ValueError`` otherwise)."""
    return _refusal(q_shape, k_shape, dtype, is_causal, config) is None


def _refusal(q_shape, k_shape, dtype, is_causal, config) -> str | None:
    if config.schedule not in _SCHEDULES:
        return f"schedule must be one of {_SCHEDULES}, got {config.schedule!r}"
    if config.stages is not None and config.stages < 1:
        return f"stages must be None or at least 1, got {config.stages}"
    if config.ctas is not None and config.ctas < 1:
        return f"ctas must be None or at least 1, got {config.ctas}"
    return shape_refusal(q_shape, k_shape, dtype, is_causal, 2 * config.block_q, config.block_kv)


def shape_refusal(q_shape, k_shape, dtype, is_causal: bool, q_multiple: int,
                  kv_multiple: int) -> str | None:
    """Why a Mosaic GPU attention kernel refuses these shapes, None if it takes them: 16-bit,
    head dim 64 or 128, grouped heads, query and key lengths positive multiples of its tiles,
    causal only with equal lengths."""
    if len(q_shape) != 4 or len(k_shape) != 4:
        return f"q and k must be (B, H, L, D) and (B, Hk, S, D), got {q_shape} and {k_shape}"
    b, h, q_len, d = q_shape
    kb, hk, kv_len, kd = k_shape
    if jnp.dtype(dtype) not in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16)):
        return f"dtype must be bfloat16 or float16, got {jnp.dtype(dtype)}"
    if kb != b or kd != d or hk == 0 or h % hk:
        return f"k {k_shape} does not match q {q_shape} (batch, head dim, heads dividing)"
    if d not in (64, 128):
        return f"head dim must be 64 or 128, got {d}"
    if q_len == 0 or q_len % q_multiple or kv_len == 0 or kv_len % kv_multiple:
        return (f"query length {q_len} must be a positive multiple of {q_multiple} and "
                f"key length {kv_len} of {kv_multiple}")
    if is_causal and q_len != kv_len:
        return f"causal needs equal query and key lengths, got {q_len} and {kv_len}"
    return None


def scale_refusal(scale: float) -> str | None:
    """Why the Mosaic GPU attention kernels refuse a score scale, None if they take it: they
    mask and take maxima of the scores before scaling them, right only for a positive scale."""
    return None if scale > 0 else f"scale must be positive, got {scale}"


def check_operands(caller: str, q, k, v, scale: float, refusal: str | None) -> None:
    """Raises ``caller``'s ValueError for a ``refusal`` of the shapes, a scale that
    ``scale_refusal`` refuses, or k and v that differ in shape or from q in dtype."""
    for why in (refusal, scale_refusal(scale)):
        if why is not None:
            raise ValueError(f"{caller}: {why}")
    if k.shape != v.shape or k.dtype != q.dtype or v.dtype != q.dtype:
        raise ValueError(f"{caller}: k and v must match in shape and q in dtype, got "
                         f"{k.shape} {k.dtype}, {v.shape} {v.dtype} and q {q.dtype}")


def check_dropout(caller: str, q, dropout_p: float, seeds) -> None:
    """Raises ``caller``'s ValueError unless ``dropout_p`` is in [0, 1) and ``seeds`` is None
    without dropout, else (B, H) uint32 for (B, H, L, D) ``q``."""
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"{caller}: dropout_p must be in [0, 1), got {dropout_p}")
    expected = (q.shape[:2], jnp.dtype(jnp.uint32)) if dropout_p else None
    if (None if seeds is None else (seeds.shape, seeds.dtype)) != expected:
        raise ValueError(f"{caller}: with dropout_p {dropout_p} seeds must be "
                         f"{'None' if expected is None else f'uint32 of shape {q.shape[:2]}'}, "
                         f"got {None if seeds is None else (seeds.shape, seeds.dtype)}")


def _key_blocks(tile, *, causal: bool, rows: int, block_kv: int, kv_blocks: int):
    """The key blocks that query tile ``tile`` (of ``rows`` rows) reads: causal, up to its last
    row's; else all ``kv_blocks``. On ints for ``tile_table``, on traced ints in the kernel."""
    return pl.cdiv((tile + 1) * rows, block_kv) if causal else kv_blocks


def bias_index(ref, batch, head):
    """The (batch, head) index into a key bias's (Bm, Hm, ...) ``ref``: 0 where it has one."""
    return (batch if ref.shape[0] > 1 else 0, head if ref.shape[1] > 1 else 0)


def _shown_key_blocks(key_bias, block_kv: int) -> jax.Array:
    """(Bm, Hm) int32: the key blocks up to the last that ``key_bias`` (Bm, Hm, S) shows a key
    of (at least one: a wholly hidden row reads one block, and gives zeros); the blocks after
    it add nothing (a key padding mask's padding), so the kernel neither loads nor multiplies
    them."""
    shown = jnp.where(key_bias > -jnp.inf, jnp.arange(1, key_bias.shape[2] + 1), 0)
    return jnp.maximum(1, -(-jnp.max(shown, axis=2) // block_kv)).astype(jnp.int32)


def _kernel(q_ref, k_ref, v_ref, bias_ref, blocks_ref, seeds_ref, tiles_ref, o_ref, lse_ref,
            q_smem, k_smem, v_smem, o_smem, k_ready, v_ready, q_ready, q_free, k_free, v_free,
            turns, *, config, scale, causal, heads_per_kv, dropout_p):
    block_q, block_kv, stages = config.block_q, config.block_kv, config.stages
    heads, q_len = q_ref.shape[1:3]
    q_tiles = q_len // (2 * block_q)
    wg = lax.axis_index("wg")

    def walk_tiles(one_tile):
        """``one_tile(batch, head, query tile, first_step)`` -> ``first_step`` of the next, for
        each of this CTA's tiles: the grid's one, or (persistent) those ``tiles_ref`` deals it
        (a head's tiles last to first); ``first_step``: the ring's steps taken before."""
        if tiles_ref is None:
            one_tile(lax.axis_index("batch"), lax.axis_index("heads"),
                     q_tiles - 1 - lax.axis_index("q_tile"), 0)
            return
        walk_dealt_tiles(tiles_ref, heads, q_tiles, lambda batch, head, i, first_step: one_tile(
            batch, head, q_tiles - 1 - i, first_step))

    key_blocks = functools.partial(_key_blocks, causal=causal, rows=2 * block_q,
                                   block_kv=block_kv, kv_blocks=k_ref.shape[2] // block_kv)

    def kv_steps_of(batch, head, tile):
        """The key blocks a tile reads: with a key bias, none past its last shown key's."""
        steps = key_blocks(tile)
        if blocks_ref is None:
            return steps
        return jnp.minimum(steps, blocks_ref[bias_index(blocks_ref, batch, head)])

    @pl.when(wg < 2)
    def _compute():
        plgpu.set_max_registers(232, action="increase")  # 2 x 232 + 40 per lane: the 64K file
        my_q = q_smem.at[wg]
        my_o = my_q if o_smem is None else o_smem.at[wg]  # one tile: the spent queries' slot

        def queries_spent():
            """In a persistent grid: the copy warpgroup may load this one's next queries."""
            if q_free is not None:
                plgpu.barrier_arrive(q_free.at[wg])

        c = scale * _LOG2E  # scores in log2 units: exp2(s * c - m)
        row_layout = plgpu.Layout.WGMMA.reduce(1)

        def masked(s, step, q0):
            layout = plgpu.Layout.WGMMA
            rows = plgpu.broadcasted_iota(jnp.int32, s.shape, 0, layout=layout) + q0
            cols = plgpu.broadcasted_iota(jnp.int32, s.shape, 1, layout=layout)
            return jnp.where(rows >= cols + step * block_kv, s, -jnp.inf)

        def softmax_step(s, m, total, bias=None, keep=None):
            """Online softmax of one score block: the new running max, the probabilities
            (those dropout keeps, ``keep``, or all with None), the factor that rescales the
            output so far, the new row sums (of every probability). ``bias``: the key bias row
            of the block (base-2 units, ``key_bias_rows``), or None."""
            if bias is None:
                m_new = jnp.maximum(m, s.max(axis=1) * c)
                shift = m_new
                p = jnp.exp2(s * c - lax.broadcast_in_dim(shift, s.shape, [0]))
            else:
                s = s * c + lax.broadcast_in_dim(bias, s.shape, [1])
                m_new = jnp.maximum(m, s.max(axis=1))
                # a row the bias hides so far has m_new = -inf: exponents from 0 keep it zeros
                shift = jnp.where(m_new == -jnp.inf, 0.0, m_new)
                p = jnp.exp2(s - lax.broadcast_in_dim(shift, s.shape, [0]))
            alpha = jnp.exp2(m - shift)
            total = total * alpha + p.sum(axis=1)
            if keep is not None:
                p = jnp.where(keep, p, 0.0)
            return m_new, p.astype(q_ref.dtype), alpha, total

        def rescaled(o, alpha):
            return o * lax.broadcast_in_dim(alpha, o.shape, [0])

        def zeros(shape):
            return plgpu.layout_cast(jnp.zeros(shape, jnp.float32), plgpu.Layout.WGMMA)

        m0 = plgpu.layout_cast(jnp.full((block_q,), -jnp.inf, jnp.float32), row_layout)
        total0 = plgpu.layout_cast(jnp.zeros((block_q,), jnp.float32), row_layout)

        def tile_attention(acc_s, acc_o, q0, kv_steps, first_step, bias_of, keep_of):
            """The output rows ``q0..q0 + block_q`` before normalization, their running max and
            row sums; ``first_step``: the ring's steps taken by earlier tiles; ``bias_of(step)``
            the key bias row of a key block, ``keep_of(step)`` dropout's pattern of its scores
            (each None without)."""

            def slot(step):
                return lax.rem(first_step + step, stages)

            def scores(step):
                acc_s[...] = zeros(acc_s.shape)
                plgpu.barrier_wait(k_ready.at[slot(step)])
                plgpu.wgmma(acc_s, my_q, k_smem.at[slot(step)].T)

            def steps(body, first, carry, end=kv_steps):
                """``body`` over key blocks ``first..end``; causal blocks wholly at or below the
                diagonal skip the mask."""
                if not causal:
                    return lax.fori_loop(first, end, functools.partial(body, mask=False), carry)
                unmasked = jnp.minimum(jnp.maximum(q0 // block_kv, first), end)
                carry = lax.fori_loop(first, unmasked, functools.partial(body, mask=False), carry)
                return lax.fori_loop(unmasked, end, functools.partial(body, mask=True), carry)

            def overlap():
                """Each warpgroup overlaps its own work: ``Q K_j^T`` and ``P_{j-1} V_{j-1}``
                run on the tensor cores while it computes the softmax of block ``j``."""
                if tiles_ref is not None:  # it holds the last tile's (a fresh one is zero)
                    acc_o[...] = zeros(acc_o.shape)
                scores(0)
                bias = bias_of(0)  # loads while the product runs
                s = plgpu.wgmma_accumulator_load(acc_s)
                plgpu.barrier_arrive(k_free.at[slot(0)])
                if causal:
                    s = masked(s, 0, q0)
                m, p, _, total = softmax_step(s, m0, total0, bias, keep_of(0))

                def body(step, carry, mask):
                    m, p, total = carry
                    scores(step)  # Q K_step^T runs while P_{step-1} V_{step-1} queues
                    bias = bias_of(step)
                    plgpu.barrier_wait(v_ready.at[slot(step - 1)])
                    plgpu.wgmma(acc_o, p, v_smem.at[slot(step - 1)])
                    s = plgpu.wgmma_accumulator_load(acc_s, wait_n=1)  # P V may still run
                    plgpu.barrier_arrive(k_free.at[slot(step)])
                    if mask:
                        s = masked(s, step, q0)
                    m, p, alpha, total = softmax_step(s, m, total, bias, keep_of(step))
                    o = plgpu.wgmma_accumulator_load(acc_o)
                    plgpu.barrier_arrive(v_free.at[slot(step - 1)])
                    acc_o[...] = rescaled(o, alpha)
                    return m, p, total

                m, p, total = steps(body, 1, (m, p, total))
                queries_spent()  # the last product that reads them is done
                plgpu.barrier_wait(v_ready.at[slot(kv_steps - 1)])
                plgpu.wgmma(acc_o, p, v_smem.at[slot(kv_steps - 1)])
                o = plgpu.wgmma_accumulator_load(acc_o)
                plgpu.barrier_arrive(v_free.at[slot(kv_steps - 1)])
                return o, m, total

            def pingpong():
                """The two warpgroups take turns on the tensor cores: ``turns`` (both arrive)
                pairs their steps with the second warpgroup one turn behind, so that one's
                products run while the other computes its softmax. A warpgroup's turn queues
                its ``P V`` and the next block's ``Q K^T`` together; it waits for both when its
                next turn begins."""
                def turn():
                    plgpu.barrier_arrive(turns)
                    plgpu.barrier_wait(turns)

                pl.when(wg == 1)(turn)
                acc_o[...] = zeros(acc_o.shape)
                scores(0)

                def body(step, carry, mask, issue_next=True):
                    m, total = carry
                    bias = bias_of(step)  # loads while this warpgroup waits for its turn
                    turn()
                    s = plgpu.wgmma_accumulator_load(acc_s)  # and the last P V before it
                    plgpu.barrier_arrive(k_free.at[slot(step)])
                    if not issue_next:
                        queries_spent()  # the last product that reads them is done

                    @pl.when(step > 0)
                    def _():
                        plgpu.barrier_arrive(v_free.at[slot(step - 1)])
                    if mask:
                        s = masked(s, step, q0)
                    m, p, alpha, total = softmax_step(s, m, total, bias, keep_of(step))
                    acc_o[...] = rescaled(acc_o[...], alpha)
                    if issue_next:
                        acc_s[...] = zeros(acc_s.shape)
                    plgpu.barrier_arrive(turns)  # softmax done; wait for the other's products
                    plgpu.barrier_wait(v_ready.at[slot(step)])
                    if issue_next:
                        plgpu.barrier_wait(k_ready.at[slot(step + 1)])
                    plgpu.barrier_wait(turns)
                    plgpu.wgmma(acc_o, p, v_smem.at[slot(step)])
                    if issue_next:
                        plgpu.wgmma(acc_s, my_q, k_smem.at[slot(step + 1)].T)
                    return m, total

                last = kv_steps - 1
                m, total = steps(body, 0, (m0, total0), end=last)
                m, total = body(last, (m, total), mask=causal, issue_next=False)
                plgpu.wgmma_wait(0)
                plgpu.barrier_arrive(v_free.at[slot(last)])
                pl.when(wg == 0)(turn)  # the turn the other warpgroup took first
                return acc_o[...], m, total

            return pingpong() if turns is not None else overlap()

        def bias_of(batch, head, step):
            """Key block ``step``'s bias row for ``head`` of ``batch`` from global memory (L2),
            laid out as the scores' columns, or None without a bias."""
            if bias_ref is None:
                return None
            row = bias_ref.at[(*bias_index(bias_ref, batch, head),
                               pl.ds(step * block_kv, block_kv))]
            return load_whole(row, plgpu.Layout.WGMMA.reduce(0), optimized=False)

        def keep_of(batch, head, q0):
            """Dropout's pattern of a key block's scores of rows ``q0..q0 + block_q`` by its
            step (``attention_keeps``: the rows hashed once per tile, the keys once per step),
            or None without dropout."""
            if seeds_ref is None:
                return lambda step: None
            rows = plgpu.broadcasted_iota(jnp.int32, (block_q,), 0, layout=row_layout) + q0
            queries = lax.broadcast_in_dim(query_bits(seeds_ref[batch, head], rows),
                                           (block_q, block_kv), [0])

            def keep(step):
                keys = plgpu.broadcasted_iota(jnp.int32, (block_kv,), 0,
                                              layout=plgpu.Layout.WGMMA.reduce(0))
                keys = lax.broadcast_in_dim(key_bits(keys + step * block_kv), queries.shape, [1])
                return attention_keeps(queries, keys, dropout_p)

            return keep

        def tiles(acc_s, acc_o):
            def one_tile(batch, head, tile, first_step):
                q0 = (2 * tile + wg) * block_q
                kv_steps = kv_steps_of(batch, head, tile)
                if tiles_ref is None:  # one tile: each warpgroup loads its own queries (the copy
                    # warpgroup's loads before the keys measured 0.97-0.98x without the mask)
                    plgpu.copy_gmem_to_smem(q_ref.at[batch, head, pl.ds(q0, block_q)], my_q,
                                            q_ready.at[wg])
                plgpu.barrier_wait(q_ready.at[wg])
                o, m, total = tile_attention(acc_s, acc_o, q0, kv_steps, first_step,
                                             functools.partial(bias_of, batch, head),
                                             keep_of(batch, head, q0))
                if o_smem is not None:
                    plgpu.wait_smem_to_gmem(0, wait_read_only=True)  # the last tile's are out
                lse = m + jnp.log(total) * _LOG2E
                kept = 1.0 / (1.0 - dropout_p)  # dropout's rescaling of the weights it keeps
                if bias_ref is None:
                    inverse = kept / total
                else:  # rows the bias hides wholly: zeros, and lse = +inf (the backward's p = 0)
                    shown = total > 0.0
                    inverse = jnp.where(shown, kept / total, 0.0)
                    lse = jnp.where(shown, lse, jnp.inf)
                my_o[...] = rescaled(o, inverse).astype(my_o.dtype)
                rows = (batch, head, pl.ds(q0, block_q))
                if lse_ref is not None:  # from registers (the module's docstring says why)
                    lse_ref.at[rows][...] = lse
                plgpu.commit_smem()
                plgpu.copy_smem_to_gmem(my_o, o_ref.at[rows])
                return first_step + kv_steps

            walk_tiles(one_tile)

        head_dim = q_ref.shape[-1]
        pl.run_scoped(tiles, plgpu.ACC((block_q, block_kv), jnp.float32),
                      plgpu.ACC((block_q, head_dim), jnp.float32))
        plgpu.wait_smem_to_gmem(0)

    @pl.when(wg == 2)
    def _copy():
        plgpu.set_max_registers(40, action="decrease")

        def one_tile(batch, head, tile, first_step):
            kv_steps = kv_steps_of(batch, head, tile)
            if tiles_ref is not None:  # each compute warpgroup's queries, once it is done
                for w in range(2):       # with its last (a tile takes a step at least)
                    pl.when(first_step > 0)(functools.partial(plgpu.barrier_wait, q_free.at[w]))
                    plgpu.copy_gmem_to_smem(
                        q_ref.at[batch, head, pl.ds((2 * tile + w) * block_q, block_q)],
                        q_smem.at[w], q_ready.at[w])
            kv_head = head // heads_per_kv

            @pl.loop(0, kv_steps)
            def _load(step):
                ring_step = first_step + step
                slot = lax.rem(ring_step, stages)
                rows = (batch, kv_head, pl.ds(step * block_kv, block_kv))

                @pl.when(ring_step >= stages)  # wait until both warpgroups are done with the slot
                def _():
                    plgpu.barrier_wait(k_free.at[slot])
                plgpu.copy_gmem_to_smem(k_ref.at[rows], k_smem.at[slot], k_ready.at[slot])

                @pl.when(ring_step >= stages)
                def _():
                    plgpu.barrier_wait(v_free.at[slot])
                plgpu.copy_gmem_to_smem(v_ref.at[rows], v_smem.at[slot], v_ready.at[slot])

            return first_step + kv_steps

        walk_tiles(one_tile)


def base2_bias(bias: jax.Array) -> jax.Array:
    """A float mask's values (added to the scaled scores) in the kernels' base-2 units: times
    log2(e), a finite value kept finite (float32's min or max times log2(e) would overflow to
    -inf or +inf and hide or swamp its row, where PyTorch, adding the mask first, stays
    finite), -inf and +inf kept. jnp ops only, so the Triton kernels use it too."""
    limit = jnp.finfo(jnp.float32).max
    floor = jnp.where(jnp.isneginf(bias), -jnp.inf, -limit)
    ceil = jnp.where(jnp.isposinf(bias), jnp.inf, limit)
    return jnp.minimum(jnp.maximum(bias * _LOG2E, floor), ceil)


def key_bias_rows(mask: jax.Array) -> jax.Array:
    """A (Bm, Hm, 1, S) attention mask (bool: True takes part; float: added to the scores) as
    the (Bm, Hm, S) float32 key bias that ``mosaic_attention`` adds to its base-2 scores: 0 or
    -inf for a bool mask, ``base2_bias`` of a float one."""
    rows = mask[:, :, 0]
    if rows.dtype == jnp.bool_:
        return jnp.where(rows, 0.0, -jnp.inf).astype(jnp.float32)
    return base2_bias(rows.astype(jnp.float32))


@functools.partial(jax.jit, static_argnames=("scale", "is_causal", "config", "with_lse",
                                             "dropout_p"))
def mosaic_attention(q: jax.Array, k: jax.Array, v: jax.Array, key_bias: jax.Array | None = None,
                     seeds: jax.Array | None = None, *, scale: float, is_causal: bool,
                     config: MosaicAttentionConfig = MosaicAttentionConfig(),
                     with_lse: bool = False, dropout_p: float = 0.0
                     ) -> jax.Array | tuple[jax.Array, jax.Array]:
    """Flash attention of (B, H, L, D) ``q`` over (B, Hk, S, D) ``k``/``v``; (B, H, L, D).

    Softmax in float32 (``exp2`` in the approximate form), ``scale`` applied to the scores.
    ``key_bias``: None, or (Bm, Hm, S) float32 with Bm in (1, B) and Hm in (1, H), added to each
    query's scaled scores in base 2 (``key_bias_rows`` of a key padding mask): each step loads
    its key block's row from global memory; rows it hides wholly (all -inf) give zeros.
    ``with_lse``: also the rows' logsumexp of the scaled scores in base 2, (B, H, L) float32
    (+inf for hidden rows), what ``_pallas_attention``'s backward takes (of every weight, the
    ones dropout drops too). ``dropout_p`` in [0, 1) with ``seeds`` (B, H) uint32, one per
    head: the weights ``_dropout_hash.attention_keeps`` keeps (of the head's seed and each
    query and key position), times 1 / (1 - dropout_p), the rest zero.

    Raises:
        ValueError: for shapes, dtypes or a causal length mismatch that
            ``mosaic_attention_can`` refuses, a scale that is not positive, a key bias of
            another shape or dtype, or ``dropout_p`` out of range or without its seeds.

    Example (on a Hopper GPU):
        >>> q = k = v = jnp.ones((1, 2, 128, 64), jnp.bfloat16)
        >>> mosaic_attention(q, k, v, scale=0.125, is_causal=True).shape
        (1, 2, 128, 64)
        >>> keys_kept = jnp.arange(128) < 100
        >>> bias = key_bias_rows(keys_kept.reshape(1, 1, 1, 128))
        >>> mosaic_attention(q, k, v, bias, scale=0.125, is_causal=False).shape
        (1, 2, 128, 64)
    """
    check_operands("mosaic_attention", q, k, v, scale,
                   _refusal(q.shape, k.shape, q.dtype, is_causal, config))
    if key_bias is not None and (
            key_bias.dtype != jnp.float32 or key_bias.ndim != 3
            or key_bias.shape[0] not in (1, q.shape[0]) or key_bias.shape[1] not in (1, q.shape[1])
            or key_bias.shape[2] != k.shape[2]):
        raise ValueError(f"mosaic_attention: key_bias must be float32 (1 or {q.shape[0]}, 1 or "
                         f"{q.shape[1]}, {k.shape[2]}), got {key_bias.dtype} {key_bias.shape}")
    check_dropout("mosaic_attention", q, dropout_p, seeds)
    b, h, q_len, d = q.shape
    kv_len = k.shape[2]
    pingpong = config.schedule == "pingpong" or (config.schedule is None and is_causal)
    bq, bkv = config.block_q, config.block_kv
    q_tiles = q_len // (2 * bq)
    # persistent CTAs, when there are more tiles than SMs: measured faster with the pingpong
    # schedule (1.03-1.07x causal; not against its own grid without the mask, where overlap is
    # the default), slower with overlap (0.95-0.97x without the mask)
    persistent = config.ctas is not None or (pingpong and b * h * q_tiles > sm_count())
    tiles = None
    if persistent:  # query tiles last to first (the longest causal rows first, so that the
        # short ones fill the tail); a tile's work: its key blocks, one more for its queries
        # and output
        work = tuple(1 + _key_blocks(q_tiles - 1 - i, causal=is_causal, rows=2 * bq,
                                     block_kv=bkv, kv_blocks=kv_len // bkv)
                     for i in range(q_tiles))
        tiles = tile_table(b, h, work, config.ctas or sm_count())
    stages = min(config.stages or (2 if pingpong else 3), kv_len // bkv)
    if persistent:  # beside the output's buffer, three slots of head dim 128 exceed the 227 KiB
        # (head dim 64 keeps the same cap)
        stages = min(stages, 2)
    config = dataclasses.replace(config, stages=stages)
    body = functools.partial(_kernel, config=config, scale=float(scale), causal=is_causal,
                             heads_per_kv=h // k.shape[1], dropout_p=float(dropout_p))

    def entry(q_ref, k_ref, v_ref, *refs):
        refs = list(refs)
        bias_ref, blocks_ref = (refs.pop(0), refs.pop(0)) if key_bias is not None else (None,
                                                                                      None)
        seeds_ref = refs.pop(0) if seeds is not None else None
        tiles_ref = refs.pop(0) if persistent else None
        o_ref, lse_ref = refs[0], refs[1] if with_lse else None
        pl.run_scoped(
            lambda *scratch: body(q_ref, k_ref, v_ref, bias_ref, blocks_ref, seeds_ref, tiles_ref,
                                  o_ref, lse_ref, *scratch),
            swizzled_smem((2, bq, d), q.dtype),
            swizzled_smem((stages, bkv, d), q.dtype),
            swizzled_smem((stages, bkv, d), q.dtype),
            swizzled_smem((2, bq, d), q.dtype) if persistent else None,  # the output's
            plgpu.Barrier(num_barriers=stages),
            plgpu.Barrier(num_barriers=stages),
            plgpu.Barrier(num_barriers=2),
            plgpu.Barrier(num_barriers=2) if persistent else None,
            plgpu.Barrier(num_arrivals=2, num_barriers=stages),
            plgpu.Barrier(num_arrivals=2, num_barriers=stages),
            plgpu.Barrier(num_arrivals=2) if pingpong else None,
            collective_axes="wg",
        )

    grid = dict(grid=(tiles.shape[0],), grid_names=("cta",)) if persistent else dict(
        grid=(h, q_tiles, b), grid_names=("heads", "q_tile", "batch"))  # measured faster
    outputs = plgpu.kernel(                                             # than batches first
        entry,
        out_type=(jax.ShapeDtypeStruct(q.shape, q.dtype),
                  *[jax.ShapeDtypeStruct(q.shape[:3], jnp.float32)] * with_lse),
        **grid,
        num_threads=3,
        thread_name="wg",
        kernel_name="flash_attention_fwd_mosaic",
        compiler_params=plgpu.CompilerParams(approx_math=True),
    )(q, k, v, *([] if key_bias is None else [key_bias, _shown_key_blocks(key_bias, bkv)]),
      *([] if seeds is None else [seeds]), *([jnp.asarray(tiles)] if persistent else []))
    return outputs if with_lse else outputs[0]
