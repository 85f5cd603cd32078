"""Row kernels under SPMD sharding: each device runs the kernel on its own rows.

A ``pallas_call`` is opaque to XLA's partitioner, which would gather a row-sharded input onto
every device, run the whole kernel everywhere and keep the slice it owns (under data
parallelism: the full batch of logits on every GPU). Row kernels need no such thing: rows are
independent, so :func:`partition_rows` wraps one in ``custom_partitioning`` with the rule "rows
keep the sharding of the first row input, every other dimension is replicated". Flash attention
uses it with the batch as the rows. On one device, and inside ``shard_map``, the wrapper lowers
to the kernel itself.

Example:
    >>> double = partition_rows(lambda x: 2 * x, row_inputs=[True])
    >>> double(jnp.ones((4, 3))).shape
    (4, 3)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.custom_batching import custom_vmap
from jax.experimental.custom_partitioning import custom_partitioning
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

_ROWS = "r"
_NO_MESH = jax.sharding.AbstractMesh((), ())


def _einsum_rule(in_ndims: Sequence[int], row_inputs: Sequence[bool],
                 out_ndims: Sequence[int]) -> tuple[str, tuple[str, ...]]:
    """Shardy's rule: a shared row factor, and one replicated factor per other dimension."""
    replicated: list[str] = []

    def operand(ndim: int, has_rows: bool) -> str:
        names = [_ROWS] if has_rows else []
        for _ in range(ndim - len(names)):
            replicated.append(f"c{len(replicated)}")
            names.append(replicated[-1])
        return " ".join(names)

    ins = ", ".join(operand(n, r) for n, r in zip(in_ndims, row_inputs))
    outs = ", ".join(operand(n, True) for n in out_ndims)
    return f"{ins} -> {outs}", tuple(replicated)


def _row_spec(sharding: Any) -> Any:
    """The mesh axes sharding a row input's leading dimension (None: not sharded)."""
    if isinstance(sharding, NamedSharding) and len(sharding.spec) > 0:
        return sharding.spec[0]
    return None


def _fold(x: jax.Array, batched: bool, size: int) -> jax.Array:
    """A row input with a vmapped axis in front, as more rows: (B, rows, ...) -> (B * rows, ...)."""
    if not batched:
        x = jnp.broadcast_to(x, (size, *x.shape))
    return x.reshape(size * x.shape[1], *x.shape[2:])


def _per_device(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` for one device's rows, traced under no mesh: under the caller's ``set_mesh`` of
    explicit axes, its arrays would be typed with that mesh, and the sharding annotations that
    this puts in the per-device program have no implementation there (on the GPU, XLA fails on
    the custom call "Sharding")."""
    def on_one_device(*args: jax.Array) -> Any:
        with jax.sharding.use_abstract_mesh(_NO_MESH):
            return fn(*args)

    return on_one_device


def partition_rows(fn: Callable[..., Any], row_inputs: Sequence[bool]) -> Callable[..., Any]:
    """``fn`` (arrays -> a list of arrays with a leading rows axis), partitioned by rows.

    Args:
        fn: computes each output row from the same row of the inputs that have rows.
        row_inputs: for each input, whether it has the leading rows axis (False: shared by all
            rows, e.g. a norm's weight; replicated).

    Under ``vmap`` the mapped axis joins the rows (``custom_partitioning`` has no batching rule of
    its own); a vmapped shared input (one weight per mapped element) takes ``vmap`` of ``fn``.
    """
    @custom_vmap
    def call(*args: jax.Array) -> Any:
        outs = jax.eval_shape(fn, *args)
        single = not isinstance(outs, (list, tuple))
        out_list = [outs] if single else list(outs)

        def shardings(mesh, arg_shapes):
            rows = next((_row_spec(a.sharding) for a, r in zip(arg_shapes, row_inputs) if r), None)

            def spec(ndim: int, has_rows: bool) -> NamedSharding:
                return NamedSharding(mesh, P(rows if has_rows else None, *[None] * (ndim - 1))
                                     if ndim else P())

            arg_specs = tuple(spec(a.ndim, r) for a, r in zip(args, row_inputs))
            out_specs = tuple(spec(o.ndim, True) for o in out_list)
            return arg_specs, (out_specs[0] if single else out_specs)

        def partition(mesh, arg_shapes, result_shape):
            arg_specs, out_specs = shardings(mesh, arg_shapes)
            return mesh, _per_device(fn), out_specs, arg_specs

        def infer_sharding_from_operands(mesh, arg_shapes, result_shape):
            return shardings(mesh, arg_shapes)[1]

        rule, replicated = _einsum_rule([a.ndim for a in args], row_inputs,
                                        [o.ndim for o in out_list])
        partitioned = custom_partitioning(fn)
        partitioned.def_partition(
            partition=partition, infer_sharding_from_operands=infer_sharding_from_operands,
            sharding_rule=rule,
            need_replication_factors=replicated)
        return partitioned(*args)

    @call.def_vmap
    def _batched(size: int, in_batched: Sequence[bool], *args: jax.Array) -> Any:
        if any(b and not r for b, r in zip(in_batched, row_inputs)):
            outs = jax.vmap(fn, in_axes=tuple(0 if b else None for b in in_batched))(*args)
        else:
            folded = [_fold(a, b, size) if r else a
                      for a, b, r in zip(args, in_batched, row_inputs)]
            outs = jax.tree.map(lambda o: o.reshape(size, -1, *o.shape[1:]), call(*folded))
        return outs, jax.tree.map(lambda _: True, outs)

    return call
