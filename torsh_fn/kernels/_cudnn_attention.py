"""cuDNN's fused attention on PyTorch's (B, H, S, D) layout, without transposes.

``jax.nn.dot_product_attention(implementation="cudnn")`` takes (B, S, H, D) only, so (B, H, S, D)
inputs pay a transpose of q, k, v and the output each way (on an H200, causal B4 S4096 H16 D128
bf16: 400 TFLOP/s forward with the transposes, 512 without). The cuDNN call underneath also takes
(B, H, S, D) (``qkv_layout="BNTH"``), but only through ``jax._src``: this module is the one place
that reaches for it, and falls back to the public function with transposes where that private
signature is missing (another JAX version).

Inputs: q (B, H, L, D), k and v (B, Hk, S, D) with Hk dividing H; float16 or bfloat16; D <= 128;
causal only with L == S (what ``attention._cudnn_can`` admits). GPU only.
"""

from __future__ import annotations

import functools
import inspect

import jax

try:
    from jax._src.cudnn.fused_attention_stablehlo import MaskType
    from jax._src.cudnn.fused_attention_stablehlo import (
        dot_product_attention as _cudnn_dot_product_attention,
    )
except ImportError:  # pragma: no cover - depends on the JAX version
    _cudnn_dot_product_attention = None

__all__ = ["cudnn_attention", "takes_bhsd"]


@functools.cache
def takes_bhsd() -> bool:
    """Whether this JAX's cuDNN attention call takes (B, H, S, D) inputs as they are."""
    return (_cudnn_dot_product_attention is not None and "qkv_layout" in
            inspect.signature(_cudnn_dot_product_attention).parameters)


def cudnn_attention(q: jax.Array, k: jax.Array, v: jax.Array, *, scale: float,
                    is_causal: bool) -> jax.Array:
    """cuDNN flash attention of (B, H, L, D) ``q`` over (B, Hk, S, D) ``k``/``v``; (B, H, L, D).

    Example (on a GPU):
        >>> q = k = v = jnp.ones((1, 2, 8, 64), jnp.bfloat16)
        >>> cudnn_attention(q, k, v, scale=0.125, is_causal=True).shape
        (1, 2, 8, 64)
    """
    if takes_bhsd():
        mask = MaskType.CAUSAL if is_causal else MaskType.NO_MASK
        return _cudnn_dot_product_attention(q, k, v, scale=scale, mask_type=mask,
                                            qkv_layout="BNTH")
    out = jax.nn.dot_product_attention(q.swapaxes(1, 2), k.swapaxes(1, 2), v.swapaxes(1, 2),
                                       scale=scale, is_causal=is_causal,
                                       implementation="cudnn")
    return out.swapaxes(1, 2)
