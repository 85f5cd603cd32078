"""Pallas tiled matrix multiplication with a fused bias + activation epilogue, and its backward.

    out[b] = act(op(a[b]) @ op(b[b]) + bias)        op: identity or transpose (static flags)

One program computes one ``[block_m, block_n]`` tile of the output: it walks the shared K dim in
steps of ``block_k``, loading an ``[block_m, block_k]`` tile of A and a ``[block_k, block_n]`` tile
of B and accumulating their product in float32 registers (Triton pipelines the loads
``num_stages`` deep). Edges of arbitrary M, N, K are masked loads (zeros past the end) and masked
stores. Programs are numbered in groups of ``group_m`` tile rows so that neighbours share tiles of
A and B in L2. The epilogue adds the bias and applies the activation before the one store.

Precision: bfloat16 / float16 inputs multiply on the tensor cores with float32 accumulation.
float32 inputs use three TF32 products per tile (``TF32_TF32_F32_X3``: the high and low halves of
each operand), which is float32-class accuracy (relative error ~1e-6, far better than plain TF32's
~1e-3) at tensor-core speed; interpret mode computes them at ``Precision.HIGHEST``.

Backward uses the same kernel with transposed operands read in place:
``dA = dZ @ Bᵀ`` and ``dB = Aᵀ @ dZ``, where ``dZ = dOut * act'(Z)`` from the pre-activation ``Z``
that the forward writes as a second output when differentiated, in the inputs' dtype (what
PyTorch's Linear and activation save in bf16: the product rounded once, before the activation).

On Hopper GPUs, launches that ``_mosaic_matmul`` takes (output in the inputs' dtype, 16-bit
matrices on whole swizzle tiles or float32 of any shape, no ``MatmulConfig`` asked for) run its
Mosaic GPU kernel instead, the pre-activation included.

Use through ``torsh_fn.kernels.matmul`` / ``matmul_bias_act`` (``impl="pallas"``).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

from ._mosaic_matmul import mosaic_matmul, mosaic_matmul_can
from ._pallas_common import compiler_params, interpret_mode, on_hopper
from ._pallas_tiles import dot_precision, idiv, irem, tile_size
from .bias_act import _act, _act_grad


@dataclasses.dataclass(frozen=True)
class MatmulConfig:
    """Tile sizes and launch knobs of the matmul kernel (all powers of two, blocks >= 16)."""

    block_m: int = 128
    block_n: int = 256
    block_k: int = 64
    group_m: int = 8
    num_warps: int = 8
    num_stages: int = 4

    def __post_init__(self):
        for name in ("block_m", "block_n", "block_k"):
            size = getattr(self, name)
            if size < 16 or size & (size - 1):
                raise ValueError(f"MatmulConfig: {name} must be a power of two >= 16, got {size}")
        if self.group_m < 1 or self.num_warps < 1 or self.num_stages < 1:
            raise ValueError(f"MatmulConfig: group_m, num_warps, num_stages must be >= 1, "
                             f"got {self}")

    def fit(self, m: int, n: int, k: int) -> MatmulConfig:
        """This config with blocks no larger than the (power-of-two-rounded) problem."""
        return dataclasses.replace(self, block_m=tile_size(m, self.block_m),
                                   block_n=tile_size(n, self.block_n),
                                   block_k=tile_size(k, self.block_k))


# Defaults per input dtype. bf16 8192^3 on an H200 (jax 0.11.2): 128x256x64, 8 warps, 4 stages
# 701 TFLOP/s; 3 stages 683; 128x128x64 with 4 warps 522 (benchmarks/kernels.py --tiles).
DEFAULT_CONFIGS = {
    "bfloat16": MatmulConfig(),
    "float16": MatmulConfig(),
    "float32": MatmulConfig(block_m=128, block_n=128, block_k=32, num_warps=8, num_stages=3),
}


class _Operands(NamedTuple):
    """Static facts of one launch: how A and B are stored and what the epilogue does."""

    trans_a: bool  # A is stored (batch, K, M)
    trans_b: bool  # B is stored (batch, N, K)
    a_batched: bool  # A has the output's batch (else one matrix shared by every batch entry)
    b_batched: bool
    bias: bool  # a bias (N,) follows A and B
    act: str | None  # None: no activation
    save_preact: bool  # also write Z = A @ B + bias (for the backward of an activation)


def _tile(ref, batch, r0, c0, rows: int, cols: int, n_rows: int, n_cols: int, mask_rows: bool,
          mask_cols: bool):
    """``ref[batch, r0:r0+rows, c0:c0+cols]``, zeros outside the ``(n_rows, n_cols)`` matrix."""
    r, c = r0 + jnp.arange(rows), c0 + jnp.arange(cols)
    mask = None
    if mask_rows:
        mask = (r < n_rows)[:, None]
    if mask_cols:
        col_mask = (c < n_cols)[None, :]
        mask = col_mask if mask is None else mask & col_mask
    return plgpu.load(ref.at[batch, pl.ds(r0, rows), pl.ds(c0, cols)], mask=mask,
                      other=None if mask is None else 0)


def _grouped_tile_ids(grid_m: int, grid_n: int, group_m: int):
    """Program id -> (tile row, tile col), walking ``group_m`` tile rows column by column."""
    pid = pl.program_id(0)
    width = group_m * grid_n
    first_m = idiv(pid, width) * group_m
    size_m = jnp.minimum(grid_m - first_m, group_m)
    in_group = irem(pid, width)
    return first_m + irem(in_group, size_m), idiv(in_group, size_m)


def _matmul_kernel(a_ref, b_ref, *refs, ops: _Operands, cfg: MatmulConfig, m: int, n: int,
                   k: int):
    bias_ref = refs[0] if ops.bias else None
    out_ref, *preact_ref = refs[1:] if ops.bias else refs
    bm, bn, bk = cfg.block_m, cfg.block_n, cfg.block_k
    pid_m, pid_n = _grouped_tile_ids(pl.cdiv(m, bm), pl.cdiv(n, bn), cfg.group_m)
    batch = pl.program_id(1)
    first = jnp.int32(0)  # the one matrix of an operand shared by every batch entry
    a_batch, b_batch = (batch if ops.a_batched else first), (batch if ops.b_batched else first)
    row0, col0 = pid_m * bm, pid_n * bn
    edge_m, edge_n, edge_k = m % bm != 0, n % bn != 0, k % bk != 0

    def body(step, acc):  # acc: [bm, bn] float32
        k0 = step * bk
        if ops.trans_a:  # [bk, bm] tile of the stored (K, M) matrix
            a = _tile(a_ref, a_batch, k0, row0, bk, bm, k, m, edge_k, edge_m)
        else:  # [bm, bk]
            a = _tile(a_ref, a_batch, row0, k0, bm, bk, m, k, edge_m, edge_k)
        if ops.trans_b:  # [bn, bk] tile of the stored (N, K) matrix
            b = _tile(b_ref, b_batch, col0, k0, bn, bk, n, k, edge_n, edge_k)
        else:  # [bk, bn]
            b = _tile(b_ref, b_batch, k0, col0, bk, bn, k, n, edge_k, edge_n)
        return acc + plgpu.dot(a, b, trans_a=ops.trans_a, trans_b=ops.trans_b,
                            precision=dot_precision(a.dtype))

    acc = lax.fori_loop(0, pl.cdiv(k, bk), body, jnp.zeros((bm, bn), jnp.float32))
    rows, cols = row0 + jnp.arange(bm), col0 + jnp.arange(bn)
    if ops.bias:
        if edge_n:
            bias = plgpu.load(bias_ref.at[pl.ds(col0, bn)], mask=cols < n, other=0)
        else:
            bias = plgpu.load(bias_ref.at[pl.ds(col0, bn)])
        acc = acc + bias.astype(jnp.float32)[None, :]
    if preact_ref:
        _store_tile(preact_ref[0], batch, row0, col0, acc, rows < m, cols < n)
    if ops.act is not None:
        acc = _act(acc, ops.act)
    _store_tile(out_ref, batch, row0, col0, acc, rows < m, cols < n)


def _store_tile(ref, batch, row0, col0, value, row_ok, col_ok):
    bm, bn = value.shape
    plgpu.store(ref.at[batch, pl.ds(row0, bm), pl.ds(col0, bn)], value.astype(ref.dtype),
             mask=row_ok[:, None] & col_ok[None, :])


def _mosaic_takes(a, b, ops: _Operands, cfg: MatmulConfig | None, out_dtype) -> bool:
    """Whether a launch runs the Mosaic GPU kernel: on Hopper, with no Triton config asked
    for, for the operands it takes."""
    return (cfg is None and on_hopper()
            and mosaic_matmul_can(a.shape, b.shape, a.dtype, out_dtype, trans_a=ops.trans_a,
                                  trans_b=ops.trans_b))


def _launch(a, b, bias, ops: _Operands, cfg: MatmulConfig | None, out_dtype):
    """One kernel: ``a`` (batch_a, M, K) or its transpose, ``b`` likewise (K, N)."""
    if _mosaic_takes(a, b, ops, cfg, out_dtype):
        return mosaic_matmul(a, b, bias, trans_a=ops.trans_a, trans_b=ops.trans_b, act=ops.act,
                             save_preact=ops.save_preact)
    m = a.shape[2] if ops.trans_a else a.shape[1]
    k = a.shape[1] if ops.trans_a else a.shape[2]
    n = b.shape[1] if ops.trans_b else b.shape[2]
    batch = max(a.shape[0], b.shape[0])
    cfg = (cfg or DEFAULT_CONFIGS[jnp.dtype(a.dtype).name]).fit(m, n, k)
    grid = (pl.cdiv(m, cfg.block_m) * pl.cdiv(n, cfg.block_n), batch)
    out_shape = [jax.ShapeDtypeStruct((batch, m, n), out_dtype)]
    if ops.save_preact:
        out_shape.append(jax.ShapeDtypeStruct((batch, m, n), a.dtype))
    operands = (a, b, bias) if ops.bias else (a, b)
    outs = pl.pallas_call(
        functools.partial(_matmul_kernel, ops=ops, cfg=cfg, m=m, n=n, k=k),
        out_shape=out_shape,
        grid=grid,
        interpret=interpret_mode(),
        compiler_params=compiler_params(cfg.num_warps, cfg.num_stages),
        name=f"matmul_{ops.act}" if ops.act else "matmul",
    )(*operands)
    return outs if ops.save_preact else outs[0]


def _plain(a, b, trans_a, trans_b, a_batched, b_batched, out_dtype, cfg):
    ops = _Operands(trans_a, trans_b, a_batched, b_batched, False, None, False)
    return _launch(a, b, None, ops, cfg, out_dtype)


def _grad_dtype(operand, shared: bool):
    """float32 for a gradient still to be summed over the batch, else the operand's dtype."""
    return jnp.float32 if shared else operand.dtype


