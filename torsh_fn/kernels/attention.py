"""Scaled dot-product attention, PyTorch's semantics, with dispatch.

    scores = q @ k^T * scale + bias        (bias: a float mask; -inf where a bool mask is False)
    out    = dropout(softmax(scores)) @ v

Shapes: ``q`` (..., L, E), ``k`` (..., S, E), ``v`` (..., S, Ev); leading dims broadcast, and
grouped-query heads are accepted: ``k``/``v`` may have fewer heads (dim -3) than ``q``, dividing
them (query head ``h`` uses key/value head ``h // (H // Hk)``). Rows whose every score is ``-inf``
(fully masked) give zeros, as PyTorch's math path does. Scores and softmax are taken in float32
for low-precision inputs; their product with ``v`` takes the weights rounded to the inputs' dtype,
as the fused kernels do (ours, cuDNN's, PyTorch's), so that both products run on 16-bit operands.

Implementations (``impl``): "xla" is the ``jax.numpy`` reference below (it builds the
``[L, S]`` score matrix); "pallas" the flash attention kernels of ``_pallas_attention`` (no
``[L, S]`` matrix in memory; causal or not, a bool or float mask read tile by tile where it is
given, dropout drawn by a hash of a seed per head and the positions, float32/bfloat16/float16,
head dims up to 256); "auto" is "xla" off the GPU, and on a GPU the Pallas kernel, cuDNN's
fused attention (``_cudnn_attention``, on the (B, H, S, D) inputs as they are), or, in
training, the Pallas forward with cuDNN's backward, only where the dispatch table measured it
faster than XLA for that dtype and key length; with a mask or dropout only the Pallas
kernels are candidates (the table's ``_masked`` entries: the Mosaic GPU kernels on Hopper with a
key padding mask, with dropout or without, else the Triton kernels' ``triton_`` ones). Where the
Mosaic kernels take a call, the Triton kernels (their default tiles) run instead where their
``triton_`` entry is faster than the Mosaic kernels' by the margin (on the H200, at 256 keys with
a causal key padding mask or with dropout). Dropout's pattern differs between the kernels and
the reference (each draws its own from ``key``).
"auto" chooses
twice: by the forward's times for a call that is not differentiated, by a training step's
(forward and backward) for one that is; where the two differ, ``inference_or_training`` runs
each where it was measured faster (a table with the Pallas forward fastest alone and cuDNN's
step or the pair fastest in training; the H200's table, B4 H16 D128 bf16, has the Mosaic
kernels fastest both alone and in training at every length it measured but one: at 256 keys
without the mask XLA's forward is within the margin of theirs, 1.08x, so inference runs XLA
there and training the Mosaic kernels), unless training's choice is XLA, which then runs
throughout (forward-mode differentiation, which the kernels' ``custom_vjp`` refuses, keeps
working).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from . import _dispatch
from ._cudnn_attention import cudnn_attention, has_backward
from ._dispatch import resolve_impl
from ._explicit_sharding import typed_like
from ._float32_sums import float32_sums
from ._pallas_attention import (
    MAX_HEAD_DIM,
    AttentionConfig,
    AttentionStatic,
    attention_pallas,
    default_config,
    mask_as_bhls,
    mosaic_runs,
    mosaic_takes,
)
from ._pallas_tiles import SUPPORTED_DTYPES

__all__ = ["attention", "attention_reference"]


_SCORES = functools.partial(jnp.einsum, "...le,...se->...ls")  # q @ kᵀ
_WEIGHTED_VALUES = functools.partial(jnp.einsum, "...ls,...se->...le")  # weights @ v


def _safe_softmax(scores: jax.Array) -> jax.Array:
    """Softmax over the last axis; zeros (and zero gradients) for a row of only -inf."""
    row_max = jnp.max(scores, axis=-1, keepdims=True)
    dead = jnp.isneginf(row_max)
    e = jnp.exp(scores - jnp.where(dead, 0.0, row_max))  # a dead row: zeros
    return e / jnp.where(dead, 1.0, jnp.sum(e, axis=-1, keepdims=True))  # not 0 / 0: no NaN


def attention_reference(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None = None,
                        *, is_causal: bool = False, scale: float | None = None,
                        dropout_p: float = 0.0, key: jax.Array | None = None) -> jax.Array:
    """Attention of ``q`` over ``k``/``v`` in ``jax.numpy``; returns (..., L, Ev) in q's dtype.

    ``mask`` broadcasts to (..., L, S): bool (True takes part) or float (added to the scores).
    ``is_causal`` masks key positions after the query's (top-left aligned, as PyTorch).
    ``key`` is required when ``dropout_p > 0``.

    Example:
        >>> q = k = v = jnp.ones((1, 2, 4))
        >>> attention_reference(q, k, v).shape
        (1, 2, 4)
    """
    ct = jnp.promote_types(q.dtype, jnp.float32)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    # 16-bit: both products on 16-bit operands with float32 sums (their products are exact in
    # float32, so the scores are those of float32 inputs), their derivatives 16-bit products too
    sixteen_bit = q.dtype == k.dtype == v.dtype and jnp.dtype(q.dtype).itemsize == 2
    if sixteen_bit:
        scores = float32_sums(_SCORES, q, k) * scale
    else:
        scores = _SCORES(q.astype(ct), k.astype(ct), precision=jax.lax.Precision.HIGHEST) * scale
    if is_causal:
        length, source = scores.shape[-2:]
        scores = jnp.where(jnp.tril(jnp.ones((length, source), bool)), scores, -jnp.inf)
    if mask is not None:
        scores = (jnp.where(mask, scores, -jnp.inf) if mask.dtype == jnp.bool_
                  else scores + mask.astype(ct))
    weights = _safe_softmax(scores)
    if dropout_p > 0.0:
        keep = jax.random.bernoulli(key, 1.0 - dropout_p, weights.shape)
        weights = jnp.where(keep, weights / (1.0 - dropout_p), 0.0)
    if sixteen_bit:
        out = float32_sums(_WEIGHTED_VALUES, weights.astype(v.dtype), v)
    else:
        out = _WEIGHTED_VALUES(weights, v.astype(ct), precision=jax.lax.Precision.HIGHEST)
    return out.astype(q.dtype)


def _repeat_kv(q: jax.Array, kv: jax.Array) -> jax.Array:
    """Grouped-query heads: repeat each of ``kv``'s heads (dim -3) to match ``q``'s."""
    if q.ndim < 3 or kv.ndim < 3 or 1 in (q.shape[-3], kv.shape[-3]) or (
            kv.shape[-3] == q.shape[-3]):
        return kv  # nothing to repeat (plain broadcasting covers one head on either side)
    if q.shape[-3] % kv.shape[-3]:
        raise ValueError(f"attention: k/v heads (dim -3) must divide q's, got q {q.shape} and "
                         f"k/v {kv.shape}")
    return jnp.repeat(kv, q.shape[-3] // kv.shape[-3], axis=-3)


def _bhsd_layout(q, k, v):
    """From the shapes alone: the broadcast leading dims of q, k, v, and each one's trailing
    (H, S, D) (H = 1 for a 2-D input); ``_as_bhsd`` lays the arrays out so."""
    ndim = max(q.ndim, k.ndim, v.ndim, 3)
    padded = [(1,) * (ndim - x.ndim) + tuple(x.shape) for x in (q, k, v)]
    return jnp.broadcast_shapes(*(p[:-3] for p in padded)), [p[-3:] for p in padded]


def _as_bhsd(q, k, v):
    """q, k, v as (B, H, S, D) arrays (leading dims broadcast and flattened), and q's lead."""
    lead, trailing = _bhsd_layout(q, k, v)
    q, k, v = (jnp.broadcast_to(x, (*lead, *t)).reshape(-1, *t)
               for x, t in zip((q, k, v), trailing))
    return q, k, v, lead


