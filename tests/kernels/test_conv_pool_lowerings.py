"""The conv and pooling lowerings that impl="auto" picks (patches x matrix, channels-last, taps)
against torch and against the lax references, values and gradients."""

import importlib

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import torch.nn.functional as TF

from tests.oracle import assert_close, check_vs_torch, to_torch
from torsh_fn.kernels._conv_lowering import conv_channels_last, conv_patches, prefers_patches
from torsh_fn.kernels._pool_cpu import max_pool_taps, sum_pool_taps
from torsh_fn.kernels.conv import conv, conv_reference
from torsh_fn.kernels.pooling import avg_pool, max_pool

TOL = {"rtol": 1e-4, "atol": 1e-4}
conv_module = importlib.import_module("torsh_fn.kernels.conv")  # the package re-exports conv()
pooling_module = importlib.import_module("torsh_fn.kernels.pooling")

CONV_CASES = [  # input shape, weight shape, stride, padding, dilation, groups
    ((2, 3, 11), (4, 3, 3), (2,), [(1, 1)], (1,), 1),
    ((2, 4, 13), (6, 2, 4), (3,), [(2, 1)], (2,), 2),
    ((2, 1, 9, 8), (5, 1, 3, 3), (1, 1), [(1, 1), (1, 1)], (1, 1), 1),
    ((2, 4, 7, 9), (6, 2, 3, 2), (2, 1), [(1, 0), (0, 2)], (1, 2), 2),
    ((1, 6, 5, 6), (6, 1, 3, 3), (1, 1), [(1, 1), (1, 1)], (1, 1), 6),
    ((2, 8, 1, 1), (4, 8, 3, 3), (1, 1), [(1, 1), (1, 1)], (1, 1), 1),
    ((2, 5, 2, 3), (7, 5, 3, 3), (2, 2), [(1, 1), (1, 1)], (1, 1), 1),
    ((3, 5, 6, 6), (4, 5, 1, 1), (2, 2), [(0, 0), (0, 0)], (1, 1), 1),
    ((2, 4, 5, 6, 5), (6, 2, 2, 3, 2), (2, 1, 2), [(1, 1)] * 3, (1, 1, 1), 2),
]
LOWERINGS = [conv_patches, conv_channels_last]


def _torch_conv(x, w, stride, padding, dilation, groups):
    pads = [p for pair in reversed(padding) for p in pair]  # F.pad wants the last dim first
    conv_nd = getattr(TF, f"conv{x.ndim - 2}d")
    return conv_nd(TF.pad(x, pads), w, stride=stride, dilation=dilation, groups=groups)


