"""nn.functional pad, interpolate, grid_sample, affine_grid and shuffles against torch."""

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import torch.nn.functional as TF

import torsh_fn.nn.functional as F
from tests.oracle import assert_close, check_vs_torch, to_torch

TOL = {"rtol": 1e-5, "atol": 1e-5}


def _normal(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("mode, shape, pads", [
    ("constant", (2, 3, 5), (1, 2, -1, 3)), ("constant", (4, 5), (0, 0, 2, 1)),
    ("reflect", (2, 3, 5), (2, 4)), ("reflect", (2, 3, 5, 4), (1, 3, 2, 1)),
    ("replicate", (3, 5, 4), (2, 1, 0, 3)), ("replicate", (1, 2, 3, 4, 3), (1, 1, 2, 0, 1, 2)),
    ("circular", (2, 3, 5, 4), (1, 2, 3, 4)), ("circular", (2, 3, 5), (5, 1)),
])
def test_pad(mode, shape, pads, rng, variant):
    x = _normal(rng, *shape)
    kwargs = {"value": 1.5} if mode == "constant" else {}
    check_vs_torch(lambda x: F.pad(x, pads, mode, **kwargs),
                   lambda x: TF.pad(x, pads, mode, **kwargs), x, variant=variant, rng=rng)


def test_pad_errors():
    with pytest.raises(ValueError, match="pad: mode must be one of"):
        F.pad(jnp.zeros((2, 3)), (1, 1), "mirror")
    with pytest.raises(ValueError, match=r"pad: pad must have an even length"):
        F.pad(jnp.zeros((2, 3)), (1, 1, 1))
    with pytest.raises(ValueError, match="pad: reflect padding must be smaller than the padded"):
        F.pad(jnp.zeros((1, 2, 3)), (3, 0), "reflect")


INTERP_CASES = [  # mode, input shape, kwargs
    ("nearest", (2, 3, 7), {"size": 11}),
    ("nearest", (2, 3, 5, 6), {"scale_factor": (1.7, 0.6)}),
    ("nearest-exact", (2, 3, 5, 6), {"size": (9, 4)}),
    ("nearest", (1, 2, 3, 4, 5), {"scale_factor": 2}),
    ("linear", (2, 3, 7), {"size": 12, "align_corners": True}),
    ("linear", (2, 3, 7), {"scale_factor": 0.6}),
    ("bilinear", (2, 3, 5, 6), {"size": (9, 4)}),
    ("bilinear", (2, 3, 5, 6), {"scale_factor": 1.5, "align_corners": True}),
    ("bilinear", (2, 3, 5, 6), {"scale_factor": 1.5, "recompute_scale_factor": True}),
    ("bicubic", (2, 3, 5, 6), {"size": (8, 3)}),
    ("bicubic", (2, 3, 5, 6), {"size": (7, 9), "align_corners": True}),
    ("trilinear", (1, 2, 3, 4, 5), {"size": (5, 3, 7)}),
    ("area", (2, 3, 7, 6), {"size": (3, 4)}),
    ("bilinear", (2, 3, 13, 11), {"size": (5, 17), "antialias": True}),
    ("bicubic", (2, 3, 13, 11), {"scale_factor": 0.37, "antialias": True}),
]


@pytest.mark.parametrize("mode, shape, kwargs", INTERP_CASES)
def test_interpolate(mode, shape, kwargs, rng):
    x = _normal(rng, *shape)
    check_vs_torch(lambda x: F.interpolate(x, mode=mode, **kwargs),
                   lambda x: TF.interpolate(x, mode=mode, **kwargs), x, variant=jax.jit,
                   rng=rng, rtol=1e-4, atol=1e-5)


def test_interpolate_bf16_upsample_and_errors(rng):
    x = _normal(rng, 2, 3, 5, 6).astype(ml_dtypes.bfloat16)
    out = F.interpolate(jnp.asarray(x), size=(7, 8), mode="bilinear")
    assert out.dtype == jnp.bfloat16
    assert_close(out, TF.interpolate(to_torch(x), size=(7, 8), mode="bilinear"))
    xf = _normal(rng, 2, 3, 5, 6)
    with pytest.warns(UserWarning, match="upsample_bilinear is deprecated"):
        out = F.upsample_bilinear(jnp.asarray(xf), scale_factor=2)
    assert_close(out, TF.interpolate(to_torch(xf), scale_factor=2, mode="bilinear",
                                     align_corners=True), **TOL)
    with pytest.raises(ValueError, match=r"interpolate: mode='bilinear' expects input of rank 4"):
        F.interpolate(jnp.zeros((1, 2, 3)), size=4, mode="bilinear")
    with pytest.raises(ValueError, match="interpolate: align_corners can only be set"):
        F.interpolate(jnp.zeros((1, 2, 3)), size=4, align_corners=True)
    with pytest.raises(ValueError, match="interpolate: exactly one of size and scale_factor"):
        F.interpolate(jnp.zeros((1, 2, 3)))


GRID_CASES = [  # input shape, mode, padding_mode, align_corners
    ((2, 3, 5, 6), "bilinear", "zeros", False), ((2, 3, 5, 6), "bilinear", "border", True),
    ((2, 3, 5, 6), "bilinear", "reflection", False), ((2, 3, 5, 6), "nearest", "zeros", True),
    ((2, 3, 5, 6), "bicubic", "reflection", False), ((2, 3, 4, 3, 5), "bilinear", "zeros", True),
    ((2, 3, 4, 3, 5), "nearest", "reflection", False),
]


@pytest.mark.parametrize("shape, mode, padding_mode, align_corners", GRID_CASES)
def test_grid_sample(shape, mode, padding_mode, align_corners, rng):
    x = _normal(rng, *shape)
    nd = len(shape) - 2
    grid = rng.uniform(-1.4, 1.4, (*(2, 4, 7, 3)[:nd + 1], nd)).astype(np.float32)
    check_vs_torch(lambda x, g: F.grid_sample(x, g, mode, padding_mode, align_corners),
                   lambda x, g: TF.grid_sample(x, g, mode, padding_mode, align_corners),
                   x, grid, grad=[0] if mode == "nearest" else [0, 1], variant=jax.jit,
                   rng=rng, rtol=1e-4, atol=1e-4)


def test_grid_sample_errors():
    with pytest.raises(ValueError, match="grid_sample: mode='bicubic' needs 4-d input"):
        F.grid_sample(jnp.zeros((1, 1, 2, 2, 2)), jnp.zeros((1, 1, 1, 1, 3)), "bicubic")
    with pytest.raises(ValueError, match=r"grid_sample: expected input \(N, C, H, W\) with grid"):
        F.grid_sample(jnp.zeros((1, 1, 2, 2)), jnp.zeros((1, 1, 1, 3)))


@pytest.mark.parametrize("size", [(2, 3, 5, 4), (2, 3, 1, 4), (2, 1, 3, 4, 5)])
@pytest.mark.parametrize("align_corners", [False, True])
def test_affine_grid(size, align_corners, rng):
    theta = _normal(rng, 2, len(size) - 2, len(size) - 1)
    check_vs_torch(lambda t: F.affine_grid(t, size, align_corners),
                   lambda t: TF.affine_grid(t, size, align_corners), theta, variant=jax.jit,
                   rng=rng, **TOL)


def test_affine_grid_then_grid_sample_is_identity(rng):
    x = jnp.asarray(_normal(rng, 1, 2, 5, 7))
    grid = F.affine_grid(jnp.eye(2, 3)[None], x.shape, align_corners=False)
    assert_close(jax.jit(F.grid_sample)(x, grid), x, **TOL)


def test_shuffles(rng, variant):
    x = _normal(rng, 2, 12, 3, 5)
    check_vs_torch(lambda x: F.pixel_shuffle(x, 2), lambda x: TF.pixel_shuffle(x, 2), x,
                   variant=variant, rng=rng)
    check_vs_torch(lambda x: F.pixel_unshuffle(x, 3),
                   lambda x: TF.pixel_unshuffle(x, 3), _normal(rng, 2, 2, 6, 9),
                   variant=variant, rng=rng)
    check_vs_torch(lambda x: F.channel_shuffle(x, 3),
                   lambda x: TF.channel_shuffle(x, 3), x, variant=variant, rng=rng)
    with pytest.raises(ValueError, match=r"pixel_shuffle: expected input \(\*, C \* 2\*\*2"):
        F.pixel_shuffle(jnp.zeros((1, 6, 2, 2)), 2)


def test_under_vmap(rng):
    x = _normal(rng, 4, 2, 3, 5, 6)
    out = jax.jit(jax.vmap(lambda x: F.interpolate(x, size=(7, 4), mode="bilinear")))(
        jnp.asarray(x))
    assert_close(out[3], TF.interpolate(to_torch(x[3]), size=(7, 4), mode="bilinear"), **TOL)
    out = jax.vmap(lambda x: F.pad(x, (1, 2, 2, 1), "reflect"))(jnp.asarray(x))
    assert_close(out[1], TF.pad(to_torch(x[1]), (1, 2, 2, 1), "reflect"))
