"""PyTorch's dtype names over JAX's dtypes, and the default floating dtype.

``torsh_fn.float32`` *is* ``jnp.float32``, so dtypes pass straight to JAX. 64-bit types follow
JAX: without ``jax.config.update("jax_enable_x64", True)`` an int64 or float64 request gives the
32-bit type, as everywhere in JAX.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

float16 = half = jnp.float16
bfloat16 = jnp.bfloat16
float32 = float = jnp.float32
float64 = double = jnp.float64
int8 = jnp.int8
int16 = short = jnp.int16
int32 = int = jnp.int32
int64 = long = jnp.int64
uint8 = jnp.uint8
bool = jnp.bool_
complex64 = cfloat = jnp.complex64
complex128 = cdouble = jnp.complex128

_FLOATING = (jnp.float16, jnp.bfloat16, jnp.float32, jnp.float64)
_default_dtype: Any = jnp.float32

_TORCH_NAMES = {
    "float16": float16, "half": float16, "bfloat16": bfloat16, "float32": float32,
    "float": float32, "float64": float64, "double": float64, "int8": int8, "int16": int16,
    "short": int16, "int32": int32, "int": int32, "int64": int64, "long": int64, "uint8": uint8,
    "bool": bool, "complex64": complex64, "cfloat": complex64, "complex128": complex128,
    "cdouble": complex128,
}


def to_dtype(dtype: Any) -> np.dtype | None:
    """Normalise a dtype given as a JAX/numpy type, a string or a ``torch.dtype`` to numpy's.

    >>> to_dtype("float32")
    dtype('float32')
    """
    if dtype is None:
        return None
    if type(dtype).__module__ == "torch":  # torch.float32 etc., without importing torch
        name = str(dtype).removeprefix("torch.")
        if name not in _TORCH_NAMES:
            raise TypeError(f"torch dtype {dtype} has no torsh_fn counterpart")
        dtype = _TORCH_NAMES[name]
    elif isinstance(dtype, str) and dtype in _TORCH_NAMES:
        dtype = _TORCH_NAMES[dtype]
    try:
        return jnp.dtype(dtype)
    except TypeError as err:
        raise TypeError(f"dtype: expected a dtype such as torsh_fn.float32, got {dtype!r}") from err


def get_default_dtype() -> np.dtype:
    """The floating dtype that creation functions use when none is given (float32 at start)."""
    return jnp.dtype(_default_dtype)


def set_default_dtype(dtype: Any) -> None:
    """Set the default floating dtype, as ``torch.set_default_dtype``.

    Only floating types are accepted (float16, bfloat16, float32, float64); float64 needs
    ``jax_enable_x64`` to be on, as everywhere in JAX.
    """
    global _default_dtype
    d = to_dtype(dtype)
    if d not in [jnp.dtype(t) for t in _FLOATING]:
        raise TypeError(f"set_default_dtype: expected a floating dtype, got {d}")
    _default_dtype = d


def is_floating_point(x: Any) -> bool:
    """``torch.is_floating_point``: whether ``x`` has a real floating dtype."""
    return jnp.issubdtype(jnp.result_type(x), jnp.floating)


def canonical(dtype: Any) -> np.dtype | None:
    """``dtype`` as JAX will store it: int64/float64 become 32-bit unless x64 is on."""
    import jax

    return None if dtype is None else jax.dtypes.canonicalize_dtype(to_dtype(dtype))
