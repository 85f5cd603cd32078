"""nn.functional: loss ops, with PyTorch's names, arguments, reductions and weighting rules.

Every loss takes ``reduction="none" | "mean" | "sum"`` (``kl_div`` also ``"batchmean"``) and,
where PyTorch has them, the legacy ``size_average``/``reduce`` flags. Losses are computed and
reduced in at least float32 and returned in the input's dtype; class-index
cross-entropy hands the logits to its kernel in their own dtype.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from torsh_fn.kernels.cross_entropy import cross_entropy as _ce_kernel

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cosine_embedding_loss",
    "cross_entropy",
    "ctc_loss",
    "gaussian_nll_loss",
    "hinge_embedding_loss",
    "huber_loss",
    "kl_div",
    "l1_loss",
    "margin_ranking_loss",
    "mse_loss",
    "multi_margin_loss",
    "multilabel_margin_loss",
    "multilabel_soft_margin_loss",
    "nll_loss",
    "poisson_nll_loss",
    "smooth_l1_loss",
    "soft_margin_loss",
    "triplet_margin_loss",
    "triplet_margin_with_distance_loss",
]

_REDUCTIONS = ("none", "mean", "sum")


# ------------------------------------------------------------------ shared helpers


def _reduction(name: str, reduction: str, size_average: bool | None = None,
               reduce: bool | None = None, allowed: tuple[str, ...] = _REDUCTIONS) -> str:
    """The reduction to apply: PyTorch's legacy flags win over ``reduction`` when given."""
    if size_average is not None or reduce is not None:
        average = True if size_average is None else size_average
        reduction = "none" if reduce is False else ("mean" if average else "sum")
        warnings.warn(f"{name}: size_average and reduce are deprecated, "
                      f"use reduction={reduction!r} instead", UserWarning, stacklevel=3)
    if reduction not in allowed:
        raise ValueError(f"{name}: reduction must be one of {allowed}, got {reduction!r}")
    return reduction


def _reduce(loss: jax.Array, reduction: str, denom: jax.Array | None = None) -> jax.Array:
    """Apply ``reduction``; ``mean`` divides the sum by ``denom`` (default: the element count).

    Sums accumulate in at least float32; the result keeps ``loss``'s dtype.
    """
    if reduction == "none":
        return loss
    total = jnp.sum(loss.astype(_acc(loss.dtype)))
    if reduction == "mean":
        total = total / (loss.size if denom is None else denom)
    return total.astype(loss.dtype)


def _acc(dtype) -> jnp.dtype:
    """The dtype to compute a loss in: float32 or wider."""
    return jnp.promote_types(dtype, jnp.float32)


def _upcast(x):
    """Floating arrays to at least float32; anything else as it is."""
    if isinstance(x, jax.Array | np.ndarray) and jnp.issubdtype(x.dtype, jnp.floating):
        return jnp.asarray(x).astype(_acc(x.dtype))
    return x


def _in_float32(loss_fn: Callable) -> Callable:
    """Compute ``loss_fn`` on its floating array arguments (weights too) upcast to float32 or
    wider; return the result in the first argument's dtype (PyTorch, too, computes bfloat16
    losses in float32)."""

    @functools.wraps(loss_fn)
    def wrapped(*args, **kwargs):
        dtype = jnp.asarray(args[0]).dtype
        out = loss_fn(*map(_upcast, args), **{k: _upcast(v) for k, v in kwargs.items()})
        return out.astype(dtype) if jnp.issubdtype(dtype, jnp.floating) else out

    return wrapped


def _same_shape(name: str, arg: str, input: jax.Array, other: jax.Array) -> None:
    if other.shape != input.shape:
        raise ValueError(f"{name}: expected {arg} of the input's shape {input.shape}, "
                         f"got {other.shape}")


def _broadcast_target(name: str, input: jax.Array, target: jax.Array):
    """PyTorch's rule for regression losses: warn on a size difference, then broadcast."""
    if target.shape != input.shape:
        warnings.warn(f"{name}: using a target size {target.shape} that is different to the input "
                      f"size {input.shape}; this will likely lead to incorrect results due to "
                      "broadcasting. Please ensure they have the same size.", stacklevel=3)
    try:
        return jnp.broadcast_arrays(input, target)
    except ValueError:
        raise ValueError(f"{name}: target of shape {target.shape} does not broadcast with input "
                         f"of shape {input.shape}") from None


def _same_ndim(name: str, **arrays: jax.Array) -> None:
    if len({a.ndim for a in arrays.values()}) > 1:
        got = ", ".join(f"{k} {a.shape}" for k, a in arrays.items())
        raise ValueError(f"{name}: expected inputs with the same number of dimensions, got {got}")


@jax.custom_jvp
def _abs(x: jax.Array) -> jax.Array:
    """``|x|`` with PyTorch's subgradient ``sign(x)`` (0 at 0, where JAX's ``abs`` gives 1)."""
    return jnp.abs(x)


_abs.defjvp(lambda primals, tangents: (_abs(primals[0]), jnp.sign(primals[0]) * tangents[0]))


def _elementwise_weight(name: str, loss: jax.Array, weight, input_shape, reduction: str,
                        weighted_mean: bool) -> jax.Array:
    """Multiply by a weight of the input's shape; ``weighted_mean`` divides by ``sum(weight)``."""
    if weight is None:
        return _reduce(loss, reduction)
    weight = jnp.asarray(weight)
    if weight.shape != tuple(input_shape):
        raise ValueError(f"{name}: expected weight of the input's shape {tuple(input_shape)}, "
                         f"got {weight.shape}")
    loss = loss * weight
    return _reduce(loss, reduction, jnp.sum(weight) if weighted_mean else None)


