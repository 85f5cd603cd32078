"""kernels.conv / conv_bias_act / conv_transpose: no Pallas kernel, so impl="pallas" is refused
by name; ``conv_bias_act`` (a convolution with its bias and activation fused) against torch, in
values and gradients, and its errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch.nn.functional as TF

from tests.oracle import assert_close, check_vs_torch
from torsh_fn.kernels.conv import (
    conv,
    conv_bias_act,
    conv_bias_act_reference,
    conv_reference,
    conv_transpose,
)

TORCH_ACTS = {None: lambda t: t, "relu": TF.relu, "gelu": TF.gelu,
              "gelu_tanh": lambda t: TF.gelu(t, approximate="tanh"), "silu": TF.silu}
CASES = [  # input shape, weight shape, stride, padding (symmetric, as torch takes it), groups
    ((2, 3, 9, 7), (5, 3, 3, 3), (1, 1), (1, 1), 1),
    ((3, 4, 8, 11), (6, 2, 3, 2), (2, 1), (1, 0), 2),
    ((2, 3, 13), (4, 3, 5), (3,), (2,), 1),
]


@pytest.fixture(autouse=True)
def _full_float32_matmuls():
    """On a GPU (these tests run there too) JAX's default float32 product is TF32."""
    with jax.default_matmul_precision("highest"):
        yield


def test_conv_ops_refuse_pallas():
    x, w = jnp.ones((1, 1, 5)), jnp.ones((1, 1, 3))
    with pytest.raises(ValueError, match="conv: has no Pallas kernel"):
        conv(x, w, (1,), [(0, 0)], (1,), impl="pallas")
    with pytest.raises(ValueError, match="conv_bias_act: has no Pallas kernel"):
        conv_bias_act(x, w, None, (1,), [(0, 0)], (1,), impl="pallas")
    with pytest.raises(ValueError, match="conv_transpose: has no Pallas kernel"):
        conv_transpose(x, w, (1,), (0,), (0,), (1,), impl="pallas")


@pytest.mark.parametrize("impl", ["auto", "xla"])
@pytest.mark.parametrize("act", list(TORCH_ACTS))
@pytest.mark.parametrize("case", CASES)
def test_conv_bias_act_matches_torch(case, act, impl, rng, variant):
    x_shape, w_shape, stride, pad, groups = case
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32)
    conv_nd = getattr(TF, f"conv{len(x_shape) - 2}d")
    dilation = (1,) * len(stride)
    check_vs_torch(
        lambda x, w, b: conv_bias_act(x, w, b, stride, [(p, p) for p in pad], dilation, groups,
                                      act=act, impl=impl),
        lambda x, w, b: TORCH_ACTS[act](conv_nd(x, w, b, stride, pad, groups=groups)),
        x, w, b, rng=rng, variant=variant, rtol=1e-4, atol=1e-4)


def test_conv_bias_act_without_bias_is_the_activation_of_conv(rng):
    x = jnp.asarray(rng.standard_normal((2, 3, 6, 5)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((4, 3, 3, 3)), jnp.float32)
    args = ((1, 1), [(1, 1), (0, 1)], (1, 2))
    assert_close(conv_bias_act(x, w, None, *args, act="silu"), jax.nn.silu(conv(x, w, *args)),
                 rtol=1e-5, atol=1e-5)


def test_conv_bias_act_in_bfloat16_rounds_once(rng):
    """bfloat16 in and out; the bias and activation run in float32 on the convolution's
    result, so the output is within bfloat16 rounding of the float32 computation."""
    x = rng.standard_normal((2, 8, 9, 9)).astype(np.float32)
    w = (rng.standard_normal((16, 8, 3, 3)) / 8).astype(np.float32)
    b = rng.standard_normal(16).astype(np.float32)
    args = ((1, 1), [(1, 1), (1, 1)], (1, 1))
    bf16 = [jnp.asarray(a, jnp.bfloat16) for a in (x, w, b)]
    out = conv_bias_act(*bf16, *args, act="gelu")
    assert out.dtype == jnp.bfloat16
    want = conv_bias_act_reference(*[a.astype(jnp.float32) for a in bf16], *args, act="gelu")
    assert_close(out, want, rtol=2e-2, atol=2e-2)
    assert_close(conv_bias_act_reference(*bf16, *args, act="gelu"), want, rtol=2e-2, atol=2e-2)


def test_conv_bias_act_rejects_a_bad_bias_or_activation():
    x, w = jnp.ones((1, 2, 5, 5)), jnp.ones((3, 2, 3, 3))
    args = ((1, 1), [(1, 1)] * 2, (1, 1))
    with pytest.raises(ValueError, match=r"conv_bias_act: bias must have shape \(3,\)"):
        conv_bias_act(x, w, jnp.ones(2), *args)
    with pytest.raises(ValueError, match="conv_bias_act: act must be one of"):
        conv_bias_act(x, w, jnp.ones(3), *args, act="tanh")


def test_conv_bias_act_reference_is_conv_then_bias_then_act(rng):
    x = jnp.asarray(rng.standard_normal((1, 2, 5, 4)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((3, 2, 2, 2)), jnp.float32)
    b = jnp.asarray(rng.standard_normal(3), jnp.float32)
    args = ((1, 1), [(0, 1), (1, 0)], (1, 1))
    want = jax.nn.relu(conv_reference(x, w, *args) + b[:, None, None])
    assert_close(conv_bias_act_reference(x, w, b, *args), want, rtol=1e-6, atol=1e-6)
