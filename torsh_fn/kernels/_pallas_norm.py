"""Pallas layer norm, RMS norm and residual-add + layer norm over the trailing dim.

One program per row. Forward: a row that fits in one block is read once and written once, with
the mean and the reciprocal standard deviation kept per row (a few bytes) for the backward pass;
longer rows are read in chunks (mean, then variance, then output). Backward: the kernel writes
``dx`` from ``x``, ``dy`` and the saved statistics; the weight and bias gradients are column sums
over all rows, left to XLA's reduction.

    layer norm:  y = (x - mean) * rstd * w + b,    rstd = 1 / sqrt(var + eps)
                 dx = rstd * (w*dy - mean(w*dy) - xhat * mean(w*dy * xhat))
    RMS norm:    y = x * rstd * w,                 rstd = 1 / sqrt(mean(x^2) + eps)
                 dx = rstd * (w*dy - xhat * mean(w*dy * xhat))
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from ._pallas_common import (
    as_rows,
    chunk_count,
    f32,
    load_chunk,
    num_warps_for,
    row_block,
    row_call,
    store_chunk,
)


def _row_sum(fn, n: int, block: int) -> jax.Array:
    """``sum(fn(start))`` over a row's chunks, accumulated per lane."""
    if n <= block:
        return jnp.sum(fn(0))
    acc = lax.fori_loop(
        0, chunk_count(n, block), lambda i, a: a + fn(i * block), jnp.zeros((block,), jnp.float32)
    )
    return jnp.sum(acc)


def _each_chunk(fn, n: int, block: int) -> None:
    if n <= block:
        fn(0)
        return
    lax.fori_loop(0, chunk_count(n, block), lambda i, c: (fn(i * block), c)[1], None)


def _mask(start, block: int, n: int) -> jax.Array:
    return (start + jnp.arange(block)) < n


def _fwd_kernel(*refs, block: int, eps: float, rms: bool, residual: bool):
    if residual:
        x_ref, r_ref, w_ref, b_ref, y_ref, s_ref, mean_ref, rstd_ref = refs
    else:
        x_ref, w_ref, b_ref, y_ref, mean_ref, rstd_ref = refs
    n = x_ref.shape[0]

    def row(start):
        x = load_chunk(x_ref, start, block, n)
        if residual:  # round the sum to the storage dtype, as the unfused x + residual would be
            x = (x + load_chunk(r_ref, start, block, n)).astype(s_ref.dtype).astype(jnp.float32)
        return x

    if n <= block:  # keep the row in registers across the three steps
        x = row(0)
        if residual:
            store_chunk(s_ref, 0, block, n, x)
        row = lambda start: x
    elif residual:
        _each_chunk(lambda start: store_chunk(s_ref, start, block, n, row(start)), n, block)
        row = lambda start: load_chunk(s_ref, start, block, n)

    mean = 0.0 if rms else _row_sum(row, n, block) / n
    centred = lambda start: jnp.where(_mask(start, block, n), row(start) - mean, 0.0)
    var = _row_sum(lambda start: centred(start) ** 2, n, block) / n
    rstd = lax.rsqrt(var + eps)

    def write(start):
        y = centred(start) * rstd * load_chunk(w_ref, start, block, n)
        if not rms:
            y = y + load_chunk(b_ref, start, block, n)
        store_chunk(y_ref, start, block, n, y)

    _each_chunk(write, n, block)
    mean_ref[...] = jnp.asarray(mean, jnp.float32)
    rstd_ref[...] = rstd


def _bwd_kernel(x_ref, w_ref, mean_ref, rstd_ref, dy_ref, dx_ref, *, block: int, rms: bool):
    n = x_ref.shape[0]
    mean, rstd = mean_ref[...], rstd_ref[...]

    def terms(start):
        m = _mask(start, block, n)
        xhat = jnp.where(m, (load_chunk(x_ref, start, block, n) - mean) * rstd, 0.0)
        wdy = load_chunk(w_ref, start, block, n) * load_chunk(dy_ref, start, block, n)
        return xhat, wdy

    if n <= block:
        xhat, wdy = terms(0)
        terms = lambda start: (xhat, wdy)
    c1 = _row_sum(lambda s: terms(s)[0] * terms(s)[1], n, block) / n
    c2 = 0.0 if rms else _row_sum(lambda s: terms(s)[1], n, block) / n

    def write(start):
        xh, wd = terms(start)
        store_chunk(dx_ref, start, block, n, (wd - xh * c1 - c2) * rstd)

    _each_chunk(write, n, block)


def _config(n: int, name: str) -> tuple[int, int]:
    block = row_block(n)
    return block, num_warps_for(block, name)


