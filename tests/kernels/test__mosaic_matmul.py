"""The Mosaic GPU matmul: on the CPU its lowering, what it refuses, its tile walk, the float32
path's split into TF32 halves and its operands' layout, and which launches ``_pallas_matmul``
hands it; on a Hopper GPU its products, epilogues and gradients
against the HIGHEST-precision reference, on shapes that its tiles do not divide."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.kernels.pallas_helpers import TOL, check_fwd_and_grad_jit, normal, rel_err
from torsh_fn.kernels import _mosaic_matmul, _pallas_matmul
from torsh_fn.kernels._mosaic_matmul import (
    MosaicMatmulConfig,
    _tf32_halves,
    _tile_origin,
    mosaic_matmul,
    mosaic_matmul_can,
)
from torsh_fn.kernels._pallas_common import on_hopper
from torsh_fn.kernels._pallas_matmul import MatmulConfig, MatmulStatic, _Operands, matmul_pallas3
from torsh_fn.kernels.bias_act import _act
from torsh_fn.kernels.matmul import matmul_reference

hopper = pytest.mark.skipif(not on_hopper(), reason="needs a Hopper GPU (wgmma, TMA)")
BF16 = jnp.bfloat16


def _stored(shape, transposed: bool):
    """A (batch, rows, cols) operand's shape as stored: its last two dims swapped if read
    transposed."""
    return (shape[0], shape[2], shape[1]) if transposed else shape


def _lowered(a_shape, b_shape, dtype=BF16, with_bias=False, **kwargs) -> str:
    args = [jax.ShapeDtypeStruct(a_shape, dtype), jax.ShapeDtypeStruct(b_shape, dtype)]
    if with_bias:
        n = b_shape[1] if kwargs.get("trans_b") else b_shape[2]
        args.append(jax.ShapeDtypeStruct((n,), dtype))
    call = jax.jit(functools.partial(mosaic_matmul, **kwargs))
    traced = call.trace(*args)
    m = a_shape[2] if kwargs.get("trans_a") else a_shape[1]
    n = b_shape[1] if kwargs.get("trans_b") else b_shape[2]
    assert traced.out_info.shape == (max(a_shape[0], b_shape[0]), m, n)
    assert traced.out_info.dtype == dtype
    return traced.lower(lowering_platforms=("cuda",)).as_text()


@pytest.mark.parametrize("trans_a, trans_b", list(itertools.product([False, True], repeat=2)))
def test_lowers_with_either_operand_transposed(trans_a, trans_b):
    # (M, K, N) = (448, 320, 448): no tile divides M or N; B shared by both batch entries
    text = _lowered(_stored((2, 448, 320), trans_a), _stored((1, 320, 448), trans_b),
                    trans_a=trans_a, trans_b=trans_b)
    assert "mosaic_gpu" in text


@pytest.mark.parametrize("act", [None, "relu", "gelu", "gelu_tanh", "silu"])
def test_lowers_each_epilogue(act):
    assert "mosaic_gpu" in _lowered((1, 256, 192), (1, 192, 320), jnp.float16, with_bias=True,
                                    act=act)


@pytest.mark.parametrize("config", [MosaicMatmulConfig(block_m=256, block_n=128, stages=3),
                                    MosaicMatmulConfig(block_n=128, epilogue_n=128, ctas=3),
                                    MosaicMatmulConfig(block_n=128, flush_steps=3)])
def test_lowers_other_tiles(config):
    assert "mosaic_gpu" in _lowered((1, 512, 256), (1, 256, 512), config=config)


@pytest.mark.parametrize("dtype, config", [(BF16, None),
                                           (jnp.float16, MosaicMatmulConfig(block_n=192)),
                                           (jnp.float32, None)])
def test_lowers_with_the_pre_activation(dtype, config):
    """``save_preact``: the output and the pre-activation, both (batch, M, N) in the inputs'
    dtype; 192-column tiles store three slices of each, through buffers that alternate over
    the CTA's tiles."""
    a, b = jax.ShapeDtypeStruct((2, 448, 320), dtype), jax.ShapeDtypeStruct((1, 320, 576), dtype)
    call = jax.jit(functools.partial(mosaic_matmul, act="gelu", config=config, save_preact=True))
    traced = call.trace(a, b, jax.ShapeDtypeStruct((576,), dtype))
    for info in traced.out_info:
        assert info.shape == (2, 448, 576) and info.dtype == dtype
    assert "mosaic_gpu" in traced.lower(lowering_platforms=("cuda",)).as_text()


