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
Tiles wholly visible skip the causal arithmetic; only diagonal and ragged-edge tiles pay for it.
An attention mask (``attn_mask``: bool, True takes part, or float, added to the scores) comes as
a (Bm, Hm, Lm, Sk) array whose first three dims are 1 or the batch, heads and query length
(``mask_as_bhls`` lays a broadcastable mask out so): every tile reads its [block_q, block_k]
slice of it (one row of it for Lm = 1, a key padding mask), so no [Sq, Sk] matrix is made for
a mask that broadcasts, and skips the tile (its products, exponentials and loads) where the
mask hides all of it, as it hides the padding keys. A row that the mask hides wholly gives
zeros (and zero gradients), as PyTorch's math path does. A float mask that is differentiated
gets its gradient, dS summed over the dims it broadcasts: the dQ kernel then writes dS, one
[Sq, Sk] float32 matrix per head.

Dropout (``AttentionStatic.dropout_p``) zeroes weights where ``dropout_keep``, a hash of the
head's seed and the (query, key) positions, says so, and scales the output by 1 / (1 - p): the
row sums keep every weight. The backward hashes the same positions again, so no pattern is
stored: dV takes the kept weights, and dS = P * (dP on the kept entries / (1 - p) - delta),
where delta = rowsum(dO * O) still holds.
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
from jax.custom_derivatives import SymbolicZero
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

from ._cudnn_attention import cudnn_attention_bwd
from ._dropout_hash import attention_keeps, key_bits, query_bits
from ._mosaic_attention import (
    base2_bias,
    check_dropout,
    key_bias_rows,
    mosaic_attention,
    mosaic_attention_can,
    scale_refusal,
)
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


def default_config(head_dim: int, masked: bool = False) -> AttentionConfig:
    """Measured defaults by (padded) head dim: larger heads take shorter tiles (registers).
    With a mask the forward takes 128 keys a step in two stages (an H200, B4 H16 D128 bf16 with
    a key padding mask: 1.0-1.2x the forward's speed with 64 keys in three)."""
    if head_dim > 128:
        return AttentionConfig(block_q=64, block_k=32, block_q_dkv=32, block_k_dkv=64,
                               block_q_dq=64, block_k_dq=32, num_stages=2)
    if masked:
        return AttentionConfig(block_k=128, num_stages=2)
    return AttentionConfig()


class AttentionStatic(NamedTuple):
    """The hashable static argument of :func:`attention_pallas`; ``cudnn_backward``: take the
    gradients by cuDNN's backward (``_cudnn_attention.cudnn_attention_bwd``) instead of ours,
    for calls that cuDNN takes (``attention._cudnn_can``: 16-bit, on a GPU); ``dropout_p``:
    dropout on the weights, in [0, 1) (with a seed per head)."""

    causal: bool
    scale: float
    cfg: AttentionConfig | None
    cudnn_backward: bool = False
    dropout_p: float = 0.0


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


class _MaskDims(NamedTuple):
    """A (Bm, Hm, Lm, Sk) attention mask's broadcast dims (1 or the batch, heads, query length)
    and ``bias``: float, added to the scores (else bool, stored as int8: nonzero takes part)."""

    batches: int
    heads: int
    rows: int
    bias: bool

    @classmethod
    def of(cls, mask: jax.Array | None) -> _MaskDims | None:
        if mask is None:
            return None
        return cls(*mask.shape[:3], bias=jnp.issubdtype(mask.dtype, jnp.floating))


def _mask_tile(mask_ref, mdims: _MaskDims, head, q_start, block_q: int, k_start, block_k: int,
               dims: _Dims):
    """The mask's [block_q, block_k] tile for flattened query head ``head`` (a [1, block_k] row
    where the mask has one row for every query), zeros past the ends."""
    batch, q_head = idiv(head, dims.heads), irem(head, dims.heads)
    index = jnp.int32((batch if mdims.batches > 1 else 0) * mdims.heads
                      + (q_head if mdims.heads > 1 else 0))  # an array even where both are 0
    rows, start = (block_q, q_start) if mdims.rows > 1 else (1, 0)
    ok = (k_start + jnp.arange(block_k) < dims.kv_len)[None, :]
    if mdims.rows > 1:
        ok = ok & (q_start + jnp.arange(block_q) < dims.q_len)[:, None]
    return plgpu.load(mask_ref.at[index, pl.ds(start, rows), pl.ds(k_start, block_k)], mask=ok,
                      other=0)


