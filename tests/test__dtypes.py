"""dtype names and conversion."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch

import torsh_fn as T
from torsh_fn._dtypes import to_dtype


@pytest.mark.parametrize("name", ["float32", "float16", "bfloat16", "float64", "int8", "int16",
                                  "int32", "int64", "uint8", "bool", "complex64"])
def test_names_match_torch_and_convert(name):
    ours = getattr(T, name)
    assert to_dtype(getattr(torch, name)) == jnp.dtype(ours)
    assert to_dtype(name) == jnp.dtype(ours)


def test_aliases():
    assert T.float is T.float32 and T.long is T.int64 and T.half is T.float16
    assert T.double is T.float64 and T.int is T.int32 and T.short is T.int16


def test_is_floating_point():
    assert T.is_floating_point(jnp.ones(1, jnp.bfloat16))
    assert not T.is_floating_point(np.ones(1, np.int32))


def test_unknown_dtype():
    with pytest.raises(TypeError, match=r"torch dtype torch\.qint8 has no torsh_fn counterpart"):
        to_dtype(torch.qint8)