def test_a_differentiated_16_bit_epilogue_runs_on_mosaic_only(monkeypatch):
    """On Hopper, a bf16 ``matmul_bias_act`` under ``grad`` lowers to Mosaic GPU kernels alone:
    the forward saving its pre-activation and the backward's two products."""
    monkeypatch.setattr(_pallas_matmul, "on_hopper", lambda: True)
    args = [jax.ShapeDtypeStruct(shape, BF16) for shape in ((1, 448, 320), (1, 320, 576),
                                                            (576,))]

    def loss(*x):
        return matmul_pallas3(*x, MatmulStatic("gelu", None)).astype(jnp.float32).sum()

    text = jax.jit(jax.grad(loss, argnums=(0, 1, 2))).trace(*args).lower(
        lowering_platforms=("cuda",)).as_text()
    assert "matmul_gelu_mosaic" in text and "matmul_mosaic" in text and "triton" not in text


@pytest.mark.parametrize("trans_a, trans_b", list(itertools.product([False, True], repeat=2)))
def test_float32_lowers_for_any_shape_and_layout(trans_a, trans_b):
    # (M, K, N) = (201, 77, 99): no dimension on whole (8, 32) tiles; a bias and an activation
    text = _lowered(_stored((2, 201, 77), trans_a), _stored((1, 77, 99), trans_b), jnp.float32,
                    with_bias=True, act="gelu", trans_a=trans_a, trans_b=trans_b)
    assert "mosaic_gpu" in text


@pytest.mark.parametrize("a_shape, b_shape, dtype, kwargs, match", [
    ((1, 64, 64), (1, 64, 64), jnp.int8, {}, "bfloat16, float16 or float32, got int8"),
    ((1, 64, 64), (1, 64, 64), jnp.float32, {"config": MosaicMatmulConfig()},
     "block_k must be 32 for float32"),
    ((1, 64, 64), (1, 128, 64), BF16, {}, "do not share K"),
    ((2, 64, 64), (3, 64, 64), BF16, {}, "do not broadcast"),
    ((1, 64, 96), (1, 96, 64), BF16, {}, "a's stored matrices .* got 64x96"),
    ((1, 64, 64), (1, 64, 100), BF16, {}, "b's stored matrices .* got 64x100"),
    ((1, 64, 60), (1, 64, 64), BF16, {"trans_a": True}, "a's stored matrices .* got 64x60"),
    ((1, 12, 64), (1, 64, 64), BF16, {}, "a's stored matrices .* got 12x64"),
    ((1, 64, 64), (1, 64, 64), BF16, {"config": MosaicMatmulConfig(block_k=32)},
     "block_k must be 64 for bfloat16"),
    ((1, 64, 64), (1, 64, 64), BF16, {"config": MosaicMatmulConfig(block_n=96)}, "block_n"),
    ((1, 64, 64), (1, 64, 64), BF16, {"config": MosaicMatmulConfig(block_m=64)}, "block_m"),
    ((1, 64, 64), (1, 64, 64), BF16, {"config": MosaicMatmulConfig(stages=0)}, "at least 1"),
    ((1, 64, 64), (1, 64, 64), BF16, {"config": MosaicMatmulConfig(flush_steps=0)}, "at least 1"),
    ((1, 64, 64), (1, 64, 64), BF16, {"config": MosaicMatmulConfig(ctas=0)}, "at least 1"),
    ((1, 64, 64), (1, 64, 64), BF16, {"config": MosaicMatmulConfig(epilogue_n=96)},
     "epilogue_n"),
])
def test_refuses_what_it_does_not_take(a_shape, b_shape, dtype, kwargs, match):
    a, b = jnp.zeros(a_shape, dtype), jnp.zeros(b_shape, dtype)
    can_kwargs = {"trans_a": False, "trans_b": False, **kwargs}
    assert not mosaic_matmul_can(a_shape, b_shape, dtype, dtype, **can_kwargs)
    with pytest.raises(ValueError, match=f"mosaic_matmul: .*{match}"):
        mosaic_matmul(a, b, **kwargs)


