"""Pooling layers over ``nn.functional``: max, average, power-average and adaptive pooling in
1-3 dimensions, with PyTorch's constructors and reprs. Inputs ``(N, C, *spatial)`` or
``(C, *spatial)``.

Example:
    >>> MaxPool2d(2)(jnp.ones((1, 3, 8, 8))).shape
    (1, 3, 4, 4)
    >>> AdaptiveAvgPool2d((1, 1))(jnp.ones((1, 3, 7, 5))).shape
    (1, 3, 1, 1)
"""

from __future__ import annotations

from typing import Any

import jax

from .. import functional as F
from ..module import Module
from ._checks import check_rank

__all__ = [
    "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveAvgPool3d", "AdaptiveMaxPool1d",
    "AdaptiveMaxPool2d", "AdaptiveMaxPool3d", "AvgPool1d", "AvgPool2d", "AvgPool3d", "LPPool1d",
    "LPPool2d", "LPPool3d", "MaxPool1d", "MaxPool2d", "MaxPool3d",
]


class _Pool(Module):
    nd: int

    def _check(self, input: jax.Array) -> None:
        check_rank(self, input, (self.nd + 1, self.nd + 2))


class _MaxPool(_Pool):
    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1,
                 return_indices: bool = False, ceil_mode: bool = False) -> None:
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride if stride is not None else kernel_size
        self.padding, self.dilation = padding, dilation
        self.return_indices, self.ceil_mode = return_indices, ceil_mode

    def forward(self, input: jax.Array) -> Any:
        self._check(input)
        pool = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[self.nd - 1]
        return pool(input, self.kernel_size, self.stride, self.padding, self.dilation,
                    ceil_mode=self.ceil_mode, return_indices=self.return_indices)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class MaxPool1d(_MaxPool):
    nd = 1


class MaxPool2d(_MaxPool):
    nd = 2


class MaxPool3d(_MaxPool):
    nd = 3


class _AvgPool(_Pool):
    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0,
                 ceil_mode: bool = False, count_include_pad: bool = True,
                 divisor_override: int | None = None) -> None:
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride if stride is not None else kernel_size
        self.padding, self.ceil_mode = padding, ceil_mode
        self.count_include_pad, self.divisor_override = count_include_pad, divisor_override

    def forward(self, input: jax.Array) -> jax.Array:
        self._check(input)
        if self.nd == 1:
            return F.avg_pool1d(input, self.kernel_size, self.stride, self.padding,
                                self.ceil_mode, self.count_include_pad)
        pool = F.avg_pool2d if self.nd == 2 else F.avg_pool3d
        return pool(input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                    self.count_include_pad, self.divisor_override)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AvgPool1d(_AvgPool):
    nd = 1

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0,
                 ceil_mode: bool = False, count_include_pad: bool = True) -> None:
        super().__init__(kernel_size, stride, padding, ceil_mode, count_include_pad)


class AvgPool2d(_AvgPool):
    nd = 2


class AvgPool3d(_AvgPool):
    nd = 3


class _LPPool(_Pool):
    def __init__(self, norm_type: float, kernel_size: Any, stride: Any = None,
                 ceil_mode: bool = False) -> None:
        super().__init__()
        self.norm_type, self.kernel_size = norm_type, kernel_size
        self.stride, self.ceil_mode = stride, ceil_mode

    def forward(self, input: jax.Array) -> jax.Array:
        self._check(input)
        pool = (F.lp_pool1d, F.lp_pool2d, F.lp_pool3d)[self.nd - 1]
        return pool(input, self.norm_type, self.kernel_size, self.stride, self.ceil_mode)

    def extra_repr(self) -> str:
        return (f"norm_type={self.norm_type}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, ceil_mode={self.ceil_mode}")


class LPPool1d(_LPPool):
    nd = 1


class LPPool2d(_LPPool):
    nd = 2


class LPPool3d(_LPPool):
    nd = 3


class _AdaptiveAvgPool(_Pool):
    def __init__(self, output_size: Any) -> None:
        super().__init__()
        self.output_size = output_size

    def forward(self, input: jax.Array) -> jax.Array:
        self._check(input)
        pool = (F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d)[self.nd - 1]
        return pool(input, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class AdaptiveAvgPool1d(_AdaptiveAvgPool):
    nd = 1


class AdaptiveAvgPool2d(_AdaptiveAvgPool):
    nd = 2


class AdaptiveAvgPool3d(_AdaptiveAvgPool):
    nd = 3


class _AdaptiveMaxPool(_Pool):
    def __init__(self, output_size: Any, return_indices: bool = False) -> None:
        super().__init__()
        self.output_size, self.return_indices = output_size, return_indices

    def forward(self, input: jax.Array) -> Any:
        self._check(input)
        pool = (F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d)[self.nd - 1]
        return pool(input, self.output_size, self.return_indices)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class AdaptiveMaxPool1d(_AdaptiveMaxPool):
    nd = 1


class AdaptiveMaxPool2d(_AdaptiveMaxPool):
    nd = 2


class AdaptiveMaxPool3d(_AdaptiveMaxPool):
    nd = 3
