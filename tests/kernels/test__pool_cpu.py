"""``_pool_cpu``: pooling as elementwise work over the window's taps or over a blocked view (what
``max_pool`` / ``avg_pool`` with ``impl="auto"`` take on the CPU for kernel == stride) against
torch and ``reduce_window``, values and gradients, ties and bfloat16."""

import importlib

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import torch.nn.functional as TF

from tests.oracle import assert_close, check_vs_torch, to_torch
from torsh_fn.kernels._pool_cpu import (
    max_pool_blocks,
    max_pool_taps,
    sum_pool_blocks,
    sum_pool_taps,
)
from torsh_fn.kernels.pooling import avg_pool, max_pool

TOL = {"rtol": 1e-4, "atol": 1e-4}
pooling_module = importlib.import_module("torsh_fn.kernels.pooling")

POOL_CASES = [  # input shape, kernel, padding, ceil_mode; the first six as blocks
    ((2, 3, 8, 8), (2, 2), (0, 0), False),
    ((2, 3, 7, 9), (2, 2), (0, 0), False),  # a tail row and column dropped
    ((3, 9, 10), (3, 2), (0, 0), False),
    ((2, 2, 11), (3,), (0,), False),
    ((1, 2, 6, 5, 4), (2, 2, 2), (0, 0, 0), False),
    ((2, 3, 8, 6), (2, 2), (0, 0), True),  # ceil mode with nothing to add
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


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the CPU's choice of lowering")
def test_pool_auto_on_cpu_uses_blocks_or_taps_for_floats(monkeypatch, rng):
    calls = []
    for name, fn in [("max_pool_blocks", max_pool_blocks), ("max_pool_taps", max_pool_taps),
                     ("sum_pool_blocks", sum_pool_blocks), ("sum_pool_taps", sum_pool_taps)]:
        monkeypatch.setattr(pooling_module, name,
                            lambda *args, name=name, fn=fn: calls.append(name) or fn(*args))
    x = jnp.asarray(rng.standard_normal((2, 3, 7, 6)), jnp.float32)
    max_pool(x, (2, 2), (2, 2), (0, 0), (1, 1))
    max_pool(x, (2, 2), (2, 2), (1, 1), (1, 1))
    max_pool(x, (2, 2), (2, 2), (0, 0), (1, 1), ceil_mode=True)  # 7 rows: a window into padding
    max_pool(x, (3, 3), (2, 2), (1, 1), (1, 1))
    max_pool(x, (5, 5), (1, 1), (2, 2), (1, 1))  # 25 elements: XLA
    max_pool(x, (2, 2), (2, 2), (0, 0), (1, 1), impl="xla")
    max_pool(x.astype(jnp.int32), (2, 2), (2, 2), (0, 0), (1, 1))
    avg_pool(x, (2, 3), (2, 3), (0, 0))
    avg_pool(x, (2, 3), (2, 3), (1, 0))
    assert calls == ["max_pool_blocks", "max_pool_taps", "max_pool_taps", "max_pool_taps",
                     "sum_pool_blocks", "sum_pool_taps"]


OVERLAP_CASES = [  # input shape, kernel, stride, padding, ceil_mode
    ((2, 3, 16, 16), (3, 3), (2, 2), (1, 1), False),  # ResNet's stem pool
    ((2, 3, 9, 11), (3, 2), (2, 1), (1, 0), True),
    ((2, 3, 10), (4,), (3,), (2,), True),
]


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("shape, kernel, stride, padding, ceil_mode", OVERLAP_CASES)
def test_pool_auto_overlapping_windows_match_torch(kind, shape, kernel, stride, padding,
                                                   ceil_mode, rng):
    x = rng.standard_normal(shape).astype(np.float32)
    x[..., 1] = x[..., 2]  # ties inside overlapping windows
    nd = len(kernel)
    torch_fn = getattr(TF, f"{kind}_pool{nd}d")
    if kind == "max":
        ours = lambda x: max_pool(x, kernel, stride, padding, (1,) * nd, ceil_mode)
    else:
        ours = lambda x: avg_pool(x, kernel, stride, padding, ceil_mode)
    check_vs_torch(ours, lambda x: torch_fn(x, kernel, stride, padding, ceil_mode=ceil_mode),
                   x, rng=rng, variant=jax.jit, **TOL)


@pytest.mark.parametrize("shape, kernel", [((2, 3, 9, 7), (2, 2)), ((2, 4, 10), (3,)),
                                           ((1, 2, 4, 6, 5), (2, 3, 2))])
def test_pool_blocks_match_taps_with_ties(shape, kernel, rng):
    """Values drawn from a few levels, so most windows hold several maxima."""
    x = jnp.asarray(rng.integers(0, 3, shape), jnp.float32)
    nd = len(kernel)
    out = [n // k for n, k in zip(shape[-nd:], kernel)]
    pads = [(0, 0)] * nd  # the taps' floor mode drops the same tail
    for blocks, taps in [
        (lambda z: max_pool_blocks(z, kernel),
         lambda z: max_pool_taps(z, kernel, kernel, pads, (1,) * nd)),
        (lambda z: sum_pool_blocks(z, kernel), lambda z: sum_pool_taps(z, kernel, kernel, pads)),
    ]:
        assert blocks(x).shape[-nd:] == tuple(out)
        assert_close(blocks(x), taps(x))
        g = jnp.asarray(rng.standard_normal((*shape[:-nd], *out)), jnp.float32)
        grad_blocks = jax.jit(lambda z, c, f=blocks: jax.vjp(f, z)[1](c)[0])(x, g)
        assert_close(grad_blocks, jax.vjp(taps, x)[1](g)[0])


def test_pool_taps_bfloat16(rng):
    x = rng.standard_normal((2, 3, 8, 6)).astype(ml_dtypes.bfloat16)
    for kind, fn in [("max", max_pool), ("avg", avg_pool)]:
        args = ((2, 2), (2, 2), (0, 0)) + (((1, 1),) if kind == "max" else ())
        out = fn(jnp.asarray(x), *args)
        assert out.dtype == jnp.bfloat16
        expected = _torch_pool(kind, to_torch(x), (2, 2), (0, 0), False)
        assert_close(out, expected, rtol=2e-2, atol=2e-2)
