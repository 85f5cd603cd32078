"""Flash attention forward on Hopper through Mosaic GPU (``plgpu.kernel``: TMA, wgmma).

One CTA takes ``2 * block_q`` query rows of one (batch, head): two compute warpgroups own
``block_q`` rows each, a third warpgroup only issues TMA copies of the key and value blocks into a
ring of ``stages`` shared-memory slots. The compute warpgroups keep the tensor cores busy while
they compute the online softmax in registers, in one of two schedules:

- ``"overlap"``: each warpgroup overlaps its own work: the scores of key block ``j + 1``
  (``Q K^T``, asynchronous wgmma) and the product of block ``j``'s probabilities with its values
  (``P V``) run while it computes the softmax of block ``j + 1``.
- ``"pingpong"``: the two warpgroups take turns: one's products run while the other computes its
  softmax (FlashAttention-3's warpgroup ping-pong). A turn queues ``P V`` of block ``j`` and
  ``Q K^T`` of block ``j + 1`` together, so the tensor cores never wait for the warpgroup to
  see the first done before it issues the second.

Causal CTAs start with the longest rows (the grid runs query tiles last to first), so that the
short ones fill the tail.

Inputs: q (B, H, L, D), k and v (B, Hk, S, D) with Hk dividing H, bfloat16 or float16, D 64 or
128, ``L`` a multiple of ``2 * block_q`` and ``S`` of ``block_kv``; causal only with L == S (what
``mosaic_attention_can`` admits). ``_pallas_attention.attention_pallas`` runs it as its forward
(with the rows' logsumexp when differentiated; ``_mosaic_attention_bwd`` or the Triton kernels
take it from there). Hopper GPUs only: Pallas' Mosaic GPU interpreter (jax 0.10-0.11) has no
stores into wgmma accumulators, so on the CPU the tests check the lowering, and the numbers on a
GPU.

On an H200 (causal B4 S4096 H16 D128 bf16, ``benchmarks/kernels.py --only attention``):
pingpong 572 TFLOP/s, cuDNN 523, PyTorch 566. Speed against PyTorch's in the same round
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

__all__ = ["MosaicAttentionConfig", "mosaic_attention", "mosaic_attention_can"]

_LOG2E = math.log2(math.e)
_SWIZZLE_BYTES = 128
_SCHEDULES = (None, "pingpong", "overlap")


@dataclasses.dataclass(frozen=True)
class MosaicAttentionConfig:
    """Tiles of the kernel: ``block_q`` query rows per compute warpgroup (two per CTA),
    ``block_kv`` keys per step, ``stages`` key/value slots in flight; ``schedule`` how the
    compute warpgroups share the tensor cores: ``"pingpong"`` (in turns) or ``"overlap"`` (each
    overlaps its own products with its softmax). None takes what was measured faster: pingpong
    for causal attention and overlap without the mask; two slots for pingpong, three for
    overlap."""

    block_q: int = 64
    block_kv: int = 128
    stages: int | None = None
    schedule: str | None = None


def mosaic_attention_can(q_shape, k_shape, dtype, is_causal: bool,
                         config: MosaicAttentionConfig = MosaicAttentionConfig()) -> bool:
    """Whether ``mosaic_attention`` takes these shapes (it raises ``ValueError`` otherwise)."""
    return _refusal(q_shape, k_shape, dtype, is_causal, config) is None


def _refusal(q_shape, k_shape, dtype, is_causal, config) -> str | None:
    if config.schedule not in _SCHEDULES:
        return f"schedule must be one of {_SCHEDULES}, got {config.schedule!r}"
    if config.stages is not None and config.stages < 1:
        return f"stages must be None or at least 1, got {config.stages}"
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


def _kernel(q_ref, k_ref, v_ref, o_ref, lse_ref, q_smem, k_smem, v_smem, lse_smem, k_ready,
            v_ready, q_ready, k_free, v_free, turns, *, config, scale, causal, heads_per_kv):
    block_q, block_kv, stages = config.block_q, config.block_kv, config.stages
    batch, head = lax.axis_index("batch"), lax.axis_index("heads")
    tile = lax.axis_size("q_tile") - 1 - lax.axis_index("q_tile")  # longest causal rows first
    cta_q0 = tile * 2 * block_q
    kv_steps = pl.cdiv(cta_q0 + 2 * block_q, block_kv) if causal else k_ref.shape[2] // block_kv
    wg = lax.axis_index("wg")

    @pl.when(wg < 2)
    def _compute():
        plgpu.set_max_registers(232, action="increase")  # 2 x 232 + 40 per lane: the 64K file
        my_q = q_smem.at[wg]
        c = scale * _LOG2E  # scores in log2 units: exp2(s * c - m)
        row_layout = plgpu.Layout.WGMMA.reduce(1)

        q0 = cta_q0 + wg * block_q
        plgpu.copy_gmem_to_smem(q_ref.at[batch, head, pl.ds(q0, block_q)], my_q,
                                q_ready.at[wg])
        plgpu.barrier_wait(q_ready.at[wg])

        def slot(step):
            return lax.rem(step, stages)

        def masked(s, step):
            layout = plgpu.Layout.WGMMA
            rows = plgpu.broadcasted_iota(jnp.int32, s.shape, 0, layout=layout) + q0
            cols = plgpu.broadcasted_iota(jnp.int32, s.shape, 1, layout=layout)
            return jnp.where(rows >= cols + step * block_kv, s, -jnp.inf)

        def softmax_step(s, m, total):
            """Online softmax of one score block: the new running max, the probabilities,
            the factor that rescales the output so far, the new row sums."""
            m_new = jnp.maximum(m, s.max(axis=1) * c)
            alpha = jnp.exp2(m - m_new)
            p = jnp.exp2(s * c - lax.broadcast_in_dim(m_new, s.shape, [0]))
            return m_new, p.astype(q_ref.dtype), alpha, total * alpha + p.sum(axis=1)

        def rescaled(o, alpha):
            return o * lax.broadcast_in_dim(alpha, o.shape, [0])

        def zeros(shape):
            return plgpu.layout_cast(jnp.zeros(shape, jnp.float32), plgpu.Layout.WGMMA)

        def scores(acc_s, step):
            acc_s[...] = zeros(acc_s.shape)
            plgpu.barrier_wait(k_ready.at[slot(step)])
            plgpu.wgmma(acc_s, my_q, k_smem.at[slot(step)].T)

        def steps(body, first, carry, end=None):
            """``body`` over key blocks ``first..end`` (``kv_steps`` by default); causal blocks
            wholly at or below the diagonal skip the mask."""
            end = kv_steps if end is None else end
            if not causal:
                return lax.fori_loop(first, end, functools.partial(body, mask=False), carry)
            unmasked = jnp.minimum(jnp.maximum(q0 // block_kv, first), end)
            carry = lax.fori_loop(first, unmasked, functools.partial(body, mask=False), carry)
            return lax.fori_loop(unmasked, end, functools.partial(body, mask=True), carry)

        m0 = plgpu.layout_cast(jnp.full((block_q,), -jnp.inf, jnp.float32), row_layout)
        total0 = plgpu.layout_cast(jnp.zeros((block_q,), jnp.float32), row_layout)

        def overlap(acc_s, acc_o):
            """Each warpgroup overlaps its own work: ``Q K_j^T`` and ``P_{j-1} V_{j-1}`` run
            on the tensor cores while it computes the softmax of block ``j``."""
            scores(acc_s, 0)
            s = plgpu.wgmma_accumulator_load(acc_s)
            plgpu.barrier_arrive(k_free.at[slot(0)])
            if causal:
                s = masked(s, 0)
            m, p, _, total = softmax_step(s, m0, total0)

            def body(step, carry, mask):
                m, p, total = carry
                scores(acc_s, step)  # Q K_step^T runs while P_{step-1} V_{step-1} queues
                plgpu.barrier_wait(v_ready.at[slot(step - 1)])
                plgpu.wgmma(acc_o, p, v_smem.at[slot(step - 1)])
                s = plgpu.wgmma_accumulator_load(acc_s, wait_n=1)  # P V may still run
                plgpu.barrier_arrive(k_free.at[slot(step)])
                if mask:
                    s = masked(s, step)
                m, p, alpha, total = softmax_step(s, m, total)
                o = plgpu.wgmma_accumulator_load(acc_o)
                plgpu.barrier_arrive(v_free.at[slot(step - 1)])
                acc_o[...] = rescaled(o, alpha)
                return m, p, total

            m, p, total = steps(body, 1, (m, p, total))
            plgpu.barrier_wait(v_ready.at[slot(kv_steps - 1)])
            plgpu.wgmma(acc_o, p, v_smem.at[slot(kv_steps - 1)])
            o = plgpu.wgmma_accumulator_load(acc_o)
            plgpu.barrier_arrive(v_free.at[slot(kv_steps - 1)])
            return o, m, total

        def pingpong(acc_s, acc_o):
            """The two warpgroups take turns on the tensor cores: ``turns`` (both arrive) pairs
            their steps with the second warpgroup one turn behind, so that one's products run
            while the other computes its softmax. A warpgroup's turn queues its ``P V`` and
            the next block's ``Q K^T`` together; it waits for both when its next turn
            begins."""
            def turn():
                plgpu.barrier_arrive(turns)
                plgpu.barrier_wait(turns)

            pl.when(wg == 1)(turn)
            acc_o[...] = zeros(acc_o.shape)
            scores(acc_s, 0)

            def body(step, carry, mask, issue_next=True):
                m, total = carry
                turn()
                s = plgpu.wgmma_accumulator_load(acc_s)  # and the last P V before it
                plgpu.barrier_arrive(k_free.at[slot(step)])

                @pl.when(step > 0)
                def _():
                    plgpu.barrier_arrive(v_free.at[slot(step - 1)])
                if mask:
                    s = masked(s, step)
                m, p, alpha, total = softmax_step(s, m, total)
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

        head_dim = q_ref.shape[-1]
        o, m, total = pl.run_scoped(pingpong if turns is not None else overlap,
                                    plgpu.ACC((block_q, block_kv), jnp.float32),
                                    plgpu.ACC((block_q, head_dim), jnp.float32))
        # the query block is spent: its slot takes the output
        my_q[...] = rescaled(o, 1.0 / total).astype(my_q.dtype)
        rows = (batch, head, pl.ds(q0, block_q))
        if lse_ref is not None:
            lse_smem.at[wg][...] = m + jnp.log(total) * _LOG2E
        plgpu.commit_smem()
        plgpu.copy_smem_to_gmem(my_q, o_ref.at[rows])
        if lse_ref is not None:
            plgpu.copy_smem_to_gmem(lse_smem.at[wg], lse_ref.at[rows])
        plgpu.wait_smem_to_gmem(0)

    @pl.when(wg == 2)
    def _copy():
        plgpu.set_max_registers(40, action="decrease")

        kv_head = head // heads_per_kv

        @pl.loop(0, kv_steps)
        def _load(step):
            slot = lax.rem(step, stages)
            rows = (batch, kv_head, pl.ds(step * block_kv, block_kv))

            @pl.when(step >= stages)  # wait until both warpgroups are done with the slot
            def _():
                plgpu.barrier_wait(k_free.at[slot])
            plgpu.copy_gmem_to_smem(k_ref.at[rows], k_smem.at[slot], k_ready.at[slot])

            @pl.when(step >= stages)
            def _():
                plgpu.barrier_wait(v_free.at[slot])
            plgpu.copy_gmem_to_smem(v_ref.at[rows], v_smem.at[slot], v_ready.at[slot])


def swizzled_smem(shape, dtype, swizzle: int = _SWIZZLE_BYTES):
    """Shared memory in tiles of 8 rows by ``swizzle`` bytes, swizzled (what wgmma reads)."""
    tiling = plgpu.TilingTransform((8, swizzle // jnp.dtype(dtype).itemsize))
    return plgpu.SMEM(shape, dtype, transforms=(tiling, plgpu.SwizzleTransform(swizzle)))


@functools.partial(jax.jit, static_argnames=("scale", "is_causal", "config", "with_lse"))
def mosaic_attention(q: jax.Array, k: jax.Array, v: jax.Array, *, scale: float,
                     is_causal: bool, config: MosaicAttentionConfig = MosaicAttentionConfig(),
                     with_lse: bool = False) -> jax.Array | tuple[jax.Array, jax.Array]:
    """Flash attention of (B, H, L, D) ``q`` over (B, Hk, S, D) ``k``/``v``; (B, H, L, D).

    Softmax in float32 (``exp2`` in the approximate form), ``scale`` applied to the scores.
    ``with_lse``: also the rows' logsumexp of the scaled scores in base 2, (B, H, L) float32,
    what ``_pallas_attention``'s backward takes (at most two key/value slots then).

    Raises:
        ValueError: for shapes, dtypes or a causal length mismatch that
            ``mosaic_attention_can`` refuses, or a scale that is not positive.

    Example (on a Hopper GPU):
        >>> q = k = v = jnp.ones((1, 2, 128, 64), jnp.bfloat16)
        >>> mosaic_attention(q, k, v, scale=0.125, is_causal=True).shape
        (1, 2, 128, 64)
    """
    check_operands("mosaic_attention", q, k, v, scale,
                   _refusal(q.shape, k.shape, q.dtype, is_causal, config))
    b, h, q_len, d = q.shape
    kv_len = k.shape[2]
    pingpong = config.schedule == "pingpong" or (config.schedule is None and is_causal)
    bq, bkv = config.block_q, config.block_kv
    stages = min(config.stages or (2 if pingpong else 3), kv_len // bkv)
    if with_lse:  # at head dim 128, three slots and the logsumexp's buffer exceed the 227 KiB
        stages = min(stages, 2)
    config = dataclasses.replace(config, stages=stages)
    body = functools.partial(_kernel, config=config, scale=float(scale), causal=is_causal,
                             heads_per_kv=h // k.shape[1])

    def entry(q_ref, k_ref, v_ref, o_ref, lse_ref=None):
        pl.run_scoped(
            lambda *scratch: body(q_ref, k_ref, v_ref, o_ref, lse_ref, *scratch),
            swizzled_smem((2, bq, d), q.dtype),
            swizzled_smem((stages, bkv, d), q.dtype),
            swizzled_smem((stages, bkv, d), q.dtype),
            plgpu.SMEM((2, bq), jnp.float32) if with_lse else None,
            plgpu.Barrier(num_barriers=stages),
            plgpu.Barrier(num_barriers=stages),
            plgpu.Barrier(num_barriers=2),
            plgpu.Barrier(num_arrivals=2, num_barriers=stages),
            plgpu.Barrier(num_arrivals=2, num_barriers=stages),
            plgpu.Barrier(num_arrivals=2) if pingpong else None,
            collective_axes="wg",
        )

    outputs = plgpu.kernel(
        entry,
        out_type=(jax.ShapeDtypeStruct(q.shape, q.dtype),
                  *[jax.ShapeDtypeStruct(q.shape[:3], jnp.float32)] * with_lse),
        grid=(h, q_len // (2 * bq), b),  # measured faster than batch before query tiles
        grid_names=("heads", "q_tile", "batch"),
        num_threads=3,
        thread_name="wg",
        kernel_name="flash_attention_fwd_mosaic",
        compiler_params=plgpu.CompilerParams(approx_math=True),
    )(q, k, v)
    return outputs if with_lse else outputs[0]
