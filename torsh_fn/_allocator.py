"""Keep freed memory in the process, so each training step stops page-faulting its buffers.

XLA's CPU runtime allocates every execution's temporaries and outputs afresh. glibc's ``malloc``
serves blocks above its mmap threshold (128 KiB to 32 MiB, adapting) with a fresh ``mmap`` and
gives them back on ``free``, and it trims the heap's free top back to the system: so every step
of a training loop touches new pages, and the kernel zero-fills each 4 KiB page on first touch.
On the 2-core machine of ``benchmarks/train_step.py`` that was about a third of the CNN's step
(37 -> 25 ms with the setting below; PyTorch in the same process gains too, 31 -> 24 ms).

:func:`keep_freed_memory` raises both thresholds to 2 GiB (glibc's ``mallopt``), so large blocks
come from the heap and stay mapped once touched. ``torsh_fn.jit`` calls it
(:func:`keep_freed_memory_on_cpu`) when it builds its first program with the CPU as JAX's default
backend, on Linux with glibc, unless the environment says otherwise:
``TORSH_FN_KEEP_FREED_MEMORY=0`` leaves ``malloc`` alone, and so do glibc's own
``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` (a choice already made). The cost: the
process's resident memory does not shrink when large arrays are freed; it is reused for the next
ones. A GPU process is left alone.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys

import jax

__all__ = ["keep_freed_memory", "keep_freed_memory_on_cpu", "keeps_freed_memory_by_default"]

# mallopt's parameters (malloc.h) and its largest value (an int)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_THRESHOLD = 2**31 - 1
_OPT_OUT = "TORSH_FN_KEEP_FREED_MEMORY"
_GLIBC_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def keep_freed_memory() -> bool:
    """Ask glibc to serve blocks up to 2 GiB from the heap and to keep freed memory mapped;
    returns whether it took both settings (False off Linux or without glibc). Process-wide,
    for the allocations made after it."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _THRESHOLD) and mallopt(_M_TRIM_THRESHOLD, _THRESHOLD))


def keeps_freed_memory_by_default(environ: os._Environ | dict[str, str] = os.environ) -> bool:
    """Whether torsh_fn applies :func:`keep_freed_memory` on the CPU: unless
    ``TORSH_FN_KEEP_FREED_MEMORY`` is ``0`` (or ``false``/``no``/``off``) or glibc's own
    ``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_`` are set.

    Example:
        >>> keeps_freed_memory_by_default({"TORSH_FN_KEEP_FREED_MEMORY": "0"})
        False
    """
    if environ.get(_OPT_OUT, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    return not any(name in environ for name in _GLIBC_SETTINGS)


@functools.cache
def keep_freed_memory_on_cpu() -> bool:
    """:func:`keep_freed_memory`, once, where JAX's default backend is the CPU and
    :func:`keeps_freed_memory_by_default`; returns whether it applied."""
    if jax.default_backend() != "cpu" or not keeps_freed_memory_by_default():
        return False
    return keep_freed_memory()
