"""N-d convolution and transposed convolution in PyTorch's layouts, with dispatch.

Input (N, C_in, *spatial), weight (C_out, C_in / groups, *kernel) for ``conv``, and
(C_in, C_out / groups, *kernel) for ``conv_transpose``. Padding is one ``(lo, hi)`` pair per spatial
dim. ``conv_transpose`` is the gradient of ``conv`` with respect to its input: a convolution of
the input dilated by ``stride`` with the flipped, in/out-swapped kernel.

``conv(..., impl="auto")`` picks among XLA lowerings (there is no Pallas convolution; "pallas"
is refused and "xla" runs ``conv_reference``, XLA's convolution in NCHW): on the CPU, patches
times a matrix (``_conv_lowering.conv_patches``) where ``prefers_patches`` says XLA's convolution
measured slower under ``torsh_fn.jit``'s CPU compile options (a kernel over at most 4 output
positions; a small patch over many), else ``conv_reference``;
on a GPU, 2-d convolutions run in NHWC between transposes (``conv_channels_last``), cuDNN's fast
layout.
``benchmarks/conv.py`` measures the choice.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from ._conv_lowering import conv_channels_last, conv_patches, prefers_patches
from ._dispatch import picks_lowering, resolve_impl
from ._explicit_sharding import typed_like
from ._windows import Pairs

__all__ = ["conv", "conv_reference", "conv_transpose", "conv_transpose_reference"]


def _dimension_numbers(nd: int) -> lax.ConvDimensionNumbers:
    spatial = "DHW"[3 - nd:]
    return lax.conv_dimension_numbers((1, 1) + (1,) * nd, (1, 1) + (1,) * nd,
                                      ("NC" + spatial, "OI" + spatial, "NC" + spatial))


def conv_reference(x: jax.Array, weight: jax.Array, stride: Sequence[int], padding: Pairs,
                   dilation: Sequence[int], groups: int = 1) -> jax.Array:
    """Cross-correlation of ``x`` (N, C_in, *s) with ``weight`` (C_out, C_in/groups, *k).

    Example:
        >>> conv_reference(jnp.ones((1, 1, 5)), jnp.ones((1, 1, 3)), (1,), [(0, 0)], (1,))
        Array([[[3., 3., 3.]]], dtype=float32)
    """
    nd = x.ndim - 2
    return lax.conv_general_dilated(
        x, weight.astype(x.dtype), tuple(stride), list(padding), rhs_dilation=tuple(dilation),
        dimension_numbers=_dimension_numbers(nd), feature_group_count=groups)


def _transpose_kernel(weight: jax.Array, groups: int) -> jax.Array:
    """(C_in, C_out/g, *k) -> (C_out, C_in/g, *k), spatially flipped."""
    c_in, c_out_g, *k = weight.shape
    w = weight.reshape(groups, c_in // groups, c_out_g, *k)
    w = jnp.swapaxes(w, 1, 2).reshape(groups * c_out_g, c_in // groups, *k)
    return jnp.flip(w, axis=tuple(range(2, w.ndim)))


def conv_transpose_reference(x: jax.Array, weight: jax.Array, stride: Sequence[int],
                             padding: Sequence[int], output_padding: Sequence[int],
                             dilation: Sequence[int], groups: int = 1) -> jax.Array:
    """Transposed convolution of ``x`` (N, C_in, *s) with ``weight`` (C_in, C_out/groups, *k).

    Output size per dim:
    ``(s - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1``.
    """
    k = weight.shape[2:]
    pads = [(d * (kk - 1) - p, d * (kk - 1) - p + op)
            for kk, p, op, d in zip(k, padding, output_padding, dilation)]
    return lax.conv_general_dilated(
        x, _transpose_kernel(weight.astype(x.dtype), groups), (1,) * len(k), pads,
        lhs_dilation=tuple(stride), rhs_dilation=tuple(dilation),
        dimension_numbers=_dimension_numbers(len(k)), feature_group_count=groups)


def conv(x: jax.Array, weight: jax.Array, stride: Sequence[int], padding: Pairs,
         dilation: Sequence[int], groups: int = 1, *, impl: str = "auto") -> jax.Array:
    """Convolution (see ``conv_reference``); ``impl`` is "auto" or "xla" (no Pallas kernel yet).

    "auto" picks the lowering for the backend and shapes (see the module's docstring); every
    lowering gives ``conv_reference``'s result up to float rounding.

    Example:
        >>> conv(jnp.ones((2, 3, 8, 8)), jnp.ones((4, 3, 3, 3)), (1, 1), [(1, 1)] * 2,
        ...      (1, 1)).shape
        (2, 4, 8, 8)
    """
    resolve_impl("conv", impl, None)
    lowering = conv_reference
    if picks_lowering(impl):
        backend = jax.default_backend()
        if backend == "cpu" and prefers_patches(x.shape, weight.shape, stride, padding, dilation,
                                                groups):
            lowering = conv_patches
        elif backend == "gpu" and x.ndim == 4:
            lowering = conv_channels_last
    if lowering is conv_reference:
        return conv_reference(x, weight, stride, padding, dilation, groups)
    return typed_like(lambda x, w: conv_reference(x, w, stride, padding, dilation, groups),
                      lambda x, w: lowering(x, w, stride, padding, dilation, groups), x, weight)


def conv_transpose(x: jax.Array, weight: jax.Array, stride: Sequence[int],
                   padding: Sequence[int], output_padding: Sequence[int],
                   dilation: Sequence[int], groups: int = 1, *, impl: str = "auto") -> jax.Array:
    """Transposed convolution (see ``conv_transpose_reference``); ``impl`` as in ``conv``."""
    resolve_impl("conv_transpose", impl, None)
    return conv_transpose_reference(x, weight, stride, padding, output_padding, dilation, groups)
