"""nn.functional pooling against torch.nn.functional; hypothesis draws window geometries."""

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import torch.nn.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st

import torsh_fn.nn.functional as F
from tests.oracle import assert_close, check_vs_torch, to_torch


@st.composite
def geometry(draw, nd):
    """Input spatial shape and valid (kernel, stride, padding, dilation, ceil_mode)."""
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(nd))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(nd))
    padding = tuple(draw(st.integers(0, k // 2)) for k in kernel)
    stride = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    spatial = tuple(draw(st.integers(d * (k - 1) + 1, d * (k - 1) + 7))
                    for k, d in zip(kernel, dilation))
    return spatial, kernel, stride, padding, dilation, draw(st.booleans())


def _input(seed, *shape):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@settings(max_examples=8, deadline=None)
@given(g=geometry(2), seed=st.integers(0, 2**16), indices=st.booleans())
def test_max_pool2d_geometries(g, seed, indices):
    spatial, kernel, stride, padding, dilation, ceil_mode = g
    args = (kernel, stride, padding, dilation, ceil_mode, indices)
    check_vs_torch(lambda x: F.max_pool2d(x, *args), lambda x: TF.max_pool2d(x, *args),
                   _input(seed, 2, 3, *spatial))


@settings(max_examples=8, deadline=None)
@given(g=geometry(2), seed=st.integers(0, 2**16), include=st.booleans(),
       divisor=st.sampled_from([None, 3]))
def test_avg_pool2d_geometries(g, seed, include, divisor):
    spatial, kernel, stride, padding, _, ceil_mode = g
    args = (kernel, stride, padding, ceil_mode, include, divisor)
    check_vs_torch(lambda x: F.avg_pool2d(x, *args), lambda x: TF.avg_pool2d(x, *args),
                   _input(seed, 2, 3, *spatial))


@settings(max_examples=5, deadline=None)
@given(length=st.integers(1, 13), out=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_adaptive_pool1d_sizes(length, out, seed):
    x = _input(seed, 2, 3, length)
    check_vs_torch(lambda x: F.adaptive_avg_pool1d(x, out),
                   lambda x: TF.adaptive_avg_pool1d(x, out), x)
    check_vs_torch(lambda x: F.adaptive_max_pool1d(x, out, True),
                   lambda x: TF.adaptive_max_pool1d(x, out, True), x)


@pytest.mark.parametrize("nd", [1, 3])
def test_max_and_avg_pool_1d_3d(nd, rng):
    x = rng.standard_normal((2, 3, *(5, 4, 3)[:nd])).astype(np.float32)
    mp, ap = getattr(F, f"max_pool{nd}d"), getattr(F, f"avg_pool{nd}d")
    tmp, tap = getattr(TF, f"max_pool{nd}d"), getattr(TF, f"avg_pool{nd}d")
    check_vs_torch(lambda x: mp(x, 3, 2, 1, 1, True, True),
                   lambda x: tmp(x, 3, 2, 1, 1, True, True), x, variant=jax.jit, rng=rng)
    check_vs_torch(lambda x: ap(x, 3, 2, 1, True, False), lambda x: tap(x, 3, 2, 1, True, False),
                   x, variant=jax.jit, rng=rng)


def test_unbatched_bf16_and_vmap(rng):
    x = rng.standard_normal((3, 9, 8)).astype(np.float32)
    check_vs_torch(lambda x: F.max_pool2d(x, 3, 2, 1), lambda x: TF.max_pool2d(x, 3, 2, 1), x)
    xb = x.astype(ml_dtypes.bfloat16)
    for name in ["max_pool2d", "avg_pool2d"]:
        out = getattr(F, name)(jnp.asarray(xb), 2)
        assert out.dtype == jnp.bfloat16
        assert_close(out, getattr(TF, name)(to_torch(xb), 2))
    xs = rng.standard_normal((4, 2, 3, 9, 8)).astype(np.float32)
    out = jax.vmap(lambda x: F.avg_pool2d(x, 3, 2, 1, count_include_pad=False))(jnp.asarray(xs))
    assert_close(out[2], TF.avg_pool2d(to_torch(xs[2]), 3, 2, 1, count_include_pad=False))


@pytest.mark.parametrize("nd", [2, 3])
def test_adaptive_pool_2d_3d(nd, rng):
    x = rng.standard_normal((2, 3, *(7, 5, 3)[:nd])).astype(np.float32)
    out = (4, None, 3)[:nd]
    for kind, extra in [("avg", ()), ("max", (True,))]:
        jax_fn, torch_fn = (getattr(m, f"adaptive_{kind}_pool{nd}d") for m in (F, TF))
        check_vs_torch(lambda x, f=jax_fn, e=extra: f(x, out, *e),
                       lambda x, f=torch_fn, e=extra: f(x, out, *e), x, variant=jax.jit, rng=rng)


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_lp_pool(nd, rng):
    x = rng.uniform(0.1, 2.0, (2, 3, *(5, 4, 3)[:nd])).astype(np.float32)
    for p in (2.0, 3.0):
        check_vs_torch(lambda x, p=p: getattr(F, f"lp_pool{nd}d")(x, p, 2, ceil_mode=True),
                       lambda x, p=p: getattr(TF, f"lp_pool{nd}d")(x, p, 2, ceil_mode=True), x,
                       variant=jax.jit, rng=rng, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_max_unpool(nd, rng):
    x = rng.standard_normal((2, 3, *(5, 4, 3)[:nd])).astype(np.float32)
    pooled, idx = getattr(TF, f"max_pool{nd}d")(to_torch(x), 2, return_indices=True)
    size = x.shape[2:]
    check_vs_torch(lambda p, i: getattr(F, f"max_unpool{nd}d")(p, i, 2, output_size=size),
                   lambda p, i: getattr(TF, f"max_unpool{nd}d")(p, i, 2, output_size=size),
                   pooled.numpy(), idx.numpy(), variant=jax.jit, rng=rng)


def test_pooling_errors():
    with pytest.raises(ValueError, match=r"max_pool2d: expected input of rank 3 \(unbatched\) "
                                         r"or 4 \(batched\), got shape \(5, 5\)"):
        F.max_pool2d(jnp.zeros((5, 5)), 2)
    with pytest.raises(ValueError, match=r"avg_pool2d: padding must be at most half"):
        F.avg_pool2d(jnp.zeros((1, 1, 5, 5)), 2, padding=2)
    with pytest.raises(ValueError, match=r"max_pool1d: output size \(0,\) is too small"):
        F.max_pool1d(jnp.zeros((1, 1, 2)), 3)
    with pytest.raises(ValueError, match=r"max_pool3d: kernel_size must be an int or 3 ints"):
        F.max_pool3d(jnp.zeros((1, 1, 4, 4, 4)), (2, 2))
    with pytest.raises(ValueError, match=r"adaptive_avg_pool2d: output_size must be positive"):
        F.adaptive_avg_pool2d(jnp.zeros((1, 1, 4, 4)), (0, 2))


def test_with_indices_names(rng):
    x = rng.standard_normal((2, 3, 7, 6)).astype(np.float32)
    check_vs_torch(lambda x: F.max_pool2d_with_indices(x, 3, 2, 1),
                   lambda x: TF.max_pool2d_with_indices(x, 3, 2, 1), x)
    check_vs_torch(lambda x: F.adaptive_max_pool2d_with_indices(x, (3, 2)),
                   lambda x: TF.adaptive_max_pool2d_with_indices(x, (3, 2)), x)


@pytest.mark.parametrize("nd", [2, 3])
def test_fractional_max_pool_with_torch_samples(nd, rng):
    x = rng.standard_normal((2, 3, *(11, 9, 7)[:nd])).astype(np.float32)
    u = rng.random((2, 3, nd)).astype(np.float32)
    kernel, out = (3, 2, 2)[:nd], (5, 6, 4)[:nd]
    name = f"fractional_max_pool{nd}d"
    check_vs_torch(lambda x, u: getattr(F, name)(x, kernel, out, None, True, u),
                   lambda x, u: getattr(TF, name)(x, kernel, out, None, True, u), x, u,
                   grad=[0], variant=jax.jit, rng=rng)


def test_fractional_max_pool_draws_windows_from_key():
    x = jnp.arange(2 * 81.0).reshape(2, 1, 9, 9)
    key = jax.random.PRNGKey(0)
    a = F.fractional_max_pool2d(x, 2, output_ratio=0.5, key=key)
    assert a.shape == (2, 1, 4, 4)
    assert jnp.array_equal(a, F.fractional_max_pool2d(x, 2, output_ratio=0.5, key=key))
    with pytest.raises(ValueError, match="fractional_max_pool2d: exactly one of output_size"):
        F.fractional_max_pool2d(x, 2, key=key)