class MatmulStatic(NamedTuple):
    """The hashable static argument of :func:`matmul_pallas3`."""

    act: str | None
    cfg: MatmulConfig | None


def _forward_ops(a, b, bias, static: MatmulStatic, save_preact: bool) -> _Operands:
    return _Operands(False, False, a.shape[0] > 1 or b.shape[0] == 1, b.shape[0] > 1,
                     bias is not None, static.act, save_preact)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def matmul_pallas3(a, b, bias, static: MatmulStatic):
    """``act(a @ b + bias)`` on 3-D operands by the Pallas kernel.

    Args:
        a: (Ba, M, K); b: (Bb, K, N), with Ba and Bb equal or 1 (one matrix for every entry).
        bias: (N,) or None.
        static: the activation (None for none) and the tile config (None for the default).

    Returns:
        (max(Ba, Bb), M, N) in ``a``'s dtype.

    Example:
        >>> out = matmul_pallas3(jnp.ones((1, 8, 4)), jnp.ones((1, 4, 5)), None,
        ...                      MatmulStatic(None, None))
    """
    return _launch(a, b, bias, _forward_ops(a, b, bias, static, False), static.cfg, a.dtype)


def _matmul_fwd(a, b, bias, static):
    if static.act is None:
        return matmul_pallas3(a, b, bias, static), (a, b, bias, None)
    ops = _forward_ops(a, b, bias, static, True)
    out, preact = _launch(a, b, bias, ops, static.cfg, a.dtype)
    return out, (a, b, bias, preact)


