"""``bias_act``: bias + activation (+ dropout) in one pass over memory (a Linear's epilogue).

    y = dropout(act(x + bias)),   act in relu | gelu | gelu_tanh | silu

The dropout mask is a counter-based hash of (seed, element index), computed inside the kernel, so
no mask is read or written; the ``jax.numpy`` reference computes the same hash and therefore the
same mask, bit for bit. Backward recomputes ``x + bias`` and the mask rather than storing them.

Example:
    >>> import jax, jax.numpy as jnp
    >>> y = bias_act(jnp.ones((4, 3)), jnp.zeros(3), "gelu")
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ._dispatch import measured_faster, resolve_impl
from ._dropout_hash import keeps, mix32
from ._explicit_sharding import typed_like
from ._pallas_common import load_chunk, num_warps_for, row_block, row_call, store_chunk

ACTIVATIONS = ("relu", "gelu", "gelu_tanh", "silu")
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


class BiasActConfig(NamedTuple):
    """Static options of one ``bias_act`` call (hashable: the ``custom_vjp``'s one static arg)."""

    act: str
    dropout_p: float


def _hash(index: jax.Array, seed: jax.Array) -> jax.Array:
    """A well-mixed uint32 of each (index, seed) pair (lowbias32 applied twice)."""
    return mix32(index.astype(jnp.uint32) ^ mix32(seed.astype(jnp.uint32)))


def _keep_scale(index: jax.Array, seed: jax.Array, p: float) -> jax.Array:
    """``1 / (1 - p)`` where the element is kept, 0 where dropped."""
    return jnp.where(keeps(_hash(index, seed), p), 1.0 / (1.0 - p), 0.0)


def _erf(x: jax.Array) -> jax.Array:
    """erf to within 1.5e-7 (Abramowitz & Stegun 7.1.26): Triton's Pallas lowering has no erf."""
    t = 1.0 / (1.0 + 0.3275911 * jnp.abs(x))
    poly = t * (
        0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    return jnp.sign(x) * (1.0 - poly * jnp.exp(-x * x))


def check_act(op: str, act: str | None) -> None:
    """Raises ``op``'s ValueError for an ``act`` that is neither one of ``ACTIVATIONS`` nor None
    (the fused epilogues of ``matmul_bias_act`` and ``conv_bias_act``)."""
    if act is not None and act not in ACTIVATIONS:
        raise ValueError(f"{op}: act must be one of {ACTIVATIONS} or None, got {act!r}")


def _act(z: jax.Array, act: str) -> jax.Array:
    if act == "relu":
        return jnp.maximum(z, 0.0)
    if act == "gelu":
        return 0.5 * z * (1.0 + _erf(z * (1.0 / math.sqrt(2.0))))
    if act == "gelu_tanh":
        return 0.5 * z * (1.0 + jnp.tanh(_SQRT_2_OVER_PI * (z + 0.044715 * z**3)))
    return z * jax.nn.sigmoid(z)


def _act_grad(z: jax.Array, act: str) -> jax.Array:
    if act == "relu":
        return (z > 0).astype(z.dtype)
    if act == "gelu":
        cdf = 0.5 * (1.0 + _erf(z * (1.0 / math.sqrt(2.0))))
        return cdf + z * jnp.exp(-0.5 * z * z) * (1.0 / math.sqrt(2.0 * math.pi))
    if act == "gelu_tanh":
        t = jnp.tanh(_SQRT_2_OVER_PI * (z + 0.044715 * z**3))
        return 0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * _SQRT_2_OVER_PI * (
            1.0 + 0.134145 * z * z
        )
    s = jax.nn.sigmoid(z)
    return s * (1.0 + z * (1.0 - s))


# --- kernels: one program per row of the (rows, n) view -------------------------------------


def _fwd_kernel(x_ref, b_ref, base_ref, seed_ref, y_ref, *, cfg: BiasActConfig, block: int):
    n = x_ref.shape[0]
    for start in range(0, n, block):  # rows are at most a few blocks: unrolled
        z = load_chunk(x_ref, start, block, n) + load_chunk(b_ref, start, block, n)
        y = _act(z, cfg.act)
        if cfg.dropout_p:
            index = base_ref[...] + start + jnp.arange(block, dtype=jnp.uint32)
            y = y * _keep_scale(index, seed_ref[...], cfg.dropout_p)
        store_chunk(y_ref, start, block, n, y)


def _bwd_kernel(
    x_ref, b_ref, base_ref, seed_ref, dy_ref, dx_ref, *, cfg: BiasActConfig, block: int
):
    n = x_ref.shape[0]
    for start in range(0, n, block):
        z = load_chunk(x_ref, start, block, n) + load_chunk(b_ref, start, block, n)
        dz = load_chunk(dy_ref, start, block, n) * _act_grad(z, cfg.act)
        if cfg.dropout_p:
            index = base_ref[...] + start + jnp.arange(block, dtype=jnp.uint32)
            dz = dz * _keep_scale(index, seed_ref[...], cfg.dropout_p)
        store_chunk(dx_ref, start, block, n, dz)


def _row_bases(rows: int, n: int) -> jax.Array:
    return (jnp.arange(rows, dtype=jnp.uint32) * jnp.uint32(n)).astype(jnp.uint32)


def _launch(kernel, x2, bias, seed, *extra, cfg: BiasActConfig, name: str):
    rows, n = x2.shape
    block = row_block(n, max_block=2048)
    call = row_call(
        functools.partial(kernel, cfg=cfg, block=block),
        [jax.ShapeDtypeStruct((n,), x2.dtype)],
        name=name,
        num_warps=num_warps_for(block, name),
        row_inputs=[True, False, True, False] + [True] * len(extra),
    )
    return call(x2, bias, _row_bases(rows, n), seed, *extra)[0]


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _bias_act_pallas(x2, bias, seed, cfg: BiasActConfig):
    return _launch(_fwd_kernel, x2, bias, seed, cfg=cfg, name=f"bias_{cfg.act}_fwd")


def _bias_act_pallas_fwd(x2, bias, seed, cfg):
    return _bias_act_pallas(x2, bias, seed, cfg), (x2, bias, seed)


def _bias_act_pallas_bwd(cfg, saved, dy):
    x2, bias, seed = saved
    dx = _launch(
        _bwd_kernel, x2, bias, seed, dy.astype(x2.dtype), cfg=cfg, name=f"bias_{cfg.act}_bwd"
    )
    db = jnp.sum(dx.astype(jnp.float32), axis=0).astype(bias.dtype)
    return dx, db, None


_bias_act_pallas.defvjp(_bias_act_pallas_fwd, _bias_act_pallas_bwd)


def bias_act_reference(x2, bias, seed, cfg: BiasActConfig):
    """The same function in ``jax.numpy`` on the ``(rows, n)`` view, the same mask included."""
    z = x2.astype(jnp.float32) + bias.astype(jnp.float32)
    y = _act(z, cfg.act)
    if cfg.dropout_p:
        rows, n = x2.shape
        index = _row_bases(rows, n)[:, None] + jnp.arange(n, dtype=jnp.uint32)
        y = y * _keep_scale(index, seed, cfg.dropout_p)
    return y.astype(x2.dtype)


def bias_act(
    x: jax.Array,
    bias: jax.Array | None,
    act: str = "relu",
    *,
    dropout_p: float = 0.0,
    key: jax.Array | None = None,
    impl: str = "auto",
) -> jax.Array:
    """``dropout(act(x + bias))`` with ``bias`` broadcast along the last dim of ``x``.

    Args:
        x: (..., n) floating array.
        bias: (n,) or None.
        act: "relu", "gelu" (erf), "gelu_tanh" or "silu".
        dropout_p: probability of zeroing an element (kept ones are scaled by 1 / (1 - p)).
        key: a JAX PRNG key, required when ``dropout_p > 0``.
        impl: "auto" (Pallas only where measured faster), "pallas" or "xla".

    Returns:
        An array of ``x``'s shape and dtype.
    """
    if act not in ACTIVATIONS:
        raise ValueError(f"bias_act: act must be one of {ACTIVATIONS}, got {act!r}")
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"bias_act: dropout_p must be in [0, 1), got {dropout_p}")
    if dropout_p and key is None:
        raise ValueError("bias_act: dropout_p > 0 needs key= (a JAX PRNG key)")
    n = x.shape[-1]
    if bias is None:
        bias = jnp.zeros((n,), x.dtype)
    if bias.shape != (n,):
        raise ValueError(
            f"bias_act: bias must have shape ({n},) to match x's last dim, got {bias.shape}"
        )
    seed = jax.random.bits(key, (), jnp.uint32) if dropout_p else jnp.zeros((), jnp.uint32)
    cfg = BiasActConfig(act, float(dropout_p))
    x2 = x.reshape(-1, n)
    chosen = resolve_impl("bias_act", impl, lambda: measured_faster("bias_act", x.dtype, n))
    args = (x2, bias.astype(x.dtype), seed)
    reference = functools.partial(bias_act_reference, cfg=cfg)
    if chosen == "pallas":
        out = typed_like(reference, functools.partial(_bias_act_pallas, cfg=cfg), *args)
    else:
        out = reference(*args)
    return out.reshape(x.shape)