# ------------------------------------------------------------------ class-index losses


def _check_index_target(name: str, input: jax.Array, target: jax.Array) -> None:
    if input.ndim == 0:
        raise ValueError(f"{name}: expected input of shape (C,), (N, C) or (N, C, d1, ...), "
                         "got a scalar")
    if not jnp.issubdtype(target.dtype, jnp.integer):
        raise TypeError(f"{name}: class-index target must hold integers, got dtype {target.dtype}"
                        " (class probabilities need a floating target of the input's shape)")
    expected = input.shape[:1] + input.shape[2:] if input.ndim >= 2 else ()
    if target.shape != expected:
        raise ValueError(f"{name}: expected target of shape {expected} for input of shape "
                         f"{input.shape}, got {target.shape}")


def _class_dim(input: jax.Array) -> int:
    return 0 if input.ndim == 1 else 1


def _rows(input: jax.Array, target: jax.Array):
    """(..., C, ...) scores and (...) labels -> (rows, C) and (rows,), classes last."""
    classes = input.shape[_class_dim(input)]
    rows = jnp.moveaxis(input, _class_dim(input), -1).reshape(-1, classes)
    return rows, target.reshape(-1)


def _class_weight(name: str, weight, classes: int) -> jax.Array:
    weight = jnp.asarray(weight)
    if weight.shape != (classes,):
        raise ValueError(f"{name}: expected weight of shape ({classes},), one per class, "
                         f"got {weight.shape}")
    return weight.astype(_acc(weight.dtype))


def _label_weights(labels: jax.Array, weight, ignore_index: int) -> jax.Array:
    """Each row's weight ``weight[label]`` (1 without weights), 0 on ignored rows."""
    keep = labels != ignore_index
    if weight is None:
        return keep.astype(jnp.float32)
    picked = weight[jnp.clip(labels, 0, weight.shape[0] - 1)]
    return jnp.where(keep, picked, jnp.zeros((), picked.dtype))


def _nan_out_of_range(loss: jax.Array, labels: jax.Array, classes: int,
                      ignore_index: int | None = None) -> jax.Array:
    """NaN where a label is neither a class nor ``ignore_index`` (PyTorch raises there)."""
    bad = (labels < 0) | (labels >= classes)
    if ignore_index is not None:
        bad = bad & (labels != ignore_index)
    return jnp.where(bad, jnp.nan, loss)


def _index_reduce(loss, label_weights, target_shape, reduction: str, dtype) -> jax.Array:
    """Reduce per-row losses; ``mean`` divides by the summed weights of non-ignored rows."""
    loss = loss.reshape(target_shape)
    denom = jnp.sum(label_weights.astype(_acc(label_weights.dtype)))
    return _reduce(loss, reduction, denom).astype(dtype)


def nll_loss(input, target, weight=None, size_average=None, ignore_index: int = -100,
             reduce=None, reduction: str = "mean") -> jax.Array:
    """Negative log-likelihood of class ``target`` under log-probabilities ``input``.

    Args:
        input: (C,), (N, C) or (N, C, d1, ...) log-probabilities.
        target: (), (N,) or (N, d1, ...) integer class indices; ``ignore_index`` rows count 0.
        weight: optional (C,) class weights; ``mean`` divides by the summed weights of the
            non-ignored targets.

    Example:
        >>> nll_loss(jnp.log(jnp.array([[0.25, 0.75]])), jnp.array([1]))
        Array(0.2876821, dtype=float32)
    """
    reduction = _reduction("nll_loss", reduction, size_average, reduce)
    input, target = jnp.asarray(input), jnp.asarray(target)
    _check_index_target("nll_loss", input, target)
    rows, labels = _rows(input, target)
    classes = rows.shape[-1]
    weight = None if weight is None else _class_weight("nll_loss", weight, classes)
    label_weights = _label_weights(labels, weight, ignore_index)
    picked = jnp.take_along_axis(rows, jnp.clip(labels, 0, classes - 1)[:, None], -1)[:, 0]
    loss = jnp.where(labels == ignore_index, 0.0, -label_weights * picked.astype(_acc(rows.dtype)))
    loss = _nan_out_of_range(loss, labels, classes, ignore_index)
    return _index_reduce(loss, label_weights, target.shape, reduction, input.dtype)


def _cross_entropy_probs(input, target, weight, label_smoothing: float,
                         reduction: str) -> jax.Array:
    """Cross-entropy against class probabilities ``target`` of the input's shape."""
    _same_shape("cross_entropy", "target (class probabilities)", input, target)
    dim = _class_dim(input)
    classes = input.shape[dim]
    if label_smoothing:
        target = target * (1.0 - label_smoothing) + label_smoothing / classes
    terms = jax.nn.log_softmax(input.astype(_acc(input.dtype)), axis=dim) * target
    if weight is not None:
        weight = _class_weight("cross_entropy", weight, classes)
        terms = terms * weight.reshape((classes,) + (1,) * (input.ndim - dim - 1))
    return _reduce(-jnp.sum(terms, axis=dim), reduction).astype(input.dtype)


