"""kernels.attention: the reference against torch, what the Pallas kernel refuses, and heads that
broadcast or group as in PyTorch."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch.nn.functional as TF

from tests.oracle import check_vs_torch
from torsh_fn.kernels.attention import attention, attention_reference


def test_attention_reference_matches_torch(rng):
    q, k, v = (rng.standard_normal((2, 5, 4)).astype(np.float32) for _ in range(3))
    check_vs_torch(lambda q, k, v: attention_reference(q, k, v, is_causal=True),
                   lambda q, k, v: TF.scaled_dot_product_attention(q, k, v, is_causal=True),
                   q, k, v, rng=rng, variant=jax.jit, rtol=1e-4, atol=1e-4)


def test_pallas_refuses_what_the_kernel_does_not_cover():
    x = jnp.ones((1, 5, 4))
    with pytest.raises(ValueError, match="attention: the Pallas kernel does not take an attn mask"):
        attention(x, x, x, jnp.ones((5, 5), bool), impl="pallas")
    with pytest.raises(ValueError, match="does not take dropout_p > 0"):
        attention(x, x, x, dropout_p=0.5, key=jax.random.key(0), impl="pallas")


@pytest.mark.parametrize("q_heads, kv_heads", [(1, 3), (3, 1), (6, 2)])
def test_auto_broadcasts_or_groups_heads_as_torch(rng, q_heads, kv_heads):
    q = rng.standard_normal((2, q_heads, 5, 4)).astype(np.float32)
    k, v = (rng.standard_normal((2, kv_heads, 7, 4)).astype(np.float32) for _ in range(2))
    gqa = q_heads > kv_heads > 1
    check_vs_torch(lambda q, k, v: attention(q, k, v),
                   lambda q, k, v: TF.scaled_dot_product_attention(q, k, v, enable_gqa=gqa),
                   q, k, v, rng=rng, rtol=1e-4, atol=1e-5)
