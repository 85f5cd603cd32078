"""Version differences between the JAX releases we support (0.10.2 on CPU, 0.11.x on GPU).

Every use of a private or version-dependent JAX API lives here, so the rest of the package
imports only public names.
"""

from __future__ import annotations

import jax


def backends_are_initialized() -> bool:
    """Whether XLA's backends (and so the device memory allocator) have been created."""
    from jax._src import xla_bridge

    return bool(xla_bridge.backends_are_initialized())


def enable_x64(enabled: bool = True):
    """Context manager switching 64-bit types on (``jax.enable_x64`` where it exists)."""
    if hasattr(jax, "enable_x64"):
        return jax.enable_x64(enabled)
    from jax.experimental import enable_x64 as _enable_x64  # older JAX

    return _enable_x64(enabled)


def x64_enabled() -> bool:
    return bool(jax.config.jax_enable_x64)