def _weighted_cross_entropy_rows(rows, labels, weight, ignore_index: int,
                                 label_smoothing: float) -> jax.Array:
    """PyTorch's weighted per-row loss: ``(1 - eps) * w[y] * nll + eps / C * sum_c w[c] * nll_c``.

    The kernel gives ``nll = lse - x[y]``, so ``lse`` is recovered as ``nll + x[y]``.
    """
    nll = _ce_kernel(rows, labels, ignore_index=ignore_index)
    loss = _label_weights(labels, weight, ignore_index) * nll
    if not label_smoothing:
        return loss
    x = rows.astype(nll.dtype)
    classes = rows.shape[-1]
    picked = jnp.take_along_axis(x, jnp.clip(labels, 0, classes - 1)[:, None], -1)[:, 0]
    smooth = jnp.sum(weight) * (nll + picked) - x @ weight.astype(x.dtype)
    loss = (1.0 - label_smoothing) * loss + (label_smoothing / classes) * smooth
    return jnp.where(labels == ignore_index, 0.0, loss)


def cross_entropy(input, target, weight=None, size_average=None, ignore_index: int = -100,
                  reduce=None, reduction: str = "mean", label_smoothing: float = 0.0) -> jax.Array:
    """Cross-entropy between logits ``input`` and class indices or class probabilities.

    Args:
        input: (C,), (N, C) or (N, C, d1, ...) unnormalised logits.
        target: integer class indices of shape (), (N,) or (N, d1, ...), or floating class
            probabilities of the input's shape (``ignore_index`` does not apply to those).
        weight: optional (C,) class weights. With indices, ``mean`` divides by the summed weights
            of the non-ignored targets (the smoothing term too, as PyTorch does); with
            probabilities, ``mean`` divides by the number of rows.
        label_smoothing: ``eps`` in [0, 1]: the target becomes ``(1 - eps) * target + eps / C``.

    Returns:
        The reduced loss, or per-sample losses of the target's (index) or input-without-class-dim
        (probabilities) shape for ``reduction="none"``; in the input's dtype.

    Example:
        >>> cross_entropy(jnp.array([[2.0, 0.0, -1.0]]), jnp.array([0]))
        Array(0.16984606, dtype=float32)
    """
    reduction = _reduction("cross_entropy", reduction, size_average, reduce)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    input, target = jnp.asarray(input), jnp.asarray(target)
    if jnp.issubdtype(target.dtype, jnp.floating):
        return _cross_entropy_probs(input, target, weight, label_smoothing, reduction)
    _check_index_target("cross_entropy", input, target)
    rows, labels = _rows(input, target)
    classes = rows.shape[-1]
    if weight is None:
        loss = _ce_kernel(rows, labels, ignore_index=ignore_index, label_smoothing=label_smoothing)
    else:
        weight = _class_weight("cross_entropy", weight, classes)
        loss = _weighted_cross_entropy_rows(rows, labels, weight, ignore_index, label_smoothing)
    loss = _nan_out_of_range(loss, labels, classes, ignore_index)
    label_weights = _label_weights(labels, weight, ignore_index)
    return _index_reduce(loss, label_weights, target.shape, reduction, input.dtype)


def multi_margin_loss(input, target, p: int = 1, margin: float = 1.0, weight=None,
                      size_average=None, reduce=None, reduction: str = "mean") -> jax.Array:
    """Multi-class hinge loss: ``sum_{j != y} w[y] * max(0, margin - x[y] + x[j])**p / C``.

    Args:
        input: (C,) or (N, C) scores.  target: () or (N,) integer classes.
        p: 1 or 2.  weight: optional (C,) class weights (the mean is not weighted).

    Example:
        >>> multi_margin_loss(jnp.array([[0.1, 0.2, 0.4, 0.8]]), jnp.array([3]))
        Array(0.325, dtype=float32)
    """
    reduction = _reduction("multi_margin_loss", reduction, size_average, reduce)
    if p not in (1, 2):
        raise ValueError(f"multi_margin_loss: p must be 1 or 2, got {p!r}")
    input, target = jnp.asarray(input), jnp.asarray(target)
    if input.ndim not in (1, 2):
        raise ValueError(f"multi_margin_loss: expected input of shape (C,) or (N, C), "
                         f"got {input.shape}")
    _check_index_target("multi_margin_loss", input, target)
    rows, labels = _rows(input.astype(_acc(input.dtype)), target)
    classes = rows.shape[-1]
    safe = jnp.clip(labels, 0, classes - 1)
    z = jax.nn.relu(margin - jnp.take_along_axis(rows, safe[:, None], -1) + rows) ** p
    z = jnp.where(jnp.arange(classes) == safe[:, None], 0.0, z)
    if weight is not None:
        z = z * _class_weight("multi_margin_loss", weight, classes)[safe][:, None]
    loss = _nan_out_of_range(jnp.sum(z, -1) / classes, labels, classes)
    return _reduce(loss.reshape(target.shape), reduction).astype(input.dtype)