def _masked_scores(s, tile, mdims: _MaskDims):
    """Base-2 scores ``s`` with a mask tile (of ``s``'s orientation) applied."""
    if mdims.bias:
        return s + base2_bias(tile.astype(jnp.float32))
    return jnp.where(tile != 0, s, -jnp.inf)


def _unless_hidden(attend, carry, tile, mdims: _MaskDims | None):
    """``attend(carry)``, or ``carry`` as it is where the mask tile hides every entry (a tile of
    padding keys): such a tile adds nothing (its probabilities are zeros), so it costs no
    products, exponentials or loads."""
    if mdims is None:
        return attend(carry)
    # a max, not any(): Triton lowers no reduce_or
    shown = (jnp.max(tile.astype(jnp.float32)) > -jnp.inf if mdims.bias
             else jnp.max(tile.astype(jnp.int32)) > 0)
    return lax.cond(shown, attend, lambda carry: carry, carry)


def dropout_keep(seed, q_pos, k_pos, dropout_p: float):
    """Which attention weights dropout keeps: True with probability ``1 - dropout_p`` for each
    (query position, key position) pair of one head, a hash of the head's uint32 ``seed`` and
    the two positions (int32 arrays that broadcast), so that the backward draws the forward's
    pattern again without storing it. Kernels and tests share it.

    Example:
        >>> keep = dropout_keep(jnp.uint32(7), jnp.arange(64)[:, None], jnp.arange(64), 0.25)
        >>> keep.shape, 0.7 < float(keep.mean()) < 0.8
        ((64, 64), True)
    """
    return attention_keeps(query_bits(seed, q_pos), key_bits(k_pos), dropout_p)


def _dropped(p, keep):
    """Probabilities ``p`` with dropout's zeros where ``keep`` is False (no rescaling)."""
    return p if keep is None else jnp.where(keep, p, 0.0)


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


def _fwd_kernel(q_ref, k_ref, v_ref, mask_ref, seed_ref, o_ref, lse_ref, log2l_ref=None, *,
                static: AttentionStatic, dims: _Dims, cfg: AttentionConfig,
                mdims: _MaskDims | None):
    bq, bk = cfg.block_q, cfg.block_k
    i, head = pl.program_id(0), pl.program_id(1)
    kv = _kv_head(head, dims)
    q = _rows(q_ref, head, i * bq, bq, dims.q_len, dims.d_pad, dims.head_dim,
              dims.q_len % bq != 0)
    q_pos = i * bq + jnp.arange(bq)
    qk_scale = static.scale * _LOG2_E  # scores in the base-2 domain

    def step(j, carry, masked: bool):
        tile = None if mdims is None else _mask_tile(mask_ref, mdims, head, i * bq, bq, j * bk,
                                                     bk, dims)

        def attend(carry):
            acc, m, row_sum = carry  # [bq, dv_pad], [bq], [bq]
            k = _rows(k_ref, kv, j * bk, bk, dims.kv_len, dims.d_pad, dims.head_dim, masked)
            s = plgpu.dot(q, k, trans_b=True, precision=dot_precision(q.dtype)) * qk_scale
            if masked:  # s: [bq, bk]
                k_pos = j * bk + jnp.arange(bk)
                ok = (k_pos < dims.kv_len)[None, :]
                if static.causal:
                    ok = ok & (k_pos[None, :] <= q_pos[:, None])
                s = jnp.where(ok, s, -jnp.inf)
            if mdims is not None:
                s = _masked_scores(s, tile, mdims)
            m_new = jnp.maximum(m, jnp.max(s, axis=1))
            # a row the mask hides so far has m_new = -inf: exponents from 0 keep it at zeros
            shift = m_new if mdims is None else jnp.where(jnp.isneginf(m_new), 0.0, m_new)
            alpha = jnp.exp2(m - shift)
            p = jnp.exp2(s - shift[:, None])  # [bq, bk]
            v = _rows(v_ref, kv, j * bk, bk, dims.kv_len, dims.dv_pad, dims.v_dim, masked)
            keep = None if seed_ref is None else dropout_keep(
                seed_ref[head], q_pos[:, None], j * bk + jnp.arange(bk)[None, :], static.dropout_p)
            pv = plgpu.dot(_dropped(p, keep).astype(v.dtype), v,
                           precision=dot_precision(v.dtype))  # the sums keep every weight
            return acc * alpha[:, None] + pv, m_new, row_sum * alpha + jnp.sum(p, axis=1)

        return _unless_hidden(attend, carry, tile, mdims)

    full, last = _kv_steps(i, bq, bk, dims, static.causal, dims.kv_len % bk != 0)
    carry = (jnp.zeros((bq, dims.dv_pad), jnp.float32), jnp.full((bq,), -jnp.inf, jnp.float32),
             jnp.zeros((bq,), jnp.float32))
    carry = lax.fori_loop(0, full, functools.partial(step, masked=False), carry)
    acc, m, row_sum = lax.fori_loop(full, last, functools.partial(step, masked=True), carry)
    out, log2_sum = acc / row_sum[:, None], jnp.log2(row_sum)
    if static.dropout_p:
        out = out * (1.0 / (1.0 - static.dropout_p))
    # with log2l_ref (a float mask) apart: m + log2(l) rounds log2(l) away where m is huge (a
    # float mask of -1e9 over a whole row), and the backward takes exp2((s - m) - log2(l))
    lse = m + log2_sum if log2l_ref is None else m
    if mdims is not None:  # hidden rows: zeros, and lse = +inf makes the backward's p zero
        dead = row_sum == 0.0
        out, lse = jnp.where(dead[:, None], 0.0, out), jnp.where(dead, jnp.inf, lse)
        if log2l_ref is not None:
            plgpu.store(log2l_ref.at[head, pl.ds(i * bq, bq)], jnp.where(dead, 0.0, log2_sum),
                        mask=q_pos < dims.q_len)
    _store_rows(o_ref, head, i * bq, out, dims.q_len, dims.v_dim)
    plgpu.store(lse_ref.at[head, pl.ds(i * bq, bq)], lse, mask=q_pos < dims.q_len)