def _kernel_refusal(q, k, v, mask, dropout_p) -> str | None:
    """Why the flash kernels cannot compute this call (None if they can)."""
    if mask is not None and mask.dtype != jnp.bool_ and not jnp.issubdtype(mask.dtype,
                                                                           jnp.floating):
        return f"a mask of dtype {mask.dtype} (bool or float)"
    if dropout_p >= 1.0:
        return "dropout_p = 1"
    if not (q.dtype == k.dtype == v.dtype) or q.dtype not in SUPPORTED_DTYPES:
        return (f"dtypes {q.dtype}, {k.dtype}, {v.dtype} (one of float32, bfloat16, float16 for "
                f"all three)")
    if max(q.shape[-1], v.shape[-1]) > MAX_HEAD_DIM:
        return f"head dims over {MAX_HEAD_DIM}"
    if q.shape[-2] == 0 or k.shape[-2] == 0:
        return "an empty sequence"
    heads = [x.shape[-3] if x.ndim >= 3 else 1 for x in (q, k, v)]
    if heads[1] != heads[2] or heads[0] % heads[1]:
        return "key/value heads that do not divide the query's"
    return None


def _flash(q, k, v, is_causal, scale, config, kernels: str, mask=None, dropout_p: float = 0.0,
           key=None):
    """Attention by the fused kernels: ``kernels`` "cudnn", "pallas" (ours), or
    "pallas_cudnn" (our forward, cuDNN's backward); a ``mask`` or dropout (with its PRNG
    ``key``: a uint32 seed per head) takes "pallas" only."""
    def kernel(q, k, v, mask, key):
        q4, k4, v4, lead = _as_bhsd(q, k, v)
        if kernels == "cudnn":
            out = cudnn_attention(q4, k4, v4, scale=scale, is_causal=is_causal)
        else:
            if mask is not None:
                mask = mask_as_bhls(mask, lead, *q4.shape[1:3], k4.shape[2])
            seeds = jax.random.bits(key, q4.shape[:2], jnp.uint32) if dropout_p else None
            out = attention_pallas(q4, k4, v4, AttentionStatic(
                is_causal, scale, config, cudnn_backward=kernels == "pallas_cudnn",
                dropout_p=dropout_p), mask, seeds)
        out = out.reshape(*lead, *out.shape[1:])
        return out[0] if max(q.ndim, k.ndim, v.ndim) == 2 else out  # (L, E): no heads dim

    def reference(q, k, v, mask, key):
        return attention_reference(q, _repeat_kv(q, k), _repeat_kv(q, v), mask,
                                   is_causal=is_causal, scale=scale, dropout_p=dropout_p,
                                   key=key)

    return typed_like(reference, kernel, q, k, v, mask, key)