def multilabel_margin_loss(input, target, size_average=None, reduce=None,
                           reduction: str = "mean") -> jax.Array:
    """Multi-label hinge loss: ``sum_{j in y, k not in y} max(0, 1 - (x[j] - x[k])) / C``.

    ``target`` has the input's shape and holds the target classes first, ended by the first -1.

    Example:
        >>> multilabel_margin_loss(jnp.array([[0.1, 0.2, 0.4, 0.8]]), jnp.array([[3, 0, -1, 1]]))
        Array(0.85, dtype=float32)
    """
    reduction = _reduction("multilabel_margin_loss", reduction, size_average, reduce)
    input, target = jnp.asarray(input), jnp.asarray(target)
    if input.ndim not in (1, 2):
        raise ValueError(f"multilabel_margin_loss: expected input of shape (C,) or (N, C), "
                         f"got {input.shape}")
    _same_shape("multilabel_margin_loss", "target", input, target)
    if not jnp.issubdtype(target.dtype, jnp.integer):
        raise TypeError(f"multilabel_margin_loss: target must hold integers, got {target.dtype}")
    x = input.astype(_acc(input.dtype)).reshape(-1, input.shape[-1])
    labels = target.reshape(x.shape)
    classes = x.shape[-1]
    valid = jnp.cumprod(labels >= 0, axis=-1).astype(bool)  # [rows, J]
    safe = jnp.clip(labels, 0, classes - 1)
    is_target = jnp.any((safe[..., None] == jnp.arange(classes)) & valid[..., None], axis=1)
    z = jax.nn.relu(1.0 - jnp.take_along_axis(x, safe, -1)[:, :, None] + x[:, None, :])
    z = z * (valid[:, :, None] & ~is_target[:, None, :])  # [rows, J, K]
    loss = (jnp.sum(z, axis=(1, 2)) / classes).reshape(input.shape[:-1])
    return _reduce(loss, reduction).astype(input.dtype)


# ------------------------------------------------------------------ regression losses


@_in_float32
def mse_loss(input, target, size_average=None, reduce=None, reduction: str = "mean",
             weight=None) -> jax.Array:
    """Squared error ``(input - target)**2``; a weight of the input's shape makes ``mean`` divide
    by ``sum(weight)``.

    Example:
        >>> mse_loss(jnp.array([1.0, 2.0]), jnp.array([0.0, 0.0]))
        Array(2.5, dtype=float32)
    """
    reduction = _reduction("mse_loss", reduction, size_average, reduce)
    input, target = jnp.asarray(input), jnp.asarray(target)
    shape = input.shape
    input, target = _broadcast_target("mse_loss", input, target)
    return _elementwise_weight("mse_loss", (input - target) ** 2, weight, shape, reduction, True)


@_in_float32
def l1_loss(input, target, size_average=None, reduce=None, reduction: str = "mean",
            weight=None) -> jax.Array:
    """Absolute error ``|input - target|``; a weight of the input's shape makes ``mean`` divide
    by ``sum(weight)``.

    Example:
        >>> l1_loss(jnp.array([1.0, -2.0]), jnp.array([0.0, 0.0]))
        Array(1.5, dtype=float32)
    """
    reduction = _reduction("l1_loss", reduction, size_average, reduce)
    input, target = jnp.asarray(input), jnp.asarray(target)
    shape = input.shape
    input, target = _broadcast_target("l1_loss", input, target)
    return _elementwise_weight("l1_loss", _abs(input - target), weight, shape, reduction, True)


@_in_float32
def smooth_l1_loss(input, target, size_average=None, reduce=None, reduction: str = "mean",
                   beta: float = 1.0) -> jax.Array:
    """``0.5 * d**2 / beta`` where ``|d| < beta``, else ``|d| - 0.5 * beta`` (``d = input -
    target``); ``beta=0`` is the L1 loss.

    Example:
        >>> smooth_l1_loss(jnp.array([0.5, 3.0]), jnp.array([0.0, 0.0]))
        Array(1.3125, dtype=float32)
    """
    reduction = _reduction("smooth_l1_loss", reduction, size_average, reduce)
    if beta < 0:
        raise ValueError(f"smooth_l1_loss: beta must be non-negative, got {beta}")
    input, target = _broadcast_target("smooth_l1_loss", jnp.asarray(input), jnp.asarray(target))
    d = _abs(input - target)
    if beta == 0:
        return _reduce(d, reduction)
    return _reduce(jnp.where(d < beta, 0.5 * d * d / beta, d - 0.5 * beta), reduction)


@_in_float32
def huber_loss(input, target, reduction: str = "mean", delta: float = 1.0,
               weight=None) -> jax.Array:
    """``0.5 * d**2`` where ``|d| < delta``, else ``delta * (|d| - 0.5 * delta)``; a weight of the
    input's shape multiplies the loss (``mean`` stays the plain mean, as in PyTorch).

    Example:
        >>> huber_loss(jnp.array([0.5, 3.0]), jnp.array([0.0, 0.0]))
        Array(1.3125, dtype=float32)
    """
    reduction = _reduction("huber_loss", reduction)
    if delta <= 0:
        raise ValueError(f"huber_loss: delta must be positive, got {delta}")
    input, target = jnp.asarray(input), jnp.asarray(target)
    shape = input.shape
    input, target = _broadcast_target("huber_loss", input, target)
    d = _abs(input - target)
    loss = jnp.where(d < delta, 0.5 * d * d, delta * (d - 0.5 * delta))
    return _elementwise_weight("huber_loss", loss, weight, shape, reduction, False)


