"""cuDNN's fused attention on PyTorch's (B, H, S, D) layout, without transposes.

``jax.nn.dot_product_attention(implementation="cudnn")`` takes (B, S, H, D) only, so (B, H, S, D)
inputs pay a transpose of q, k, v and the output each way (on an H200, causal B4 S4096 H16 D128
bf16: 400 TFLOP/s forward with the transposes, 512 without). The cuDNN call underneath also takes
(B, H, S, D) (``qkv_layout="BNTH"``), but only through ``jax._src``: this module is the one place
that reaches for it, and falls back to the public function with transposes where that private
signature is missing (another JAX version).

``cudnn_attention_bwd`` is cuDNN's backward alone, from another flash forward's output and
logsumexp: ``attention(impl="auto")`` trains with our Mosaic GPU forward and this backward where
that pair was measured fastest (the same backward kernels as cuDNN's own training step). On
an H200, B4 S4096 H16 D128 bf16 without the mask, its step runs 1.1-1.5% faster than cuDNN's
own in interleaved rounds, and 0.8-1.6% slower than our Mosaic forward and backward's, which
``auto`` picks there.
XLA clears the outputs and workspace of every cuDNN call before it runs, which PyTorch's calls
of the same kernels do not (at that shape, causal: about 80 us of a 2.1 ms step).

Inputs: q (B, H, L, D), k and v (B, Hk, S, D) with Hk dividing H; float16 or bfloat16; D <= 128
and a multiple of 8; even lengths; causal only with L == S (what ``attention._cudnn_can``
admits). GPU only.
"""

from __future__ import annotations

import functools
import inspect
import math

import jax
import jax.numpy as jnp

# each private name apart: a JAX release that moves one keeps what the others serve
try:
    from jax._src.cudnn.fused_attention_stablehlo import MaskType
    from jax._src.cudnn.fused_attention_stablehlo import (
        dot_product_attention as _cudnn_dot_product_attention,
    )
except ImportError:  # pragma: no cover - depends on the JAX version
    _cudnn_dot_product_attention = None
try:
    from jax._src.cudnn.fused_attention_stablehlo import AttentionLayout
    from jax._src.cudnn.fused_attention_stablehlo import (
        _dot_product_attention_bwd_impl as _cudnn_backward,
    )
except ImportError:  # pragma: no cover - depends on the JAX version
    _cudnn_backward = None

__all__ = ["cudnn_attention", "cudnn_attention_bwd", "has_backward", "takes_bhsd"]

# the private backward's arguments, as JAX 0.10.2 and 0.11.2 name them
_BACKWARD_PARAMETERS = (
    "query", "key", "value", "bias", "q_seqlen", "kv_seqlen", "q_offsets", "kv_offsets",
    "page_table_k", "page_table_v", "activation", "fwd_output", "grad_output", "scale", "seed",
    "dropout_rate", "variadic_args", "mask_type", "layout", "sliding_window_length")


@functools.cache
def takes_bhsd() -> bool:
    """Whether this JAX's cuDNN attention call takes (B, H, S, D) inputs as they are."""
    return (_cudnn_dot_product_attention is not None and "qkv_layout" in
            inspect.signature(_cudnn_dot_product_attention).parameters)


@functools.cache
def has_backward() -> bool:
    """Whether this JAX's cuDNN backward can be called alone, with the arguments it is given
    here (a private function: another JAX version may change it; ``attention`` then never
    chooses the pair that needs it)."""
    return _cudnn_backward is not None and tuple(
        inspect.signature(_cudnn_backward).parameters) == _BACKWARD_PARAMETERS


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


def cudnn_attention_bwd(q: jax.Array, k: jax.Array, v: jax.Array, out: jax.Array,
                        lse: jax.Array, d_out: jax.Array, *, scale: float, is_causal: bool
                        ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Gradients (dq, dk, dv) of flash attention by cuDNN's backward, from any flash forward's
    output and base-2 logsumexp (``mosaic_attention(..., with_lse=True)``'s): what
    ``mosaic_attention_bwd`` computes, with the same arguments. Needs ``has_backward()``.

    Args:
        q: (B, H, L, D); k, v: (B, Hk, S, D), Hk dividing H; out, d_out: (B, H, L, D);
            lse: (B, H, L) float32, the rows' logsumexp of the scaled scores in base 2.
        scale: the forward's score scale; is_causal: its top-left causal mask.

    Returns:
        dq, dk, dv in the shapes and dtype of q, k, v.

    Raises:
        RuntimeError: where this JAX's backward cannot be called alone (``has_backward``).
        TypeError: for inputs that are not float16 or bfloat16.

    Example (on a GPU):
        >>> q = k = v = jnp.ones((1, 2, 128, 64), jnp.bfloat16)
        >>> out, lse = mosaic_attention(q, k, v, scale=0.125, is_causal=True, with_lse=True)
        >>> dq, dk, dv = cudnn_attention_bwd(q, k, v, out, lse, jnp.ones_like(out),
        ...                                  scale=0.125, is_causal=True)
    """
    if not has_backward():
        raise RuntimeError(f"cudnn_attention_bwd: this JAX ({jax.__version__}) has no cuDNN "
                           f"backward to call alone")
    if q.dtype not in (jnp.bfloat16, jnp.float16):
        raise TypeError(f"cudnn_attention_bwd: q must be float16 or bfloat16, got {q.dtype}")
    unused = jnp.zeros(0, q.dtype)  # no bias, padding, packing or paging
    dq, dk, dv = _cudnn_backward(
        query=q, key=k, value=v, bias=unused, q_seqlen=unused, kv_seqlen=unused,
        q_offsets=unused, kv_offsets=unused, page_table_k=unused, page_table_v=unused,
        activation=lse.astype(jnp.float32) * math.log(2.0),  # cuDNN keeps the natural log's
        fwd_output=out, grad_output=d_out.astype(q.dtype), scale=scale, seed=0,
        dropout_rate=0.0, variadic_args=(False, False),
        mask_type=MaskType.CAUSAL if is_causal else MaskType.NO_MASK,
        layout=AttentionLayout.BNTH.value, sliding_window_length=None)
    return dq, dk, dv
