"""``torch.func``'s names over JAX's transforms.

``grad``, ``vmap``, ``jacrev``, ``jacfwd``, ``hessian``, ``jvp``, ``vjp`` and ``linearize`` are
JAX's.
``functional_call`` and ``stack_module_state`` run a Module (of the PyTorch face) as a pure
function of the arrays you give it: the route from stateful models to JAX's transforms.
``grad_and_value`` follows ``torch.func`` and returns ``(grad, value)``, the reverse of
``jax.value_and_grad``. ``vmap`` accepts ``torch.func``'s ``in_dims``/``out_dims`` names.

Example:
    >>> import jax.numpy as jnp
    >>> from torsh_fn import func
    >>> g, v = func.grad_and_value(lambda x: (x ** 2).sum())(jnp.arange(3.0))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
from jax import grad, hessian, jacfwd, jacrev, jvp, linearize, vjp

from ._backward import get_slot as _get
from ._backward import set_slot as _set

__all__ = [
    "functional_call", "grad", "grad_and_value", "hessian", "jacfwd", "jacrev", "jvp", "linearize",
    "stack_module_state", "vjp", "vmap",
]


def grad_and_value(
    func: Callable[..., Any], argnums: int | tuple[int, ...] = 0, has_aux: bool = False
) -> Callable[..., Any]:
    """Like ``torch.func.grad_and_value``: returns ``(grad, value)`` (with aux:
    ``(grad, (value, aux))``)."""
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
        raise ValueError(f"vmap: randomness must be 'error', 'different' or 'same', got "
                         f"{randomness!r}")
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
                lambda x, d=d, start=start: jax.lax.slice_in_dim(
                    x, start, min(start + chunk_size, n), axis=d), a)
                for a, d in zip(args, dims)]
            pieces.append(batched(*sl))
        outs = out_dims if isinstance(out_dims, int) else 0
        return jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=outs), *pieces)

    return wrapped


def functional_call(
    module: Any,
    parameter_and_buffer_dicts: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    args: Any = None,
    kwargs: Mapping[str, Any] | None = None,
    *,
    tie_weights: bool = True,
    strict: bool = False,
) -> Any:
    """Call ``module`` with the given arrays in place of its parameters and buffers, as
    ``torch.func.functional_call``.

    Nothing is mutated: every parameter, gradient and buffer of ``module`` (BatchNorm running
    statistics included) is as before when the call returns. The arrays may be tracers, so this
    is how a Module goes through ``grad``, ``vmap`` and ``jit``.

    Args:
        module: a ``torsh_fn.nn.Module``.
        parameter_and_buffer_dicts: ``{dotted name: array}`` (or a tuple of such dicts); names as
            in ``module.state_dict()``. Names left out keep the module's own arrays.
        args: positional arguments (a single non-tuple value is one argument).
        kwargs: keyword arguments.
        tie_weights: accepted for PyTorch's signature; tied parameters are one object here, so
            a value given for either name is seen through both.
        strict: require a value for every parameter and buffer.

    Raises:
        ValueError: for names the module does not have, or (``strict``) missing names.

    Example:
        >>> params = {k: v.detach() for k, v in model.named_parameters()}
        >>> grads = grad(lambda p: functional_call(model, p, (x,)).sum())(params)
    """
    if isinstance(parameter_and_buffer_dicts, Mapping):
        given = dict(parameter_and_buffer_dicts)
    else:
        given = {}
        for d in parameter_and_buffer_dicts:
            clash = given.keys() & d.keys()
            if clash:
                raise ValueError(f"functional_call: {sorted(clash)} appear in more than one dict")
            given.update(d)
    params = dict(module.named_parameters(remove_duplicate=False))
    buffers = dict(module.named_buffers(remove_duplicate=False))
    unexpected = sorted(k for k in given if k not in params and k not in buffers)
    if unexpected:
        raise ValueError(f"functional_call: unexpected key(s) {unexpected}; "
                         f"{type(module).__name__} has no such parameters or buffers")
    if strict:
        missing = sorted(k for k in (*params, *buffers) if k not in given)
        if missing:
            raise ValueError(f"functional_call: missing key(s) {missing} (strict=True)")
    args = () if args is None else args if isinstance(args, tuple) else (args,)
    snapshot = [(c, k, _get(c, k)) for c, k in module._jit_slots()]
    try:
        for name, value in given.items():
            value = getattr(value, "data", value)
            if name in params:
                params[name].data = value
            else:
                owner, _, local = name.rpartition(".")
                setattr(module.get_submodule(owner), local, value)
        return module(*args, **(kwargs or {}))
    finally:
        for c, k, v in snapshot:
            _set(c, k, v)


def stack_module_state(models: Sequence[Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Stack the parameters and buffers of same-shaped models along a new leading axis, as
    ``torch.func.stack_module_state``: ``(params, buffers)`` for an ensemble under ``vmap``.

    Example:
        >>> params, buffers = stack_module_state(models)
        >>> run = lambda p, b, x: functional_call(models[0], (p, b), (x,))
        >>> outs = vmap(run, in_dims=(0, 0, None))(params, buffers, x)   # one row per model
    """
    import jax.numpy as jnp

    if not models:
        raise ValueError("stack_module_state: expected at least one model")
    kinds = {type(m).__name__ for m in models}
    if len(kinds) != 1:
        raise ValueError(f"stack_module_state: expected models of one class, got {sorted(kinds)}")

    def stack(named: Callable[[Any], Any]) -> dict[str, Any]:
        per_model = [dict(named(m)) for m in models]
        if any(d.keys() != per_model[0].keys() for d in per_model):
            raise ValueError("stack_module_state: the models have different parameter names")
        return {k: jnp.stack([jnp.asarray(getattr(d[k], "data", d[k])) for d in per_model])
                for k in per_model[0]}

    return stack(lambda m: m.named_parameters()), stack(lambda m: m.named_buffers())