@_in_float32
def gaussian_nll_loss(input, target, var, full: bool = False, eps: float = 1e-6,
                      reduction: str = "mean") -> jax.Array:
    """Gaussian negative log-likelihood ``0.5 * (log(var) + (input - target)**2 / var)``.

    ``var`` has the input's shape, or one dimension of size 1 (or the last one missing) for a
    shared variance, or is a float. It is clamped at ``eps`` for the value only: the gradient
    passes through the clamp unchanged, as in PyTorch.

    Example:
        >>> gaussian_nll_loss(jnp.array([1.0]), jnp.array([0.0]), jnp.array([1.0]))
        Array(0.5, dtype=float32)
    """
    reduction = _reduction("gaussian_nll_loss", reduction)
    input, target = jnp.asarray(input), jnp.asarray(target)
    if isinstance(var, int | float):
        if var < 0:
            raise ValueError(f"gaussian_nll_loss: var must be non-negative, got {var}")
        var = jnp.full(input.shape, var, input.dtype)
    var = _gaussian_var_shape(input, jnp.asarray(var))
    var = var + jax.lax.stop_gradient(jnp.maximum(var, eps) - var)
    loss = 0.5 * (jnp.log(var) + (input - target) ** 2 / var)
    if full:
        loss = loss + 0.5 * math.log(2 * math.pi)
    return _reduce(loss, reduction)


def _gaussian_var_shape(input: jax.Array, var: jax.Array) -> jax.Array:
    if var.shape == input.shape:
        return var
    if var.shape == input.shape[:-1]:
        return var[..., None]
    mismatched = [v for i, v in zip(input.shape, var.shape) if i != v]
    if var.ndim == input.ndim and mismatched == [1]:
        return var
    raise ValueError(f"gaussian_nll_loss: expected var of shape {input.shape}, or with one "
                     f"dimension of size 1 or the last one dropped, got {var.shape}")


@_in_float32
def poisson_nll_loss(input, target, log_input: bool = True, full: bool = False,
                     size_average=None, eps: float = 1e-8, reduce=None,
                     reduction: str = "mean") -> jax.Array:
    """Poisson negative log-likelihood: ``exp(input) - target * input`` for log-rate inputs,
    else ``input - target * log(input + eps)``; ``full`` adds Stirling's term for targets > 1.

    Example:
        >>> poisson_nll_loss(jnp.array([0.0]), jnp.array([2.0]))
        Array(1., dtype=float32)
    """
    reduction = _reduction("poisson_nll_loss", reduction, size_average, reduce)
    input, target = jnp.asarray(input), jnp.asarray(target)
    if log_input:
        loss = jnp.exp(input) - target * input
    else:
        loss = input - target * jnp.log(input + eps)
    if full:
        big = target > 1
        t = jnp.where(big, target, 2.0)
        stirling = t * jnp.log(t) - t + 0.5 * jnp.log(2 * math.pi * t)
        loss = loss + jnp.where(big, stirling, 0.0)
    return _reduce(loss, reduction)


@_in_float32
def kl_div(input, target, size_average=None, reduce=None, reduction: str = "mean",
           log_target: bool = False) -> jax.Array:
    """Pointwise KL divergence ``target * (log(target) - input)`` for log-probabilities ``input``.

    ``log_target=True`` takes ``target`` as log-probabilities. ``reduction="batchmean"`` divides
    the sum by ``input.shape[0]`` (the KL divergence proper); ``"mean"`` by the element count.

    Example:
        >>> kl_div(jnp.log(jnp.array([0.5, 0.5])), jnp.array([0.25, 0.75]), reduction="sum")
        Array(0.13081202, dtype=float32)
    """
    reduction = _reduction("kl_div", reduction, size_average, reduce,
                           allowed=(*_REDUCTIONS, "batchmean"))
    input, target = jnp.asarray(input), jnp.asarray(target)
    if log_target:
        loss = jnp.exp(target) * (target - input)
    else:
        loss = jax.scipy.special.xlogy(target, target) - target * input
    if reduction != "batchmean":
        return _reduce(loss, reduction)
    return _reduce(loss, "mean", input.shape[0] if input.ndim else 1)


# ------------------------------------------------------------------ binary losses


@jax.custom_jvp
def _bce(x: jax.Array, t: jax.Array) -> jax.Array:
    """``-(t * log(x) + (1 - t) * log(1 - x))`` with both logs clamped at -100 (PyTorch's)."""
    return -(t * _clamped_log(x) + (1 - t) * _clamped_log1p(-x))


def _clamped_log(x):
    return jnp.maximum(jnp.log(x), -100.0)


def _clamped_log1p(x):
    return jnp.maximum(jnp.log1p(x), -100.0)


@_bce.defjvp
def _bce_jvp(primals, tangents):
    """PyTorch's input gradient ``(x - t) / max(x * (1 - x), 1e-12)``, finite at 0 and 1; the
    target gradient is that of the clamped logs (PyTorch's is unclamped, infinite there)."""
    (x, t), (dx, dt) = primals, tangents
    d_x = (x - t) / jnp.maximum((1 - x) * x, 1e-12)
    d_t = _clamped_log1p(-x) - _clamped_log(x)
    return _bce(x, t), d_x * dx + d_t * dt


@_in_float32
def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None,
                         reduction: str = "mean") -> jax.Array:
    """Binary cross-entropy of probabilities ``input`` against ``target`` (same shape).

    The logs are clamped at -100, so probabilities of exactly 0 and 1 give finite losses and
    gradients, as in PyTorch. ``weight`` broadcasts against the target and multiplies the loss.

    Example:
        >>> binary_cross_entropy(jnp.array([0.0, 0.5]), jnp.array([1.0, 1.0]), reduction="none")
        Array([100.       ,   0.6931472], dtype=float32)
    """
    reduction = _reduction("binary_cross_entropy", reduction, size_average, reduce)
    input, target = jnp.asarray(input), jnp.asarray(target)
    _same_shape("binary_cross_entropy", "target", input, target)
    loss = _bce(input, target)
    if weight is not None:
        loss = loss * jnp.asarray(weight)
    return _reduce(loss, reduction)


