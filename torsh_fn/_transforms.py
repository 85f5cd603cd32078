"""JAX's transforms at the top level, and PyTorch's autograd context managers for ported code.

``grad``, ``value_and_grad``, ``vmap``, ``jit``, ``jacrev``, ``jacfwd``, ``hessian`` and
``checkpoint`` are JAX's own functions. ``no_grad`` and ``enable_grad`` exist so that ported
PyTorch code runs unchanged: JAX computes gradients only where a transform asks for them, so
there is no tape to switch off and both are context managers (and decorators) that do nothing.
Use ``jax.lax.stop_gradient`` to cut a gradient inside a function.
"""

from __future__ import annotations

import contextlib

from jax import checkpoint, grad, hessian, jacfwd, jacrev, jit, value_and_grad, vmap

__all__ = [
    "checkpoint", "enable_grad", "grad", "hessian", "inference_mode", "is_grad_enabled",
    "jacfwd", "jacrev", "jit", "no_grad", "set_grad_enabled", "value_and_grad", "vmap",
]


class no_grad(contextlib.ContextDecorator):
    """Does nothing: JAX differentiates only inside ``grad``-style transforms.

    Kept so that ``with torch.no_grad():`` ports unchanged; usable as a decorator too.
    """

    def __enter__(self) -> no_grad:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class enable_grad(no_grad):
    """Does nothing, for the same reason as :class:`no_grad`."""


class inference_mode(no_grad):
    """Does nothing, for the same reason as :class:`no_grad`."""

    def __init__(self, mode: bool = True) -> None:
        self.mode = mode


class set_grad_enabled(no_grad):
    """Does nothing, for the same reason as :class:`no_grad`; accepts PyTorch's ``mode``."""

    def __init__(self, mode: bool) -> None:
        self.mode = mode


def is_grad_enabled() -> bool:
    """Always True: gradients are available wherever a transform asks for them."""
    return True
