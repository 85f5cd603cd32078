"""``clip_grad_norm_`` and ``clip_grad_value_``: rescale the ``.grad`` of parameters in place,
as PyTorch; pure array code, so they work inside ``torsh_fn.jit``.

Example:
    >>> torsh_fn.backward(lambda: loss_fn(model(x), y))
    >>> total = clip_grad_norm_(model.parameters(), max_norm=1.0)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["clip_grad_norm_", "clip_grad_value_", "get_total_norm"]


def _with_grads(parameters: Any) -> list[Any]:
    if hasattr(parameters, "grad"):
        parameters = [parameters]
    return [p for p in parameters if p.grad is not None]


def get_total_norm(tensors: Iterable[jax.Array], norm_type: float = 2.0,
                   error_if_nonfinite: bool = False, foreach: bool | None = None) -> jax.Array:
    """The ``norm_type``-norm of all ``tensors`` together (``inf`` for the max-norm)."""
    tensors = [jnp.asarray(t) for t in tensors]
    if not tensors:
        return jnp.asarray(0.0)
    norm_type = float(norm_type)
    if norm_type == float("inf"):
        total = jnp.max(jnp.stack([jnp.max(jnp.abs(t)) for t in tensors]))
    else:
        norms = jnp.stack([jnp.linalg.norm(t.ravel().astype(jnp.float32), norm_type)
                           for t in tensors])
        total = jnp.linalg.norm(norms, norm_type)
    if error_if_nonfinite and not isinstance(total, jax.core.Tracer) and not jnp.isfinite(total):
        raise RuntimeError(f"The total norm of order {norm_type} for gradients from "
                           "`parameters` is non-finite, so it cannot be clipped. To disable this "
                           "error and scale the gradients by the non-finite norm anyway, set "
                           "`error_if_nonfinite=False`")
    return total


def clip_grad_norm_(parameters: Any, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False, foreach: bool | None = None) -> jax.Array:
    """Scale all gradients together so their total norm is at most ``max_norm``.

    Returns:
        The total norm of the gradients before clipping (a 0-d array).
    """
    params = _with_grads(parameters)
    total = get_total_norm([p.grad for p in params], norm_type, error_if_nonfinite)
    scale = jnp.minimum(max_norm / (total + 1e-6), 1.0)
    for p in params:
        p.grad = (p.grad * scale).astype(p.grad.dtype)
    return total


def clip_grad_value_(parameters: Any, clip_value: float, foreach: bool | None = None) -> None:
    """Clamp every gradient element into ``[-clip_value, clip_value]``."""
    for p in _with_grads(parameters):
        p.grad = jnp.clip(p.grad, -clip_value, clip_value)