@_in_float32
def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None,
                                     reduction: str = "mean", pos_weight=None) -> jax.Array:
    """Binary cross-entropy of ``sigmoid(input)``, computed stably from the logits.

    ``loss = (1 - t) * x - (1 + (pos_weight - 1) * t) * log_sigmoid(x)``, times ``weight``.
    ``pos_weight`` broadcasts against the target's last (class) dimension.

    Example:
        >>> binary_cross_entropy_with_logits(jnp.array([100.0]), jnp.array([0.0]))
        Array(100., dtype=float32)
    """
    reduction = _reduction("binary_cross_entropy_with_logits", reduction, size_average, reduce)
    input, target = jnp.asarray(input), jnp.asarray(target)
    _same_shape("binary_cross_entropy_with_logits", "target", input, target)
    log_weight = 1.0 if pos_weight is None else 1.0 + (jnp.asarray(pos_weight) - 1.0) * target
    loss = (1.0 - target) * input - log_weight * jax.nn.log_sigmoid(input)
    if weight is not None:
        loss = loss * jnp.asarray(weight)
    return _reduce(loss, reduction)


@_in_float32
def soft_margin_loss(input, target, size_average=None, reduce=None,
                     reduction: str = "mean") -> jax.Array:
    """Two-class logistic loss ``log(1 + exp(-target * input))`` for targets in {1, -1}.

    Example:
        >>> soft_margin_loss(jnp.array([0.0]), jnp.array([1.0]))
        Array(0.6931472, dtype=float32)
    """
    reduction = _reduction("soft_margin_loss", reduction, size_average, reduce)
    input, target = jnp.asarray(input), jnp.asarray(target)
    _same_shape("soft_margin_loss", "target", input, target)
    return _reduce(jax.nn.softplus(-target * input), reduction)


@_in_float32
def multilabel_soft_margin_loss(input, target, weight=None, size_average=None, reduce=None,
                                reduction: str = "mean") -> jax.Array:
    """One-vs-all logistic loss averaged over the last (class) dimension.

    Args:
        input: (C,) or (N, C) logits.  target: the input's shape, values in {0, 1}.
        weight: optional, broadcasts against the input (usually (C,)).

    Example:
        >>> multilabel_soft_margin_loss(jnp.zeros((1, 2)), jnp.array([[1.0, 0.0]]))
        Array(0.6931472, dtype=float32)
    """
    reduction = _reduction("multilabel_soft_margin_loss", reduction, size_average, reduce)
    input, target = jnp.asarray(input), jnp.asarray(target)
    _same_shape("multilabel_soft_margin_loss", "target", input, target)
    loss = -(target * jax.nn.log_sigmoid(input) + (1 - target) * jax.nn.log_sigmoid(-input))
    if weight is not None:
        loss = loss * jnp.asarray(weight)
    return _reduce(jnp.sum(loss, axis=-1) / input.shape[-1], reduction)


# ------------------------------------------------------------------ margin and embedding losses


@_in_float32
def margin_ranking_loss(input1, input2, target, margin: float = 0.0, size_average=None,
                        reduce=None, reduction: str = "mean") -> jax.Array:
    """Ranking hinge ``max(0, -target * (input1 - input2) + margin)``, targets in {1, -1}.

    Example:
        >>> margin_ranking_loss(jnp.array([1.0]), jnp.array([2.0]), jnp.array([1.0]))
        Array(1., dtype=float32)
    """
    reduction = _reduction("margin_ranking_loss", reduction, size_average, reduce)
    input1, input2, target = jnp.asarray(input1), jnp.asarray(input2), jnp.asarray(target)
    _same_ndim("margin_ranking_loss", input1=input1, input2=input2, target=target)
    return _reduce(jax.nn.relu(-target * (input1 - input2) + margin), reduction)


@_in_float32
def hinge_embedding_loss(input, target, margin: float = 1.0, size_average=None, reduce=None,
                         reduction: str = "mean") -> jax.Array:
    """``input`` where ``target == 1``, ``max(0, margin - input)`` where ``target == -1``.

    Example:
        >>> hinge_embedding_loss(jnp.array([0.3, 0.2]), jnp.array([1.0, -1.0]), reduction="sum")
        Array(1.1, dtype=float32)
    """
    reduction = _reduction("hinge_embedding_loss", reduction, size_average, reduce)
    input, target = jnp.asarray(input), jnp.asarray(target)
    below_margin = jnp.where(target != 1, jax.nn.relu(margin - input), 0.0)
    return _reduce(below_margin + jnp.where(target != -1, input, 0.0), reduction)