def _dkdv_kernel(q_ref, k_ref, v_ref, do_ref, lse_ref, delta_ref, mask_ref, seed_ref,
                 log2l_ref, dk_ref, dv_ref, *, static: AttentionStatic, dims: _Dims,
                 cfg: AttentionConfig, mdims: _MaskDims | None):
    bq, bk = cfg.block_q_dkv, cfg.block_k_dkv
    j, kv = pl.program_id(0), pl.program_id(1)
    k_edge = dims.kv_len % bk != 0
    k = _rows(k_ref, kv, j * bk, bk, dims.kv_len, dims.d_pad, dims.head_dim, k_edge)
    v = _rows(v_ref, kv, j * bk, bk, dims.kv_len, dims.dv_pad, dims.v_dim, k_edge)
    k_pos = j * bk + jnp.arange(bk)
    qk_scale = static.scale * _LOG2_E
    inv_keep = 1.0 / (1.0 - static.dropout_p)
    n_q = pl.cdiv(dims.q_len, bq)
    q_edge = dims.q_len % bq != 0
    # Padded query rows load lse = +inf, so their probabilities are exp2(-inf) = 0; padded key
    # rows produce dK, dV rows that are never stored: only the causal diagonal needs a mask.

    def step(i, carry, head, masked: bool):
        tile = None if mdims is None else _mask_tile(mask_ref, mdims, head, i * bq, bq, j * bk,
                                                     bk, dims)

        def attend(carry):
            dk, dv = carry  # [bk, d_pad], [bk, dv_pad] float32
            q = _rows(q_ref, head, i * bq, bq, dims.q_len, dims.d_pad, dims.head_dim, q_edge)
            do = _rows(do_ref, head, i * bq, bq, dims.q_len, dims.dv_pad, dims.v_dim, q_edge)
            lse = _row_stats(lse_ref, head, i * bq, bq, dims.q_len, jnp.inf)
            delta = _row_stats(delta_ref, head, i * bq, bq, dims.q_len, 0.0)
            s_t = plgpu.dot(k, q, trans_b=True, precision=dot_precision(k.dtype)) * qk_scale
            if mdims is not None:  # s_t: [bk, bq]
                s_t = _masked_scores(s_t, tile.T, mdims)
            p_t = jnp.exp2(s_t - lse[None, :])
            if log2l_ref is not None:
                p_t = p_t * jnp.exp2(-_row_stats(log2l_ref, head, i * bq, bq, dims.q_len,
                                                 0.0))[None, :]
            if masked:
                p_t = jnp.where(k_pos[:, None] <= i * bq + jnp.arange(bq)[None, :], p_t, 0.0)
            keep_t = None if seed_ref is None else dropout_keep(
                seed_ref[head], i * bq + jnp.arange(bq)[None, :], k_pos[:, None],
                static.dropout_p)
            z_t = _dropped(p_t, keep_t) * inv_keep  # the weights dropout kept
            dv = dv + plgpu.dot(z_t.astype(do.dtype), do, precision=dot_precision(do.dtype))
            dp_t = plgpu.dot(v, do, trans_b=True, precision=dot_precision(v.dtype))  # [bk, bq]
            ds_t = p_t * (_dropped(dp_t, keep_t) * inv_keep - delta[None, :])
            return dk + plgpu.dot(ds_t.astype(q.dtype), q, precision=dot_precision(q.dtype)), dv

        return _unless_hidden(attend, carry, tile, mdims)

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