def _cudnn_can(q, k, v, is_causal, scale: float) -> bool:
    """cuDNN's fused attention: 16-bit, equal head dims <= 128 and multiples of 8, causal only
    when L == S, even lengths (its backward refuses odd ones: "Unsupported sequence length"),
    and a positive scale (it was not checked with others)."""
    return (scale > 0 and q.dtype in (jnp.bfloat16, jnp.float16)
            and q.shape[-1] == v.shape[-1] <= 128
            and q.shape[-1] % 8 == 0 and q.ndim == k.ndim == 4
            and (not is_causal or q.shape[-2] == k.shape[-2])
            and q.shape[-2] % 2 == 0 and k.shape[-2] % 2 == 0)


def _pair_can(q, k, v, is_causal, config, scale: float) -> bool:
    """The Pallas forward with cuDNN's backward: where cuDNN takes the call, this JAX's cuDNN
    backward can be called alone, and the forward is the Mosaic GPU kernel (the pair was
    measured with it; after the Triton forward it is slower than cuDNN's own step)."""
    return (_cudnn_can(q, k, v, is_causal, scale) and has_backward()
            and mosaic_takes(q, k, v, AttentionStatic(is_causal, scale, config)))


def _pallas_entry(q, k, v, is_causal, training: bool, config, op: str, scale: float = 1.0,
                  mask=None) -> str:
    """The table entry that measured the Pallas kernels this call runs: ``op`` (swept at lengths
    the Mosaic GPU kernels take, on Hopper) where the Mosaic kernels run it (``mosaic_runs``:
    the forward, and in training the backward too; with a ``mask``, one they take: a key
    padding mask, bool and one for every head in training), else the Triton kernels'
    ``triton_`` entry."""
    lead, trailing = _bhsd_layout(q, k, v)
    shapes = [jax.ShapeDtypeStruct((math.prod(lead), *t), x.dtype)
              for x, t in zip((q, k, v), trailing)]
    if mask is not None:  # laid out as the kernels get it
        mask = jax.eval_shape(lambda m: mask_as_bhls(m, lead, *shapes[0].shape[1:3],
                                                     shapes[1].shape[2]), mask)
    mosaic = mosaic_runs(*shapes, AttentionStatic(is_causal, scale, config), training, mask)
    return op if mosaic else "triton_" + op


