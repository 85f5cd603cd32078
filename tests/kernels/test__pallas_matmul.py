"""Pallas matmul (and its fused bias + activation epilogue) against the HIGHEST-precision
reference, forward and gradient.

On the CPU the kernel runs in Pallas' interpreter with 16 x 16 x 16 tiles, so small odd shapes
already span several tiles and ragged edges in M, N and K; ``@pytest.mark.gpu`` tests run the
compiled kernel with its default tiles.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.kernels.pallas_helpers import check_fwd_and_grad_jit, normal
from torsh_fn.kernels._pallas_matmul import MatmulConfig, MatmulStatic, _matmul_fwd, matmul_pallas3
from torsh_fn.kernels.matmul import matmul_reference

SMALL = MatmulConfig(16, 16, 16, group_m=2, num_warps=4, num_stages=1)


def check(rng, dtype, a_shape, b_shape, act, with_bias, cfg):
    args = [normal(rng, a_shape, dtype), normal(rng, b_shape, dtype)]
    if with_bias:
        args.append(normal(rng, (b_shape[-1],), dtype))

    def kernel(a, b, bias=None):
        return matmul_pallas3(a, b, bias, MatmulStatic(act, cfg))

    def reference(a, b, bias=None):
        out = matmul_reference(a, b, bias, act)
        return jnp.broadcast_to(out, (max(a.shape[0], b.shape[0]), *out.shape[1:]))

    check_fwd_and_grad_jit(kernel, reference, tuple(args), rng, dtype)


CASES = [  # A (batch, M, K), B (batch, K, N), activation, bias?, dtype
    ((1, 37, 29), (1, 29, 41), None, False, jnp.float32),
    ((3, 20, 33), (1, 33, 17), "gelu", True, jnp.bfloat16),  # B shared by the batch
    ((1, 9, 18), (2, 18, 5), "silu", True, jnp.float16),  # A shared by the batch
    ((2, 17, 16), (2, 16, 19), "gelu_tanh", False, jnp.float32),
]


@pytest.mark.parametrize("a_shape, b_shape, act, with_bias, dtype", CASES)
def test_matches_reference(rng, a_shape, b_shape, act, with_bias, dtype):
    check(rng, dtype, a_shape, b_shape, act, with_bias, SMALL)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype, act", [(jnp.bfloat16, "relu"), (jnp.float16, None),
                                        (jnp.float32, "silu")])
def test_compiled_kernel_matches_reference(rng, dtype, act):
    check(rng, dtype, (1, 1000, 777), (1, 777, 1500), act, act is not None, None)


@pytest.mark.gpu
def test_compiled_batched_gelu(rng):
    check(rng, jnp.bfloat16, (4, 300, 200), (4, 200, 500), "gelu", True, None)


@pytest.mark.parametrize("dtype, cfg", [
    (jnp.bfloat16, SMALL), (jnp.float16, SMALL), (jnp.float32, SMALL),
    pytest.param(jnp.bfloat16, None, marks=pytest.mark.gpu),  # on Hopper: the Mosaic kernel
    pytest.param(jnp.float32, None, marks=pytest.mark.gpu)])
def test_saves_the_pre_activation_in_the_inputs_dtype(rng, dtype, cfg):
    """What the activation's backward reads: ``a @ b + bias`` rounded once to the inputs' dtype
    (what PyTorch's Linear saves for the activation after it in bf16), beside the output."""
    a, b = normal(rng, (2, 40, 70), dtype), normal(rng, (1, 70, 300), dtype)
    bias = normal(rng, (300,), dtype)
    out, saved = jax.jit(_matmul_fwd, static_argnums=3)(a, b, bias, MatmulStatic("gelu", cfg))
    preact = saved[3]
    assert preact.shape == out.shape == (2, 40, 300) and preact.dtype == out.dtype == dtype
    f64 = [np.asarray(x, np.float64) for x in (a, b, bias)]
    z = f64[0] @ f64[1] + f64[2]
    # 16-bit: the nearest value or a neighbour (the sum's order); float32: the three TF32
    # products' ~1e-6 on a GPU
    tol = max(float(jnp.finfo(dtype).eps), 1e-5)
    np.testing.assert_allclose(np.asarray(preact, np.float64), z, rtol=tol,
                               atol=tol * np.abs(z).max())


def test_config_rejects_bad_blocks():
    with pytest.raises(ValueError, match="block_n must be a power of two >= 16, got 48"):
        MatmulConfig(block_n=48)


def test_blocks_shrink_to_small_problems():
    cfg = MatmulConfig().fit(5, 300, 40)
    assert (cfg.block_m, cfg.block_n, cfg.block_k) == (16, 256, 64)