def _dq_kernel(q_ref, k_ref, v_ref, do_ref, lse_ref, delta_ref, mask_ref, seed_ref, log2l_ref,
               dq_ref, ds_ref=None, *, static: AttentionStatic, dims: _Dims,
               cfg: AttentionConfig, mdims: _MaskDims | None):
    bq, bk = cfg.block_q_dq, cfg.block_k_dq
    i, head = pl.program_id(0), pl.program_id(1)
    kv = _kv_head(head, dims)
    q_edge = dims.q_len % bq != 0
    q = _rows(q_ref, head, i * bq, bq, dims.q_len, dims.d_pad, dims.head_dim, q_edge)
    do = _rows(do_ref, head, i * bq, bq, dims.q_len, dims.dv_pad, dims.v_dim, q_edge)
    lse = _row_stats(lse_ref, head, i * bq, bq, dims.q_len, jnp.inf)
    delta = _row_stats(delta_ref, head, i * bq, bq, dims.q_len, 0.0)
    inv_sum = None if log2l_ref is None else jnp.exp2(
        -_row_stats(log2l_ref, head, i * bq, bq, dims.q_len, 0.0))
    q_pos = i * bq + jnp.arange(bq)
    qk_scale = static.scale * _LOG2_E
    inv_keep = 1.0 / (1.0 - static.dropout_p)

    def step(j, dq, masked: bool):
        tile = None if mdims is None else _mask_tile(mask_ref, mdims, head, i * bq, bq, j * bk,
                                                     bk, dims)

        def attend(dq):
            k_pos = j * bk + jnp.arange(bk)[None, :]
            k = _rows(k_ref, kv, j * bk, bk, dims.kv_len, dims.d_pad, dims.head_dim, masked)
            v = _rows(v_ref, kv, j * bk, bk, dims.kv_len, dims.dv_pad, dims.v_dim, masked)
            s = plgpu.dot(q, k, trans_b=True, precision=dot_precision(q.dtype)) * qk_scale
            if mdims is not None:  # s: [bq, bk]
                s = _masked_scores(s, tile, mdims)
            p = jnp.exp2(s - lse[:, None])
            if inv_sum is not None:
                p = p * inv_sum[:, None]
            if masked:  # past the keys p is no probability (with lse far below zero, inf)
                ok = k_pos < dims.kv_len
                p = jnp.where(ok & (k_pos <= q_pos[:, None]) if static.causal else ok, p, 0.0)
            dp = plgpu.dot(do, v, trans_b=True, precision=dot_precision(do.dtype))  # [bq, bk]
            if seed_ref is not None:  # dP of the weights before dropout
                keep = dropout_keep(seed_ref[head], q_pos[:, None], k_pos, static.dropout_p)
                dp = _dropped(dp, keep) * inv_keep
            ds = p * (dp - delta[:, None])
            if ds_ref is not None:  # the mask's gradient: dS itself
                plgpu.store(ds_ref.at[head, pl.ds(i * bq, bq), pl.ds(j * bk, bk)], ds,
                            mask=(q_pos < dims.q_len)[:, None] & (k_pos < dims.kv_len))
            return dq + plgpu.dot(ds.astype(k.dtype), k, precision=dot_precision(k.dtype))

        # every tile of dS is written: no tile skipped where the mask's gradient is asked for
        return _unless_hidden(attend, dq, tile, None if ds_ref is not None else mdims)

    full, last = _kv_steps(i, bq, bk, dims, static.causal, dims.kv_len % bk != 0)
    if ds_ref is not None:  # every tile of dS is written: past the causal diagonal, zeros
        last = pl.cdiv(dims.kv_len, bk)
    dq = jnp.zeros((bq, dims.d_pad), jnp.float32)
    dq = lax.fori_loop(0, full, functools.partial(step, masked=False), dq)
    dq = lax.fori_loop(full, last, functools.partial(step, masked=True), dq)
    _store_rows(dq_ref, head, i * bq, dq * static.scale, dims.q_len, dims.head_dim)