def _auto_choice(q, k, v, is_causal, training: bool, config=None, scale: float = 1.0,
                 mask=None, dropout: bool = False) -> str:
    """"pallas", "triton" (the Pallas kernels' Triton ones with their default tiles, where the
    Mosaic GPU kernels would run "pallas"), "cudnn", "pallas_cudnn" (training only: the Pallas
    forward, cuDNN's backward) or "xla" for ``impl="auto"``: the fastest measured (on a GPU), XLA
    unless another was measured faster by the table's margin, and "triton" only where its entry is
    faster than the Mosaic kernels' by the margin too (swept apart). The table was measured with as
    many queries as keys; a call is looked up by the shorter of its two lengths (one query over many
    keys, as in decoding, is not the work that was measured). Lengths take the nearest measured one
    within a factor of two, and any length above the longest measured takes the longest's: the
    kernels' lead over XLA, whose score matrix grows as the square of the length, grows with it
    (H200, causal training: 1.5x at 256 keys, 4.8x at 1024, 6.7x at 4096).
    ``training``: by the times of a forward and backward; else of the forward alone (the
    table's ``_fwd`` entries). ``config``: the Pallas tile config the call was given.
    ``scale``: the call's score scale; where it is not positive, only the Triton kernels are
    candidates (the Mosaic GPU kernels refuse it, and cuDNN was not checked with it).
    ``mask``: the call's attention mask (an array or its shape and dtype) or None; ``dropout``:
    whether the call has dropout. Only the Pallas kernels take either: the table's ``_masked``
    entries were measured with a key padding mask (the Mosaic forward's where it takes the
    mask, ``_pallas_entry``; ``_dropout`` and ``_masked_dropout`` likewise)."""
    op = ("attention_causal" if is_causal else "attention") + (
        "_masked" if mask is not None else "") + ("_dropout" if dropout else "") + (
        "" if training else "_fwd")
    plain = mask is None and not dropout
    best, best_ms = "xla", None
    kernels = ["pallas"] + (["cudnn"] if plain and _cudnn_can(q, k, v, is_causal, scale) else [])
    if training and plain and _pair_can(q, k, v, is_causal, config, scale):
        kernels.append("pallas_cudnn")
    pallas_op = _pallas_entry(q, k, v, is_causal, training, config, op, scale, mask)
    if pallas_op == op:  # the Mosaic kernels run "pallas"; the Triton ones are faster at some
        kernels.insert(1, "triton")  # short lengths (H200: with a mask or dropout, 256 keys)
    times = {name: _dispatch.measured_ms(pallas_op if name == "pallas" else f"{name}_{op}",
                                         q.dtype, min(q.shape[-2], k.shape[-2]), within=2.0,
                                         above_largest=True)
             for name in kernels}
    for name, measured in times.items():
        if name == "triton" and times["pallas"] is not None and (
                measured is None or not _dispatch.faster_by_margin(measured[0],
                                                                   times["pallas"][0])):
            continue  # swept apart from the Mosaic kernels: chosen only where clearly faster
        if _dispatch.beats_xla(measured) and (best_ms is None or measured[0] < best_ms):
            best, best_ms = name, measured[0]
    return best


