"""Pallas flash attention, forward and backward kernels, for (B, H, S, D) layouts.

    out = softmax(q @ kᵀ * scale + causal mask) @ v        (per batch entry and query head)

Forward (one program per ``[block_q]`` rows of one head): keep the query tile in registers and
walk the key/value tiles of ``block_k`` rows, carrying the online softmax of FlashAttention: a
running row max ``m``, a running sum ``l`` of ``exp(s - m)``, and the output accumulator rescaled
by ``exp(m_old - m_new)`` whenever the max grows. No ``[S_q, S_k]`` matrix is ever in memory. The
scores live in the base-2 domain (``exp2`` is one instruction), and the forward saves the
per-row ``logsumexp`` (base 2) for the backward.

Backward recomputes the probabilities tile by tile from that logsumexp,
``p = exp2(s - lse)``, with ``delta = rowsum(dO * O)`` precomputed once:

    dV = Pᵀ dO,   dP = dO Vᵀ,   dS = P * (dP - delta),   dQ = dS K * scale,   dK = dSᵀ Q * scale

in two kernels: one program per key tile accumulates its dK, dV over the query tiles of every
query head that shares it (grouped-query attention needs no atomics), one program per query
tile accumulates its dQ over the key tiles.

Masks: causal is PyTorch's ``is_causal`` (top-left aligned: query row ``i`` sees keys ``<= i``).
Tiles wholly visible skip the mask arithmetic; only diagonal and ragged-edge tiles pay for it.
Sequence lengths need not divide the blocks (masked loads and stores); head dims are padded in
registers to a power of two (at least 16). Grouped-query heads: ``k``/``v`` may have ``Hk``
heads dividing ``q``'s ``H``; query head ``h`` reads key/value head ``h // (H // Hk)``.

On Hopper the forward and the backward are Mosaic GPU kernels where they take the shapes
(``_mosaic_attention``, ``_mosaic_attention_bwd``); ``AttentionStatic.cudnn_backward`` takes the
gradients by cuDNN's backward instead (``_cudnn_attention``), from either forward's residuals.

Use through ``torsh_fn.kernels.attention`` (``impl="pallas"``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

from ._cudnn_attention import cudnn_attention_bwd
from ._mosaic_attention import mosaic_attention, mosaic_attention_can, scale_refusal
from ._mosaic_attention_bwd import mosaic_attention_bwd, mosaic_attention_bwd_can
from ._pallas_common import compiler_params, interpret_mode, on_hopper
from ._pallas_tiles import dot_precision, idiv, irem, tile_size
from ._row_partition import partition_rows

MAX_HEAD_DIM = 256
_LOG2_E = math.log2(math.e)


@dataclasses.dataclass(frozen=True)
class AttentionConfig:
    """Tile sizes (powers of two >= 16) and launch knobs of the three kernels."""

    block_q: int = 128  # forward: query rows per program
    block_k: int = 64  # forward: key rows per step
    block_q_dkv: int = 64  # dK/dV kernel: query rows per step
    block_k_dkv: int = 128  # dK/dV kernel: key rows per program
    block_q_dq: int = 128  # dQ kernel: query rows per program
    block_k_dq: int = 64  # dQ kernel: key rows per step
    num_warps: int = 8
    num_stages: int = 3
    bwd_num_warps: int = 8
    bwd_num_stages: int = 2

    def __post_init__(self):
        for field in dataclasses.fields(self):
            size = getattr(self, field.name)
            if field.name.startswith("block") and (size < 16 or size & (size - 1)):
                raise ValueError(f"AttentionConfig: {field.name} must be a power of two >= 16, "
                                 f"got {size}")

    def fit(self, q_len: int, kv_len: int) -> AttentionConfig:
        """This config with no block longer than its (power-of-two-rounded) sequence."""
        return dataclasses.replace(
            self, block_q=tile_size(q_len, self.block_q), block_k=tile_size(kv_len, self.block_k),
            block_q_dkv=tile_size(q_len, self.block_q_dkv),
            block_k_dkv=tile_size(kv_len, self.block_k_dkv),
            block_q_dq=tile_size(q_len, self.block_q_dq),
            block_k_dq=tile_size(kv_len, self.block_k_dq))


def default_config(head_dim: int) -> AttentionConfig:
    """Measured defaults by (padded) head dim: larger heads take shorter tiles (registers)."""
    if head_dim > 128:
        return AttentionConfig(block_q=64, block_k=32, block_q_dkv=32, block_k_dkv=64,
                               block_q_dq=64, block_k_dq=32, num_stages=2)
    return AttentionConfig()


class AttentionStatic(NamedTuple):
    """The hashable static argument of :func:`attention_pallas`; ``cudnn_backward``: take the
    gradients by cuDNN's backward (``_cudnn_attention.cudnn_attention_bwd``) instead of ours,
    for calls that cuDNN takes (``attention._cudnn_can``: 16-bit, on a GPU)."""

    causal: bool
    scale: float
    cfg: AttentionConfig | None
    cudnn_backward: bool = False


class _Dims(NamedTuple):
    heads: int
    kv_heads: int
    q_len: int
    kv_len: int
    head_dim: int
    v_dim: int

    @property
    def group(self) -> int:
        return self.heads // self.kv_heads

    @property
    def d_pad(self) -> int:
        return tile_size(self.head_dim)

    @property
    def dv_pad(self) -> int:
        return tile_size(self.v_dim)


def _rows(ref, head, start, block: int, n_rows: int, width: int, n_cols: int, edge: bool):
    """``ref[head, start:start+block, :width]`` (zeros past ``n_rows`` when ``edge``, and past
    ``n_cols``): one tile of a (heads, S, D) array, D padded to ``width``."""
    mask = None
    if edge:
        mask = (start + jnp.arange(block) < n_rows)[:, None]
    if n_cols != width:
        col_mask = (jnp.arange(width) < n_cols)[None, :]
        mask = col_mask if mask is None else mask & col_mask
    return plgpu.load(ref.at[head, pl.ds(start, block), pl.ds(0, width)], mask=mask,
                      other=None if mask is None else 0)


def _store_rows(ref, head, start, value, n_rows: int, n_cols: int):
    block, width = value.shape
    mask = (start + jnp.arange(block) < n_rows)[:, None] & (jnp.arange(width) < n_cols)[None, :]
    plgpu.store(ref.at[head, pl.ds(start, block), pl.ds(0, width)], value.astype(ref.dtype),
                mask=mask)


def _row_stats(ref, head, start, block: int, n_rows: int, other: float):
    """A per-row float32 statistic (logsumexp, delta) of one tile, ``other`` past the end."""
    rows = start + jnp.arange(block)
    return plgpu.load(ref.at[head, pl.ds(start, block)], mask=rows < n_rows, other=other)


def _kv_head(program_head, dims: _Dims):
    """Flattened (batch * heads) query head -> flattened (batch * kv_heads) key/value head."""
    batch, head = idiv(program_head, dims.heads), irem(program_head, dims.heads)
    return batch * dims.kv_heads + idiv(head, dims.group)


def _kv_steps(i, block_q: int, block_k: int, dims: _Dims, causal: bool, kv_edge: bool):
    """For query tile ``i``: (key tiles needing no mask, key tiles to visit in all)."""
    n_kv = pl.cdiv(dims.kv_len, block_k)
    if not causal:
        return n_kv - int(kv_edge), n_kv
    # Tile j is wholly visible when its last key <= the tile's first query: (j + 1) * bk <= i * bq
    # + 1; it is visited while its first key <= the tile's last query.
    full = jnp.minimum(idiv(i * block_q + 1, block_k), dims.kv_len // block_k)
    last = jnp.minimum(idiv((i + 1) * block_q + block_k - 1, block_k), n_kv)
    return full, last


def _fwd_kernel(q_ref, k_ref, v_ref, o_ref, lse_ref, *, static: AttentionStatic, dims: _Dims,
                cfg: AttentionConfig):
    bq, bk = cfg.block_q, cfg.block_k
    i, head = pl.program_id(0), pl.program_id(1)
    kv = _kv_head(head, dims)
    q = _rows(q_ref, head, i * bq, bq, dims.q_len, dims.d_pad, dims.head_dim,
              dims.q_len % bq != 0)
    q_pos = i * bq + jnp.arange(bq)
    qk_scale = static.scale * _LOG2_E  # scores in the base-2 domain

    def step(j, carry, masked: bool):
        acc, m, row_sum = carry  # [bq, dv_pad], [bq], [bq]
        k = _rows(k_ref, kv, j * bk, bk, dims.kv_len, dims.d_pad, dims.head_dim, masked)
        s = plgpu.dot(q, k, trans_b=True, precision=dot_precision(q.dtype)) * qk_scale  # [bq, bk]
        if masked:
            k_pos = j * bk + jnp.arange(bk)
            ok = (k_pos < dims.kv_len)[None, :]
            if static.causal:
                ok = ok & (k_pos[None, :] <= q_pos[:, None])
            s = jnp.where(ok, s, -jnp.inf)
        m_new = jnp.maximum(m, jnp.max(s, axis=1))
        alpha = jnp.exp2(m - m_new)
        p = jnp.exp2(s - m_new[:, None])  # [bq, bk]
        v = _rows(v_ref, kv, j * bk, bk, dims.kv_len, dims.dv_pad, dims.v_dim, masked)
        pv = plgpu.dot(p.astype(v.dtype), v, precision=dot_precision(v.dtype))
        return acc * alpha[:, None] + pv, m_new, row_sum * alpha + jnp.sum(p, axis=1)

    full, last = _kv_steps(i, bq, bk, dims, static.causal, dims.kv_len % bk != 0)
    carry = (jnp.zeros((bq, dims.dv_pad), jnp.float32), jnp.full((bq,), -jnp.inf, jnp.float32),
             jnp.zeros((bq,), jnp.float32))
    carry = lax.fori_loop(0, full, functools.partial(step, masked=False), carry)
    acc, m, row_sum = lax.fori_loop(full, last, functools.partial(step, masked=True), carry)
    _store_rows(o_ref, head, i * bq, acc / row_sum[:, None], dims.q_len, dims.v_dim)
    plgpu.store(lse_ref.at[head, pl.ds(i * bq, bq)], m + jnp.log2(row_sum), mask=q_pos < dims.q_len)


def _dkdv_kernel(q_ref, k_ref, v_ref, do_ref, lse_ref, delta_ref, dk_ref, dv_ref, *,
                 static: AttentionStatic, dims: _Dims, cfg: AttentionConfig):
    bq, bk = cfg.block_q_dkv, cfg.block_k_dkv
    j, kv = pl.program_id(0), pl.program_id(1)
    k_edge = dims.kv_len % bk != 0
    k = _rows(k_ref, kv, j * bk, bk, dims.kv_len, dims.d_pad, dims.head_dim, k_edge)
    v = _rows(v_ref, kv, j * bk, bk, dims.kv_len, dims.dv_pad, dims.v_dim, k_edge)
    k_pos = j * bk + jnp.arange(bk)
    qk_scale = static.scale * _LOG2_E
    n_q = pl.cdiv(dims.q_len, bq)
    q_edge = dims.q_len % bq != 0
    # Padded query rows load lse = +inf, so their probabilities are exp2(-inf) = 0; padded key
    # rows produce dK, dV rows that are never stored: only the causal diagonal needs a mask.

    def step(i, carry, head, masked: bool):
        dk, dv = carry  # [bk, d_pad], [bk, dv_pad] float32
        q = _rows(q_ref, head, i * bq, bq, dims.q_len, dims.d_pad, dims.head_dim, q_edge)
        do = _rows(do_ref, head, i * bq, bq, dims.q_len, dims.dv_pad, dims.v_dim, q_edge)
        lse = _row_stats(lse_ref, head, i * bq, bq, dims.q_len, jnp.inf)
        delta = _row_stats(delta_ref, head, i * bq, bq, dims.q_len, 0.0)
        s_t = plgpu.dot(k, q, trans_b=True, precision=dot_precision(k.dtype)) * qk_scale  # [bk, bq]
        p_t = jnp.exp2(s_t - lse[None, :])
        if masked:
            p_t = jnp.where(k_pos[:, None] <= i * bq + jnp.arange(bq)[None, :], p_t, 0.0)
        dv = dv + plgpu.dot(p_t.astype(do.dtype), do, precision=dot_precision(do.dtype))
        dp_t = plgpu.dot(v, do, trans_b=True, precision=dot_precision(v.dtype))  # [bk, bq]
        ds_t = p_t * (dp_t - delta[None, :])
        return dk + plgpu.dot(ds_t.astype(q.dtype), q, precision=dot_precision(q.dtype)), dv

    if static.causal:  # query tile i is visited once its last row reaches this tile's first key
        first = idiv(j * bk, bq)
        full = jnp.minimum(idiv((j + 1) * bk - 1 + bq - 1, bq), n_q)
    else:
        first = full = 0

    def per_head(g, carry):
        head = idiv(kv, dims.kv_heads) * dims.heads + irem(kv, dims.kv_heads) * dims.group
        head = head + g
        carry = lax.fori_loop(first, full, functools.partial(step, head=head, masked=True), carry)
        return lax.fori_loop(full, n_q, functools.partial(step, head=head, masked=False), carry)

    carry = (jnp.zeros((bk, dims.d_pad), jnp.float32), jnp.zeros((bk, dims.dv_pad), jnp.float32))
    dk, dv = lax.fori_loop(0, dims.group, per_head, carry)
    _store_rows(dk_ref, kv, j * bk, dk * static.scale, dims.kv_len, dims.head_dim)
    _store_rows(dv_ref, kv, j * bk, dv, dims.kv_len, dims.v_dim)


def _dq_kernel(q_ref, k_ref, v_ref, do_ref, lse_ref, delta_ref, dq_ref, *,
               static: AttentionStatic, dims: _Dims, cfg: AttentionConfig):
    bq, bk = cfg.block_q_dq, cfg.block_k_dq
    i, head = pl.program_id(0), pl.program_id(1)
    kv = _kv_head(head, dims)
    q_edge = dims.q_len % bq != 0
    q = _rows(q_ref, head, i * bq, bq, dims.q_len, dims.d_pad, dims.head_dim, q_edge)
    do = _rows(do_ref, head, i * bq, bq, dims.q_len, dims.dv_pad, dims.v_dim, q_edge)
    lse = _row_stats(lse_ref, head, i * bq, bq, dims.q_len, jnp.inf)
    delta = _row_stats(delta_ref, head, i * bq, bq, dims.q_len, 0.0)
    q_pos = i * bq + jnp.arange(bq)
    qk_scale = static.scale * _LOG2_E
    # Padded key rows load as zeros: their dS entries multiply zero rows of K, adding nothing.

    def step(j, dq, masked: bool):
        k = _rows(k_ref, kv, j * bk, bk, dims.kv_len, dims.d_pad, dims.head_dim, masked)
        v = _rows(v_ref, kv, j * bk, bk, dims.kv_len, dims.dv_pad, dims.v_dim, masked)
        s = plgpu.dot(q, k, trans_b=True, precision=dot_precision(q.dtype)) * qk_scale  # [bq, bk]
        p = jnp.exp2(s - lse[:, None])
        if masked and static.causal:
            p = jnp.where(j * bk + jnp.arange(bk)[None, :] <= q_pos[:, None], p, 0.0)
        dp = plgpu.dot(do, v, trans_b=True, precision=dot_precision(do.dtype))  # [bq, bk]
        ds = p * (dp - delta[:, None])
        return dq + plgpu.dot(ds.astype(k.dtype), k, precision=dot_precision(k.dtype))

    full, last = _kv_steps(i, bq, bk, dims, static.causal, dims.kv_len % bk != 0)
    dq = jnp.zeros((bq, dims.d_pad), jnp.float32)
    dq = lax.fori_loop(0, full, functools.partial(step, masked=False), dq)
    dq = lax.fori_loop(full, last, functools.partial(step, masked=True), dq)
    _store_rows(dq_ref, head, i * bq, dq * static.scale, dims.q_len, dims.head_dim)


def _dims(q, k, v) -> _Dims:
    return _Dims(q.shape[1], k.shape[1], q.shape[2], k.shape[2], q.shape[3], v.shape[3])


def _config(static: AttentionStatic, dims: _Dims) -> AttentionConfig:
    cfg = static.cfg or default_config(max(dims.d_pad, dims.dv_pad))
    return cfg.fit(dims.q_len, dims.kv_len)


def _flat(x):
    """(B, H, S, D) -> (B * H, S, D), a free reshape."""
    return x.reshape(-1, *x.shape[2:])


def _forward(q, k, v, static: AttentionStatic):
    dims = _dims(q, k, v)
    cfg = _config(static, dims)
    batch_heads = q.shape[0] * dims.heads
    out, lse = pl.pallas_call(
        functools.partial(_fwd_kernel, static=static, dims=dims, cfg=cfg),
        out_shape=[jax.ShapeDtypeStruct((batch_heads, dims.q_len, dims.v_dim), q.dtype),
                   jax.ShapeDtypeStruct((batch_heads, dims.q_len), jnp.float32)],
        grid=(pl.cdiv(dims.q_len, cfg.block_q), batch_heads),
        interpret=interpret_mode(),
        compiler_params=compiler_params(cfg.num_warps, cfg.num_stages),
        name="flash_attention_fwd",
    )(_flat(q), _flat(k), _flat(v))
    return out.reshape(*q.shape[:3], dims.v_dim), lse.reshape(q.shape[:3])


def _backward(q, k, v, out, lse, d_out, static: AttentionStatic):
    dims = _dims(q, k, v)
    cfg = _config(static, dims)
    batch = q.shape[0]
    delta = jnp.sum(out.astype(jnp.float32) * d_out.astype(jnp.float32), axis=-1)
    args = (_flat(q), _flat(k), _flat(v), _flat(d_out.astype(q.dtype)), _flat(lse),
            _flat(delta))
    params = compiler_params(cfg.bwd_num_warps, cfg.bwd_num_stages)
    dk, dv = pl.pallas_call(
        functools.partial(_dkdv_kernel, static=static, dims=dims, cfg=cfg),
        out_shape=[jax.ShapeDtypeStruct((batch * dims.kv_heads, *k.shape[2:]), k.dtype),
                   jax.ShapeDtypeStruct((batch * dims.kv_heads, *v.shape[2:]), v.dtype)],
        grid=(pl.cdiv(dims.kv_len, cfg.block_k_dkv), batch * dims.kv_heads),
        interpret=interpret_mode(),
        compiler_params=params,
        name="flash_attention_dkdv",
    )(*args)
    dq = pl.pallas_call(
        functools.partial(_dq_kernel, static=static, dims=dims, cfg=cfg),
        out_shape=jax.ShapeDtypeStruct((batch * dims.heads, *q.shape[2:]), q.dtype),
        grid=(pl.cdiv(dims.q_len, cfg.block_q_dq), batch * dims.heads),
        interpret=interpret_mode(),
        compiler_params=params,
        name="flash_attention_dq",
    )(*args)
    return dq.reshape(q.shape), dk.reshape(k.shape), dv.reshape(v.shape)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def attention_pallas(q: jax.Array, k: jax.Array, v: jax.Array,
                     static: AttentionStatic) -> jax.Array:
    """Flash attention by the Pallas kernels.

    On a Hopper GPU the forward (alone, or with the logsumexp that the backward takes) and the
    backward are Mosaic GPU kernels (``_mosaic_attention``, ``_mosaic_attention_bwd``: TMA and
    wgmma, faster than the Triton kernels) where they take the shapes and no tile config is
    given; the Triton kernels do the rest. ``static.cudnn_backward`` takes the backward from
    cuDNN instead. The Mosaic backward adds dQ up in whatever order its CTAs finish: run to
    run, dQ may differ in its last bits.

    Args:
        q: (B, H, Sq, D); k: (B, Hk, Sk, D); v: (B, Hk, Sk, Dv), one dtype of
            ``_pallas_tiles.SUPPORTED_DTYPES``; Hk divides H; D, Dv <= 256; Sq, Sk >= 1.
        static: causal (top-left aligned), the score scale, and the tile config (None: default).

    Returns:
        (B, H, Sq, Dv) in ``q``'s dtype.

    Example:
        >>> q = jnp.ones((1, 4, 10, 64)); kv = jnp.ones((1, 2, 12, 64))
        >>> attention_pallas(q, kv, kv, AttentionStatic(True, 0.125, None)).shape
        (1, 4, 10, 64)
    """
    return _by_batch(functools.partial(_any_forward, with_lse=False), static, q, k, v)


def mosaic_takes(q, k, v, static: AttentionStatic, can=mosaic_attention_can) -> bool:
    """Whether a Mosaic GPU kernel runs this call of (B, H, S, D) arrays (or their shapes): on
    Hopper, without a tile config, with a scale the kernels take (``scale_refusal``), where
    ``can`` (the forward's or the backward's admission) takes the shapes."""
    return (static.cfg is None and scale_refusal(static.scale) is None and on_hopper()
            and k.shape == v.shape
            and q.dtype == k.dtype == v.dtype
            and can(q.shape, k.shape, q.dtype, static.causal))


def mosaic_runs(q, k, v, static: AttentionStatic, training: bool) -> bool:
    """Whether ``attention_pallas`` runs the Mosaic GPU kernels for these (B, H, S, D) arrays (or
    shapes): the forward, and in training the backward too (else the Triton kernels run)."""
    return mosaic_takes(q, k, v, static) and (
        not training or mosaic_takes(q, k, v, static, mosaic_attention_bwd_can))


def _any_forward(q, k, v, static: AttentionStatic, with_lse: bool):
    """The output, and with ``with_lse`` its logsumexp for the backward: by Mosaic GPU where it
    applies, else by the Triton kernel."""
    if mosaic_takes(q, k, v, static):
        return mosaic_attention(q, k, v, scale=static.scale, is_causal=static.causal,
                                with_lse=with_lse)
    out, lse = _forward(q, k, v, static)
    return (out, lse) if with_lse else out


def _by_batch(kernels, static: AttentionStatic, *args: jax.Array):
    """``kernels(*args, static)``, each device taking its own batch rows under sharding."""
    return partition_rows(lambda *a: kernels(*a, static), [True] * len(args))(*args)


def _attention_fwd(q, k, v, static):
    out, lse = _by_batch(functools.partial(_any_forward, with_lse=True), static, q, k, v)
    return out, (q, k, v, out, lse)


def _any_backward(q, k, v, out, lse, d_out, static: AttentionStatic):
    """(dq, dk, dv): by cuDNN where ``static`` asks for it, else by the Mosaic GPU kernel where
    it applies, else by the Triton kernels."""
    if static.cudnn_backward:
        return cudnn_attention_bwd(q, k, v, out, lse, d_out, scale=static.scale,
                                   is_causal=static.causal)
    if mosaic_takes(q, k, v, static, mosaic_attention_bwd_can):
        return mosaic_attention_bwd(q, k, v, out, lse, d_out, scale=static.scale,
                                    is_causal=static.causal)
    return _backward(q, k, v, out, lse, d_out, static)


def _attention_bwd(static, saved, d_out):
    return _by_batch(_any_backward, static, *saved, d_out)


attention_pallas.defvjp(_attention_fwd, _attention_bwd)
