"""kernels.conv / attention refuse impl="pallas" (XLA only); references vs torch."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

from tests.oracle import check_vs_torch
from torsh_fn.kernels.attention import attention, attention_reference
from torsh_fn.kernels.conv import conv, conv_transpose
from torsh_fn.kernels.pooling import pool_output_size


def test_xla_only_ops_refuse_pallas():
    x, w = jnp.ones((1, 1, 5)), jnp.ones((1, 1, 3))
    with pytest.raises(ValueError, match="conv: has no Pallas kernel"):
        conv(x, w, (1,), [(0, 0)], (1,), impl="pallas")
    with pytest.raises(ValueError, match="conv_transpose: has no Pallas kernel"):
        conv_transpose(x, w, (1,), (0,), (0,), (1,), impl="pallas")
    with pytest.raises(ValueError, match="attention: the Pallas kernel does not take an attn mask"):
        attention(x, x, x, jnp.ones((5, 5), bool), impl="pallas")


@pytest.mark.parametrize("length, k, s, p, d, ceil", [(7, 3, 2, 1, 1, True), (8, 2, 3, 0, 2, True),
                                                      (5, 5, 1, 2, 1, False)])
def test_pool_output_size_matches_torch(length, k, s, p, d, ceil):
    out = TF.max_pool1d(torch.zeros(1, 1, length), k, s, p, d, ceil)
    assert pool_output_size(length, k, s, p, d, ceil) == out.shape[-1]


def test_attention_reference_matches_torch(rng):
    q, k, v = (rng.standard_normal((2, 5, 4)).astype(np.float32) for _ in range(3))
    check_vs_torch(lambda q, k, v: attention_reference(q, k, v, is_causal=True),
                   lambda q, k, v: TF.scaled_dot_product_attention(q, k, v, is_causal=True),
                   q, k, v, rng=rng, variant=jax.jit, rtol=1e-4, atol=1e-4)