def _dims(q, k, v) -> _Dims:
    return _Dims(q.shape[1], k.shape[1], q.shape[2], k.shape[2], q.shape[3], v.shape[3])


def _config(static: AttentionStatic, dims: _Dims, masked: bool) -> AttentionConfig:
    cfg = static.cfg or default_config(max(dims.d_pad, dims.dv_pad), masked)
    return cfg.fit(dims.q_len, dims.kv_len)


def _flat(x):
    """(B, H, S, D) -> (B * H, S, D), a free reshape."""
    return x.reshape(-1, *x.shape[2:])


def _optional_operands(*operands):
    """The optional operands as the kernels read them, those given: the mask, (Bm * Hm, Lm,
    Sk) (bool as int8: Triton loads bytes); the (B * H,) dropout seeds; the backward's
    (B * H, Sq) log2 row sums."""
    return tuple(_flat(x.astype(jnp.int8) if x.dtype == jnp.bool_ else x)
                 for x in operands if x is not None)


def _optional_slots(kernel, n_inputs: int, *operands):
    """``kernel`` with its refs of the optional ``operands`` (after its ``n_inputs`` other
    inputs) None where that operand is not given."""
    def run(*refs):
        refs, rest = list(refs[:n_inputs]), iter(refs[n_inputs:])
        refs += [None if x is None else next(rest) for x in operands]
        return kernel(*refs, *rest)

    return run


def _forward(q, k, v, mask, static: AttentionStatic, seeds=None):
    """(out, lse, log2l): the output and the rows' base-2 logsumexp, (B, H, Sq); with a float
    mask, ``lse`` is the rows' max and ``log2l`` their log2 sums apart (else None)."""
    dims = _dims(q, k, v)
    cfg = _config(static, dims, mask is not None)
    batch_heads = q.shape[0] * dims.heads
    mdims = _MaskDims.of(mask)
    kernel = functools.partial(_fwd_kernel, static=static, dims=dims, cfg=cfg, mdims=mdims)
    rows = jax.ShapeDtypeStruct((batch_heads, dims.q_len), jnp.float32)
    out, lse, *log2l = pl.pallas_call(
        _optional_slots(kernel, 3, mask, seeds),
        out_shape=[jax.ShapeDtypeStruct((batch_heads, dims.q_len, dims.v_dim), q.dtype), rows,
                   *[rows] * (mdims is not None and mdims.bias)],
        grid=(pl.cdiv(dims.q_len, cfg.block_q), batch_heads),
        interpret=interpret_mode(),
        compiler_params=compiler_params(cfg.num_warps, cfg.num_stages),
        name="flash_attention_fwd",
    )(_flat(q), _flat(k), _flat(v), *_optional_operands(mask, seeds))
    return (out.reshape(*q.shape[:3], dims.v_dim), lse.reshape(q.shape[:3]),
            log2l[0].reshape(q.shape[:3]) if log2l else None)


