"""Pallas softmax and log-softmax over the last dim, forward and backward kernels.

One program per row. A row of up to ``MAX_ROW_BLOCK`` elements is read once and written once
(``softmax = exp(x - max) / sum``); a longer row is read in chunks twice: first to carry a running
max and sum per lane (the online softmax), then to write the output, the second read mostly from
L2. Backward: ``dx = y * (dy - sum(y * dy))`` for softmax, ``dx = dy - exp(y) * sum(dy)`` for
log-softmax, from the saved output ``y``.

Use through ``torsh_fn.kernels.softmax`` / ``log_softmax`` (``impl="pallas"``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from ._pallas_common import (
    as_rows,
    chunk_count,
    load_chunk,
    num_warps_for,
    row_block,
    row_call,
    store_chunk,
)

_NEG_INF = float("-inf")


def _row_stats(x_ref, n: int, block: int):
    """Max and sum of exp(x - max) of one row, by lanes of width ``block`` then combined."""

    def body(i, carry):
        m, s = carry  # [block] running max and rescaled sum per lane
        x = load_chunk(x_ref, i * block, block, n, _NEG_INF)
        m_new = jnp.maximum(m, x)
        scale = jnp.where(m_new == _NEG_INF, 0.0, jnp.exp(m - m_new))
        return m_new, s * scale + jnp.where(m_new == _NEG_INF, 0.0, jnp.exp(x - m_new))

    init = (jnp.full((block,), _NEG_INF, jnp.float32), jnp.zeros((block,), jnp.float32))
    m, s = lax.fori_loop(0, chunk_count(n, block), body, init)
    row_max = jnp.max(m)
    return row_max, jnp.sum(s * jnp.exp(m - row_max))


def _fwd_kernel(x_ref, o_ref, *, log: bool, block: int):
    n = x_ref.shape[0]
    if n <= block:  # the whole row in registers: one read, one write
        x = load_chunk(x_ref, 0, block, n, _NEG_INF)
        shifted = x - jnp.max(x)
        e = jnp.exp(shifted)
        s = jnp.sum(e)
        store_chunk(o_ref, 0, block, n, shifted - jnp.log(s) if log else e / s)
        return
    row_max, s = _row_stats(x_ref, n, block)
    log_s = jnp.log(s)

    @functools.partial(lax.fori_loop, 0, chunk_count(n, block), init_val=None)
    def _(i, carry):
        x = load_chunk(x_ref, i * block, block, n)
        out = x - row_max - log_s if log else jnp.exp(x - row_max) / s
        store_chunk(o_ref, i * block, block, n, out)
        return carry


def _bwd_kernel(y_ref, dy_ref, dx_ref, *, log: bool, block: int):
    n = y_ref.shape[0]

    def grad(y, dy, total):
        return dy - jnp.exp(y) * total if log else y * (dy - total)

    if n <= block:
        y, dy = load_chunk(y_ref, 0, block, n), load_chunk(dy_ref, 0, block, n)
        store_chunk(dx_ref, 0, block, n, grad(y, dy, jnp.sum(dy if log else y * dy)))
        return

    def accumulate(i, acc):
        dy = load_chunk(dy_ref, i * block, block, n)
        return acc + (dy if log else load_chunk(y_ref, i * block, block, n) * dy)

    total = jnp.sum(
        lax.fori_loop(0, chunk_count(n, block), accumulate, jnp.zeros((block,), jnp.float32))
    )

    @functools.partial(lax.fori_loop, 0, chunk_count(n, block), init_val=None)
    def _(i, carry):
        y, dy = load_chunk(y_ref, i * block, block, n), load_chunk(dy_ref, i * block, block, n)
        store_chunk(dx_ref, i * block, block, n, grad(y, dy, total))
        return carry


def _launch(kernel, rows: jax.Array, *extra: jax.Array, log: bool, name: str) -> jax.Array:
    n = rows.shape[-1]
    block = row_block(n)
    call = row_call(
        functools.partial(kernel, log=log, block=block),
        [jax.ShapeDtypeStruct((n,), rows.dtype)],
        name=name,
        num_warps=num_warps_for(block, name),
        row_inputs=[True] * (1 + len(extra)),
    )
    return call(rows, *extra)[0]


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _softmax_rows(rows: jax.Array, log: bool) -> jax.Array:
    return _launch(_fwd_kernel, rows, log=log, name="log_softmax_fwd" if log else "softmax_fwd")


def _softmax_rows_fwd(rows, log):
    y = _softmax_rows(rows, log)
    return y, y


def _softmax_rows_bwd(log, y, dy):
    dx = _launch(
        _bwd_kernel,
        y,
        dy.astype(y.dtype),
        log=log,
        name="log_softmax_bwd" if log else "softmax_bwd",
    )
    return (dx,)


_softmax_rows.defvjp(_softmax_rows_fwd, _softmax_rows_bwd)


def softmax_pallas(x: jax.Array, axis: int = -1, *, log: bool = False) -> jax.Array:
    """Softmax (or log-softmax) of ``x`` along ``axis`` by the Pallas kernels.

    Args:
        x: floating array of any shape; ``axis`` other than the last is moved there (a copy).
        log: compute ``log_softmax`` instead.

    Returns:
        An array of ``x``'s shape and dtype; the arithmetic is float32.
    """
    axis = axis % x.ndim
    if x.size == 0:
        return x
    moved = jnp.moveaxis(x, axis, -1)
    rows, _ = as_rows(moved)
    out = _softmax_rows(rows, log).reshape(moved.shape)
    return jnp.moveaxis(out, -1, axis)
