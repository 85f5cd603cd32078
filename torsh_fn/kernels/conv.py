"""N-d convolution and transposed convolution in PyTorch's layouts, with dispatch.

Input (N, C_in, *spatial), weight (C_out, C_in / groups, *kernel) for ``conv``, and
(C_in, C_out / groups, *kernel) for ``conv_transpose``. Padding is one ``(lo, hi)`` pair per spatial
dim. ``conv_transpose`` is the gradient of ``conv`` with respect to its input: a convolution of
the input dilated by ``stride`` with the flipped, in/out-swapped kernel.

``conv_bias_act`` is ``act(conv(x, weight) + bias)``, the bias and activation applied where the
convolution's result is written (the epilogue of the lowering's last pass; see
``_conv_lowering``), as ``matmul_bias_act`` is for matrix products.

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

from ._conv_lowering import Epilogue, conv_channels_last, conv_patches, prefers_patches
from ._dispatch import picks_lowering, resolve_impl
from ._explicit_sharding import typed_like
from ._windows import Pairs
from .bias_act import _act, check_act

__all__ = ["conv", "conv_bias_act", "conv_bias_act_reference", "conv_reference",
           "conv_transpose", "conv_transpose_reference"]


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
    return _convolve(x, weight, None, stride, padding, dilation, groups, impl, None)


def _bias_act(bias: jax.Array | None, act: str | None) -> Epilogue:
    """The epilogue ``act(y + bias)``, computed in float32 at least (one rounding, at the end)."""
    def epilogue(y: jax.Array, channel_axis: int) -> jax.Array:
        z = y.astype(jnp.promote_types(y.dtype, jnp.float32))
        if bias is not None:
            shape = [1] * y.ndim
            shape[channel_axis] = -1
            z = z + bias.astype(z.dtype).reshape(shape)
        return (z if act is None else _act(z, act)).astype(y.dtype)

    return epilogue


def conv_bias_act_reference(x: jax.Array, weight: jax.Array, bias: jax.Array | None,
                            stride: Sequence[int], padding: Pairs, dilation: Sequence[int],
                            groups: int = 1, act: str | None = "relu") -> jax.Array:
    """``act(conv_reference(x, weight, ...) + bias)``, bias (C_out,) along the channels."""
    return _bias_act(bias, act)(conv_reference(x, weight, stride, padding, dilation, groups), 1)


def conv_bias_act(x: jax.Array, weight: jax.Array, bias: jax.Array | None,
                  stride: Sequence[int], padding: Pairs, dilation: Sequence[int],
                  groups: int = 1, *, act: str | None = "relu", impl: str = "auto") -> jax.Array:
    """``act(conv(x, weight) + bias)``: a convolution with its bias and activation fused.

    The bias and activation run in float32 on the convolution's result, in the layout it is
    computed in, before the transpose back to NCHW; XLA fuses them into that transpose. On a
    GPU (channels-last) a bias with ReLU or SiLU costs no time over the convolution alone; with
    GELU, XLA keeps the erf in a pass of its own (+6-10% on a 3x3, 256-channel convolution). On
    the CPU the batch-wide patch product takes them into its transpose; after the per-image
    product or XLA's NCHW convolution they are one elementwise pass.
    ``benchmarks/conv.py --only epilogue`` times them against PyTorch.

    Args:
        x: (N, C_in, *spatial); weight: (C_out, C_in / groups, *kernel); bias: (C_out,) or None.
        stride, padding, dilation, groups: as for ``conv``.
        act: "relu", "gelu" (erf), "gelu_tanh", "silu", or None (bias only).
        impl: "auto" or "xla", as for ``conv``.

    Returns:
        (N, C_out, *out) in ``x``'s dtype; the epilogue is computed in float32 (at least) and
        rounded once.

    Raises:
        ValueError: for a bias that is not (C_out,) or an unknown ``act``.

    Example:
        >>> conv_bias_act(jnp.ones((2, 3, 8, 8)), jnp.ones((4, 3, 3, 3)), jnp.zeros(4), (1, 1),
        ...               [(1, 1)] * 2, (1, 1), act="gelu").shape
        (2, 4, 8, 8)
    """
    resolve_impl("conv_bias_act", impl, None)
    check_act("conv_bias_act", act)
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"conv_bias_act: bias must have shape ({weight.shape[0]},) to match "
                         f"weight {weight.shape}, got {bias.shape}")
    return _convolve(x, weight, bias, stride, padding, dilation, groups, impl, act)


def _convolve(x, weight, bias, stride, padding, dilation, groups, impl, act):
    """``conv_bias_act``'s result by the lowering "auto" picks (``conv``'s with no bias or act)."""
    fused = bias is not None or act is not None
    lowering = conv_reference
    if picks_lowering(impl):
        backend = jax.default_backend()
        if backend == "cpu" and prefers_patches(x.shape, weight.shape, stride, padding, dilation,
                                                groups):
            lowering = conv_patches
        elif backend == "gpu" and x.ndim == 4:
            lowering = conv_channels_last

    def reference(x, w, b):
        if fused:
            return conv_bias_act_reference(x, w, b, stride, padding, dilation, groups, act)
        return conv_reference(x, w, stride, padding, dilation, groups)

    def lowered(x, w, b):
        epilogue = (_bias_act(b, act),) if fused else ()
        return lowering(x, w, stride, padding, dilation, groups, *epilogue)

    if lowering is conv_reference:
        return reference(x, weight, bias)
    return typed_like(reference, lowered, x, weight, bias)


def conv_transpose(x: jax.Array, weight: jax.Array, stride: Sequence[int],
                   padding: Sequence[int], output_padding: Sequence[int],
                   dilation: Sequence[int], groups: int = 1, *, impl: str = "auto") -> jax.Array:
    """Transposed convolution (see ``conv_transpose_reference``); ``impl`` as in ``conv``."""
    resolve_impl("conv_transpose", impl, None)
    return conv_transpose_reference(x, weight, stride, padding, output_padding, dilation, groups)
