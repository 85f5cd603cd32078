"""nn.functional: convolutions (NCL / NCHW / NCDHW, PyTorch weight layouts), unfold and fold.

Inputs may be batched (N, C, *spatial) or unbatched (C, *spatial), as in PyTorch. The
convolutions call ``torsh_fn.kernels.conv``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from torsh_fn.kernels.conv import conv as _conv_kernel
from torsh_fn.kernels.conv import conv_transpose as _conv_transpose_kernel

__all__ = ["conv1d", "conv2d", "conv3d", "conv_tbc", "conv_transpose1d", "conv_transpose2d",
           "conv_transpose3d", "fold", "unfold"]

IntOrTuple = int | Sequence[int]


def _tuple(name: str, arg: str, value: IntOrTuple, nd: int) -> tuple[int, ...]:
    """``value`` as ``nd`` ints (an int is repeated), checked."""
    values = (value,) * nd if isinstance(value, int) else tuple(value)
    if len(values) == 1 and nd > 1:
        values = values * nd
    if len(values) != nd or not all(isinstance(v, int) for v in values):
        raise ValueError(f"{name}: {arg} must be an int or {nd} ints, got {value!r}")
    return values


def _batched(name: str, input: jax.Array, nd: int) -> tuple[jax.Array, bool]:
    """``input`` with a batch dim, and whether one was added."""
    if input.ndim not in (nd + 1, nd + 2):
        raise ValueError(f"{name}: expected input of rank {nd + 1} (unbatched) or {nd + 2} "
                         f"(batched), got shape {input.shape}")
    return (input, False) if input.ndim == nd + 2 else (input[None], True)


def _check_weight(name: str, x: jax.Array, weight: jax.Array, groups: int, nd: int,
                  transposed: bool) -> int:
    """Checks shapes and returns the number of output channels."""
    if weight.ndim != nd + 2:
        raise ValueError(f"{name}: expected weight of rank {nd + 2}, got shape {weight.shape}")
    if groups < 1:
        raise ValueError(f"{name}: groups must be a positive int, got {groups}")
    c_in = x.shape[1]
    expected = weight.shape[0] if transposed else weight.shape[1] * groups
    if c_in != expected:
        rule = "weight.shape[0]" if transposed else f"weight.shape[1] * groups = {expected}"
        raise ValueError(f"{name}: input has {c_in} channels, but weight {weight.shape} expects "
                         f"{expected} ({rule})")
    if weight.shape[0] % groups:
        raise ValueError(f"{name}: weight.shape[0]={weight.shape[0]} must be divisible by "
                         f"{groups=}")
    c_out = weight.shape[1] * groups if transposed else weight.shape[0]
    return c_out


def _add_bias(name: str, out: jax.Array, bias: jax.Array | None, c_out: int) -> jax.Array:
    if bias is None:
        return out
    if bias.shape != (c_out,):
        raise ValueError(f"{name}: bias must have shape ({c_out},), got {bias.shape}")
    return out + bias.astype(out.dtype).reshape(c_out, *([1] * (out.ndim - 2)))


def _padding(name: str, padding: str | IntOrTuple, kernel: Sequence[int],
             stride: Sequence[int], dilation: Sequence[int]) -> list[tuple[int, int]]:
    """(lo, hi) pairs; "same" puts the odd extra element on the right, as PyTorch."""
    if padding == "valid":
        return [(0, 0)] * len(kernel)
    if padding == "same":
        if any(s != 1 for s in stride):
            raise ValueError(f"{name}: padding='same' needs stride 1, got stride={stride}")
        total = [d * (k - 1) for k, d in zip(kernel, dilation)]
        return [(t // 2, t - t // 2) for t in total]
    if isinstance(padding, str):
        raise ValueError(f"{name}: padding must be 'same', 'valid', an int or a tuple, "
                         f"got {padding!r}")
    return [(p, p) for p in _tuple(name, "padding", padding, len(kernel))]


def _conv(name: str, nd: int, input, weight, bias, stride, padding, dilation, groups):
    x, added = _batched(name, input, nd)
    c_out = _check_weight(name, x, weight, groups, nd, transposed=False)
    stride = _tuple(name, "stride", stride, nd)
    dilation = _tuple(name, "dilation", dilation, nd)
    pads = _padding(name, padding, weight.shape[2:], stride, dilation)
    out = _add_bias(name, _conv_kernel(x, weight, stride, pads, dilation, groups), bias, c_out)
    return out[0] if added else out


def conv1d(input: jax.Array, weight: jax.Array, bias: jax.Array | None = None,
           stride: IntOrTuple = 1, padding: str | IntOrTuple = 0, dilation: IntOrTuple = 1,
           groups: int = 1) -> jax.Array:
    """1-d convolution: input (N, C_in, L), weight (C_out, C_in / groups, k) -> (N, C_out, L').

    Example:
        >>> conv1d(jnp.ones((1, 2, 7)), jnp.ones((3, 2, 3)), padding="same").shape
        (1, 3, 7)
    """
    return _conv("conv1d", 1, input, weight, bias, stride, padding, dilation, groups)


def conv2d(input: jax.Array, weight: jax.Array, bias: jax.Array | None = None,
           stride: IntOrTuple = 1, padding: str | IntOrTuple = 0, dilation: IntOrTuple = 1,
           groups: int = 1) -> jax.Array:
    """2-d convolution: input (N, C_in, H, W), weight (C_out, C_in / groups, kH, kW).

    Example:
        >>> conv2d(jnp.ones((1, 3, 9, 9)), jnp.ones((4, 3, 3, 3)), stride=2).shape
        (1, 4, 4, 4)
    """
    return _conv("conv2d", 2, input, weight, bias, stride, padding, dilation, groups)


def conv3d(input: jax.Array, weight: jax.Array, bias: jax.Array | None = None,
           stride: IntOrTuple = 1, padding: str | IntOrTuple = 0, dilation: IntOrTuple = 1,
           groups: int = 1) -> jax.Array:
    """3-d convolution: input (N, C_in, D, H, W), weight (C_out, C_in / groups, kD, kH, kW)."""
    return _conv("conv3d", 3, input, weight, bias, stride, padding, dilation, groups)


def conv_tbc(input: jax.Array, weight: jax.Array, bias: jax.Array, pad: int = 0) -> jax.Array:
    """1-d convolution in time-batch-channel layout: input (T, B, C_in), weight (k, C_in, C_out),
    bias (C_out,) -> (T + 2 * pad - k + 1, B, C_out)."""
    if input.ndim != 3 or weight.ndim != 3 or input.shape[2] != weight.shape[1]:
        raise ValueError(f"conv_tbc: expected input (T, B, C_in) and weight (k, C_in, C_out), "
                         f"got {input.shape} and {weight.shape}")
    x = jnp.transpose(input, (1, 2, 0))
    out = conv1d(x, jnp.transpose(weight, (2, 1, 0)), bias, padding=pad)
    return jnp.transpose(out, (2, 0, 1))


def _conv_transpose(name, nd, input, weight, bias, stride, padding, output_padding, groups,
                    dilation):
    x, added = _batched(name, input, nd)
    c_out = _check_weight(name, x, weight, groups, nd, transposed=True)
    stride = _tuple(name, "stride", stride, nd)
    dilation = _tuple(name, "dilation", dilation, nd)
    padding = _tuple(name, "padding", padding, nd)
    output_padding = _tuple(name, "output_padding", output_padding, nd)
    for op, s, d in zip(output_padding, stride, dilation):
        if op >= max(s, d):
            raise ValueError(f"{name}: output_padding must be smaller than stride or dilation, "
                             f"got {output_padding=}, {stride=}, {dilation=}")
    out = _conv_transpose_kernel(x, weight, stride, padding, output_padding, dilation, groups)
    out = _add_bias(name, out, bias, c_out)
    return out[0] if added else out


def conv_transpose1d(input: jax.Array, weight: jax.Array, bias: jax.Array | None = None,
                     stride: IntOrTuple = 1, padding: IntOrTuple = 0,
                     output_padding: IntOrTuple = 0, groups: int = 1,
                     dilation: IntOrTuple = 1) -> jax.Array:
    """Transposed 1-d convolution: input (N, C_in, L), weight (C_in, C_out / groups, k).

    Output length: ``(L - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1``.

    Example:
        >>> conv_transpose1d(jnp.ones((1, 2, 5)), jnp.ones((2, 3, 3)), stride=2).shape
        (1, 3, 11)
    """
    return _conv_transpose("conv_transpose1d", 1, input, weight, bias, stride, padding,
                           output_padding, groups, dilation)


def conv_transpose2d(input: jax.Array, weight: jax.Array, bias: jax.Array | None = None,
                     stride: IntOrTuple = 1, padding: IntOrTuple = 0,
                     output_padding: IntOrTuple = 0, groups: int = 1,
                     dilation: IntOrTuple = 1) -> jax.Array:
    """Transposed 2-d convolution: input (N, C_in, H, W), weight (C_in, C_out / groups, kH, kW)."""
    return _conv_transpose("conv_transpose2d", 2, input, weight, bias, stride, padding,
                           output_padding, groups, dilation)


def conv_transpose3d(input: jax.Array, weight: jax.Array, bias: jax.Array | None = None,
                     stride: IntOrTuple = 1, padding: IntOrTuple = 0,
                     output_padding: IntOrTuple = 0, groups: int = 1,
                     dilation: IntOrTuple = 1) -> jax.Array:
    """Transposed 3-d convolution: input (N, C_in, D, H, W), weight (C_in, C_out / groups, *k)."""
    return _conv_transpose("conv_transpose3d", 3, input, weight, bias, stride, padding,
                           output_padding, groups, dilation)


def _patch_args(name, kernel_size, dilation, padding, stride):
    return (_tuple(name, "kernel_size", kernel_size, 2), _tuple(name, "dilation", dilation, 2),
            _tuple(name, "padding", padding, 2), _tuple(name, "stride", stride, 2))


def _unfold4d(x: jax.Array, kernel, dilation, padding, stride) -> jax.Array:
    patches = lax.conv_general_dilated_patches(
        x, kernel, stride, [(p, p) for p in padding], rhs_dilation=dilation,
        dimension_numbers=("NCHW", "OIHW", "NCHW"), precision=lax.Precision.HIGHEST)
    return patches.reshape(x.shape[0], patches.shape[1], -1)


def unfold(input: jax.Array, kernel_size: IntOrTuple, dilation: IntOrTuple = 1,
           padding: IntOrTuple = 0, stride: IntOrTuple = 1) -> jax.Array:
    """Sliding blocks of a (N, C, H, W) or (C, H, W) input as columns: (N, C * kH * kW, L).

    Example:
        >>> unfold(jnp.ones((1, 2, 4, 5)), 3).shape
        (1, 18, 6)
    """
    name = "unfold"
    if input.ndim not in (3, 4):
        raise ValueError(f"{name}: expected input of rank 3 or 4, got shape {input.shape}")
    args = _patch_args(name, kernel_size, dilation, padding, stride)
    x = input if input.ndim == 4 else input[None]
    out = _unfold4d(x, *args)
    return out if input.ndim == 4 else out[0]


def fold(input: jax.Array, output_size: IntOrTuple, kernel_size: IntOrTuple,
         dilation: IntOrTuple = 1, padding: IntOrTuple = 0, stride: IntOrTuple = 1) -> jax.Array:
    """Sum columns (N, C * kH * kW, L) back into an image (N, C, *output_size); unfold's adjoint.

    Example:
        >>> fold(jnp.ones((1, 4, 9)), (4, 4), 2).shape
        (1, 1, 4, 4)
    """
    name = "fold"
    if input.ndim not in (2, 3):
        raise ValueError(f"{name}: expected input of rank 2 or 3, got shape {input.shape}")
    size = _tuple(name, "output_size", output_size, 2)
    kernel, dilation, padding, stride = _patch_args(name, kernel_size, dilation, padding, stride)
    cols = input if input.ndim == 3 else input[None]
    blocks = math.prod(kernel)
    blocks_per_dim = [(n + 2 * p - d * (k - 1) - 1) // s + 1
                      for n, k, d, p, s in zip(size, kernel, dilation, padding, stride)]
    if cols.shape[1] % blocks or cols.shape[2] != math.prod(blocks_per_dim):
        raise ValueError(f"{name}: expected input of shape (N, C * {blocks}, "
                         f"{math.prod(blocks_per_dim)}) for output_size={size}, "
                         f"kernel_size={kernel}, got {input.shape}")
    image = jax.ShapeDtypeStruct((cols.shape[0], cols.shape[1] // blocks, *size), cols.dtype)
    adjoint = jax.linear_transpose(
        lambda x: _unfold4d(x, kernel, dilation, padding, stride), image)
    (out,) = adjoint(cols)
    return out if input.ndim == 3 else out[0]
