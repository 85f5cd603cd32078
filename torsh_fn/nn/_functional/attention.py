"""nn.functional: scaled dot-product attention and the multi-head attention forward pass.

PyTorch names its key tensor ``key``, so the PRNG key for attention dropout is ``dropout_key=``
(drawn from ``generator`` or the global generator when omitted and ``dropout_p > 0``).
``scaled_dot_product_attention`` calls ``torsh_fn.kernels.attention``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from torsh_fn import random as _random
from torsh_fn.kernels.attention import attention as _attention_kernel
from torsh_fn.kernels.softmax import softmax as _softmax_kernel

from .dropout import dropout
from .linear import linear

__all__ = ["multi_head_attention_forward", "scaled_dot_product_attention"]


def _check_heads(name: str, q: jax.Array, kv: jax.Array, arg: str, enable_gqa: bool) -> None:
    """Heads (dim -3): with ``enable_gqa`` kv's divide q's (grouped-query attention, which the
    kernels take without repeating kv); without it they broadcast, as in PyTorch."""
    if q.ndim < 3 or kv.ndim < 3:
        if enable_gqa:
            raise ValueError(f"{name}: with enable_gqa, {arg}'s heads (dim -3) must divide "
                             f"query's, got query {q.shape} and {arg} {kv.shape}")
        return
    heads, kv_heads = q.shape[-3], kv.shape[-3]
    if enable_gqa and heads % kv_heads:
        raise ValueError(f"{name}: with enable_gqa, {arg}'s heads (dim -3) must divide query's, "
                         f"got query {q.shape} and {arg} {kv.shape}")
    if not enable_gqa and kv_heads not in (1, heads) and heads != 1:
        raise ValueError(f"{name}: {arg}'s heads (dim -3) must equal query's or be 1 (or pass "
                         f"enable_gqa=True), got query {q.shape} and {arg} {kv.shape}")


def scaled_dot_product_attention(query: jax.Array, key: jax.Array, value: jax.Array,
                                 attn_mask: jax.Array | None = None, dropout_p: float = 0.0,
                                 is_causal: bool = False, scale: float | None = None,
                                 enable_gqa: bool = False, *,
                                 dropout_key: jax.Array | None = None,
                                 generator: _random.Generator | None = None) -> jax.Array:
    """``softmax(q @ k^T * scale + mask) @ v`` with PyTorch's masking rules.

    Args:
        query: (..., L, E); key: (..., S, E); value: (..., S, Ev). Leading dims broadcast.
        attn_mask: broadcastable to (..., L, S); bool (True takes part) or float (added).
        dropout_p: dropout on the attention weights (applied whenever > 0, as PyTorch).
        is_causal: mask out keys after each query (top-left aligned); excludes ``attn_mask``.
        scale: defaults to ``1 / sqrt(E)``.
        enable_gqa: let key/value have fewer heads (dim -3) than query, dividing them.
        dropout_key: PRNG key for dropout.

    Returns:
        (..., L, Ev). Fully masked rows give zeros.

    Example:
        >>> q = jnp.ones((2, 3, 5, 4))
        >>> scaled_dot_product_attention(q, q, q, is_causal=True).shape
        (2, 3, 5, 4)
    """
    name = "scaled_dot_product_attention"
    if query.ndim < 2 or key.ndim < 2 or value.ndim < 2:
        raise ValueError(f"{name}: expected query, key, value of rank >= 2, got {query.shape}, "
                         f"{key.shape}, {value.shape}")
    if query.shape[-1] != key.shape[-1] or key.shape[-2] != value.shape[-2]:
        raise ValueError(f"{name}: expected query (..., L, E), key (..., S, E), value "
                         f"(..., S, Ev), got {query.shape}, {key.shape}, {value.shape}")
    if is_causal and attn_mask is not None:
        raise ValueError(f"{name}: pass either attn_mask or is_causal=True, not both")
    if not 0.0 <= dropout_p <= 1.0:
        raise ValueError(f"{name}: dropout_p must be in [0, 1], got {dropout_p}")
    _check_heads(name, query, key, "key", enable_gqa)
    _check_heads(name, query, value, "value", enable_gqa)
    rng = _random.next_key(dropout_key, generator) if dropout_p > 0 else None
    return _attention_kernel(query, key, value, attn_mask, is_causal=is_causal, scale=scale,
                             dropout_p=dropout_p, key=rng)


def _float_mask(mask: jax.Array | None, dtype) -> jax.Array | None:
    """MHA's masks: bool True means "do not attend" and becomes -inf; floats are added."""
    if mask is None or mask.dtype != jnp.bool_:
        return mask if mask is None else mask.astype(dtype)
    return jnp.where(mask, -jnp.inf, 0.0).astype(dtype)