def _backward(q, k, v, mask, out, lse, d_out, static: AttentionStatic, mask_grad: bool = False,
              seeds=None, log2l=None):
    """(dq, dk, dv) by the Triton kernels, and with ``mask_grad`` dS, (B, H, Sq, Sk) float32."""
    dims = _dims(q, k, v)
    cfg = _config(static, dims, mask is not None)
    batch = q.shape[0]
    mdims = _MaskDims.of(mask)
    delta = jnp.sum(out.astype(jnp.float32) * d_out.astype(jnp.float32), axis=-1)
    args = (_flat(q), _flat(k), _flat(v), _flat(d_out.astype(q.dtype)), _flat(lse),
            _flat(delta), *_optional_operands(mask, seeds, log2l))
    params = compiler_params(cfg.bwd_num_warps, cfg.bwd_num_stages)
    dk, dv = pl.pallas_call(
        _optional_slots(functools.partial(_dkdv_kernel, static=static, dims=dims, cfg=cfg,
                                          mdims=mdims), 6, mask, seeds, log2l),
        out_shape=[jax.ShapeDtypeStruct((batch * dims.kv_heads, *k.shape[2:]), k.dtype),
                   jax.ShapeDtypeStruct((batch * dims.kv_heads, *v.shape[2:]), v.dtype)],
        grid=(pl.cdiv(dims.kv_len, cfg.block_k_dkv), batch * dims.kv_heads),
        interpret=interpret_mode(),
        compiler_params=params,
        name="flash_attention_dkdv",
    )(*args)
    dq_shape = jax.ShapeDtypeStruct((batch * dims.heads, *q.shape[2:]), q.dtype)
    ds_shape = jax.ShapeDtypeStruct((batch * dims.heads, dims.q_len, dims.kv_len), jnp.float32)
    dq, *ds = pl.pallas_call(
        _optional_slots(functools.partial(_dq_kernel, static=static, dims=dims, cfg=cfg,
                                          mdims=mdims), 6, mask, seeds, log2l),
        out_shape=[dq_shape, ds_shape] if mask_grad else [dq_shape],
        grid=(pl.cdiv(dims.q_len, cfg.block_q_dq), batch * dims.heads),
        interpret=interpret_mode(),
        compiler_params=params,
        name="flash_attention_dq",
    )(*args)
    grads = dq.reshape(q.shape), dk.reshape(k.shape), dv.reshape(v.shape)
    return (*grads, ds[0].reshape(*q.shape[:3], dims.kv_len)) if mask_grad else grads


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def attention_pallas(q: jax.Array, k: jax.Array, v: jax.Array, static: AttentionStatic,
                     mask: jax.Array | None = None, seeds: jax.Array | None = None
                     ) -> jax.Array:
    """Flash attention by the Pallas kernels.

    On a Hopper GPU the forward (alone, or with the logsumexp that the backward takes) and the
    backward are Mosaic GPU kernels (``_mosaic_attention``, ``_mosaic_attention_bwd``: TMA and
    wgmma, faster than the Triton kernels) where they take the shapes and no tile config is
    given, with dropout or without: without a mask, or with one of a row for every query (a key
    padding mask, a bias per key: the forward takes it as a key bias; in training a bool one,
    and the backward takes it where it is one for every head too); the Triton kernels do the
    rest. Both draw dropout's pattern by ``dropout_keep``, so either backward takes either
    forward's.
    ``static.cudnn_backward`` takes the backward from cuDNN instead. The Mosaic backward adds
    dQ up in whatever order its CTAs finish: run to run, dQ may differ in its last bits.

    Args:
        q: (B, H, Sq, D); k: (B, Hk, Sk, D); v: (B, Hk, Sk, Dv), one dtype of
            ``_pallas_tiles.SUPPORTED_DTYPES``; Hk divides H; D, Dv <= 256; Sq, Sk >= 1.
        static: causal (top-left aligned), the score scale, and the tile config (None: default).
        mask: None, or (Bm, Hm, Lm, Sk) with Bm in (1, B), Hm in (1, H), Lm in (1, Sq)
            (``mask_as_bhls``): bool (True takes part) or float (added to the scores; its
            gradient is computed where it is differentiated).
        seeds: with ``static.dropout_p > 0``, (B, H) uint32, one per head: the dropout pattern
            is ``dropout_keep`` of it, drawn again by the backward.

    Returns:
        (B, H, Sq, Dv) in ``q``'s dtype.

    Example:
        >>> q = jnp.ones((1, 4, 10, 64)); kv = jnp.ones((1, 2, 12, 64))
        >>> attention_pallas(q, kv, kv, AttentionStatic(True, 0.125, None)).shape
        (1, 4, 10, 64)
        >>> keys_kept = jnp.arange(12).reshape(1, 1, 1, 12) < 9  # a key padding mask
        >>> attention_pallas(q, kv, kv, AttentionStatic(False, 0.125, None), keys_kept).shape
        (1, 4, 10, 64)
    """
    check_dropout("attention_pallas", q, static.dropout_p, seeds)
    return _by_batch(functools.partial(_any_forward, with_lse=False), static, q, k, v, mask,
                     seeds)