def test_refuses_another_output_dtype_a_mixed_pair_or_a_bias_of_the_wrong_shape():
    a = jnp.zeros((1, 64, 64), BF16)
    assert mosaic_matmul_can(a.shape, a.shape, BF16, BF16, trans_a=False, trans_b=False)
    assert not mosaic_matmul_can(a.shape, a.shape, BF16, jnp.float32, trans_a=False,
                                 trans_b=False)
    with pytest.raises(ValueError, match="share their dtype, got bfloat16 and float16"):
        mosaic_matmul(a, a.astype(jnp.float16))
    with pytest.raises(ValueError, match=r"bias must be \(64,\) bfloat16, got \(32,\)"):
        mosaic_matmul(a, a, jnp.zeros((32,), BF16))


@pytest.mark.parametrize("batches, grid_m, grid_n, group_m", [(1, 5, 3, 2), (2, 3, 4, 8),
                                                              (3, 1, 7, 4)])
def test_the_walk_takes_every_tile_once_in_groups_of_tile_rows(batches, grid_m, grid_n,
                                                               group_m):
    tiles = jnp.arange(batches * grid_m * grid_n)
    origin = jax.vmap(functools.partial(_tile_origin, grid_m=grid_m, grid_n=grid_n,
                                        group_m=group_m))
    batch, row, col = (np.asarray(x) for x in origin(tiles))
    assert sorted(zip(batch, row, col)) == list(itertools.product(
        range(batches), range(grid_m), range(grid_n)))
    assert (np.diff(batch) >= 0).all()  # batches one after another
    # within a batch: group_m tile rows at a time, each of their columns before the next
    per_batch, width = grid_m * grid_n, group_m * grid_n
    for first in range(0, batches * per_batch, per_batch):
        for start in range(0, per_batch, width):
            group = slice(first + start, first + min(start + width, per_batch))
            first_row = start // grid_n
            assert set(row[group]) == set(range(first_row, min(first_row + group_m, grid_m)))
            assert (np.diff(col[group]) >= 0).all()


def test_tf32_halves_are_tf32_and_add_up_to_float32_class_accuracy(rng):
    x = np.concatenate([rng.standard_normal(997) * 10.0 ** rng.integers(-30, 30, 997),
                        [3.4028235e38, -3.4028235e38, 1e-45, 0.0, -0.0]]).astype(np.float32)
    hi, lo = (np.asarray(h) for h in _tf32_halves(jnp.asarray(x)))
    for half in (hi, lo):  # TF32: the 13 low mantissa bits are zero, what wgmma would drop
        assert not (half.view(np.uint32) & 0x1FFF).any()
    exact, err = x.astype(np.float64), np.abs(hi.astype(np.float64) + lo - x)
    assert np.isfinite(hi).all() and np.isfinite(lo).all()
    tiny = np.finfo(np.float32).tiny  # subnormals may flush to zero (TF32 tensor cores do)
    assert (err <= np.abs(exact) * 2.0**-22 + tiny).all(), err.max()
    assert (np.abs(hi - exact) <= np.abs(exact) * 2.0**-11 + tiny).all()  # hi is the nearest
    hi, lo = (np.asarray(h) for h in _tf32_halves(jnp.asarray([np.inf, -np.inf, np.nan],
                                                                np.float32)))
    assert np.isposinf(hi[0]) and np.isneginf(hi[1]) and np.isnan(hi[2])
    assert (lo == 0).all()  # the rest of what is not finite is zero: no inf - inf


