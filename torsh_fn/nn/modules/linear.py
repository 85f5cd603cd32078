"""``Identity``, ``Linear``, ``Bilinear``, ``LazyLinear``: PyTorch's shapes, keys and default init
(weight ``kaiming_uniform_(a=sqrt(5))``, bias ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``).

Example:
    >>> fc = Linear(4, 2)
    >>> fc(jnp.ones((3, 4))).shape, fc.weight.shape
    ((3, 2), (2, 4))
"""

from __future__ import annotations

import math
from typing import Any

import jax

from .. import functional as F
from .. import init
from ..module import Module
from ._checks import check_rank, check_size, empty_parameter

__all__ = ["Identity", "Linear", "Bilinear", "LazyLinear"]


class Identity(Module):
    """Returns its input; accepts (and ignores) any constructor arguments."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()

    def forward(self, input: Any) -> Any:
        return input


def _reset_bias(bias: Any, fan_in: int) -> None:
    if bias is not None:
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
        init.uniform_(bias, -bound, bound)


class Linear(Module):
    """``y = x @ weight.T + bias``.

    Args:
        in_features, out_features: sizes of the last dimension in and out.
        bias: learn an additive bias.

    Shapes: input ``(*, in_features)`` -> output ``(*, out_features)``; ``weight`` is
    ``(out_features, in_features)``, ``bias`` ``(out_features,)``.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = empty_parameter((out_features, in_features), device, dtype)
        if bias:
            self.bias = empty_parameter((out_features,), device, dtype)
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        _reset_bias(self.bias, self.in_features)

    def forward(self, input: jax.Array) -> jax.Array:
        check_size(self, input, -1, self.in_features, "in_features")
        return F.linear(input, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class LazyLinear(Linear):
    """A Linear whose ``in_features`` is read from the first input; it then becomes a
    :class:`Linear`. Call it once (eagerly) before ``torsh_fn.jit`` or loading a state_dict."""

    def __init__(self, out_features: int, bias: bool = True, device: Any = None,
                 dtype: Any = None) -> None:
        Module.__init__(self)
        self.in_features, self.out_features = 0, out_features
        self._factory = (bias, device, dtype)

    def forward(self, input: jax.Array) -> jax.Array:
        bias, device, dtype = self.__dict__.pop("_factory")
        check_rank(self, input, tuple(range(1, 9)))
        self.in_features = input.shape[-1]
        self.weight = empty_parameter((self.out_features, self.in_features), device, dtype)
        self.register_parameter(
            "bias", empty_parameter((self.out_features,), device, dtype) if bias else None)
        self.reset_parameters()
        self.__class__ = Linear
        return Linear.forward(self, input)


class Bilinear(Module):
    """``y = x1^T A x2 + b``: ``weight`` ``(out_features, in1_features, in2_features)``.

    Shapes: ``(*, in1_features)`` and ``(*, in2_features)`` -> ``(*, out_features)``.
    """

    def __init__(self, in1_features: int, in2_features: int, out_features: int,
                 bias: bool = True, device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        self.in1_features, self.in2_features = in1_features, in2_features
        self.out_features = out_features
        self.weight = empty_parameter((out_features, in1_features, in2_features), device, dtype)
        if bias:
            self.bias = empty_parameter((out_features,), device, dtype)
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1 / math.sqrt(self.weight.shape[1])
        init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            init.uniform_(self.bias, -bound, bound)

    def forward(self, input1: jax.Array, input2: jax.Array) -> jax.Array:
        check_size(self, input1, -1, self.in1_features, "in1_features")
        check_size(self, input2, -1, self.in2_features, "in2_features")
        return F.bilinear(input1, input2, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (f"in1_features={self.in1_features}, in2_features={self.in2_features}, "
                f"out_features={self.out_features}, bias={self.bias is not None}")
