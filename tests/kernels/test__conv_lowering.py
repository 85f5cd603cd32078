"""``_conv_lowering``: the convolution lowerings that ``conv(impl="auto")`` picks (patches times a
matrix on the CPU, channels-last on a GPU) against torch and the lax reference, values and
gradients, with ``conv_bias_act``'s epilogue too (and that it adds no pass where the lowering
ends in a transpose), and the CPU rule."""

import importlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch.nn.functional as TF

from tests.oracle import assert_close, check_vs_torch
from torsh_fn.kernels._conv_lowering import conv_channels_last, conv_patches, prefers_patches
from torsh_fn.kernels.conv import _bias_act, conv, conv_reference

TOL = {"rtol": 1e-4, "atol": 1e-4}
conv_module = importlib.import_module("torsh_fn.kernels.conv")  # the package re-exports conv()
lowering_module = importlib.import_module("torsh_fn.kernels._conv_lowering")


@pytest.fixture(autouse=True)
def _full_float32_matmuls():
    """These lowerings are the CPU's, where float32 products are exact float32; on a GPU (their
    tests run there too) JAX's default would be TF32, beyond these tolerances."""
    with jax.default_matmul_precision("highest"):
        yield


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


def _check_lowering_vs_torch(lowering, case, rng):
    x_shape, w_shape, stride, padding, dilation, groups = case
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    check_vs_torch(lambda x, w: lowering(x, w, stride, padding, dilation, groups),
                   lambda x, w: _torch_conv(x, w, stride, padding, dilation, groups),
                   x, w, rng=rng, variant=jax.jit, **TOL)


@pytest.mark.parametrize("lowering", LOWERINGS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_lowering_matches_torch(lowering, case, rng):
    _check_lowering_vs_torch(lowering, case, rng)


@pytest.mark.parametrize("per_image_above", [0, 10**9], ids=["per-image", "batch-wide"])
@pytest.mark.parametrize("case", [c for c in CONV_CASES if c[-1] == 1])
def test_conv_patches_both_product_layouts_match_torch(per_image_above, case, rng, monkeypatch):
    """Ungrouped patches are multiplied image by image above PER_IMAGE_POSITIONS output positions
    and over the whole batch below it: both layouts on every ungrouped case."""
    monkeypatch.setattr(lowering_module, "PER_IMAGE_POSITIONS", per_image_above)
    _check_lowering_vs_torch(conv_patches, case, rng)


LAYOUTS = pytest.mark.parametrize(
    "lowering, per_image_above",
    [(conv_patches, 0), (conv_patches, 10**9), (conv_channels_last, 0)],
    ids=["patches-per-image", "patches-batch-wide", "channels-last"])


@LAYOUTS
@pytest.mark.parametrize("case", [CONV_CASES[1], CONV_CASES[3], CONV_CASES[6]])
def test_conv_lowering_applies_the_epilogue(lowering, case, per_image_above, rng, monkeypatch):
    """``conv_bias_act``'s bias and GELU, applied in each lowering's own layout (channels last;
    the patches' per-image (N, C, positions) or batch-wide (C, N, ...) products), match torch's
    convolution with a bias followed by GELU, in values and gradients."""
    monkeypatch.setattr(lowering_module, "PER_IMAGE_POSITIONS", per_image_above)
    x_shape, w_shape, stride, padding, dilation, groups = case
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32)
    check_vs_torch(
        lambda x, w, b: lowering(x, w, stride, padding, dilation, groups, _bias_act(b, "gelu")),
        lambda x, w, b: TF.gelu(_torch_conv(x, w, stride, padding, dilation, groups)
                                + b.reshape(-1, *[1] * (x.ndim - 2))),
        x, w, b, rng=rng, variant=jax.jit, **TOL)


def _passes(fn, *args) -> int:
    """Fusions and other ops that write an array, in the CPU program XLA compiles for ``fn``."""
    text = jax.jit(fn).lower(*args).compile().as_text()
    entry = text[text.index("ENTRY"):]
    ops = re.findall(r"= \S+ ([\w-]+)\(", entry[:entry.index("\n}")])
    return sum(op not in ("parameter", "constant", "bitcast", "tuple", "get-tuple-element")
               for op in ops)


@pytest.mark.parametrize("lowering, per_image_above",
                         [(conv_patches, 10**9), (conv_channels_last, 0)],
                         ids=["patches-batch-wide", "channels-last"])
def test_epilogue_adds_no_pass_where_the_lowering_ends_in_a_transpose(lowering, per_image_above,
                                                                     monkeypatch):
    """The bias and activation join the transpose back to NCHW: the compiled CPU program has as
    many passes as the convolution alone. (On a GPU XLA may give GELU's erf a pass of its own;
    ``benchmarks/conv.py --only epilogue`` times that.)"""
    if jax.default_backend() != "cpu":
        pytest.skip("a property of XLA's CPU fusion")
    monkeypatch.setattr(lowering_module, "PER_IMAGE_POSITIONS", per_image_above)
    x, w, b = jnp.ones((4, 8, 10, 9)), jnp.ones((16, 8, 3, 3)), jnp.ones(16)
    args = ((1, 1), [(1, 1), (1, 1)], (1, 1), 1)
    plain = _passes(lambda x, w: lowering(x, w, *args), x, w)
    for act in ("relu", "gelu"):
        def fused(x, w, b, act=act):
            return lowering(x, w, *args, _bias_act(b, act))

        assert _passes(fused, x, w, b) == plain


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
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")  # the CPU's rule, on any host
    def spy(x, w, stride, padding, dilation, groups=1):
        calls.append(x.shape)
        return conv_reference(x, w, stride, padding, dilation, groups)

    monkeypatch.setattr(conv_module, "conv_patches", spy)
    same = [(1, 1), (1, 1)]
    cases = {  # x shape, w shape -> patches?
        ((8, 1, 28, 28), (32, 1, 3, 3)): True,  # a 9-element patch, 784 output positions
        ((8, 3, 9, 9), (32, 3, 3, 3)): True,  # 27 elements (RGB), 81 positions
        ((8, 1, 8, 8), (32, 1, 3, 3)): True,  # 64 positions
        ((8, 1, 7, 7), (32, 1, 3, 3)): False,  # a small patch but only 49 positions
        ((8, 64, 2, 2), (64, 64, 3, 3)): True,  # 4 output positions
        ((8, 512, 1, 1), (512, 512, 3, 3)): True,
        ((8, 64, 2, 2), (64, 64, 1, 1)): False,  # a 1x1 kernel: a product for XLA too
        ((64, 32, 8, 8), (64, 32, 3, 3)): False,  # 64 positions
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
