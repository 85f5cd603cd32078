"""nn.functional: linear and bilinear maps, with PyTorch's weight layouts."""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["bilinear", "linear"]


def linear(input: jax.Array, weight: jax.Array, bias: jax.Array | None = None) -> jax.Array:
    """``input @ weight.T + bias``.

    Args:
        input: (..., in_features).
        weight: (out_features, in_features), or (in_features,) for a single output folded away.
        bias: (out_features,) or None.

    Returns:
        (..., out_features).

    Example:
        >>> linear(jnp.ones((2, 3)), jnp.ones((4, 3)), jnp.zeros(4)).shape
        (2, 4)
    """
    if weight.ndim not in (1, 2):
        raise ValueError(f"linear: weight must be (out_features, in_features), got shape "
                         f"{weight.shape}")
    if input.ndim == 0 or input.shape[-1] != weight.shape[-1]:
        raise ValueError(f"linear: input's last dim must equal in_features={weight.shape[-1]} "
                         f"(weight shape {weight.shape}), got input shape {input.shape}")
    out = jnp.matmul(input, weight.T.astype(input.dtype))
    return out if bias is None else out + bias.astype(out.dtype)


def bilinear(input1: jax.Array, input2: jax.Array, weight: jax.Array,
             bias: jax.Array | None = None) -> jax.Array:
    """``y[..., o] = sum_ij input1[..., i] * weight[o, i, j] * input2[..., j] + bias[o]``.

    Args:
        input1: (..., in1_features); input2: (..., in2_features), same leading dims.
        weight: (out_features, in1_features, in2_features); bias: (out_features,) or None.
    """
    if weight.ndim != 3:
        raise ValueError(f"bilinear: weight must be (out, in1, in2), got shape {weight.shape}")
    _, in1, in2 = weight.shape
    if input1.shape[-1:] != (in1,) or input2.shape[-1:] != (in2,):
        raise ValueError(f"bilinear: expected inputs ending in ({in1},) and ({in2},) for weight "
                         f"{weight.shape}, got {input1.shape} and {input2.shape}")
    if input1.shape[:-1] != input2.shape[:-1]:
        raise ValueError(f"bilinear: inputs' leading dims must match, got {input1.shape} and "
                         f"{input2.shape}")
    out = jnp.einsum("...i,oij,...j->...o", input1, weight.astype(input1.dtype), input2)
    return out if bias is None else out + bias.astype(out.dtype)
