"""nn.functional convolutions, unfold and fold against torch.nn.functional."""

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import torch.nn.functional as TF

import torsh_fn.nn.functional as F
from tests.oracle import assert_close, check_vs_torch, to_torch

TOL = {"rtol": 1e-4, "atol": 1e-4}


def _normal(rng, *shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


CONV_CASES = [  # nd, input spatial, kernel, kwargs
    (1, (11,), (3,), {"stride": 2, "padding": 1, "dilation": 1, "groups": 1}),
    (1, (9,), (4,), {"padding": "same", "dilation": 2, "groups": 2}),
    (2, (7, 9), (3, 2), {"stride": (2, 1), "padding": (1, 0), "dilation": (1, 2), "groups": 2}),
    (2, (8, 7), (3, 3), {"padding": "valid"}),
    (2, (6, 5), (2, 4), {"padding": "same"}),
    (3, (5, 6, 5), (2, 3, 2), {"stride": 2, "padding": 1, "groups": 1}),
]


def _check_conv(name, weight_channels, spatial, kernel, kwargs, rng, variant):
    """``F.<name>`` against ``TF.<name>``, values and gradients, on a random input
    (2, 4, *spatial), weight (*weight_channels, *kernel) and bias (6,)."""
    x = _normal(rng, 2, 4, *spatial)
    w = _normal(rng, *weight_channels, *kernel)
    b = _normal(rng, 6)
    check_vs_torch(lambda x, w, b: getattr(F, name)(x, w, b, **kwargs),
                   lambda x, w, b: getattr(TF, name)(x, w, b, **kwargs), x, w, b,
                   variant=variant, rng=rng, **TOL)


@pytest.mark.parametrize("nd, spatial, kernel, kwargs", CONV_CASES)
def test_conv(nd, spatial, kernel, kwargs, rng, variant):
    groups = kwargs.get("groups", 1)
    _check_conv(f"conv{nd}d", (6, 4 // groups), spatial, kernel, kwargs, rng, variant)


def test_conv_unbatched_bf16_and_vmap(rng):
    x, w = _normal(rng, 3, 7, 6), _normal(rng, 5, 3, 3, 3)
    check_vs_torch(F.conv2d, TF.conv2d, x, w, **TOL)
    xb, wb = x.astype(ml_dtypes.bfloat16), w.astype(ml_dtypes.bfloat16)
    out = F.conv2d(jnp.asarray(xb), jnp.asarray(wb), padding=1)
    assert out.dtype == jnp.bfloat16
    assert_close(out, TF.conv2d(to_torch(xb), to_torch(wb), padding=1), rtol=5e-2, atol=1e-1)
    xs = _normal(rng, 4, 2, 3, 7, 6)
    out = jax.vmap(lambda x: F.conv2d(x, jnp.asarray(w), stride=2))(jnp.asarray(xs))
    assert_close(out[1], TF.conv2d(to_torch(xs[1]), to_torch(w), stride=2), **TOL)


TRANSPOSE_CASES = [  # nd, input spatial, kernel, kwargs
    (1, (7,), (3,), {"stride": 2, "padding": 1, "output_padding": 1}),
    (1, (6,), (2,), {"stride": 3, "padding": 2, "groups": 2, "dilation": 2}),
    (2, (5, 6), (3, 2), {"stride": (2, 3), "padding": (1, 0), "output_padding": (1, 2)}),
    (2, (4, 5), (3, 3), {"stride": 1, "padding": 3, "groups": 2, "dilation": (1, 2)}),
    (3, (3, 4, 3), (2, 3, 2), {"stride": 2, "padding": (0, 1, 0), "output_padding": 1}),
]


@pytest.mark.parametrize("nd, spatial, kernel, kwargs", TRANSPOSE_CASES)
def test_conv_transpose(nd, spatial, kernel, kwargs, rng):
    groups = kwargs.get("groups", 1)
    _check_conv(f"conv_transpose{nd}d", (4, 6 // groups), spatial, kernel, kwargs, rng, jax.jit)


def test_conv_errors():
    x = jnp.zeros((2, 5, 7, 7))
    with pytest.raises(ValueError, match=r"conv2d: expected input of rank 3 \(unbatched\) or 4 "
                                         r"\(batched\), got shape \(7, 7\)"):
        F.conv2d(jnp.zeros((7, 7)), jnp.zeros((3, 5, 3, 3)))
    with pytest.raises(ValueError, match=r"conv2d: input has 5 channels, but weight "
                                         r"\(3, 3, 3, 3\) expects 6"):
        F.conv2d(x, jnp.zeros((3, 3, 3, 3)), groups=2)
    with pytest.raises(ValueError, match="conv2d: padding='same' needs stride 1"):
        F.conv2d(x, jnp.zeros((3, 5, 3, 3)), stride=2, padding="same")
    with pytest.raises(ValueError, match="conv1d: padding must be 'same', 'valid'"):
        F.conv1d(jnp.zeros((1, 2, 5)), jnp.zeros((3, 2, 3)), padding="full")
    with pytest.raises(ValueError, match=r"conv2d: bias must have shape \(3,\), got \(4,\)"):
        F.conv2d(x, jnp.zeros((3, 5, 3, 3)), jnp.zeros(4))
    with pytest.raises(ValueError, match="conv_transpose2d: output_padding must be smaller"):
        F.conv_transpose2d(x, jnp.zeros((5, 3, 3, 3)), stride=2, output_padding=2)
    with pytest.raises(ValueError, match="conv3d: stride must be an int or 3 ints"):
        F.conv3d(jnp.zeros((1, 1, 4, 4, 4)), jnp.zeros((1, 1, 2, 2, 2)), stride=(1, 2))


def test_unfold_fold(rng, variant):
    x = _normal(rng, 2, 3, 7, 8)
    args = {"kernel_size": (2, 3), "dilation": (2, 1), "padding": 1, "stride": (2, 3)}
    check_vs_torch(lambda x: F.unfold(x, **args), lambda x: TF.unfold(x, **args), x,
                   variant=variant, rng=rng)
    cols = _normal(rng, 2, 3 * 6, 12)
    check_vs_torch(lambda c: F.fold(c, (7, 8), **args), lambda c: TF.fold(c, (7, 8), **args),
                   cols, variant=variant, rng=rng)
    check_vs_torch(lambda c: F.fold(c, 5, 2), lambda c: TF.fold(c, 5, 2), _normal(rng, 8, 16),
                   variant=variant, rng=rng)
    with pytest.raises(ValueError, match=r"fold: expected input of shape \(N, C \* 4, 16\)"):
        F.fold(jnp.zeros((1, 8, 15)), 5, 2)


def test_conv_tbc(rng, variant):
    x, w, b = _normal(rng, 9, 2, 4), _normal(rng, 3, 4, 5), _normal(rng, 5)
    check_vs_torch(lambda x, w, b: F.conv_tbc(x, w, b, 1), lambda x, w, b: TF.conv_tbc(x, w, b, 1),
                   x, w, b, variant=variant, rng=rng, **TOL)