@_in_float32
def cosine_embedding_loss(input1, input2, target, margin: float = 0.0, size_average=None,
                          reduce=None, reduction: str = "mean") -> jax.Array:
    """``1 - cos(x1, x2)`` where ``target == 1``, ``max(0, cos(x1, x2) - margin)`` where -1.

    Args:
        input1, input2: (D,) or (N, D).  target: () or (N,), values in {1, -1}.

    Example:
        >>> cosine_embedding_loss(jnp.array([[1.0, 0.0]]), jnp.array([[0.0, 1.0]]),
        ...                       jnp.array([1.0]))
        Array(1., dtype=float32)
    """
    reduction = _reduction("cosine_embedding_loss", reduction, size_average, reduce)
    input1, input2, target = jnp.asarray(input1), jnp.asarray(input2), jnp.asarray(target)
    if target.ndim > 1 or input1.ndim != target.ndim + 1 or input2.ndim != input1.ndim:
        raise ValueError("cosine_embedding_loss: expected inputs of shape (D,) with a () target "
                         f"or (N, D) with an (N,) target, got input1 {input1.shape}, input2 "
                         f"{input2.shape}, target {target.shape}")
    eps = 1e-12
    dot = jnp.sum(input1 * input2, axis=-1)
    norms = jnp.sqrt((jnp.sum(input1 * input1, -1) + eps) * (jnp.sum(input2 * input2, -1) + eps))
    cos = dot / norms
    loss = jnp.where(target == 1, 1.0 - cos, 0.0) + jnp.where(
        target == -1, jax.nn.relu(cos - margin), 0.0)
    return _reduce(loss, reduction)


def _pairwise_distance(x1: jax.Array, x2: jax.Array, p: float = 2.0,
                       eps: float = 1e-6) -> jax.Array:
    """PyTorch's ``pairwise_distance``: the p-norm of ``x1 - x2 + eps`` over the last dim."""
    d = _abs(x1 - x2 + eps)
    if p == math.inf:
        return jnp.max(d, axis=-1)
    return jnp.sum(d**p, axis=-1) ** (1.0 / p)


def _triplet(name: str, anchor, positive, negative, distance: Callable, margin: float,
             swap: bool, reduction: str) -> jax.Array:
    anchor, positive, negative = jnp.asarray(anchor), jnp.asarray(positive), jnp.asarray(negative)
    _same_ndim(name, anchor=anchor, positive=positive, negative=negative)
    dist_pos = distance(anchor, positive)
    dist_neg = distance(anchor, negative)
    if swap:
        dist_neg = jnp.minimum(dist_neg, distance(positive, negative))
    return _reduce(jax.nn.relu(margin + dist_pos - dist_neg), reduction)


@_in_float32
def triplet_margin_loss(anchor, positive, negative, margin: float = 1.0, p: float = 2,
                        eps: float = 1e-6, swap: bool = False, size_average=None, reduce=None,
                        reduction: str = "mean") -> jax.Array:
    """``max(0, margin + d(anchor, positive) - d(anchor, negative))`` with the p-norm distance.

    Args:
        anchor, positive, negative: (D,) or (N, D).  swap: use ``min(d(a, n), d(p, n))``.

    Example:
        >>> a = jnp.zeros((1, 2))
        >>> triplet_margin_loss(a, a + 1, a + 1, p=1, eps=0.0)
        Array(1., dtype=float32)
    """
    reduction = _reduction("triplet_margin_loss", reduction, size_average, reduce)
    distance = lambda x1, x2: _pairwise_distance(x1, x2, p, eps)
    return _triplet("triplet_margin_loss", anchor, positive, negative, distance, margin, swap,
                    reduction)


@_in_float32
def triplet_margin_with_distance_loss(anchor, positive, negative, *,
                                      distance_function: Callable | None = None,
                                      margin: float = 1.0, swap: bool = False,
                                      reduction: str = "mean") -> jax.Array:
    """``triplet_margin_loss`` with any ``distance_function(x1, x2)`` (default: the L2
    ``pairwise_distance``); ``margin`` must be positive.

    Example:
        >>> a = jnp.zeros((1, 2))
        >>> l1 = lambda x, y: jnp.abs(x - y).sum(-1)
        >>> triplet_margin_with_distance_loss(a, a + 1, a + 2, distance_function=l1)
        Array(0., dtype=float32)
    """
    name = "triplet_margin_with_distance_loss"
    reduction = _reduction(name, reduction)
    if margin <= 0:
        raise ValueError(f"{name}: margin must be greater than 0, got {margin}")
    distance = _pairwise_distance if distance_function is None else distance_function
    return _triplet(name, anchor, positive, negative, distance, margin, swap, reduction)


# ------------------------------------------------------------------ CTC


def _log_sum_exp(*terms: jax.Array) -> jax.Array:
    """``log(sum(exp(terms)))`` that is -inf, with zero (not NaN) gradients, when all are -inf."""
    top = jax.lax.stop_gradient(functools.reduce(jnp.maximum, terms))
    top = jnp.where(jnp.isfinite(top), top, 0.0)
    total = sum(jnp.exp(t - top) for t in terms)
    positive = total > 0
    return jnp.where(positive, jnp.log(jnp.where(positive, total, 1.0)) + top, -jnp.inf)


def _shift(a: jax.Array, by: int, fill) -> jax.Array:
    """``a[:, s - by]`` along the last axis, ``fill`` where ``s < by``."""
    return jnp.pad(a, ((0, 0), (by, 0)), constant_values=fill)[:, : a.shape[1]]


