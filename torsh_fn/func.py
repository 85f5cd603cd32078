"""``torch.func``'s names over JAX's transforms.

``grad``, ``vmap``, ``jacrev``, ``jacfwd``, ``hessian``, ``jvp``, ``vjp`` and ``linearize`` are JAX's.
``grad_and_value`` follows ``torch.func`` and returns ``(grad, value)``, the reverse of
``jax.value_and_grad``. ``vmap`` accepts ``torch.func``'s ``in_dims``/``out_dims`` names.

Example:
    >>> import jax.numpy as jnp
    >>> from torsh_fn import func
    >>> g, v = func.grad_and_value(lambda x: (x ** 2).sum())(jnp.arange(3.0))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
from jax import grad, hessian, jacfwd, jacrev, jvp, linearize, vjp

__all__ = ["grad", "grad_and_value", "hessian", "jacfwd", "jacrev", "jvp", "linearize", "vjp", "vmap"]


def grad_and_value(
    func: Callable[..., Any], argnums: int | tuple[int, ...] = 0, has_aux: bool = False
) -> Callable[..., Any]:
    """Like ``torch.func.grad_and_value``: returns ``(grad, value)`` (with aux: ``(grad, (value, aux))``)."""
    vg = jax.value_and_grad(func, argnums=argnums, has_aux=has_aux)

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        value, g = vg(*args, **kwargs)
        return g, value

    return wrapped


def vmap(
    func: Callable[..., Any],
    in_dims: Any = 0,
    out_dims: Any = 0,
    randomness: str = "error",
    *,
    chunk_size: int | None = None,
) -> Callable[..., Any]:
    """``torch.func.vmap`` over ``jax.vmap``.

    ``randomness`` is accepted for compatibility; JAX randomness is explicit (keys), so inside
    ``func`` pass a batch of keys to get "different" randomness or one key for "same".
    ``chunk_size`` maps in chunks of that many elements (``jax.lax.map``-style batching), to save
    memory.
    """
    if randomness not in ("error", "different", "same"):
        raise ValueError(f"vmap: randomness must be 'error', 'different' or 'same', got {randomness!r}")
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"vmap: chunk_size must be a positive int, got {chunk_size!r}")
    if chunk_size is None:
        return jax.vmap(func, in_axes=in_dims, out_axes=out_dims)
    return _chunked_vmap(func, in_dims, out_dims, chunk_size)


def _chunked_vmap(func: Callable[..., Any], in_dims: Any, out_dims: Any, chunk_size: int):
    import jax.numpy as jnp

    batched = jax.vmap(func, in_axes=in_dims, out_axes=out_dims)

    def wrapped(*args: Any) -> Any:
        dims = in_dims if isinstance(in_dims, tuple | list) else (in_dims,) * len(args)
        sizes = {jax.tree.leaves(a)[0].shape[d] for a, d in zip(args, dims) if d is not None}
        if len(sizes) != 1:
            raise ValueError(f"vmap: mapped inputs disagree on the batch size: {sorted(sizes)}")
        (n,) = sizes
        pieces = []
        for start in range(0, n, chunk_size):
            sl = [a if d is None else jax.tree.map(
                lambda x, d=d: jax.lax.slice_in_dim(x, start, min(start + chunk_size, n), axis=d), a)
                for a, d in zip(args, dims)]
            pieces.append(batched(*sl))
        outs = out_dims if isinstance(out_dims, int) else 0
        return jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=outs), *pieces)

    return wrapped