def _forward(x, residual, w, b, eps: float, rms: bool):
    n = x.shape[-1]
    name = "rms_norm_fwd" if rms else "layer_norm_fwd"
    block, warps = _config(n, name)
    outs = [jax.ShapeDtypeStruct((n,), x.dtype)]
    if residual is not None:
        outs.append(jax.ShapeDtypeStruct((n,), x.dtype))
    outs += [jax.ShapeDtypeStruct((), jnp.float32)] * 2
    inputs = [x] + ([residual] if residual is not None else []) + [w, b]
    call = row_call(
        functools.partial(
            _fwd_kernel, block=block, eps=eps, rms=rms, residual=residual is not None
        ),
        outs,
        name=name,
        num_warps=warps,
        row_inputs=[True] * (len(inputs) - 2) + [False, False],
    )
    return call(*inputs)


def _backward(x, w, mean, rstd, dy, rms: bool):
    n = x.shape[-1]
    name = "rms_norm_bwd" if rms else "layer_norm_bwd"
    block, warps = _config(n, name)
    call = row_call(
        functools.partial(_bwd_kernel, block=block, rms=rms),
        [jax.ShapeDtypeStruct((n,), x.dtype)],
        name=name,
        num_warps=warps,
        row_inputs=[True, False, True, True, True],
    )
    (dx,) = call(x, w, mean, rstd, dy.astype(x.dtype))
    xhat = (f32(x) - mean[:, None]) * rstd[:, None]
    dw = jnp.sum(f32(dy) * xhat, axis=0)
    db = jnp.sum(f32(dy), axis=0)
    return dx, dw, db


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _norm_rows(x, w, b, eps: float, rms: bool):
    return _forward(x, None, w, b, eps, rms)[0]


def _norm_rows_fwd(x, w, b, eps, rms):
    y, mean, rstd = _forward(x, None, w, b, eps, rms)
    return y, (x, w, mean, rstd)


def _norm_rows_bwd(eps, rms, saved, dy):
    x, w, mean, rstd = saved
    dx, dw, db = _backward(x, w, mean, rstd, dy, rms)
    return dx, dw.astype(w.dtype), db.astype(w.dtype)


_norm_rows.defvjp(_norm_rows_fwd, _norm_rows_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _add_norm_rows(x, residual, w, b, eps: float):
    y, s, _, _ = _forward(x, residual, w, b, eps, False)
    return y, s


def _add_norm_rows_fwd(x, residual, w, b, eps):
    y, s, mean, rstd = _forward(x, residual, w, b, eps, False)
    return (y, s), (s, w, mean, rstd)


def _add_norm_rows_bwd(eps, saved, cotangents):
    s, w, mean, rstd = saved
    dy, ds = cotangents
    dx, dw, db = _backward(s, w, mean, rstd, dy, False)
    d_sum = (f32(dx) + f32(ds)).astype(s.dtype)
    return d_sum, d_sum, dw.astype(w.dtype), db.astype(w.dtype)


_add_norm_rows.defvjp(_add_norm_rows_fwd, _add_norm_rows_bwd)


def _params(x, weight, bias, n: int):
    w = jnp.ones((n,), x.dtype) if weight is None else weight.reshape(n)
    b = jnp.zeros((n,), x.dtype) if bias is None else bias.reshape(n)
    return w, b


def _trailing_rows(x, normalized_ndim: int):
    n = 1
    for s in x.shape[x.ndim - normalized_ndim :]:
        n *= s
    return x.reshape(-1, n), n


def layer_norm_pallas(x, weight=None, bias=None, eps: float = 1e-5, normalized_ndim: int = 1):
    """Layer norm over the last ``normalized_ndim`` dims of ``x`` by the Pallas kernels.

    Shapes: ``x`` (..., *normalized), ``weight``/``bias`` (*normalized) or None.
    """
    rows, n = _trailing_rows(x, normalized_ndim)
    w, b = _params(x, weight, bias, n)
    return _norm_rows(rows, w, b, float(eps), False).reshape(x.shape)


def rms_norm_pallas(x, weight=None, eps: float = 1e-6, normalized_ndim: int = 1):
    """RMS norm over the last ``normalized_ndim`` dims: ``x / sqrt(mean(x^2) + eps) * weight``."""
    rows, n = _trailing_rows(x, normalized_ndim)
    w, b = _params(x, weight, None, n)
    return _norm_rows(rows, w, b, float(eps), True).reshape(x.shape)


def add_layer_norm_pallas(x, residual, weight=None, bias=None, eps: float = 1e-5):
    """``s = x + residual; (layer_norm(s), s)`` over the last dim in one pass over memory."""
    rows, _ = as_rows(x)
    w, b = _params(x, weight, bias, x.shape[-1])
    y, s = _add_norm_rows(rows, residual.reshape(rows.shape), w, b, float(eps))
    return y.reshape(x.shape), s.reshape(x.shape)