def inference_or_training(infer: Callable[..., Any], train: Callable[..., Any]
                          ) -> Callable[..., Any]:
    """A function of arrays that runs ``infer`` when it is not differentiated, and ``train``'s
    forward and backward when it is (``jax.custom_vjp``): two implementations of one op, each
    where it was measured faster. Forward-mode differentiation (``jvp``) is refused.

    Example:
        >>> f = inference_or_training(jnp.sin, lambda x: jnp.sin(x) + 0 * x)
        >>> f(0.0), jax.grad(f)(0.0)
        (Array(0., dtype=float32, weak_type=True), Array(1., dtype=float32, weak_type=True))
    """
    @jax.custom_vjp
    def run(*args):
        return infer(*args)

    def forward(*args):
        return jax.vjp(train, *args)  # the pullback is a pytree of train's residuals

    def backward(pullback, cotangent):
        return pullback(cotangent)

    run.defvjp(forward, backward)
    return run


def attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None = None, *,
              is_causal: bool = False, scale: float | None = None, dropout_p: float = 0.0,
              key: jax.Array | None = None, impl: str = "auto",
              config: AttentionConfig | None = None) -> jax.Array:
    """Scaled dot-product attention with PyTorch's semantics (see ``attention_reference``).

    Args:
        q: (..., H, L, E); k: (..., Hk, S, E); v: (..., Hk, S, Ev); Hk divides H.
        mask: broadcastable to (..., L, S), bool (True takes part) or float (added); or None.
        is_causal: query ``i`` sees keys ``<= i`` (top-left aligned, as PyTorch).
        scale: score scale, default ``1 / sqrt(E)``.
        dropout_p, key: dropout on the weights and its PRNG key (the kernels draw a uint32
            seed per head from it; the XLA reference, a Bernoulli mask: the two differ).
        impl: "auto", "pallas" (flash attention; a ValueError for what it does not cover:
            dropout_p = 1, masks other than bool or float, other dtypes) or "xla".
        config: tile sizes for the Pallas kernels (default: by head dim).

    Returns:
        (..., H, L, Ev) in ``q``'s dtype.

    Example:
        >>> q = jnp.ones((2, 8, 5, 64)); kv = jnp.ones((2, 2, 7, 64))
        >>> attention(q, kv, kv, is_causal=True, impl="pallas").shape
        (2, 8, 5, 64)
    """
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    if not 0.0 <= dropout_p <= 1.0:
        raise ValueError(f"attention: dropout_p must be in [0, 1], got {dropout_p}")
    if dropout_p > 0.0 and key is None:
        raise ValueError(f"attention: dropout_p={dropout_p} needs a PRNG key (key=)")
    refusal = _kernel_refusal(q, k, v, mask, dropout_p)

    def run(choice: str) -> Callable[..., jax.Array]:
        if choice == "xla":
            return lambda q, k, v: attention_reference(
                q, _repeat_kv(q, k), _repeat_kv(q, v), mask, is_causal=is_causal, scale=scale,
                dropout_p=dropout_p, key=key)
        if choice == "triton":  # the Triton kernels run where a tile config is given
            return lambda q, k, v: _flash(
                q, k, v, is_causal, scale, default_config(q.shape[-1], masked=mask is not None),
                "pallas", mask, dropout_p, key)
        return lambda q, k, v: _flash(q, k, v, is_causal, scale, config, choice, mask,
                                      dropout_p, key)

    if not _dispatch.picks_lowering(impl):  # "pallas", "xla", or set_default_impl's choice
        choice = resolve_impl("attention", impl, lambda: False)
        if choice == "pallas" and refusal is not None:
            raise ValueError(f"attention: the Pallas kernel does not take {refusal}; use "
                             f"impl='xla' or 'auto'")
        return run(choice)(q, k, v)
    if refusal is not None:
        return run("xla")(q, k, v)
    train, infer = (_auto_choice(q, k, v, is_causal, training, config, scale, mask,
                                 dropout_p > 0.0)
                    for training in (True, False))
    if train == infer or train == "xla":  # XLA keeps forward-mode differentiation
        return run(train)(q, k, v)
    return inference_or_training(run(infer), run(train))(q, k, v)