def _projections(query, key, value, in_proj_weight, in_proj_bias, separate, q_w, k_w, v_w):
    if separate:
        weights = (q_w, k_w, v_w)
    else:
        weights = jnp.split(in_proj_weight, 3)
    biases = (None,) * 3 if in_proj_bias is None else jnp.split(in_proj_bias, 3)
    return tuple(linear(x, w, b) for x, w, b in zip((query, key, value), weights, biases))


def _attn_mask_3d(name, attn_mask, bsz, num_heads, tgt_len, src_len):
    if attn_mask.ndim == 2:
        if attn_mask.shape != (tgt_len, src_len):
            raise ValueError(f"{name}: 2-d attn_mask must be ({tgt_len}, {src_len}), got "
                             f"{attn_mask.shape}")
        return attn_mask[None]
    if attn_mask.shape != (bsz * num_heads, tgt_len, src_len):
        raise ValueError(f"{name}: 3-d attn_mask must be ({bsz * num_heads}, {tgt_len}, "
                         f"{src_len}), got {attn_mask.shape}")
    return attn_mask


def _append_column(mask: jax.Array | None) -> jax.Array | None:
    """One more key position (a bias or zero-attention key) that every query may attend."""
    return None if mask is None else jnp.pad(mask, [(0, 0)] * (mask.ndim - 1) + [(0, 1)])


def _with_key_padding(q, k, v, mask, key_padding_mask, bsz: int, padding_only: bool):
    """The kernel's operands: with a bool key padding mask alone, (N, heads, S, head_dim) heads
    and the (N, 1, 1, S) keys kept, a mask the Mosaic GPU kernels take (forward and backward,
    on Hopper); else the (N * heads, S, head_dim) heads and the merged float mask."""
    if not padding_only:
        return q, k, v, mask
    kept = (key_padding_mask == 0)[:, None, None, :]  # the padding's -inf, appended columns 0
    return (*(x.reshape(bsz, -1, *x.shape[1:]) for x in (q, k, v)), kept)


def _attention_with_weights(q, k, v, mask, dropout_p, dropout_key, generator):
    """PyTorch's explicit path: (N * heads, L, head_dim) out and the softmax weights."""
    scores = jnp.einsum("bld,bsd->bls", q * math.sqrt(1.0 / q.shape[-1]), k)
    if mask is not None:
        scores = scores + mask
    weights = _softmax_kernel(scores, -1)
    if dropout_p > 0.0:
        weights = dropout(weights, dropout_p, key=dropout_key, generator=generator)
    return jnp.einsum("bls,bsd->bld", weights, v), weights


