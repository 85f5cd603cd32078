"""Flash attention backward on Hopper through Mosaic GPU (``plgpu.kernel``: TMA, wgmma), in one
kernel: FlashAttention-3's, with ``dQ`` added into a float32 buffer by TMA reductions.

One CTA takes ``2 * block_kv`` keys of one (batch, key/value head): two compute warpgroups own
``block_kv`` keys each (their rows of K and V, their dK and dV accumulators), and walk the query
tiles of ``block_q`` rows of every query head that shares the key/value head; a third warpgroup
only issues TMA copies of those tiles (Q, dO, the rows' logsumexp and delta) into ``stages``
shared-memory slots. With ``c = scale * log2(e)`` and the forward's base-2 logsumexp, per query
tile each warpgroup computes, transposed so that its keys are the rows:

    Pᵀ = exp2(c K Qᵀ - lse),   dSᵀ = Pᵀ * (V dOᵀ - delta),   dV += Pᵀ dO,   dK += dSᵀ Q

then both write dSᵀ to shared memory, and each computes half of the head dim of
``dQ = dS K`` over the CTA's keys and adds it to the float32 ``dQ`` in global memory with a TMA
reduction. The scale of dK and dQ is applied once at the end. The CTAs' reductions into one
query tile land in any order, so dQ may differ between runs in its last bits (dK and dV do not).

Inputs as ``_mosaic_attention``'s (B, H, L, D) queries and (B, Hk, S, D) keys and values,
bfloat16 or float16, D 64 or 128, ``L`` a multiple of ``block_q``, ``S`` of ``2 * block_kv``;
causal only with L == S (``mosaic_attention_bwd_can``). Hopper GPUs only; on the CPU the tests
check the lowering (the Mosaic GPU interpreter has no stores into wgmma accumulators).

On an H200 (B4 S4096 H16 D128 bf16, the backward alone with the XLA work around the kernel,
in the 2.5x-forward FLOPs of ``benchmarks/kernels.py``; ``benchmarks/attention_schedules.py
--backward``, two runs): 456-462 TFLOP/s causal, 1.03-1.05x PyTorch's (cuDNN's kernels,
without XLA's clearing of their outputs) and 1.10-1.11x cuDNN's through JAX in the same rounds;
497-502 without the mask, 0.98-1.00x PyTorch's and 1.03-1.04x cuDNN's through JAX.

Each step slices K's and V's rows through a zero that LLVM cannot fold, so that their wgmma
descriptors are computed in the step. Without it, LLVM hoisted the 24 loop-invariant
descriptors (48 registers) out of the loop, ptxas spilled (264 bytes stored, 468 loaded,
causal), these among them, and every step reloaded them from local memory (21 local loads per
warp per step causal, 20 without the mask, in Nsight Compute's SASS counts). With it the kernel
is 1.06x faster causal and 1.14x without the mask in interleaved rounds, and ptxas spills 4
bytes causal, none without the mask. Each step also computes dSᵀ before it issues dV's product:
issued first, that product held Pᵀ's 16-bit registers while dSᵀ was computed, and the kernel
ran 0.87-0.90x as fast as with dSᵀ first. The causal mask is -inf in Sᵀ's accumulator before
its product. Measured slower and dropped
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
import inspect
import math

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import mosaic_gpu as plgpu

from ._mosaic_attention import check_operands, shape_refusal, swizzled_smem

__all__ = ["MosaicAttentionBwdConfig", "mosaic_attention_bwd", "mosaic_attention_bwd_can"]

_LOG2E = math.log2(math.e)
_LOAD_NEEDS_INDEX = inspect.signature(plgpu.load).parameters["idx"].default is (
    inspect.Parameter.empty)


def _load(ref, layout):
    """The whole of ``ref`` into registers in ``layout`` (jax 0.10 needs the index ``()``;
    0.11 warns when given one)."""
    if _LOAD_NEEDS_INDEX:
        return plgpu.load(ref, (), layout=layout)
    return plgpu.load(ref, layout=layout)


@dataclasses.dataclass(frozen=True)
class MosaicAttentionBwdConfig:
    """Tiles of the backward: ``block_kv`` keys per compute warpgroup (two per CTA),
    ``block_q`` query rows per step, ``stages`` query tiles in flight."""

    block_q: int = 64
    block_kv: int = 64
    stages: int = 2


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
    return shape_refusal(q_shape, k_shape, dtype, is_causal, config.block_q, 2 * config.block_kv)


def _kernel(q_ref, k_ref, v_ref, do_ref, lse_ref, delta_ref, dq_ref, dk_ref, dv_ref,
            k_smem, v_smem, q_smem, do_smem, lse_smem, delta_smem, ds_smem, dq_smem,
            kv_ready, q_ready, do_ready, lse_ready, delta_ready, free, ds_ready, done, *,
            config, scale, causal, heads_per_kv):
    block_q, block_kv, stages = config.block_q, config.block_kv, config.stages
    batch, kv_head = lax.axis_index("batch"), lax.axis_index("heads")
    cta_k0 = lax.axis_index("kv_tile") * 2 * block_kv
    q_tiles = q_ref.shape[2] // block_q
    first = cta_k0 // block_q if causal else 0  # causal: earlier queries see none of these keys
    per_head = q_tiles - first
    # causal: the query tiles from ``first`` that start before the CTA's keys end need the mask
    masked_tiles = pl.cdiv(cta_k0 + 2 * block_kv - first * block_q, block_q)
    wg = lax.axis_index("wg")

    def tile_of(step):
        """Step -> (query head, first query row) of the tile it takes."""
        head = kv_head * heads_per_kv + step // per_head
        return head, (first + lax.rem(step, per_head)) * block_q

    @pl.when(wg < 2)
    def _compute():
        plgpu.set_max_registers(240, action="increase")  # 2 x 240 + 24: the 64K file
        head_dim = q_ref.shape[-1]
        half = head_dim // 2
        my_keys = pl.ds(wg * block_kv, block_kv)
        k0 = cta_k0 + wg * block_kv
        rows = (batch, kv_head, pl.ds(k0, block_kv))
        plgpu.copy_gmem_to_smem(k_ref.at[rows], k_smem.at[my_keys], kv_ready.at[wg])
        plgpu.copy_gmem_to_smem(v_ref.at[rows], v_smem.at[my_keys], kv_ready.at[2 + wg])
        plgpu.barrier_wait(kv_ready.at[wg])
        plgpu.barrier_wait(kv_ready.at[2 + wg])
        c = scale * _LOG2E
        layout = plgpu.Layout.WGMMA
        per_query = layout.reduce(0)  # a (block_q,) row statistic broadcast down the keys

        def zeros(shape):
            return plgpu.layout_cast(jnp.zeros(shape, jnp.float32), layout)

        def masked_scores(shape, q0):
            """Sᵀ's accumulator before its product: 0, or -inf where a query precedes a key
            (so that its probability comes out 0)."""
            keys = plgpu.broadcasted_iota(jnp.int32, shape, 0, layout=layout) + k0
            queries = plgpu.broadcasted_iota(jnp.int32, shape, 1, layout=layout) + q0
            return jnp.where(queries >= keys, zeros(shape), -jnp.inf)

        def body(acc_dk, acc_dv, acc_s, acc_dp, acc_dq):
            acc_dk[...] = zeros(acc_dk.shape)
            acc_dv[...] = zeros(acc_dv.shape)

            def step(t, _, mask):
                slot, buf = lax.rem(t, stages), lax.rem(t, 2)
                head, q0 = tile_of(t)
                q, d_o = q_smem.at[slot], do_smem.at[slot]
                # K's and V's rows through a zero that LLVM cannot fold, so that their wgmma
                # descriptors are computed here, not hoisted out of the loop and spilled (see
                # the module's docstring); times 2 * block_kv so that the layout inference
                # still sees the slices' alignment
                zero = lax.optimization_barrier(jnp.int32(0)) * (2 * block_kv)
                kv_rows = pl.ds(wg * block_kv + zero, block_kv)
                acc_s[...] = masked_scores(acc_s.shape, q0) if mask else zeros(acc_s.shape)
                acc_dp[...] = zeros(acc_dp.shape)
                plgpu.barrier_wait(q_ready.at[slot])
                plgpu.wgmma(acc_s, k_smem.at[kv_rows], q.T)  # Sᵀ = K Qᵀ
                plgpu.barrier_wait(do_ready.at[slot])
                plgpu.wgmma(acc_dp, v_smem.at[kv_rows], d_o.T)  # dPᵀ = V dOᵀ
                plgpu.barrier_wait(lse_ready.at[slot])
                lse = _load(lse_smem.at[slot], per_query)
                s = plgpu.wgmma_accumulator_load(acc_s, wait_n=1)  # dPᵀ may still run
                p = jnp.exp2(s * c - lax.broadcast_in_dim(lse, s.shape, [1]))
                plgpu.barrier_wait(delta_ready.at[slot])
                delta = _load(delta_smem.at[slot], per_query)
                dp = plgpu.wgmma_accumulator_load(acc_dp)
                # dSᵀ before dV's product: issued first, that product pins Pᵀ's 16-bit
                # registers while dSᵀ is computed, and ptxas spills in the loop
                p_16 = p.astype(q.dtype)
                ds = (p * (dp - lax.broadcast_in_dim(delta, dp.shape, [1]))).astype(q.dtype)
                plgpu.wgmma(acc_dv, p_16, d_o)  # dV += Pᵀ dO
                plgpu.wgmma(acc_dk, ds, q)  # dK += dSᵀ Q
                ds_smem.at[buf, my_keys][...] = ds
                plgpu.commit_smem()
                plgpu.barrier_arrive(ds_ready.at[buf])
                plgpu.barrier_wait(ds_ready.at[buf])  # both halves of dSᵀ are in
                acc_dq[...] = zeros(acc_dq.shape)
                plgpu.wgmma(acc_dq, ds_smem.at[buf].T,
                            k_smem.at[pl.ds(zero, 2 * block_kv), pl.ds(wg * half, half)])
                dq = plgpu.wgmma_accumulator_load(acc_dq)  # and every product before it
                plgpu.barrier_arrive(free.at[slot])
                plgpu.wait_smem_to_gmem(0, wait_read_only=True)  # the last step's dQ is out
                dq_smem.at[wg][...] = dq
                plgpu.commit_smem()
                plgpu.copy_smem_to_gmem(
                    dq_smem.at[wg],
                    dq_ref.at[batch, head, pl.ds(q0, block_q), pl.ds(wg * half, half)],
                    reduction_op="add")
                return ()

            def per_query_head(g, _):
                start = g * per_head
                if not causal:
                    return lax.fori_loop(start, start + per_head,
                                         functools.partial(step, mask=False), ())
                split = start + jnp.minimum(masked_tiles, per_head)
                lax.fori_loop(start, split, functools.partial(step, mask=True), ())
                return lax.fori_loop(split, start + per_head,
                                     functools.partial(step, mask=False), ())

            lax.fori_loop(0, heads_per_kv, per_query_head, ())
            return acc_dk[...], acc_dv[...]

        dk, dv = pl.run_scoped(body,
                               plgpu.ACC((block_kv, head_dim), jnp.float32),
                               plgpu.ACC((block_kv, head_dim), jnp.float32),
                               plgpu.ACC((block_kv, block_q), jnp.float32),
                               plgpu.ACC((block_kv, block_q), jnp.float32),
                               plgpu.ACC((block_q, half), jnp.float32))
        plgpu.barrier_arrive(done)
        plgpu.barrier_wait(done)  # the other warpgroup's dQ products have read all of K
        k_smem.at[my_keys][...] = (dk * scale).astype(k_smem.dtype)
        v_smem.at[my_keys][...] = dv.astype(v_smem.dtype)
        plgpu.commit_smem()
        plgpu.copy_smem_to_gmem(k_smem.at[my_keys], dk_ref.at[rows])
        plgpu.copy_smem_to_gmem(v_smem.at[my_keys], dv_ref.at[rows])
        plgpu.wait_smem_to_gmem(0)

    @pl.when(wg == 2)
    def _copy():
        plgpu.set_max_registers(24, action="decrease")

        @pl.loop(0, heads_per_kv * per_head)
        def _issue(t):
            slot = lax.rem(t, stages)
            head, q0 = tile_of(t)
            rows = (batch, head, pl.ds(q0, block_q))

            @pl.when(t >= stages)  # wait until both warpgroups are done with the slot
            def _():
                plgpu.barrier_wait(free.at[slot])
            plgpu.copy_gmem_to_smem(q_ref.at[rows], q_smem.at[slot], q_ready.at[slot])
            plgpu.copy_gmem_to_smem(do_ref.at[rows], do_smem.at[slot], do_ready.at[slot])
            plgpu.copy_gmem_to_smem(lse_ref.at[rows], lse_smem.at[slot], lse_ready.at[slot])
            plgpu.copy_gmem_to_smem(delta_ref.at[rows], delta_smem.at[slot],
                                    delta_ready.at[slot])


@functools.partial(jax.jit, static_argnames=("scale", "is_causal", "config"))
def mosaic_attention_bwd(q: jax.Array, k: jax.Array, v: jax.Array, out: jax.Array,
                         lse: jax.Array, d_out: jax.Array, *, scale: float, is_causal: bool,
                         config: MosaicAttentionBwdConfig = MosaicAttentionBwdConfig()
                         ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Gradients (dq, dk, dv) of flash attention, from the forward's output and base-2
    logsumexp (``mosaic_attention(..., with_lse=True)``).

    Args:
        q: (B, H, L, D); k, v: (B, Hk, S, D), Hk dividing H; out, d_out: (B, H, L, D);
            lse: (B, H, L) float32, the rows' logsumexp of the scaled scores in base 2.
        scale: the forward's score scale; is_causal: its top-left causal mask.

    Returns:
        dq, dk, dv in the shapes of q, k, v and their dtype (dk and dv summed over the query
        heads that share each key/value head).

    Raises:
        ValueError: for what ``mosaic_attention_bwd_can`` refuses, a scale that is not
            positive, or k and v that differ in shape or from q in dtype.

    Example (on a Hopper GPU):
        >>> q = k = v = jnp.ones((1, 2, 128, 64), jnp.bfloat16)
        >>> out, lse = mosaic_attention(q, k, v, scale=0.125, is_causal=True, with_lse=True)
        >>> dq, dk, dv = mosaic_attention_bwd(q, k, v, out, lse, jnp.ones_like(out),
        ...                                   scale=0.125, is_causal=True)
    """
    check_operands("mosaic_attention_bwd", q, k, v, scale,
                   _refusal(q.shape, k.shape, q.dtype, is_causal, config))
    b, h, _, d = q.shape
    kv_len = k.shape[2]
    bq, bkv, stages = config.block_q, config.block_kv, config.stages
    delta = jnp.einsum("bhld,bhld->bhl", out.astype(jnp.float32), d_out.astype(jnp.float32))
    body = functools.partial(_kernel, config=config, scale=float(scale), causal=is_causal,
                             heads_per_kv=h // k.shape[1])

    # each warpgroup reads half of K's columns for dQ: that half must be whole swizzle tiles,
    # and the operands of one product must share their swizzle
    tiles = functools.partial(swizzled_smem, dtype=q.dtype,
                              swizzle=min(128, d // 2 * q.dtype.itemsize))

    def entry(*refs):
        pl.run_scoped(
            lambda *scratch: body(*refs, *scratch),
            tiles((2 * bkv, d)),
            tiles((2 * bkv, d)),
            tiles((stages, bq, d)),
            tiles((stages, bq, d)),
            plgpu.SMEM((stages, bq), jnp.float32),
            plgpu.SMEM((stages, bq), jnp.float32),
            tiles((2, 2 * bkv, bq)),
            swizzled_smem((2, bq, d // 2), jnp.float32),
            plgpu.Barrier(num_barriers=4),  # K and V of each warpgroup
            *[plgpu.Barrier(num_barriers=stages)] * 4,
            plgpu.Barrier(num_arrivals=2, num_barriers=stages),
            plgpu.Barrier(num_arrivals=2, num_barriers=2),
            plgpu.Barrier(num_arrivals=2),
            collective_axes="wg",
        )

    kernel = pl.kernel(  # plgpu.kernel's batching wrapper does not take Refs; pl.kernel does
        entry,
        out_type=(),
        mesh=plgpu.Mesh(grid=(k.shape[1], kv_len // (2 * bkv), b),
                        grid_names=("heads", "kv_tile", "batch"), num_threads=3,
                        thread_name="wg"),
        compiler_params=plgpu.CompilerParams(approx_math=True),
        name="flash_attention_bwd_mosaic",
    )

    def on_refs(refs):
        kernel(q, k, v, d_out.astype(q.dtype), lse, delta, *refs)

    # run_state gives the kernel dQ's zeroed float32 sum and dK, dV to write (uninitialised,
    # lax.empty) as Refs, and returns them as values: a pure call, which custom_partitioning
    # can lower (a jax.new_ref here could not be lowered under partition_rows)
    dq_sum, dk, dv = pl.run_state(on_refs)(
        (jnp.zeros(q.shape, jnp.float32), lax.empty(k.shape, k.dtype), lax.empty(v.shape, v.dtype)))
    return (dq_sum * scale).astype(q.dtype), dk, dv