def mask_as_bhls(mask: jax.Array, batch_shape: tuple[int, ...], heads: int, q_len: int,
                 kv_len: int) -> jax.Array:
    """A mask broadcastable to (*batch_shape, heads, q_len, kv_len) as the (Bm, Hm, Lm, Sk)
    array ``attention_pallas`` takes: each of its batch dims, heads and queries kept where it
    varies and 1 where it broadcasts (the batch dims all or none), the keys broadcast to Sk.

    Example:
        >>> mask_as_bhls(jnp.ones((2, 1, 1, 7), bool), (2,), 8, 5, 7).shape
        (2, 1, 1, 7)
    """
    full = (*batch_shape, heads, q_len, kv_len)
    try:
        target = jnp.broadcast_shapes(mask.shape, full)
    except ValueError:
        target = None
    if target != full:
        raise ValueError(f"attention: mask of shape {mask.shape} does not broadcast to (batch, "
                         f"heads, L, S) = {full}")
    mask = mask.reshape((1,) * (len(full) - mask.ndim) + mask.shape)
    n_batch = len(batch_shape)
    lead = mask.shape[:n_batch]
    batches = 1 if all(n == 1 for n in lead) else math.prod(batch_shape)
    mask = jnp.broadcast_to(mask, (*(batch_shape if batches > 1 else lead), *mask.shape[n_batch:-1],
                                   kv_len))
    return mask.reshape(batches, *mask.shape[n_batch:])


def mosaic_takes(q, k, v, static: AttentionStatic, can=mosaic_attention_can) -> bool:
    """Whether a Mosaic GPU kernel runs this call of (B, H, S, D) arrays (or their shapes): on
    Hopper, without a tile config, with a scale the kernels take (``scale_refusal``), where
    ``can`` (the forward's or the backward's admission) takes the shapes (a mask:
    ``_mosaic_forward_runs``, ``_mosaic_backward_runs``)."""
    return (static.cfg is None and scale_refusal(static.scale) is None and on_hopper()
            and k.shape == v.shape
            and q.dtype == k.dtype == v.dtype
            and can(q.shape, k.shape, q.dtype, static.causal))


def _mosaic_forward_runs(q, k, v, static: AttentionStatic, mask, training: bool) -> bool:
    """Whether the Mosaic GPU forward runs this call (``mosaic_takes``) with its (Bm, Hm, Lm, Sk)
    ``mask`` (``mask_as_bhls``, or its shape and dtype, or None): one of a row for every query
    (Lm = 1: a key padding mask, a bias per key), and in training a bool one (a float mask's
    backward takes the rows' max and sums apart, which the Triton forward writes)."""
    return mosaic_takes(q, k, v, static) and (mask is None or (mask.shape[2] == 1 and (
        not training or jnp.dtype(mask.dtype) == jnp.bool_)))


def _mosaic_backward_runs(q, k, v, static: AttentionStatic, mask) -> bool:
    """Whether the Mosaic GPU backward runs this call with its ``mask`` (as for
    ``_mosaic_forward_runs``): a bool one of one row for every query and head (a key padding
    mask), or none."""
    return mosaic_takes(q, k, v, static, mosaic_attention_bwd_can) and (
        mask is None or (mask.shape[1:3] == (1, 1) and jnp.dtype(mask.dtype) == jnp.bool_))


def mosaic_runs(q, k, v, static: AttentionStatic, training: bool, mask=None) -> bool:
    """Whether ``attention_pallas`` runs the Mosaic GPU forward for these (B, H, S, D) arrays (or
    shapes) and (Bm, Hm, Lm, Sk) ``mask`` (or its shape and dtype, or None), and in training its
    backward too (else the Triton kernels run: ``_mosaic_forward_runs``,
    ``_mosaic_backward_runs``)."""
    return _mosaic_forward_runs(q, k, v, static, mask, training) and (
        not training or _mosaic_backward_runs(q, k, v, static, mask))