@pytest.mark.parametrize("lowering", LOWERINGS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_lowering_matches_torch(lowering, case, rng):
    x_shape, w_shape, stride, padding, dilation, groups = case
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    check_vs_torch(lambda x, w: lowering(x, w, stride, padding, dilation, groups),
                   lambda x, w: _torch_conv(x, w, stride, padding, dilation, groups),
                   x, w, rng=rng, variant=jax.jit, **TOL)


@pytest.mark.parametrize("lowering", LOWERINGS, ids=lambda f: f.__name__)
def test_conv_lowering_matches_reference_in_bfloat16(lowering, rng):
    x = jnp.asarray(rng.standard_normal((2, 3, 9, 7)), jnp.bfloat16)
    w = jnp.asarray(rng.standard_normal((4, 3, 3, 3)), jnp.bfloat16)
    args = ((2, 1), [(1, 1), (1, 0)], (1, 1))
    out = lowering(x, w, *args)
    assert out.dtype == jnp.bfloat16
    assert_close(out, conv_reference(x, w, *args), rtol=5e-2, atol=1e-1)


def test_conv_lowering_gradients_match_reference(rng):
    x = jnp.asarray(rng.standard_normal((3, 2, 6, 7)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((4, 2, 3, 2)), jnp.float32)
    args = ((1, 2), [(2, 1), (0, 1)], (2, 1))

    def loss(lowering):
        return lambda x, w: jnp.sum(jnp.tanh(lowering(x, w, *args)))

    expected = jax.grad(loss(conv_reference), (0, 1))(x, w)
    for lowering in LOWERINGS:
        for got, want in zip(jax.jit(jax.grad(loss(lowering), (0, 1)))(x, w), expected):
            assert_close(got, want, **TOL)


def test_auto_picks_patches_on_cpu_only_where_the_rule_says(monkeypatch):
    def spy(x, w, stride, padding, dilation, groups=1):
        calls.append(x.shape)
        return conv_reference(x, w, stride, padding, dilation, groups)

    monkeypatch.setattr(conv_module, "conv_patches", spy)
    same = [(1, 1), (1, 1)]
    cases = {  # x shape, w shape -> patches?
        ((8, 1, 28, 28), (32, 1, 3, 3)): True,  # a 9-element patch, 784 output positions
        ((8, 1, 8, 8), (32, 1, 3, 3)): False,
        ((8, 64, 2, 2), (64, 64, 3, 3)): True,  # 4 output positions
        ((8, 64, 4, 4), (64, 64, 3, 3)): False,
        ((8, 32, 14, 14), (64, 32, 3, 3)): False,
    }
    for (x_shape, w_shape), patches in cases.items():
        assert prefers_patches(x_shape, w_shape, (1, 1), same, (1, 1), 1) is patches
        calls = []
        conv(jnp.zeros(x_shape), jnp.zeros(w_shape), (1, 1), same, (1, 1))
        conv(jnp.zeros(x_shape), jnp.zeros(w_shape), (1, 1), same, (1, 1), impl="xla")
        assert calls == ([x_shape] if patches else [])
    assert not prefers_patches((8, 8, 4, 4), (8, 1, 3, 3), (1, 1), same, (1, 1), 8)


POOL_CASES = [  # input shape, kernel, padding, ceil_mode
    ((2, 3, 8, 8), (2, 2), (0, 0), False),
    ((2, 3, 7, 9), (2, 2), (1, 0), True),
    ((3, 9, 10), (3, 2), (1, 1), False),
    ((2, 2, 11), (3,), (1,), True),
    ((1, 2, 6, 5, 4), (2, 2, 2), (0, 1, 0), True),
]


def _torch_pool(kind, x, kernel, padding, ceil_mode):
    fn = getattr(TF, f"{kind}_pool{len(kernel)}d")
    return fn(x, kernel, kernel, padding, ceil_mode=ceil_mode)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("shape, kernel, padding, ceil_mode", POOL_CASES)
def test_pool_taps_match_torch(kind, shape, kernel, padding, ceil_mode, rng):
    x = rng.standard_normal(shape).astype(np.float32)
    nd = len(kernel)
    if kind == "max":
        fn = max_pool
        args = (kernel, kernel, padding, (1,) * nd, ceil_mode)
    else:
        fn = avg_pool
        args = (kernel, kernel, padding, ceil_mode)
    check_vs_torch(lambda x: fn(x, *args), lambda x: _torch_pool(kind, x, kernel, padding,
                                                                  ceil_mode),
                   x, rng=rng, variant=jax.jit, **TOL)


def test_max_pool_taps_gradient_goes_to_the_first_maximum_as_torch():
    x = np.array([[[[1.0, 3.0, 3.0, 0.0], [3.0, 2.0, 0.0, 0.0], [5.0, 5.0, 2.0, 4.0],
                    [5.0, 5.0, 4.0, 4.0]]]], np.float32)
    t = to_torch(x, requires_grad=True)
    TF.max_pool2d(t, 2).sum().backward()
    grad = jax.grad(lambda x: jnp.sum(max_pool(x, (2, 2), (2, 2), (0, 0), (1, 1))))(
        jnp.asarray(x))
    assert_close(grad, t.grad)
    reference = jax.grad(lambda x: jnp.sum(max_pool(x, (2, 2), (2, 2), (0, 0), (1, 1),
                                                    impl="xla")))(jnp.asarray(x))
    assert_close(grad, reference)


def test_pool_taps_overlapping_and_dilated_windows_match_references(rng):
    x = jnp.asarray(rng.standard_normal((2, 3, 9, 8)), jnp.float32)
    pads = [(1, 2), (1, 1)]
    got = max_pool_taps(x, (3, 3), (2, 2), pads, (2, 1))
    want = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 1, 3, 3), (1, 1, 2, 2),
                                 [(0, 0), (0, 0), *pads], window_dilation=(1, 1, 2, 1))
    assert_close(got, want)
    got = sum_pool_taps(x, (3, 2), (1, 2), pads)
    want = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, 1, 3, 2), (1, 1, 1, 2),
                                 [(0, 0), (0, 0), *pads])
    assert_close(got, want, **TOL)


def test_pool_auto_uses_taps_on_cpu_for_floats_with_kernel_equal_to_stride(monkeypatch, rng):
    calls = []
    monkeypatch.setattr(pooling_module, "max_pool_taps",
                        lambda *args: calls.append("max") or max_pool_taps(*args))
    x = jnp.asarray(rng.standard_normal((2, 3, 6, 6)), jnp.float32)
    max_pool(x, (2, 2), (2, 2), (0, 0), (1, 1))
    max_pool(x, (3, 3), (2, 2), (1, 1), (1, 1))
    max_pool(x, (2, 2), (2, 2), (0, 0), (1, 1), impl="xla")
    max_pool(x.astype(jnp.int32), (2, 2), (2, 2), (0, 0), (1, 1))
    assert calls == ["max"]


def test_pool_taps_bfloat16(rng):
    x = rng.standard_normal((2, 3, 8, 6)).astype(ml_dtypes.bfloat16)
    for kind, fn in [("max", max_pool), ("avg", avg_pool)]:
        args = ((2, 2), (2, 2), (0, 0)) + (((1, 1),) if kind == "max" else ())
        out = fn(jnp.asarray(x), *args)
        assert out.dtype == jnp.bfloat16
        expected = _torch_pool(kind, to_torch(x), (2, 2), (0, 0), False)
        assert_close(out, expected, rtol=2e-2, atol=2e-2)
