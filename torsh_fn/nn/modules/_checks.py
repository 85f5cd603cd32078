"""Helpers shared by the layers: input checks whose errors name the layer (with its
configuration), what was expected and what came; and parameter creation with ``dtype``/``device``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from ..._device import to_device
from ..._dtypes import get_default_dtype, to_dtype
from ..parameter import Parameter

__all__ = ["check_rank", "check_size", "describe", "empty_parameter", "zeros"]


def describe(layer: Any) -> str:
    """``Linear(in_features=4, out_features=2, bias=True)``: how errors name a layer."""
    return f"{type(layer).__name__}({layer.extra_repr()})"


def check_rank(layer: Any, input: Any, ranks: tuple[int, ...], what: str = "") -> None:
    """Raise ValueError unless ``input.ndim`` is one of ``ranks``."""
    if jnp.ndim(input) not in ranks:
        want = " or ".join(str(r) for r in ranks)
        raise ValueError(f"{describe(layer)}: expected {want}-D input{what}, got "
                         f"{jnp.ndim(input)}-D input of shape {tuple(jnp.shape(input))}")


def check_size(layer: Any, input: Any, dim: int, expected: int, what: str) -> None:
    """Raise ValueError unless ``input.shape[dim] == expected``; ``what`` names that size."""
    shape = tuple(jnp.shape(input))
    if not shape or shape[dim] != expected:
        raise ValueError(f"{describe(layer)}: expected input with {what} {expected} (dim {dim}), "
                         f"got shape {shape}")


def zeros(shape: tuple[int, ...], device: Any = None, dtype: Any = None) -> jax.Array:
    """Zeros of the given (or the default floating) dtype, on ``device`` if given."""
    data = jnp.zeros(shape, to_dtype(dtype) or get_default_dtype())
    return data if device is None else to_device(data, device)


def empty_parameter(shape: tuple[int, ...], device: Any = None, dtype: Any = None) -> Parameter:
    """A zero-filled Parameter for ``reset_parameters`` to initialise."""
    return Parameter(zeros(shape, device, dtype))
