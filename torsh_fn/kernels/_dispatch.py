"""Choosing an implementation: ``impl="auto" | "pallas" | "xla"`` for every kernel op.

``"xla"`` runs the ``jax.numpy`` reference, ``"pallas"`` the Pallas kernel (in interpret mode where
there is no GPU), and ``"auto"`` asks the op's dispatch rule, which picks Pallas only where a
benchmark on that backend measured it faster. ``set_default_impl`` or the environment variable
``TORSH_FN_KERNEL_IMPL`` overrides ``"auto"`` everywhere, for debugging.
"""

from __future__ import annotations

import os
from collections.abc import Callable

IMPLS = ("auto", "pallas", "xla")
_default_impl = os.environ.get("TORSH_FN_KERNEL_IMPL", "auto")


def _check(impl: str, where: str) -> str:
    if impl not in IMPLS:
        raise ValueError(f"{where}: impl must be one of {IMPLS}, got {impl!r}")
    return impl


_check(_default_impl, "TORSH_FN_KERNEL_IMPL")


def set_default_impl(impl: str) -> None:
    """Force every op's ``impl="auto"`` to ``impl`` ("auto" restores per-op dispatch)."""
    global _default_impl
    _default_impl = _check(impl, "set_default_impl")


def get_default_impl() -> str:
    return _default_impl


def resolve_impl(op: str, impl: str, prefers_pallas: Callable[[], bool] | None = None) -> str:
    """The concrete implementation ("pallas" or "xla") for one call of ``op``.

    Args:
        op: the op's name, for error messages.
        impl: what the caller asked for.
        prefers_pallas: the op's rule for ``"auto"`` (backend and shape known to the caller);
            ops without a Pallas kernel pass None and always get "xla".
    """
    impl = _check(impl, op)
    if impl == "auto":
        impl = _default_impl
    if impl == "auto":
        return "pallas" if prefers_pallas is not None and prefers_pallas() else "xla"
    if impl == "pallas" and prefers_pallas is None:
        raise ValueError(f"{op}: has no Pallas kernel; use impl='xla' or 'auto'")
    return impl