def multi_head_attention_forward(
        query: jax.Array, key: jax.Array, value: jax.Array, embed_dim_to_check: int,
        num_heads: int, in_proj_weight: jax.Array | None, in_proj_bias: jax.Array | None,
        bias_k: jax.Array | None, bias_v: jax.Array | None, add_zero_attn: bool,
        dropout_p: float, out_proj_weight: jax.Array, out_proj_bias: jax.Array | None,
        training: bool = True, key_padding_mask: jax.Array | None = None,
        need_weights: bool = True, attn_mask: jax.Array | None = None,
        use_separate_proj_weight: bool = False, q_proj_weight: jax.Array | None = None,
        k_proj_weight: jax.Array | None = None, v_proj_weight: jax.Array | None = None,
        static_k: jax.Array | None = None, static_v: jax.Array | None = None,
        average_attn_weights: bool = True, is_causal: bool = False, *,
        dropout_key: jax.Array | None = None, generator: _random.Generator | None = None
) -> tuple[jax.Array, jax.Array | None]:
    """The forward pass of ``nn.MultiheadAttention``, with PyTorch's signature.

    Shapes (sequence first): query (L, N, E) or (L, E); key/value (S, N, E_k/E_v) or (S, E_*).
    ``key_padding_mask`` (N, S) and ``attn_mask`` (L, S) or (N * heads, L, S): bool True means
    "do not attend", floats are added. ``is_causal`` is a hint that ``attn_mask`` is causal; the
    mask itself must be given, as in PyTorch.

    Returns:
        ``(attn_output (L, N, E), attn_weights)`` where the weights are (N, L, S) averaged over
        heads, (N, heads, L, S) otherwise, or None when ``need_weights`` is False.
    """
    name = "multi_head_attention_forward"
    batched = query.ndim == 3
    if query.ndim not in (2, 3) or key.ndim != query.ndim or value.ndim != query.ndim:
        raise ValueError(f"{name}: expected query, key, value all (L, N, E) or all (L, E), got "
                         f"{query.shape}, {key.shape}, {value.shape}")
    if not batched:
        query, key, value = query[:, None], key[:, None], value[:, None]
        if key_padding_mask is not None:
            key_padding_mask = key_padding_mask[None]
    tgt_len, bsz, embed_dim = query.shape
    if embed_dim != embed_dim_to_check or embed_dim % num_heads:
        raise ValueError(f"{name}: query's embed dim {embed_dim} must equal embed_dim_to_check="
                         f"{embed_dim_to_check} and be divisible by {num_heads=}")
    if is_causal and attn_mask is None:
        raise ValueError(f"{name}: is_causal=True needs the causal attn_mask as well")
    head_dim = embed_dim // num_heads
    dtype = query.dtype
    q, k, v = _projections(query, key, value, in_proj_weight, in_proj_bias,
                           use_separate_proj_weight, q_proj_weight, k_proj_weight, v_proj_weight)
    padding_only = attn_mask is None and key_padding_mask is not None and (
        key_padding_mask.dtype == jnp.bool_)
    attn_mask = _float_mask(attn_mask, dtype)
    key_padding_mask = _float_mask(key_padding_mask, dtype)
    if attn_mask is not None:
        attn_mask = _attn_mask_3d(name, attn_mask, bsz, num_heads, tgt_len, key.shape[0])
    if bias_k is not None and bias_v is not None:
        k = jnp.concatenate([k, jnp.broadcast_to(bias_k.reshape(1, 1, -1), (1, bsz, embed_dim))])
        v = jnp.concatenate([v, jnp.broadcast_to(bias_v.reshape(1, 1, -1), (1, bsz, embed_dim))])
        attn_mask, key_padding_mask = _append_column(attn_mask), _append_column(key_padding_mask)

    def heads(x):  # (S, N, E) -> (N * heads, S, head_dim)
        return jnp.swapaxes(x.reshape(x.shape[0], bsz * num_heads, head_dim), 0, 1)

    q = heads(q)
    k = heads(k) if static_k is None else static_k
    v = heads(v) if static_v is None else static_v
    if add_zero_attn:
        zeros = jnp.zeros((bsz * num_heads, 1, head_dim), k.dtype)
        k, v = jnp.concatenate([k, zeros], axis=1), jnp.concatenate([v, zeros], axis=1)
        attn_mask, key_padding_mask = _append_column(attn_mask), _append_column(key_padding_mask)
    src_len = k.shape[1]
    if key_padding_mask is not None:
        if key_padding_mask.shape != (bsz, src_len):
            raise ValueError(f"{name}: key_padding_mask must be ({bsz}, {src_len}), got "
                             f"{key_padding_mask.shape}")
        kpm = jnp.broadcast_to(key_padding_mask[:, None, None, :], (bsz, num_heads, 1, src_len))
        kpm = kpm.reshape(bsz * num_heads, 1, src_len)
        attn_mask = kpm if attn_mask is None else attn_mask + kpm
    dropout_p = dropout_p if training else 0.0
    if need_weights:
        out, weights = _attention_with_weights(q, k, v, attn_mask, dropout_p, dropout_key,
                                               generator)
    else:
        rng = _random.next_key(dropout_key, generator) if dropout_p > 0 else None
        out = _attention_kernel(*_with_key_padding(q, k, v, attn_mask, key_padding_mask, bsz,
                                                   padding_only),
                                dropout_p=dropout_p, key=rng).reshape(q.shape[:2] + v.shape[2:])
    out = jnp.swapaxes(out, 0, 1).reshape(tgt_len * bsz, embed_dim)
    out = linear(out, out_proj_weight, out_proj_bias).reshape(tgt_len, bsz, embed_dim)
    if not need_weights:
        return (out if batched else out[:, 0]), None
    weights = weights.reshape(bsz, num_heads, tgt_len, src_len)
    if average_attn_weights:
        weights = weights.mean(axis=1)
    if not batched:
        return out[:, 0], weights[0]
    return out, weights