@pytest.mark.parametrize("trans_a, trans_b", list(itertools.product([False, True], repeat=2)))
def test_float32_operands_laid_out_for_three_tf32_products(monkeypatch, rng, trans_a, trans_b):
    """What the float32 path hands the kernel, multiplied on the CPU in float64 (the kernel is
    swapped for that product): A (M, 3K) and B (N, 3K) on whole (8, 32) tiles, and the result
    cut back to (M, N); the three products of the halves are float32-class."""
    def kernel_in_float64(a, b, bias, *, trans_a, trans_b, act, config):
        assert (trans_a, trans_b) == (False, True) and config.block_k == 32
        assert a.shape[1] % 8 == 0 and a.shape[2] % 32 == 0 and b.shape[1] % 32 == 0
        z = np.einsum("bmk,bnk->bmn", np.asarray(a, np.float64), np.asarray(b, np.float64))
        z = z + (0 if bias is None else np.asarray(bias, np.float64))
        return _act(jnp.asarray(z, jnp.float32), act)

    monkeypatch.setattr(_mosaic_matmul, "_kernel_call", kernel_in_float64)
    a = normal(rng, _stored((2, 201, 77), trans_a), jnp.float32)
    b = normal(rng, _stored((1, 77, 99), trans_b), jnp.float32)
    bias = normal(rng, (99,), jnp.float32)
    out = mosaic_matmul.__wrapped__(a, b, bias, trans_a=trans_a, trans_b=trans_b, act="silu")
    want = _reference(a, b, bias, "silu", trans_a, trans_b)
    assert out.shape == (2, 201, 99) and out.dtype == jnp.float32
    assert rel_err(out, want) < 1e-6


def test_pallas_matmul_hands_it_only_what_it_takes(monkeypatch):
    monkeypatch.setattr(_pallas_matmul, "on_hopper", lambda: True)
    a = jnp.zeros((1, 64, 128), BF16)
    plain = _Operands(False, False, True, True, False, None, False)
    takes = _pallas_matmul._mosaic_takes
    assert takes(a, a.mT, plain, None, BF16)
    assert not takes(a, a.mT, plain, MatmulConfig(), BF16)  # a Triton config asked for
    assert takes(a, a.mT, plain._replace(act="gelu", save_preact=True), None, BF16)
    assert not takes(a, a.mT, plain, None, jnp.float32)  # a gradient still to be summed
    assert not takes(a[:, :, :100], a[:, :100].mT, plain, None, BF16)  # K = 100
    f32 = a[:, :, :100].astype(jnp.float32)  # float32: any shape, the pre-activation too
    assert takes(f32, f32.mT, plain, None, jnp.float32)
    assert takes(f32, f32.mT, plain._replace(act="gelu", save_preact=True), None, jnp.float32)
    assert not takes(f32, f32.mT, plain, MatmulConfig(), jnp.float32)
    monkeypatch.setattr(_pallas_matmul, "on_hopper", lambda: False)
    assert not takes(a, a.mT, plain, None, BF16)


def _reference(a, b, bias, act, trans_a, trans_b):
    a, b = (a.mT if trans_a else a), (b.mT if trans_b else b)
    out = matmul_reference(a, b, bias, act)
    return jnp.broadcast_to(out, (max(a.shape[0], b.shape[0]), *out.shape[1:]))


@pytest.mark.gpu
@hopper
@pytest.mark.parametrize("trans_a, trans_b", list(itertools.product([False, True], repeat=2)))
@pytest.mark.parametrize("config", [MosaicMatmulConfig(), MosaicMatmulConfig(ctas=3),
                                    MosaicMatmulConfig(block_m=256, block_n=128, stages=3)])
def test_matches_reference(rng, trans_a, trans_b, config):
    # (M, K, N) = (448, 1216, 448): ragged tiles in M and N, 19 steps of K; 3 CTAs walk 8 tiles
    a = normal(rng, _stored((1, 448, 1216), trans_a), BF16)
    b = normal(rng, _stored((1, 1216, 448), trans_b), BF16)
    out = mosaic_matmul(a, b, trans_a=trans_a, trans_b=trans_b, config=config)
    assert rel_err(out, _reference(a, b, None, None, trans_a, trans_b)) < TOL[BF16]


@pytest.mark.gpu
@hopper
@pytest.mark.parametrize("act, dtype", [(None, BF16), ("relu", jnp.float16),
                                        ("gelu", BF16), ("gelu_tanh", jnp.float16),
                                        ("silu", BF16)])
def test_epilogue_and_batches_match_reference(rng, act, dtype):
    a, b = normal(rng, (3, 200, 320), dtype), normal(rng, (1, 320, 576), dtype)
    bias = normal(rng, (576,), dtype)
    out = mosaic_matmul(a, b, bias, act=act)
    assert rel_err(out, _reference(a, b, bias, act, False, False)) < TOL[dtype]


