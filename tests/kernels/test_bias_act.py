"""bias_act: the Pallas kernel against its jax.numpy reference (same dropout mask, bit for bit)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from tests.kernels.pallas_helpers import check_fwd_and_grad, normal
from tests.oracle import assert_close, to_torch
from torsh_fn.kernels.bias_act import ACTIVATIONS, bias_act

KEY = jax.random.PRNGKey(0)


@pytest.mark.parametrize("shape, dtype", [((2, 4, 130), jnp.float32), ((3, 3001), jnp.bfloat16)])
@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("p", [0.0, 0.3])
def test_pallas_matches_reference(rng, shape, act, p, dtype):
    args = (normal(rng, shape, dtype), normal(rng, (shape[-1],), dtype))

    def run(impl):
        return lambda x, b: bias_act(x, b, act, dropout_p=p, key=KEY, impl=impl)

    check_fwd_and_grad(run("pallas"), run("xla"), args, rng, dtype, argnums=(0, 1))


@pytest.mark.parametrize(
    "act, torch_fn",
    [
        ("relu", torch.relu),
        ("gelu", torch.nn.functional.gelu),
        ("silu", torch.nn.functional.silu),
        ("gelu_tanh", lambda z: torch.nn.functional.gelu(z, approximate="tanh")),
    ],
)
def test_without_dropout_matches_torch(rng, act, torch_fn):
    x = rng.standard_normal((4, 9)).astype(np.float32)
    b = rng.standard_normal(9).astype(np.float32)
    assert_close(bias_act(jnp.asarray(x), jnp.asarray(b), act), torch_fn(to_torch(x) + to_torch(b)))


def test_dropout_rate_and_scaling(rng):
    x = jnp.ones((64, 512))
    y = bias_act(x, None, "relu", dropout_p=0.25, key=KEY, impl="pallas")
    kept = np.asarray(y) != 0
    assert abs(kept.mean() - 0.75) < 0.01
    assert np.allclose(np.asarray(y)[kept], 1 / 0.75)
    y2 = bias_act(x, None, "relu", dropout_p=0.25, key=jax.random.PRNGKey(1), impl="pallas")
    assert (np.asarray(y2) != np.asarray(y)).any()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"act": "tanh"}, "act must be one of"),
        ({"dropout_p": 1.0, "key": KEY}, r"dropout_p must be in \[0, 1\)"),
        ({"dropout_p": 0.5}, "needs key="),
        ({"bias": jnp.ones(4)}, r"bias must have shape \(3,\)"),
    ],
)
def test_bad_input(kwargs, match):
    args = {"bias": jnp.ones(3), "act": "relu", **kwargs}
    with pytest.raises(ValueError, match=match):
        bias_act(jnp.ones((2, 3)), args.pop("bias"), args.pop("act"), **args)
