"""``torsh_fn.backward``: PyTorch's ``loss.backward()`` for stateful code, as one function.

``torsh_fn.backward(closure)`` evaluates ``closure()`` (a scalar loss), adds the gradient of the
loss with respect to each parameter it depends on into that parameter's ``.grad`` (PyTorch
accumulates until ``zero_grad``), and returns the loss. It is pure JAX underneath, so it works
eagerly and inside ``torsh_fn.jit``. A PyTorch step ports line for line::

    optimizer.zero_grad()                                         # unchanged
    loss = torsh_fn.backward(lambda: criterion(model(x), y))      # was: loss = ...; loss.backward()
    optimizer.step()                                              # unchanged

Which parameters: with ``params=None``, those the closure reads (found by tracing it once,
abstractly, before differentiating: no computation, and the parameters' and buffers' state and
the global generator are restored after that trace). Frozen parameters (``requires_grad=False``)
are left alone. Pass ``params`` (an iterable of parameters, or a module) to choose them instead;
of those, a parameter the closure never reads keeps its ``.grad`` (None after ``zero_grad()``),
as PyTorch leaves the ``.grad`` of a parameter outside the loss's graph.

Duck-typed: a parameter is any object with ``data``, ``grad`` and ``requires_grad``; the shim's
``Parameter`` reports its reads to :func:`note_read` and ``Module`` its buffer writes to
:func:`note_write`, so that state the closure changes (BatchNorm running statistics) is written
back once, outside the differentiation.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp

from . import random as _random

__all__ = ["backward", "note_read", "note_write", "get_slot", "set_slot"]


def get_slot(container: Any, key: Any) -> Any:
    """The value of a state slot: ``container[key]`` for a dict, else ``getattr``."""
    return container[key] if isinstance(container, dict) else getattr(container, key)


def set_slot(container: Any, key: Any, value: Any) -> None:
    if isinstance(container, dict):
        container[key] = value
    else:
        setattr(container, key, value)


class _Recording:
    def __init__(self) -> None:
        self.reads: dict[int, Any] = {}
        self.writes: dict[tuple[int, Any], tuple[Any, Any, Any]] = {}


class _Stack(threading.local):
    def __init__(self) -> None:
        self.items: list[_Recording] = []


_stack = _Stack()


def note_read(param: Any) -> None:
    """Called by a parameter whenever its array is read."""
    if _stack.items:
        _stack.items[-1].reads.setdefault(id(param), param)


def note_write(container: Any, key: Any) -> None:
    """Called by a module before it replaces a state slot (a buffer) in ``container``."""
    if _stack.items:
        _stack.items[-1].writes.setdefault(
            (id(container), key), (container, key, get_slot(container, key)))


@contextlib.contextmanager
def _recording() -> Iterator[_Recording]:
    rec = _Recording()
    _stack.items.append(rec)
    try:
        yield rec
    finally:
        _stack.items.pop()


def _undo_writes(rec: _Recording) -> list[Any]:
    """Restore every recorded slot; return the values it held (in ``rec.writes`` order)."""
    new = [get_slot(c, k) for c, k, _ in rec.writes.values()]
    for c, k, old in rec.writes.values():
        set_slot(c, k, old)
    return new


def _discover(closure: Callable[[], Any]) -> list[Any]:
    generator = _random.default_generator
    saved_key = generator._key
    with _recording() as rec:
        try:
            jax.eval_shape(closure)
        finally:
            _undo_writes(rec)
            generator._key = saved_key
    return list(rec.reads.values())


def _chosen(params: Any) -> list[Any]:
    if hasattr(params, "parameters") and callable(params.parameters):
        params = params.parameters()
    params = list(params)
    for p in params:
        if not all(hasattr(p, a) for a in ("data", "grad", "requires_grad")):
            raise TypeError(f"backward: params must be Parameters (or a Module), "
                            f"got {type(p).__name__}")
    return params


def backward(closure: Callable[[], Any], params: Any = None) -> jax.Array:
    """Evaluate ``closure()``, accumulate d(loss)/d(param) into each ``param.grad``, return loss.

    Args:
        closure: takes no arguments and returns a scalar loss (what ``loss.backward()`` was
            called on in PyTorch), e.g. ``lambda: criterion(model(x), y)``.
        params: the parameters to differentiate (an iterable of Parameters, or a Module);
            default: the trainable parameters the closure reads.

    Returns:
        The loss (a 0-d ``jax.Array``).

    Raises:
        ValueError: if the closure's result is not a scalar.

    Example:
        >>> loss = torsh_fn.backward(lambda: ((model(x) - y) ** 2).mean())
        >>> model.weight.grad.shape == model.weight.shape
        True
    """
    chosen = _discover(closure) if params is None else _chosen(params)
    chosen = [p for p in chosen if p.requires_grad]
    written: list[tuple[Any, Any]] = []
    reached: set[int] = set()

    def loss_of(datas: list[jax.Array]) -> tuple[jax.Array, list[Any]]:
        saved = [p.data for p in chosen]
        with _recording() as rec:
            try:
                for p, d in zip(chosen, datas):
                    p.data = d
                loss = closure()
            finally:
                new = _undo_writes(rec)
                for p, d in zip(chosen, saved):
                    p.data = d
        written[:] = [(c, k) for c, k, _ in rec.writes.values()]
        reached.update(rec.reads)
        if jnp.shape(loss) != ():
            raise ValueError(f"backward: the closure must return a scalar loss, got an array of "
                             f"shape {tuple(jnp.shape(loss))}")
        return loss, jax.lax.stop_gradient(new)

    (loss, new_state), grads = jax.value_and_grad(loss_of, has_aux=True)(
        [p.data for p in chosen])
    for (container, key), value in zip(written, new_state):
        set_slot(container, key, value)
    for p, g in zip(chosen, grads):
        if id(p) in reached:  # as in PyTorch, a parameter the loss never read gets no gradient
            p.grad = g if p.grad is None else p.grad + g
    return loss