def _any_forward(q, k, v, mask, seeds, static: AttentionStatic, with_lse: bool):
    """The output, and with ``with_lse`` its logsumexp for the backward: by Mosaic GPU where it
    applies (``_mosaic_forward_runs``; with dropout or without), else by the Triton kernel."""
    if _mosaic_forward_runs(q, k, v, static, mask, with_lse):
        return mosaic_attention(q, k, v, None if mask is None else key_bias_rows(mask), seeds,
                                scale=static.scale, is_causal=static.causal, with_lse=with_lse,
                                dropout_p=static.dropout_p)
    out, *stats = _forward(q, k, v, mask, static, seeds)
    # a tuple, as mosaic_attention returns: partition_rows gives the outputs a tuple of shardings
    return (out, *(x for x in stats if x is not None)) if with_lse else out


def _by_batch(kernels, static: AttentionStatic, *args: jax.Array | None):
    """``kernels(*args, static)``, each device taking its own batch rows under sharding (a mask
    with one batch row for all is replicated; a missing mask stays None)."""
    present = [a for a in args if a is not None]

    def run(*arrays):
        given = iter(arrays)
        return kernels(*(None if a is None else next(given) for a in args), static)

    return partition_rows(run, [a.shape[0] == args[0].shape[0] for a in present])(*present)


def _attention_fwd(q, k, v, static, mask, seeds):
    # symbolic zeros: each argument comes with whether it is differentiated (``perturbed``)
    q, k, v = q.value, k.value, v.value
    mask_grad = mask is not None and mask.perturbed and jnp.issubdtype(mask.value.dtype,
                                                                       jnp.floating)
    mask, seeds = (None if x is None else x.value for x in (mask, seeds))
    check_dropout("attention_pallas", q, static.dropout_p, seeds)
    out, lse, *log2l = _by_batch(functools.partial(_any_forward, with_lse=True), static, q, k,
                                 v, mask, seeds)
    # the residuals' tree tells the backward whether to compute the mask's gradient
    return out, (q, k, v, mask, seeds, out, lse, *(log2l or [None]),
                 jnp.zeros((0,)) if mask_grad else None)


def _any_backward(q, k, v, mask, seeds, out, lse, log2l, d_out, static: AttentionStatic,
                  mask_grad: bool):
    """(dq, dk, dv), and with ``mask_grad`` dS: by cuDNN where ``static`` asks for it, else by
    the Mosaic GPU kernel where it applies (no mask, or a bool key padding mask; with dropout
    or without), else by the Triton kernels."""
    plain = mask is None and seeds is None
    if static.cudnn_backward and plain:
        return cudnn_attention_bwd(q, k, v, out, lse, d_out, scale=static.scale,
                                   is_causal=static.causal)
    if not mask_grad and _mosaic_backward_runs(q, k, v, static, mask):
        return mosaic_attention_bwd(q, k, v, out, lse, d_out,
                                    None if mask is None else key_bias_rows(mask), seeds,
                                    scale=static.scale, is_causal=static.causal,
                                    dropout_p=static.dropout_p)
    return _backward(q, k, v, mask, out, lse, d_out, static, mask_grad, seeds, log2l)


def _attention_bwd(static, saved, d_out):
    q, k, v, mask, seeds, out, lse, log2l, mask_grad = saved
    if isinstance(d_out, SymbolicZero):
        d_out = jnp.zeros(d_out.shape, d_out.dtype)
    grads = _by_batch(functools.partial(_any_backward, mask_grad=mask_grad is not None), static,
                      q, k, v, mask, seeds, out, lse, log2l, d_out)
    if mask_grad is None:
        return (*grads, None, None)
    *grads, ds = grads  # (B, H, Sq, Sk): summed over the dims the mask broadcasts
    broadcast = tuple(axis for axis in range(4) if mask.shape[axis] == 1 < ds.shape[axis])
    return (*grads, jnp.sum(ds, axis=broadcast, keepdims=True).astype(mask.dtype), None)


attention_pallas.defvjp(_attention_fwd, _attention_bwd, symbolic_zeros=True)