@pytest.mark.gpu
@hopper
@pytest.mark.parametrize("config", [None, MosaicMatmulConfig(block_n=192, ctas=3)])
def test_saves_the_pre_activation(rng, config):
    """The output and the pre-activation; 192-column tiles store three slices of each, and 3
    CTAs walk 4 tiles each, so the two store buffers alternate across tiles."""
    a, b = normal(rng, (2, 200, 320), BF16), normal(rng, (1, 320, 576), BF16)
    bias = normal(rng, (576,), BF16)
    out, preact = mosaic_matmul(a, b, bias, act="silu", config=config, save_preact=True)
    assert rel_err(out, _reference(a, b, bias, "silu", False, False)) < TOL[BF16]
    assert rel_err(preact, _reference(a, b, bias, None, False, False)) < TOL[BF16]
    np.testing.assert_array_equal(np.asarray(out), np.asarray(mosaic_matmul(
        a, b, bias, act="silu", config=config)))  # the same output as without it


@pytest.mark.gpu
@hopper
@pytest.mark.parametrize("a_shape, b_shape, act", [((1, 456, 192), (1, 192, 320), None),
                                                    ((2, 136, 256), (2, 256, 128), "gelu")])
def test_matmul_pallas3_runs_it_forward_and_backward(rng, a_shape, b_shape, act):
    """Through ``matmul_pallas3`` on a Hopper GPU: the forward (with an activation, saving
    the pre-activation) and both gradients, all on Mosaic."""
    args = (normal(rng, a_shape, BF16), normal(rng, b_shape, BF16), normal(rng, (b_shape[2],),
                                                                           BF16))
    check_fwd_and_grad_jit(lambda *x: matmul_pallas3(*x, MatmulStatic(act, None)),
                           lambda a, b, bias: _reference(a, b, bias, act, False, False), args,
                           rng, BF16)


@pytest.mark.gpu
@hopper
@pytest.mark.parametrize("trans_a, trans_b", list(itertools.product([False, True], repeat=2)))
def test_float32_matches_reference(rng, trans_a, trans_b):
    # (M, K, N) = (201, 1000, 99): off the tiles everywhere; three products over 3K = 3000
    a = normal(rng, _stored((2, 201, 1000), trans_a), jnp.float32)
    b = normal(rng, _stored((1, 1000, 99), trans_b), jnp.float32)
    bias = normal(rng, (99,), jnp.float32)
    out = mosaic_matmul(a, b, bias, trans_a=trans_a, trans_b=trans_b, act="gelu")
    assert rel_err(out, _reference(a, b, bias, "gelu", trans_a, trans_b)) < TOL[jnp.float32]


@pytest.mark.gpu
@hopper
@pytest.mark.parametrize("k", [8192, 8000])
def test_float32_keeps_float32_class_accuracy_over_a_long_k(rng, k):
    """Three TF32 products with the accumulator flushed: within 2e-6 of the largest output of
    the float64 product (without the flush, wgmma's truncating sums reached 2e-5 at this K)."""
    a, b = normal(rng, (1, 136, k), jnp.float32), normal(rng, (1, k, 200), jnp.float32)
    out = np.asarray(mosaic_matmul(a, b), np.float64)
    exact = np.asarray(a, np.float64) @ np.asarray(b, np.float64)
    assert np.abs(out - exact).max() < 2e-6 * np.abs(exact).max()


@pytest.mark.gpu
@hopper
@pytest.mark.parametrize("act", [None, "silu"])
def test_float32_matmul_pallas3_forward_and_backward(rng, act):
    """float32 through ``matmul_pallas3``: the forward on Mosaic (its pre-activation saved as
    the kernel's output), both gradients on Mosaic, A shared by the batch."""
    args = (normal(rng, (1, 130, 75), jnp.float32), normal(rng, (3, 75, 66), jnp.float32),
            normal(rng, (66,), jnp.float32))
    check_fwd_and_grad_jit(lambda *x: matmul_pallas3(*x, MatmulStatic(act, None)),
                           lambda a, b, bias: _reference(a, b, bias, act, False, False), args,
                           rng, jnp.float32)
