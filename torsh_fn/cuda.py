"""``torsh_fn.cuda``: GPU queries and memory statistics, as ``torch.cuda``, over JAX's devices.

Memory figures come from the device's own allocator statistics (``jax.Device.memory_stats``);
on a machine without a GPU the queries say so (``is_available() == False``; the memory
functions return 0 / an empty dict, as PyTorch's do for an uninitialised device).

XLA reserves GPU memory when its backend starts. To change that, call
:func:`set_memory_fraction` / :func:`set_preallocate` *before* the first JAX computation.
"""

from __future__ import annotations

import os
from typing import Any

import jax

from . import _compat
from ._device import device as _device_cls

__all__ = [
    "current_device", "device_count", "empty_cache", "get_device_name", "is_available",
    "max_memory_allocated", "memory_allocated", "memory_reserved", "memory_stats",
    "set_device", "set_memory_fraction", "set_preallocate", "synchronize",
]

_current = 0


def _gpus() -> list[jax.Device]:
    try:
        return jax.devices("gpu")
    except RuntimeError:
        return []


def is_available() -> bool:
    """Whether JAX sees at least one CUDA (GPU) device."""
    return bool(_gpus())


def device_count() -> int:
    return len(_gpus())


def current_device() -> int:
    """The index used when ``"cuda"`` is given without one (0 unless changed by set_device)."""
    return _current


def set_device(index: int | str | _device_cls) -> None:
    global _current
    idx = _device_cls(index).index if not isinstance(index, int) else index
    if idx is None or not 0 <= idx < max(device_count(), 1):
        raise ValueError(f"set_device: no CUDA device {index!r}; {device_count()} available")
    _current = idx


def _gpu(dev: Any) -> jax.Device | None:
    gpus = _gpus()
    if not gpus:
        return None
    if dev is None:
        return gpus[_current]
    idx = dev if isinstance(dev, int) else _device_cls(dev).index or 0
    if not 0 <= idx < len(gpus):
        raise ValueError(f"no CUDA device {dev!r}; {len(gpus)} available")
    return gpus[idx]


def get_device_name(device: Any = None) -> str:
    """The GPU's name, e.g. ``'NVIDIA H100 80GB HBM3'``."""
    d = _gpu(device)
    if d is None:
        raise RuntimeError("get_device_name: no CUDA device is available")
    return d.device_kind


def synchronize(device: Any = None) -> None:
    """Wait until all work queued on the device has finished."""
    d = _gpu(device)
    for arr in jax.live_arrays():
        if d is None or d in arr.devices():
            arr.block_until_ready()


def memory_stats(device: Any = None) -> dict[str, int]:
    """The allocator's statistics (``bytes_in_use``, ``peak_bytes_in_use``, ``bytes_limit``...)."""
    d = _gpu(device)
    return dict(d.memory_stats() or {}) if d is not None else {}


def memory_allocated(device: Any = None) -> int:
    """Bytes currently held by arrays on the device."""
    return int(memory_stats(device).get("bytes_in_use", 0))


def max_memory_allocated(device: Any = None) -> int:
    """The peak of :func:`memory_allocated` since the process started."""
    return int(memory_stats(device).get("peak_bytes_in_use", 0))


def memory_reserved(device: Any = None) -> int:
    """Bytes the allocator has reserved from the device (its pool size or limit)."""
    stats = memory_stats(device)
    return int(stats.get("pool_bytes", stats.get("bytes_reserved", stats.get("bytes_limit", 0))))


def empty_cache() -> None:
    """Drop JAX's compilation caches; XLA's allocator returns memory as arrays are freed."""
    jax.clear_caches()


def _set_before_start(var: str, value: str, what: str) -> None:
    if _compat.backends_are_initialized() and os.environ.get(var) != value:
        raise RuntimeError(f"{what} must be called before the first JAX computation "
                           f"(XLA's backend has already started); set {var}={value} instead")
    os.environ[var] = value


def set_memory_fraction(fraction: float) -> None:
    """Let XLA reserve this fraction of GPU memory (``XLA_PYTHON_CLIENT_MEM_FRACTION``).

    Must be called before the first JAX computation.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"set_memory_fraction: expected 0 < fraction <= 1, got {fraction}")
    _set_before_start("XLA_PYTHON_CLIENT_MEM_FRACTION", f"{fraction:.4g}", "set_memory_fraction")


def set_preallocate(enabled: bool) -> None:
    """Turn XLA's up-front GPU memory reservation on or off (``XLA_PYTHON_CLIENT_PREALLOCATE``).

    Off means memory is taken as needed, as PyTorch does. Call before the first computation.
    """
    _set_before_start("XLA_PYTHON_CLIENT_PREALLOCATE", "true" if enabled else "false",
                      "set_preallocate")
