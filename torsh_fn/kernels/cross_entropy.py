"""Cross-entropy over class logits: per-row losses from integer labels, with dispatch.

For one row ``x`` of ``C`` logits with label ``y`` and smoothing ``eps``:

    lse  = log(sum(exp(x)))                      (stably: max + log(sum(exp(x - max))))
    loss = (1 - eps) * (lse - x[y]) + eps * (lse - mean(x)),   0 where y == ignore_index

which is the cross-entropy against the target distribution ``(1 - eps) * onehot(y) + eps / C``.
Only the log-sum-exp touches every logit; the softmax is formed once, by the backward pass
(``d loss / dx = softmax(x) - (1 - eps) * onehot(y) - eps / C``).

``cross_entropy`` is the public op; ``cross_entropy_reference`` is its ``jax.numpy`` reference,
the XLA path that ``impl="xla"`` runs. The Pallas kernel reads each row of logits once forward
and once backward, writing the gradient in the same sweep.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from ._dispatch import measured_faster, resolve_impl
from ._explicit_sharding import typed_like
from ._pallas_cross_entropy import cross_entropy_pallas

__all__ = ["cross_entropy", "cross_entropy_reference"]


def _check(logits: jax.Array, labels: jax.Array, where: str) -> None:
    if logits.ndim != 2:
        raise ValueError(f"{where}: expected logits of shape (N, C), got shape {logits.shape}")
    if labels.shape != logits.shape[:1]:
        raise ValueError(f"{where}: expected labels of shape {logits.shape[:1]} for logits of "
                         f"shape {logits.shape}, got {labels.shape}")
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(f"{where}: labels must be integers, got dtype {labels.dtype}")


def cross_entropy_reference(logits: jax.Array, labels: jax.Array, *, ignore_index: int = -100,
                            label_smoothing: float = 0.0) -> jax.Array:
    """Per-row cross-entropy in ``jax.numpy``; differentiable by autodiff.

    Args:
        logits: (N, C) unnormalised class scores, any float dtype.
        labels: (N,) integer class indices in ``[0, C)``, or ``ignore_index``.
        ignore_index: label whose rows get loss 0 and gradient 0.
        label_smoothing: ``eps`` in ``[0, 1]``; the target is ``(1 - eps) * onehot + eps / C``.

    Returns:
        (N,) losses in float32 (float64 for float64 logits).

    Example:
        >>> cross_entropy_reference(jnp.zeros((2, 4)), jnp.array([1, -100]))
        Array([1.3862944, 0.       ], dtype=float32)
    """
    _check(logits, labels, "cross_entropy_reference")
    x = logits.astype(jnp.promote_types(logits.dtype, jnp.float32))
    lse = jax.nn.logsumexp(x, axis=-1)
    safe = jnp.clip(labels, 0, x.shape[-1] - 1)
    picked = jnp.take_along_axis(x, safe[:, None], axis=-1)[:, 0]
    loss = lse - picked
    if label_smoothing:
        loss = (1.0 - label_smoothing) * loss + label_smoothing * (lse - jnp.mean(x, axis=-1))
    return jnp.where(labels == ignore_index, jnp.zeros((), x.dtype), loss)


def cross_entropy(logits: jax.Array, labels: jax.Array, *, ignore_index: int = -100,
                  label_smoothing: float = 0.0, impl: str = "auto") -> jax.Array:
    """Per-row cross-entropy of ``logits`` (N, C) against integer ``labels`` (N,).

    Same contract as ``cross_entropy_reference``; ``impl`` ("auto", "pallas", "xla") picks the
    implementation through ``torsh_fn.kernels._dispatch``; "auto" takes the fused Pallas kernel on
    a GPU where the dispatch table measured it faster for this many classes.

    Example:
        >>> cross_entropy(jnp.array([[2.0, 0.0, -1.0]]), jnp.array([0]))
        Array([0.16984606], dtype=float32)
    """
    _check(logits, labels, "cross_entropy")
    classes = logits.shape[1]
    if resolve_impl("cross_entropy", impl,
                    lambda: measured_faster("cross_entropy", logits.dtype, classes)) == "pallas":
        if logits.dtype == jnp.float64:
            raise TypeError("cross_entropy: the Pallas kernel takes float16/bfloat16/float32 "
                            "logits, got float64; use impl='xla'")
        options = {"ignore_index": ignore_index, "label_smoothing": label_smoothing}
        return typed_like(functools.partial(cross_entropy_reference, **options),
                          functools.partial(cross_entropy_pallas, **options), logits, labels)
    return cross_entropy_reference(logits, labels, ignore_index=ignore_index,
                                   label_smoothing=label_smoothing)
