"""Matrix multiplication, plain and with a fused bias + activation epilogue, with dispatch.

    matmul(a, b)                     = a @ b                  (torch.matmul's shape rules)
    matmul_bias_act(a, b, bias, act) = act(a @ b + bias)      act in relu | gelu | gelu_tanh | silu

Numerics follow PyTorch's defaults: products accumulate in float32 and the result has the
inputs' (promoted) dtype (the epilogue acts on the float32 sums and rounds once); gradients of
16-bit products are 16-bit products, as PyTorch's (the epilogue's derivative rounded to the
inputs' dtype first); float32 inputs are multiplied at full float32 precision by the
reference (``Precision.HIGHEST``, as ``torch.backends.cuda.matmul.allow_tf32 = False``) and by
the Pallas kernel with three TF32 products per tile (float32-class accuracy, ~1e-6 relative;
see ``_pallas_matmul``); on Hopper GPUs the Pallas path runs its Mosaic GPU kernel
(``_mosaic_matmul``; float32 again as three TF32 products). ``impl="auto"`` runs the Pallas
kernel only on a GPU and only where the dispatch table measured it faster than XLA for that
dtype and size (the size key is the geometric mean of M, N and K): on an H200, float32 from
size 4096 (1.65-1.88x XLA's HIGHEST; error 7e-7 of the largest output at 8192^3 against
HIGHEST's 1.7e-6), while 16-bit products stay on XLA (level with it).

Example:
    >>> import jax.numpy as jnp
    >>> matmul(jnp.ones((2, 3, 4)), jnp.ones((4, 5))).shape
    (2, 3, 5)
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from ._dispatch import measured_faster, resolve_impl
from ._explicit_sharding import typed_like
from ._float32_sums import float32_sums
from ._pallas_matmul import MatmulConfig, MatmulStatic, matmul_pallas3
from ._pallas_tiles import SUPPORTED_DTYPES
from .bias_act import _act, check_act

__all__ = ["matmul", "matmul_bias_act", "matmul_reference"]


def _precision(dtype) -> jax.lax.Precision | None:
    return jax.lax.Precision.HIGHEST if jnp.dtype(dtype) == jnp.float32 else None


def matmul_reference(a: jax.Array, b: jax.Array, bias: jax.Array | None = None,
                     act: str | None = None) -> jax.Array:
    """``act(a @ b + bias)`` in ``jax.numpy`` (float32 accumulation, result in the inputs' dtype).

    Args:
        a: (..., M, K) or (K,); b: (..., K, N) or (K,); leading dims broadcast.
        bias: (N,) or None; act: one of ``ACTIVATIONS`` or None.

    Example:
        >>> matmul_reference(jnp.ones((2, 3)), jnp.ones((3, 4)), jnp.zeros(4), "relu").shape
        (2, 4)
    """
    dtype = jnp.result_type(a, b)
    if not jnp.issubdtype(dtype, jnp.floating):
        return jnp.matmul(a, b)
    a, b = a.astype(dtype), b.astype(dtype)
    if bias is None and act is None:  # rounded once either way; without a float32 result the
        # backward's products stay 16-bit too (float32 cotangents ran them in float32: 0.46x)
        return jnp.matmul(a, b, precision=_precision(dtype))
    if jnp.dtype(dtype).itemsize == 2:
        z = float32_sums(jnp.matmul, a, b)  # its backward's products stay 16-bit
    else:
        z = jnp.matmul(a, b, precision=_precision(dtype))
    if bias is not None:
        z = z + bias.astype(z.dtype)
    if act is not None:
        z = _act(z, act)
    return z.astype(dtype)


def _check(op: str, a: jax.Array, b: jax.Array, bias: jax.Array | None, act: str | None):
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"{op}: expected arrays of rank >= 1, got shapes {a.shape} and {b.shape}")
    k_a, k_b = a.shape[-1], b.shape[0] if b.ndim == 1 else b.shape[-2]
    if k_a != k_b:
        raise ValueError(f"{op}: a's last dim must equal b's contracted dim (-2, or 0 for a "
                         f"vector), got a {a.shape} and b {b.shape}")
    check_act(op, act)
    n = 1 if b.ndim == 1 else b.shape[-1]
    if bias is not None and bias.shape != (n,) and not (b.ndim == 1 and bias.shape == ()):
        raise ValueError(f"{op}: bias must have shape ({n},) to match b's last dim, got "
                         f"{bias.shape}")


def _pallas_refusal(a: jax.Array, b: jax.Array) -> str | None:
    """Why the Pallas kernel cannot take these operands (None if it can)."""
    dtype = jnp.result_type(a, b)
    if dtype not in SUPPORTED_DTYPES:
        return f"dtype {jnp.dtype(dtype).name} (the kernel takes float32, bfloat16, float16)"
    if a.size == 0 or b.size == 0:
        return "an empty operand"
    return None


def _as_batched(x: jax.Array, lead: tuple[int, ...]) -> jax.Array:
    """``x`` (..., R, C) as (batch, R, C): batch 1 if its leading dims hold one matrix, else the
    broadcast batch."""
    rows, cols = x.shape[-2:]
    if math.prod(x.shape[:-2]) == 1:
        return x.reshape(1, rows, cols)
    return jnp.broadcast_to(x, (*lead, rows, cols)).reshape(-1, rows, cols)


def _pallas(a, b, bias, act, cfg: MatmulConfig | None):
    dtype = jnp.result_type(a, b)
    a, b = a.astype(dtype), b.astype(dtype)
    vec_a, vec_b = a.ndim == 1, b.ndim == 1
    a = a[None, :] if vec_a else a
    b = b[:, None] if vec_b else b
    if bias is not None:
        bias = jnp.reshape(bias, (b.shape[-1],)).astype(dtype)
    m, n = a.shape[-2], b.shape[-1]
    lead = jnp.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    if b.ndim == 2:  # the common case (x @ W): one tall matrix product
        a3, b3 = a.reshape(1, -1, a.shape[-1]), b[None]
    else:
        a3, b3 = _as_batched(a, lead), _as_batched(b, lead)
    out = matmul_pallas3(a3, b3, bias, MatmulStatic(act, cfg)).reshape((*lead, m, n))
    if vec_a:
        out = out[..., 0, :]
    return out[..., 0] if vec_b else out


def _size_key(a: jax.Array, b: jax.Array) -> int:
    """The dispatch table's size key: the geometric mean of (rows of a) x K x N."""
    n = 1 if b.ndim == 1 else b.shape[-1]
    return round((max(math.prod(a.shape[:-1]), 1) * a.shape[-1] * n) ** (1.0 / 3.0))


def _dispatch(op: str, a, b, bias, act, impl: str, cfg: MatmulConfig | None) -> jax.Array:
    _check(op, a, b, bias, act)
    refusal = _pallas_refusal(a, b)

    def prefers_pallas() -> bool:
        return refusal is None and measured_faster(op, jnp.result_type(a, b), _size_key(a, b))

    if resolve_impl(op, impl, prefers_pallas) == "xla":
        return matmul_reference(a, b, bias, act)
    if refusal is not None:
        raise ValueError(f"{op}: the Pallas kernel does not take {refusal}; use impl='xla' or "
                         f"'auto'")
    return typed_like(lambda *arrays: matmul_reference(*arrays, act),
                      lambda *arrays: _pallas(*arrays, act, cfg), a, b, bias)


def matmul(a: jax.Array, b: jax.Array, *, impl: str = "auto",
           config: MatmulConfig | None = None) -> jax.Array:
    """``a @ b`` with ``torch.matmul``'s shape rules.

    Args:
        a: (..., M, K), or (K,) (a row vector, its dim removed from the result).
        b: (..., K, N), or (K,) (a column vector). Leading dims broadcast.
        impl: "auto" (Pallas only where measured faster), "pallas" or "xla".
        config: tile sizes for the Pallas kernel (default: tuned per dtype).

    Returns:
        (broadcast..., M, N) in the promoted dtype of ``a`` and ``b``.

    Example:
        >>> matmul(jnp.ones((4, 3)), jnp.ones(3)).shape
        (4,)
    """
    return _dispatch("matmul", a, b, None, None, impl, config)


def matmul_bias_act(a: jax.Array, b: jax.Array, bias: jax.Array | None = None,
                    act: str | None = "relu", *, impl: str = "auto",
                    config: MatmulConfig | None = None) -> jax.Array:
    """``act(a @ b + bias)`` with the bias and activation applied before the product is stored.

    Args:
        a: (..., M, K); b: (..., K, N) (typically (K, N): a Linear's transposed weight).
        bias: (N,) or None.
        act: "relu", "gelu" (erf), "gelu_tanh", "silu", or None (bias only).
        impl, config: as for :func:`matmul`.

    Returns:
        (broadcast..., M, N) in the promoted dtype of ``a`` and ``b``.

    Example:
        >>> matmul_bias_act(jnp.ones((2, 3)), jnp.ones((3, 4)), jnp.zeros(4), "gelu").shape
        (2, 4)
    """
    if act is None and bias is None:
        return matmul(a, b, impl=impl, config=config)
    return _dispatch("matmul_bias_act", a, b, bias, act, impl, config)