def _matmul_bwd(static, saved, d_out):
    a, b, bias, preact = saved
    if preact is None:
        d_z = d_out
    else:  # the derivative in float32 at the saved (16-bit: rounded) pre-activation
        d_z = (d_out * _act_grad(preact.astype(jnp.float32), static.act)).astype(a.dtype)
    shared_a, shared_b = a.shape[0] < d_z.shape[0], b.shape[0] < d_z.shape[0]
    # dA = dZ @ Bᵀ: B read as stored (Bb, K, N) with trans_b.
    d_a = _plain(d_z, b, False, True, True, not shared_b, _grad_dtype(a, shared_a), static.cfg)
    # dB = Aᵀ @ dZ: A read as stored (Ba, M, K) with trans_a.
    d_b = _plain(a, d_z, True, False, not shared_a, True, _grad_dtype(b, shared_b), static.cfg)
    if shared_a:  # A was shared by every batch entry: its gradient sums over them
        d_a = jnp.sum(d_a, axis=0, keepdims=True).astype(a.dtype)
    if shared_b:
        d_b = jnp.sum(d_b, axis=0, keepdims=True).astype(b.dtype)
    d_bias = None
    if bias is not None:
        d_bias = jnp.sum(d_z, axis=(0, 1), dtype=jnp.float32).astype(bias.dtype)
    return d_a, d_b, d_bias


matmul_pallas3.defvjp(_matmul_fwd, _matmul_bwd)
