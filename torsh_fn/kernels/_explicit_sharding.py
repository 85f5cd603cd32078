"""Kernels on arrays sharded over explicit mesh axes.

``jax.make_mesh`` makes explicit axes by default. An array sharded over them carries its
sharding in its type, and every op must say how its result is sharded. A Pallas call cannot
say, and JAX raises at trace time. A reshape that splits or merges a sharded dim raises too.

:func:`typed_like` runs such an implementation with the explicit axes turned Auto
(``jax.sharding.auto_axes``). There ``partition_rows`` and XLA's partitioner place it as they
do under an Auto mesh. Its outputs get the shardings that the ``jax.numpy`` reference's would
have, so a program types the same whichever implementation runs. Without explicit axes it is a
plain call.

Example (``exp`` by way of ``exp2``, for the types of ``jnp.exp``'s result):
    >>> typed_like(jnp.exp, lambda x: jnp.exp2(x * 1.4426950408889634), jnp.zeros(3))
    Array([1., 1., 1.], dtype=float32)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
from jax.sharding import AxisType

__all__ = ["has_explicit_axes", "typed_like"]


def has_explicit_axes(*args: Any) -> bool:
    """Whether any array among ``args`` (pytrees) lives on a mesh with an explicit axis."""
    return any(AxisType.Explicit in jax.typeof(leaf).sharding.mesh.axis_types
               for leaf in jax.tree.leaves(args) if isinstance(leaf, jax.Array))


def typed_like(reference: Callable[..., Any], kernel: Callable[..., Any], *args: Any) -> Any:
    """``kernel(*args)``, with the output shardings of ``reference(*args)`` where ``args`` lie
    on explicit mesh axes.

    Args:
        reference: the op's ``jax.numpy`` path: only traced (once per call: free under
            ``jit``, a little overhead per eager call), for its output types. Its jaxpr's
            output types, not ``jax.eval_shape``'s: on a mesh of explicit and Auto axes
            together, ``eval_shape`` reports no sharding.
        kernel: the implementation that runs; same outputs as ``reference``, up to rounding.
        *args: arrays or None (pytrees of them); anything static goes in the two callables.
    """
    if not has_explicit_axes(*args):
        return kernel(*args)
    jaxpr, outs = jax.make_jaxpr(reference, return_shape=True)(*args)
    shardings = jax.tree.unflatten(jax.tree.structure(outs),
                                   [aval.sharding for aval in jaxpr.out_avals])
    return jax.sharding.auto_axes(kernel, out_sharding=shardings)(*args)
