"""XLA compile options that ``torsh_fn.jit`` passes for the CPU.

XLA's CPU compiler hands convolutions, matrix products and elementwise work around them to
YNNPACK by default. Its convolutions ran on one thread here (2 cores): a CNN layer of 32 -> 64
channels at 14x14, batch 128, forward and backward, took 13.4 ms, and 6.5 ms through XLA's own
multi-threaded (Eigen) convolution. Its matrix products are the faster ones (an MLP step: 2.45
ms with XLA's defaults, 2.51 with YNNPACK for products alone, 2.84 without YNNPACK). So
torsh_fn.jit compiles a CPU program that has a convolution with YNNPACK for matrix products only
(``xla_cpu_experimental_ynn_fusion_type``), and ``_conv_lowering.prefers_patches`` is measured
under that setting (``benchmarks/results/train_step.md``, "Run 7"); other programs keep XLA's
defaults.

The options apply to torsh_fn.jit's programs only, not to ``jax.jit`` elsewhere in the process.
A ``compiler_options`` dict given to ``torsh_fn.jit`` overrides them key by key. A jaxlib that
does not know an option gets none of them (checked once, by compiling a trivial program).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["CPU_OPTIONS", "cpu_compiler_options", "has_convolution"]

CPU_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_DOT"}


@functools.cache
def _cpu_takes_options() -> bool:
    try:
        jax.jit(lambda x: x + 1, compiler_options=CPU_OPTIONS).lower(
            jax.ShapeDtypeStruct((1,), jnp.float32)).compile()
    except Exception:  # an option this jaxlib does not have ("No such compile option")
        return False
    return True


def cpu_compiler_options() -> dict[str, str]:
    """``CPU_OPTIONS`` where the default backend is the CPU and its jaxlib takes them, else {}.

    Example:
        >>> double = jax.jit(lambda x: 2 * x, compiler_options=cpu_compiler_options())
        >>> double(jnp.ones(2))
        Array([2., 2.], dtype=float32)
    """
    if jax.default_backend() != "cpu" or not _cpu_takes_options():
        return {}
    return dict(CPU_OPTIONS)


def has_convolution(jaxpr: Any) -> bool:
    """Whether ``jaxpr`` (a ``jax.core.Jaxpr``) or any jaxpr nested in its equations' parameters
    (jit, custom_vjp, cond, scan, ...) applies ``conv_general_dilated``."""
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "conv_general_dilated":
            return True
        if any(has_convolution(sub) for sub in _nested_jaxprs(eqn.params.values())):
            return True
    return False


def _nested_jaxprs(values: Any) -> Iterator[Any]:
    for value in values:
        if hasattr(value, "eqns"):  # a Jaxpr
            yield value
        elif hasattr(value, "jaxpr") and hasattr(value.jaxpr, "eqns"):  # a ClosedJaxpr
            yield value.jaxpr
        elif isinstance(value, tuple | list):
            yield from _nested_jaxprs(value)
