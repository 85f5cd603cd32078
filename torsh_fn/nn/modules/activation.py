"""Activations as modules, each a thin class over ``nn.functional`` with PyTorch's constructor
(``inplace`` accepted and ignored) and repr.

Example:
    >>> LeakyReLU(0.2)(jnp.array([-1.0, 2.0]))
    Array([-0.2,  2. ], dtype=float32)
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from .. import functional as F
from .. import init
from ..module import Module
from ._checks import check_size, empty_parameter

__all__ = [
    "CELU", "ELU", "GELU", "GLU", "Hardshrink", "Hardsigmoid", "Hardswish", "Hardtanh",
    "LeakyReLU", "LogSigmoid", "LogSoftmax", "Mish", "PReLU", "RReLU", "ReLU", "ReLU6", "SELU",
    "SiLU", "Sigmoid", "Softmax", "Softmax2d", "Softmin", "Softplus", "Softshrink", "Softsign",
    "Tanh", "Tanhshrink", "Threshold",
]


def _inplace_repr(inplace: bool) -> str:
    return "inplace=True" if inplace else ""


class _Pointwise(Module):
    """An activation without parameters or options: ``forward`` is ``fn(input)``."""

    fn: Any

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace

    def forward(self, input: jax.Array) -> jax.Array:
        return type(self).fn(input)

    def extra_repr(self) -> str:
        return _inplace_repr(self.inplace)


class ReLU(_Pointwise):
    """``max(x, 0)``; any shape."""

    fn = staticmethod(F.relu)


class ReLU6(_Pointwise):
    """``min(max(x, 0), 6)``."""

    fn = staticmethod(F.relu6)


class SELU(_Pointwise):
    fn = staticmethod(F.selu)


class SiLU(_Pointwise):
    """``x * sigmoid(x)``."""

    fn = staticmethod(F.silu)


class Mish(_Pointwise):
    fn = staticmethod(F.mish)


class Hardswish(_Pointwise):
    fn = staticmethod(F.hardswish)


class Hardsigmoid(_Pointwise):
    fn = staticmethod(F.hardsigmoid)


class Sigmoid(_Pointwise):
    fn = staticmethod(F.sigmoid)

    def __init__(self) -> None:
        super().__init__()


class Tanh(Sigmoid):
    fn = staticmethod(F.tanh)


class LogSigmoid(Sigmoid):
    fn = staticmethod(F.logsigmoid)


class Softsign(Sigmoid):
    fn = staticmethod(F.softsign)


class Tanhshrink(Sigmoid):
    fn = staticmethod(F.tanhshrink)


class ELU(Module):
    def __init__(self, alpha: float = 1.0, inplace: bool = False) -> None:
        super().__init__()
        self.alpha, self.inplace = alpha, inplace

    def forward(self, input: jax.Array) -> jax.Array:
        return F.elu(input, self.alpha)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}" + (", inplace=True" if self.inplace else "")


class CELU(ELU):
    def forward(self, input: jax.Array) -> jax.Array:
        return F.celu(input, self.alpha)


class GELU(Module):
    """Gaussian error linear unit; ``approximate="tanh"`` for the tanh formula."""

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        self.approximate = approximate

    def forward(self, input: jax.Array) -> jax.Array:
        return F.gelu(input, approximate=self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class LeakyReLU(Module):
    def __init__(self, negative_slope: float = 1e-2, inplace: bool = False) -> None:
        super().__init__()
        self.negative_slope, self.inplace = negative_slope, inplace

    def forward(self, input: jax.Array) -> jax.Array:
        return F.leaky_relu(input, self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}" + (", inplace=True" if self.inplace else "")


class Hardtanh(Module):
    def __init__(self, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False):
        super().__init__()
        if max_val <= min_val:
            raise ValueError(f"Hardtanh: max_val ({max_val}) must be greater than min_val "
                             f"({min_val})")
        self.min_val, self.max_val, self.inplace = min_val, max_val, inplace

    def forward(self, input: jax.Array) -> jax.Array:
        return F.hardtanh(input, self.min_val, self.max_val)

    def extra_repr(self) -> str:
        return f"min_val={self.min_val}, max_val={self.max_val}" + (
            ", inplace=True" if self.inplace else "")


class Threshold(Module):
    """``x`` where ``x > threshold``, else ``value``."""

    def __init__(self, threshold: float, value: float, inplace: bool = False) -> None:
        super().__init__()
        self.threshold, self.value, self.inplace = threshold, value, inplace

    def forward(self, input: jax.Array) -> jax.Array:
        return F.threshold(input, self.threshold, self.value)

    def extra_repr(self) -> str:
        return f"threshold={self.threshold}, value={self.value}" + (
            ", inplace=True" if self.inplace else "")


class Softplus(Module):
    def __init__(self, beta: float = 1.0, threshold: float = 20.0) -> None:
        super().__init__()
        self.beta, self.threshold = beta, threshold

    def forward(self, input: jax.Array) -> jax.Array:
        return F.softplus(input, self.beta, self.threshold)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, threshold={self.threshold}"


class Softshrink(Module):
    def __init__(self, lambd: float = 0.5) -> None:
        super().__init__()
        self.lambd = lambd

    def forward(self, input: jax.Array) -> jax.Array:
        return F.softshrink(input, self.lambd)

    def extra_repr(self) -> str:
        return str(self.lambd)


class Hardshrink(Softshrink):
    def forward(self, input: jax.Array) -> jax.Array:
        return F.hardshrink(input, self.lambd)


class RReLU(Module):
    """Randomized leaky ReLU: random slopes in training (global generator), their mean in eval."""

    def __init__(self, lower: float = 1.0 / 8, upper: float = 1.0 / 3, inplace: bool = False):
        super().__init__()
        self.lower, self.upper, self.inplace = lower, upper, inplace

    def forward(self, input: jax.Array) -> jax.Array:
        return F.rrelu(input, self.lower, self.upper, self.training)

    def extra_repr(self) -> str:
        inplace = ", inplace=True" if self.inplace else ""
        return f"lower={self.lower}, upper={self.upper}{inplace}"


class PReLU(Module):
    """Leaky ReLU with a learned slope: ``weight`` of shape ``(num_parameters,)`` (1 or C)."""

    def __init__(self, num_parameters: int = 1, init: float = 0.25, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__()
        self.num_parameters = num_parameters
        self.init = init
        self.weight = empty_parameter((num_parameters,), device, dtype)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.constant_(self.weight, self.init)

    def forward(self, input: jax.Array) -> jax.Array:
        if self.num_parameters != 1 and jnp.ndim(input) >= 2:
            check_size(self, input, 1, self.num_parameters, "channels")
        return F.prelu(input, self.weight)

    def extra_repr(self) -> str:
        return f"num_parameters={self.num_parameters}"


class GLU(Module):
    def __init__(self, dim: int = -1) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, input: jax.Array) -> jax.Array:
        return F.glu(input, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Softmax(Module):
    """Softmax along ``dim`` (as in PyTorch, ``dim=None`` picks a legacy default, with a
    warning)."""

    def __init__(self, dim: int | None = None) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, input: jax.Array) -> jax.Array:
        return F.softmax(input, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Softmin(Softmax):
    def forward(self, input: jax.Array) -> jax.Array:
        return F.softmin(input, self.dim)


class LogSoftmax(Softmax):
    def forward(self, input: jax.Array) -> jax.Array:
        return F.log_softmax(input, self.dim)


class Softmax2d(Module):
    """Softmax over channels of ``(N, C, H, W)`` or ``(C, H, W)`` input."""

    def forward(self, input: jax.Array) -> jax.Array:
        if input.ndim not in (3, 4):
            raise ValueError(f"Softmax2d: expected 3-D or 4-D input, got {input.ndim}-D")
        return F.softmax(input, -3)
