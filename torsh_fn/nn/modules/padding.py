"""Padding layers: ``ZeroPad*``, ``ConstantPad*``, ``ReflectionPad*``, ``ReplicationPad*``,
``CircularPad*`` (1-3 d), over ``nn.functional.pad``. ``padding`` is an int or PyTorch's
(left, right, top, bottom, front, back) tuple, last dimension first.

Example:
    >>> ZeroPad2d((1, 1, 2, 0))(jnp.ones((1, 3, 3))).shape
    (1, 5, 5)
"""

from __future__ import annotations

from collections.abc import Sequence

import jax

from .. import functional as F
from ..module import Module
from ._checks import check_rank

__all__ = [
    "CircularPad1d", "CircularPad2d", "CircularPad3d", "ConstantPad1d", "ConstantPad2d",
    "ConstantPad3d", "ReflectionPad1d", "ReflectionPad2d", "ReflectionPad3d", "ReplicationPad1d",
    "ReplicationPad2d", "ReplicationPad3d", "ZeroPad1d", "ZeroPad2d", "ZeroPad3d",
]


class _PadNd(Module):
    nd: int
    mode: str

    def __init__(self, padding: int | Sequence[int], value: float = 0.0) -> None:
        super().__init__()
        self.padding = ((padding,) * 2 * self.nd if isinstance(padding, int)
                        else tuple(padding))
        if len(self.padding) != 2 * self.nd:
            raise ValueError(f"{type(self).__name__}: padding must be an int or "
                             f"{2 * self.nd} ints, got {padding!r}")
        self.value = value

    def forward(self, input: jax.Array) -> jax.Array:
        check_rank(self, input, (self.nd + 1, self.nd + 2))
        return F.pad(input, self.padding, self.mode, self.value)

    def extra_repr(self) -> str:
        return f"{self.padding}"


class _ConstantPadNd(_PadNd):
    mode = "constant"

    def extra_repr(self) -> str:
        return f"padding={self.padding}, value={self.value}"


class _ZeroPadNd(_ConstantPadNd):
    def __init__(self, padding: int | Sequence[int]) -> None:
        super().__init__(padding, 0.0)

    def extra_repr(self) -> str:
        return f"{self.padding}"


class ConstantPad1d(_ConstantPadNd):
    """Pad the last dimension with ``value``."""

    nd = 1

    def __init__(self, padding: int | Sequence[int], value: float) -> None:
        super().__init__(padding, value)


class ConstantPad2d(ConstantPad1d):
    """Pad the last 2 dimensions with ``value``."""

    nd = 2


class ConstantPad3d(ConstantPad1d):
    """Pad the last 3 dimensions with ``value``."""

    nd = 3


class ZeroPad1d(_ZeroPadNd):
    """Pad the last dimension with zeros."""

    nd = 1


class ZeroPad2d(_ZeroPadNd):
    """Pad the last 2 dimensions with zeros."""

    nd = 2


class ZeroPad3d(_ZeroPadNd):
    """Pad the last 3 dimensions with zeros."""

    nd = 3


class _Reflection(_PadNd):
    mode = "reflect"

    def __init__(self, padding: int | Sequence[int]) -> None:
        super().__init__(padding)


class ReflectionPad1d(_Reflection):
    """Pad by reflecting the input at its border (the edge is not repeated)."""

    nd = 1


class ReflectionPad2d(_Reflection):
    nd = 2


class ReflectionPad3d(_Reflection):
    nd = 3


class _Replication(_Reflection):
    mode = "replicate"


class ReplicationPad1d(_Replication):
    """Pad by repeating the edge values."""

    nd = 1


class ReplicationPad2d(_Replication):
    nd = 2


class ReplicationPad3d(_Replication):
    nd = 3


class _Circular(_Reflection):
    mode = "circular"


class CircularPad1d(_Circular):
    """Pad by wrapping around (periodic boundary)."""

    nd = 1


class CircularPad2d(_Circular):
    nd = 2


class CircularPad3d(_Circular):
    nd = 3