def _ctc_nll(log_probs, labels, input_lengths, target_lengths, blank: int) -> jax.Array:
    """-log p(labels | log_probs) for (T, N, C) log-probabilities and (N, S) labels.

    The forward (alpha) recursion over the extended labels ``blank, l1, blank, l2, ..., blank``
    (length 2S + 1), in log space with ``lax.scan`` over time; it starts from a virtual state
    before t=0 and freezes each sample after its input length.
    """
    n, s = labels.shape
    classes = log_probs.shape[-1]
    ext = jnp.full((n, 2 * s + 1), blank, labels.dtype).at[:, 1::2].set(labels)
    ext = jnp.clip(ext, 0, classes - 1)  # [N, L]
    skip = (ext != blank) & (ext != _shift(ext, 2, blank))
    ext_t = jnp.broadcast_to(ext, log_probs.shape[:1] + ext.shape)
    emit = jnp.take_along_axis(log_probs, ext_t, axis=-1)  # [T, N, L]
    start = jnp.full(ext.shape, -jnp.inf, log_probs.dtype).at[:, 0].set(0.0)

    def step(alpha, inputs):
        t, emit_t = inputs
        moved = _log_sum_exp(alpha, _shift(alpha, 1, -jnp.inf),
                             jnp.where(skip, _shift(alpha, 2, -jnp.inf), -jnp.inf))
        return jnp.where((t < input_lengths)[:, None], moved + emit_t, alpha), None

    alpha, _ = jax.lax.scan(step, start, (jnp.arange(log_probs.shape[0]), emit))
    end = 2 * target_lengths[:, None]
    last = jnp.take_along_axis(alpha, end, -1)[:, 0]
    before = jnp.take_along_axis(alpha, jnp.maximum(end - 1, 0), -1)[:, 0]
    return -_log_sum_exp(last, jnp.where(end[:, 0] > 0, before, -jnp.inf))


def _ctc_padded_targets(targets: jax.Array, target_lengths: jax.Array, batch: int) -> jax.Array:
    """(N, S) padded targets as they are; concatenated (sum of lengths,) targets -> (N, S)."""
    if targets.ndim == 2:
        return targets
    if isinstance(target_lengths, jax.core.Tracer) or batch == 0:
        width = targets.shape[0]  # the longest possible target when lengths are unknown
    else:
        width = int(jnp.max(target_lengths))
    offsets = jnp.cumsum(target_lengths) - target_lengths
    if targets.shape[0] == 0:
        return jnp.zeros((batch, width), targets.dtype)
    return jnp.take(targets, offsets[:, None] + jnp.arange(width), mode="fill", fill_value=0)


def _ctc_lengths(name: str, arg: str, lengths, batch: int) -> jax.Array:
    lengths = jnp.asarray(lengths)
    if lengths.shape not in ((batch,), ()) or not jnp.issubdtype(lengths.dtype, jnp.integer):
        raise ValueError(f"{name}: expected {arg} of integers with shape ({batch},), got "
                         f"{lengths.dtype} with shape {lengths.shape}")
    return jnp.broadcast_to(lengths, (batch,))


def ctc_loss(log_probs, targets, input_lengths, target_lengths, blank: int = 0,
             reduction: str = "mean", zero_infinity: bool = False) -> jax.Array:
    """Connectionist Temporal Classification loss.

    Args:
        log_probs: (T, N, C) or unbatched (T, C) log-probabilities (e.g. from ``log_softmax``).
        targets: (N, S) padded or (sum(target_lengths),) concatenated integer labels, none of them
            ``blank``; (S,) when unbatched.
        input_lengths, target_lengths: (N,) integers (arrays, tuples or lists), or scalars.
        blank: the blank class.
        reduction: ``mean`` divides each loss by its target length, then averages the batch.
        zero_infinity: replace infinite losses (impossible alignments) and their gradients by 0.

    Example:
        >>> lp = jnp.log(jnp.full((2, 1, 2), 0.5))
        >>> ctc_loss(lp, jnp.array([[1]]), [2], [1], reduction="sum")  # -log(3 / 4)
        Array(0.2876821, dtype=float32)
    """
    reduction = _reduction("ctc_loss", reduction)
    log_probs, targets = jnp.asarray(log_probs), jnp.asarray(targets)
    if log_probs.ndim not in (2, 3):
        raise ValueError(f"ctc_loss: expected log_probs of shape (T, N, C) or (T, C), got "
                         f"{log_probs.shape}")
    if not jnp.issubdtype(targets.dtype, jnp.integer):
        raise TypeError(f"ctc_loss: targets must hold integers, got dtype {targets.dtype}")
    batched = log_probs.ndim == 3
    if not batched:
        log_probs, targets = log_probs[:, None], targets[None]
    if not 0 <= blank < log_probs.shape[-1]:
        raise ValueError(f"ctc_loss: blank must be a class in [0, {log_probs.shape[-1]}), "
                         f"got {blank}")
    batch = log_probs.shape[1]
    input_lengths = _ctc_lengths("ctc_loss", "input_lengths", input_lengths, batch)
    target_lengths = _ctc_lengths("ctc_loss", "target_lengths", target_lengths, batch)
    if targets.ndim not in (1, 2) or (targets.ndim == 2 and targets.shape[0] != batch):
        raise ValueError(f"ctc_loss: expected targets of shape ({batch}, S) or (sum of target "
                         f"lengths,), got {targets.shape}")
    labels = _ctc_padded_targets(targets, target_lengths, batch)
    nll = _ctc_nll(log_probs.astype(_acc(log_probs.dtype)), labels, input_lengths,
                   target_lengths, blank)
    if zero_infinity:
        nll = jnp.where(jnp.isinf(nll), 0.0, nll)
    if reduction == "mean":
        return jnp.mean(nll / jnp.maximum(target_lengths, 1)).astype(log_probs.dtype)
    return _reduce(nll if batched else nll[0], reduction).astype(log_probs.dtype)
