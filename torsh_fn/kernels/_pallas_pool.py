"""Pallas 2-D max and average pooling over NCHW planes (dilation 1).

One program per (n, c) plane. For each output row the program visits the ``kh x kw`` window
offsets; for each offset it loads the input row's elements at ``ow * sw - pw + j`` for all output
columns at once (a strided load), masked outside the input, and folds them into the row's
max or sum. Every input element is read from memory once (the window overlap comes from cache),
every output written once. The caller supplies the output size and, for averages, the divisor
of each window (both static, from PyTorch's rules). Gradients use XLA (``jax.vjp`` of the
reference), through a ``custom_vjp``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental.pallas import triton as plgpu

from ._pallas_common import next_power_of_2, row_call


class PoolConfig(NamedTuple):
    """Static description of one 2-D pooling (hashable)."""

    op: str  # "max" or "avg"
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    in_hw: tuple[int, int]
    out_hw: tuple[int, int]


def _kernel(*refs, cfg: PoolConfig):
    if cfg.op == "avg":
        x_ref, div_ref, o_ref = refs
    else:
        x_ref, o_ref = refs
    (h, w), (oh_n, ow_n) = cfg.in_hw, cfg.out_hw
    (kh, kw), (sh, sw), (ph, pw) = cfg.kernel, cfg.stride, cfg.padding
    lanes = next_power_of_2(ow_n)
    ow = jnp.arange(lanes)
    identity = float("-inf") if cfg.op == "max" else 0.0

    @functools.partial(lax.fori_loop, 0, oh_n, init_val=None)
    def _(oh, carry):
        acc = jnp.full((lanes,), identity, jnp.float32)
        for i in range(kh):  # static window offsets: unrolled
            r = oh * sh - ph + i
            row_ok = (r >= 0) & (r < h)
            for j in range(kw):
                c = ow * sw - pw + j
                mask = row_ok & (c >= 0) & (c < w) & (ow < ow_n)
                v = plgpu.load(x_ref.at[r * w + c], mask=mask, other=identity)
                v = v.astype(jnp.float32)
                acc = jnp.maximum(acc, v) if cfg.op == "max" else acc + v
        out_idx = oh * ow_n + ow
        if cfg.op == "avg":
            acc = acc / plgpu.load(div_ref.at[out_idx], mask=ow < ow_n, other=1.0)
        plgpu.store(o_ref.at[out_idx], acc.astype(o_ref.dtype), mask=ow < ow_n)
        return carry


def _launch(x: jax.Array, divisor: jax.Array | None, cfg: PoolConfig) -> jax.Array:
    n, c, h, w = x.shape
    oh, ow = cfg.out_hw
    planes = x.reshape(n * c, h * w)
    warps = 1 if ow <= 64 else 4
    inputs = [planes] + ([divisor.reshape(oh * ow)] if divisor is not None else [])
    call = row_call(functools.partial(_kernel, cfg=cfg),
                    [jax.ShapeDtypeStruct((oh * ow,), x.dtype)], name=f"{cfg.op}_pool2d",
                    num_warps=warps, row_inputs=[True] + [False] * (len(inputs) - 1))
    return call(*inputs)[0].reshape(n, c, oh, ow)


def pool2d_pallas(x: jax.Array, cfg: PoolConfig, divisor: np.ndarray | None,
                  reference: Callable[[jax.Array], jax.Array]) -> jax.Array:
    """2-D pooling of NCHW ``x`` by the Pallas kernel, with ``reference`` for the gradient.

    Args:
        cfg: kernel, stride, padding, input and output sizes, "max" or "avg".
        divisor: (out_h, out_w) window divisors for "avg" (None for "max").
        reference: the same pooling in ``jax.numpy``, differentiated for the backward pass.
    """
    div = None if divisor is None else jnp.asarray(divisor, jnp.float32)

    @jax.custom_vjp
    def pool(x):
        return _launch(x, div, cfg)

    def fwd(x):
        return pool(x), x

    def bwd(x, g):
        return jax.vjp(reference, x)[1](g)

    pool.defvjp(fwd, bwd)
    return pool(x)
