"""Pallas reductions over the last dim: sum, mean, amax, amin, var (and mean+var together).

One program per row; each chunk of the row is reduced across its lanes inside the program (Triton
lowers ``jnp.sum`` over a block to warp shuffles, then shared memory across warps: the
hierarchical reduction), per-lane accumulators carry the chunks of long rows. Variance is computed
from the mean in a second sweep (two-pass, as PyTorch and XLA do) for accuracy; a row that fits in
one block is read once. Gradients are elementwise broadcasts, left to XLA.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from ._pallas_common import chunk_count, load_chunk, num_warps_for, row_block, row_call

OPS = ("sum", "mean", "amax", "amin", "var")
_IDENTITY = {"sum": 0.0, "amax": float("-inf"), "amin": float("inf")}
_COMBINE = {"sum": jnp.add, "amax": jnp.maximum, "amin": jnp.minimum}
_FINISH = {"sum": jnp.sum, "amax": jnp.max, "amin": jnp.min}


def _reduce_row(x_ref, n: int, block: int, op: str, shift=None):
    """``op`` in sum/amax/amin over the row; with ``shift``, the sum of ``(x - shift) ** 2``."""

    def chunk(start):
        x = load_chunk(x_ref, start, block, n, _IDENTITY[op])
        if shift is not None:
            x = jnp.where(start + jnp.arange(block) < n, (x - shift) ** 2, 0.0)
        return x

    if n <= block:
        return _FINISH[op](chunk(0))
    acc = lax.fori_loop(
        0,
        chunk_count(n, block),
        lambda i, a: _COMBINE[op](a, chunk(i * block)),
        jnp.full((block,), _IDENTITY[op], jnp.float32),
    )
    return _FINISH[op](acc)


def _kernel(x_ref, *out_refs, op: str, block: int, correction: float):
    n = x_ref.shape[0]
    if op in ("sum", "amax", "amin"):
        out_refs[0][...] = _reduce_row(x_ref, n, block, op).astype(out_refs[0].dtype)
        return
    mean = _reduce_row(x_ref, n, block, "sum") / n
    if op == "mean":
        out_refs[0][...] = mean.astype(out_refs[0].dtype)
        return
    if n <= block:  # one read: the row stays in registers
        x = load_chunk(x_ref, 0, block, n)
        sq = jnp.sum(jnp.where(jnp.arange(block) < n, (x - mean) ** 2, 0.0))
    else:
        sq = _reduce_row(x_ref, n, block, "sum", shift=mean)
    var_ref, mean_ref = out_refs
    var_ref[...] = (sq / max(n - correction, 0.0)).astype(var_ref.dtype)
    mean_ref[...] = mean


@functools.partial(jax.jit, static_argnames=("op", "correction"))
def _rows_reduce(rows: jax.Array, op: str, correction: float = 1.0):
    n = rows.shape[-1]
    block = row_block(n)
    outs = [jax.ShapeDtypeStruct((), rows.dtype)]
    if op == "var":
        outs.append(jax.ShapeDtypeStruct((), jnp.float32))
    call = row_call(
        functools.partial(_kernel, op=op, block=block, correction=correction),
        outs,
        name=f"row_{op}",
        num_warps=num_warps_for(block, f"row_{op}"),
        row_inputs=[True],
    )
    return call(rows)


def reduce_last_dim_pallas(
    x: jax.Array, op: str, *, correction: float = 1.0, keepdim: bool = False
) -> jax.Array:
    """``op`` (sum, mean, amax, amin, var) of ``x`` over its last dim by the Pallas kernel.

    The result has ``x``'s dtype (float32 accumulation); gradients come from ``jax.vjp`` of the
    same reduction in ``jax.numpy``, through a ``custom_vjp``.
    """
    if op not in OPS:
        raise ValueError(f"reduce: op must be one of {OPS}, got {op!r}")
    out = _reduce(x, op, float(correction))
    return out[..., None] if keepdim else out


def _xla_reduce(x, op, correction):
    if op == "var":
        return jnp.var(x, axis=-1, ddof=correction)
    return getattr(jnp, {"amax": "max", "amin": "min"}.get(op, op))(x, axis=-1)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _reduce(x, op, correction):
    rows = x.reshape(-1, x.shape[-1])
    out = _rows_reduce(rows, op, correction)
    return out[0].reshape(x.shape[:-1])


def _reduce_fwd(x, op, correction):
    return _reduce(x, op, correction), x


def _reduce_bwd(op, correction, x, g):
    _, vjp = jax.vjp(lambda x: _xla_reduce(x, op, correction), x)
    return vjp(g)


_reduce.defvjp(_reduce_fwd, _reduce_bwd)


def row_mean_var_pallas(rows: jax.Array, correction: float = 0.0) -> tuple[jax.Array, jax.Array]:
    """Per-row mean (float32) and variance of a 2-D array in one kernel (no gradient)."""
    var, mean = _rows_reduce(rows, "var", float(correction))
    return mean, var.astype(jnp.float32)
