"""Convolutions: ``Conv1d/2d/3d`` and ``ConvTranspose1d/2d/3d`` over ``nn.functional``, with
PyTorch's constructor, weight layout (``(out, in/groups, *k)``; transposed
``(in, out/groups, *k)``), ``padding_mode`` and default init (``kaiming_uniform_(a=sqrt(5))``,
bias ``U(±1/sqrt(fan_in))``).

Inputs are ``(N, C, *spatial)`` or unbatched ``(C, *spatial)``.

Example:
    >>> conv = Conv2d(3, 8, kernel_size=3, padding=1)
    >>> conv(jnp.ones((2, 3, 16, 16))).shape
    (2, 8, 16, 16)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from .. import functional as F
from .. import init
from ..module import Module
from ._checks import check_rank, check_size, empty_parameter

__all__ = ["Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d"]

_PAD_MODES = {"zeros": None, "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def _ntuple(value: int | Sequence[int], n: int) -> tuple[int, ...]:
    return (value,) * n if isinstance(value, int) else tuple(value)


class _ConvNd(Module):
    nd: int
    transposed: bool = False

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1,
                 padding: Any = 0, dilation: Any = 1, groups: int = 1, bias: bool = True,
                 padding_mode: str = "zeros", device: Any = None, dtype: Any = None,
                 output_padding: Any = 0) -> None:
        super().__init__()
        name = type(self).__name__
        if groups <= 0:
            raise ValueError(f"{name}: groups must be a positive integer, got {groups}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"{name}: in_channels ({in_channels}) and out_channels "
                             f"({out_channels}) must be divisible by groups ({groups})")
        if padding_mode not in _PAD_MODES:
            raise ValueError(f"{name}: padding_mode must be one of {sorted(_PAD_MODES)}, "
                             f"got {padding_mode!r}")
        n = self.nd
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = _ntuple(kernel_size, n)
        self.stride = _ntuple(stride, n)
        self.padding = padding if isinstance(padding, str) else _ntuple(padding, n)
        self.dilation = _ntuple(dilation, n)
        self.output_padding = _ntuple(output_padding, n)
        self.groups, self.padding_mode = groups, padding_mode
        shape = ((in_channels, out_channels // groups) if self.transposed
                 else (out_channels, in_channels // groups)) + self.kernel_size
        self.weight = empty_parameter(shape, device, dtype)
        if bias:
            self.bias = empty_parameter((out_channels,), device, dtype)
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight.shape[1] * math.prod(self.kernel_size)
            bound = 1 / math.sqrt(fan_in) if fan_in else 0
            init.uniform_(self.bias, -bound, bound)

    def _check(self, input: jax.Array) -> None:
        check_rank(self, input, (self.nd + 1, self.nd + 2))
        check_size(self, input, -self.nd - 1, self.in_channels, "channels")

    def extra_repr(self) -> str:
        text = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}")
        if self.padding != (0,) * self.nd:
            text += f", padding={self.padding!r}" if isinstance(self.padding, str) else \
                f", padding={self.padding}"
        if self.dilation != (1,) * self.nd:
            text += f", dilation={self.dilation}"
        if self.output_padding != (0,) * self.nd:
            text += f", output_padding={self.output_padding}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.bias is None:
            text += ", bias=False"
        if self.padding_mode != "zeros":
            text += f", padding_mode={self.padding_mode}"
        return text


class _Conv(_ConvNd):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1,
                 padding: Any = 0, dilation: Any = 1, groups: int = 1, bias: bool = True,
                 padding_mode: str = "zeros", device: Any = None, dtype: Any = None) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, padding_mode, device, dtype)

    def forward(self, input: jax.Array) -> jax.Array:
        self._check(input)
        conv = (F.conv1d, F.conv2d, F.conv3d)[self.nd - 1]
        mode = _PAD_MODES[self.padding_mode]
        if mode is None:
            return conv(input, self.weight, self.bias, self.stride, self.padding, self.dilation,
                        self.groups)
        if isinstance(self.padding, str):
            raise ValueError(f"{type(self).__name__}: padding={self.padding!r} needs "
                             f"padding_mode='zeros'")
        pads = [(0, 0)] * (input.ndim - self.nd) + [(p, p) for p in self.padding]
        return conv(jnp.pad(input, pads, mode=mode), self.weight, self.bias, self.stride, 0,
                    self.dilation, self.groups)


class Conv1d(_Conv):
    """1-D convolution: ``(N, C_in, L)`` -> ``(N, C_out, L_out)``."""

    nd = 1


class Conv2d(_Conv):
    """2-D convolution: ``(N, C_in, H, W)`` -> ``(N, C_out, H_out, W_out)``."""

    nd = 2


class Conv3d(_Conv):
    """3-D convolution: ``(N, C_in, D, H, W)`` -> ``(N, C_out, D_out, H_out, W_out)``."""

    nd = 3


class _ConvTranspose(_ConvNd):
    transposed = True

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1,
                 padding: Any = 0, output_padding: Any = 0, groups: int = 1, bias: bool = True,
                 dilation: Any = 1, padding_mode: str = "zeros", device: Any = None,
                 dtype: Any = None) -> None:
        if padding_mode != "zeros":
            raise ValueError(f'Only "zeros" padding mode is supported for '
                             f"{type(self).__name__}, got {padding_mode!r}")
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, padding_mode, device, dtype, output_padding)

    def _output_padding(self, input: jax.Array, output_size: Sequence[int] | None):
        if output_size is None:
            return self.output_padding
        size = tuple(output_size)[-self.nd:]
        if len(size) != self.nd:
            raise ValueError(f"{type(self).__name__}: output_size must have {self.nd} or more "
                             f"elements, got {output_size}")
        extra = []
        for d in range(self.nd):
            base = ((input.shape[d - self.nd] - 1) * self.stride[d] - 2 * self.padding[d]
                    + self.dilation[d] * (self.kernel_size[d] - 1) + 1)
            if not base <= size[d] < base + self.stride[d]:
                raise ValueError(f"{type(self).__name__}: requested an output size of {size}, "
                                 f"dim {d} must lie in [{base}, {base + self.stride[d] - 1}]")
            extra.append(size[d] - base)
        return tuple(extra)

    def forward(self, input: jax.Array, output_size: Sequence[int] | None = None) -> jax.Array:
        self._check(input)
        conv = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[self.nd - 1]
        return conv(input, self.weight, self.bias, self.stride, self.padding,
                    self._output_padding(input, output_size), self.groups, self.dilation)


class ConvTranspose1d(_ConvTranspose):
    """Transposed 1-D convolution: ``(N, C_in, L)`` -> ``(N, C_out, L_out)``."""

    nd = 1


class ConvTranspose2d(_ConvTranspose):
    """Transposed 2-D convolution: ``(N, C_in, H, W)`` -> ``(N, C_out, H_out, W_out)``."""

    nd = 2


class ConvTranspose3d(_ConvTranspose):
    """Transposed 3-D convolution."""

    nd = 3
