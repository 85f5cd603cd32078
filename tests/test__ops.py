"""torsh_fn's PyTorch-named array functions against PyTorch: values, gradients, dtypes, errors."""

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import torch

import torsh_fn as T
from tests.oracle import assert_close, check_vs_torch, to_torch

F32 = np.float32

# name -> (ours, torch's, input shapes, grad?)  Each runs with and without jit (``variant``).
CASES = {
    "flatten": (lambda x: T.flatten(x), torch.flatten, [(2, 3, 5)]),
    "flatten_mid": (lambda x: T.flatten(x, 1, -2), lambda x: torch.flatten(x, 1, -2),
                    [(2, 3, 5, 7)]),
    "unflatten": (lambda x: T.unflatten(x, -1, (3, -1)), lambda x: torch.unflatten(x, -1, (3, -1)),
                  [(2, 15)]),
    "reshape": (lambda x: T.reshape(x, (5, -1)), lambda x: torch.reshape(x, (5, -1)), [(3, 5, 2)]),
    "cat": (lambda a, b: T.cat([a, b], dim=-1), lambda a, b: torch.cat([a, b], dim=-1),
            [(3, 2), (3, 5)]),
    "stack": (lambda a, b: T.stack([a, b], 1), lambda a, b: torch.stack([a, b], 1), [(3, 4)] * 2),
    "split_int": (lambda x: T.split(x, 2, dim=1), lambda x: torch.split(x, 2, dim=1), [(3, 7)]),
    "split_sizes": (lambda x: T.split(x, [1, 4, 2], 1), lambda x: torch.split(x, [1, 4, 2], 1),
                    [(3, 7)]),
    "chunk": (lambda x: T.chunk(x, 3, 0), lambda x: torch.chunk(x, 3, 0), [(7, 2)]),
    "chunk_fewer": (lambda x: T.chunk(x, 4, 0), lambda x: torch.chunk(x, 4, 0), [(6, 2)]),
    "squeeze_all": (T.squeeze, torch.squeeze, [(1, 3, 1, 2)]),
    "squeeze_dims": (lambda x: T.squeeze(x, (0, 1)), lambda x: torch.squeeze(x, (0, 1)),
                     [(1, 3, 1)]),
    "unsqueeze": (lambda x: T.unsqueeze(x, -1), lambda x: torch.unsqueeze(x, -1), [(3, 2)]),
    "transpose": (lambda x: T.transpose(x, 0, -1), lambda x: torch.transpose(x, 0, -1),
                  [(2, 3, 4)]),
    "permute": (lambda x: T.permute(x, 2, 0, 1), lambda x: torch.permute(x, (2, 0, 1)),
                [(2, 3, 5)]),
    "movedim": (lambda x: T.movedim(x, (0, 1), (2, 0)), lambda x: torch.movedim(x, (0, 1), (2, 0)),
                [(2, 3, 5)]),
    "narrow": (lambda x: T.narrow(x, 1, -4, 3), lambda x: torch.narrow(x, 1, 3, 3), [(2, 7)]),
    "clamp": (lambda x: T.clamp(x, -0.5, 0.7), lambda x: torch.clamp(x, -0.5, 0.7), [(4, 5)]),
    "clamp_min": (lambda x: T.clip(x, min=0.1), lambda x: torch.clip(x, min=0.1), [(4, 5)]),
    "sum_all": (T.sum, torch.sum, [(3, 5)]),
    "sum_dims": (lambda x: T.sum(x, (0, -1), keepdim=True),
                 lambda x: torch.sum(x, (0, -1), keepdim=True), [(2, 3, 5)]),
    "mean": (lambda x: T.mean(x, -1), lambda x: torch.mean(x, -1), [(3, 5)]),
    "var": (lambda x: T.var(x, 1), lambda x: torch.var(x, 1), [(3, 7)]),
    "var_corr0": (lambda x: T.var(x, (0, 1), correction=0, keepdim=True),
                  lambda x: torch.var(x, (0, 1), correction=0, keepdim=True), [(3, 7, 2)]),
    "var_unbiased_overload": (lambda x: T.var(x, False), lambda x: torch.var(x, False), [(5,)]),
    "std": (lambda x: T.std(x, 0, unbiased=False), lambda x: torch.std(x, 0, unbiased=False),
            [(6, 3)]),
    "prod": (lambda x: T.prod(x, 1, keepdim=True), lambda x: torch.prod(x, 1, keepdim=True),
             [(3, 5)]),
    "max_dim": (lambda x: T.max(x, 1), lambda x: torch.max(x, 1), [(4, 7)]),
    "min_dim_keep": (lambda x: T.min(x, -1, True), lambda x: torch.min(x, -1, True), [(4, 7)]),
    "max_all": (T.max, torch.max, [(4, 7)]),
    "max_binary": (T.max, torch.max, [(4, 7), (4, 7)]),
    "amax": (lambda x: T.amax(x, (0, 2)), lambda x: torch.amax(x, (0, 2)), [(3, 4, 5)]),
    "amin": (lambda x: T.amin(x, -1, True), lambda x: torch.amin(x, -1, True), [(3, 4)]),
    "argmax": (lambda x: T.argmax(x, 1), lambda x: torch.argmax(x, 1), [(3, 9)]),
    "argmin_flat": (T.argmin, torch.argmin, [(3, 9)]),
    "argmax_keep_flat": (lambda x: T.argmax(x, keepdim=True),
                         lambda x: torch.argmax(x, keepdim=True), [(3, 9)]),
    "logsumexp": (lambda x: T.logsumexp(x, (0, 1)), lambda x: torch.logsumexp(x, (0, 1)),
                  [(3, 4, 2)]),
    "cumsum": (lambda x: T.cumsum(x, 1), lambda x: torch.cumsum(x, 1), [(3, 5)]),
    "sort": (lambda x: T.sort(x, 0), lambda x: torch.sort(x, 0), [(7, 3)]),
    "sort_desc": (lambda x: T.sort(x, -1, descending=True),
                  lambda x: torch.sort(x, -1, descending=True), [(3, 7)]),
    "topk": (lambda x: T.topk(x, 3, 0), lambda x: torch.topk(x, 3, 0), [(9, 2)]),
    "topk_smallest": (lambda x: T.topk(x, 2, largest=False),
                      lambda x: torch.topk(x, 2, largest=False), [(3, 9)]),
    "matmul": (T.matmul, torch.matmul, [(2, 3, 5), (5, 4)]),
    "matmul_vec": (T.matmul, torch.matmul, [(3, 5), (5,)]),
    "mm": (T.mm, torch.mm, [(3, 5), (5, 2)]),
    "bmm": (T.bmm, torch.bmm, [(2, 3, 5), (2, 5, 4)]),
    "einsum": (lambda a, b: T.einsum("bij,bjk->bik", a, b),
               lambda a, b: torch.einsum("bij,bjk->bik", a, b), [(2, 3, 5), (2, 5, 4)]),
    "einsum_list": (lambda a, b: T.einsum("i,j->ij", [a, b]),
                    lambda a, b: torch.einsum("i,j->ij", [a, b]), [(3,), (4,)]),
    "outer": (T.outer, torch.outer, [(3,), (5,)]),
    "tril": (lambda x: T.tril(x, -1), lambda x: torch.tril(x, -1), [(2, 4, 5)]),
    "triu": (lambda x: T.triu(x, 1), lambda x: torch.triu(x, 1), [(4, 5)]),
    "where": (lambda a, b: T.where(a > 0, a, b), lambda a, b: torch.where(a > 0, a, b),
              [(3, 4)] * 2),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_torch(name, rng, variant):
    ours, theirs, shapes = CASES[name]
    inputs = [rng.standard_normal(s).astype(F32) for s in shapes]
    check_vs_torch(ours, theirs, *inputs, variant=variant, rng=rng, rtol=2e-5, atol=2e-5)


INDEX_CASES = {
    "gather": (lambda x, i: T.gather(x, 1, i), lambda x, i: torch.gather(x, 1, i), (4, 6),
               (3, 5), 1),
    "gather_dim0": (lambda x, i: T.gather(x, 0, i), lambda x, i: torch.gather(x, 0, i), (5, 3),
                    (7, 2), 0),
    "index_select": (lambda x, i: T.index_select(x, 1, i), lambda x, i: torch.index_select(x, 1, i),
                     (3, 6), (8,), 1),
}


@pytest.mark.parametrize("name", sorted(INDEX_CASES))
def test_indexing_matches_torch(name, rng, variant):
    ours, theirs, xshape, ishape, dim = INDEX_CASES[name]
    x = rng.standard_normal(xshape).astype(F32)
    idx = rng.integers(0, xshape[dim], ishape)
    check_vs_torch(ours, theirs, x, idx, grad=[0], variant=variant, rng=rng)


def test_masked_fill_matches_torch(rng, variant):
    x = rng.standard_normal((3, 5)).astype(F32)
    mask = rng.random((1, 5)) > 0.5
    check_vs_torch(lambda x, m: T.masked_fill(x, m, -2.5), lambda x, m: x.masked_fill(m, -2.5),
                   x, mask, grad=[0], variant=variant, rng=rng)


@pytest.mark.parametrize("dtype", [np.int32, np.uint8, np.bool_])
@pytest.mark.parametrize("fn", ["sum", "prod", "cumsum", "amax", "argmax", "max", "sort"])
def test_integer_and_bool_inputs(rng, fn, dtype):
    if dtype == np.bool_ and fn in ("sort", "cumsum", "prod", "argmax"):
        pytest.skip("torch does not support these on bool")
    x = rng.integers(0, 5, (4, 6)).astype(dtype)
    args = {"sum": (), "prod": (1,), "cumsum": (1,), "amax": (0,), "argmax": (1,), "max": (1,),
            "sort": (1,)}[fn]
    ours = getattr(T, fn)(jnp.asarray(x), *args)
    theirs = getattr(torch, fn)(to_torch(x), *args)
    for o, t in zip(ours if isinstance(ours, tuple) else [ours],
                    theirs if isinstance(theirs, tuple) else [theirs]):
        assert_close(o, t)
        assert jnp.issubdtype(o.dtype, jnp.integer) == (not t.is_floating_point()
                                                        and t.dtype != torch.bool)


@pytest.mark.parametrize("fn", ["sum", "mean", "amax", "logsumexp", "cumsum", "sort"])
def test_bfloat16_inputs(rng, fn):
    x = rng.standard_normal((5, 7)).astype(ml_dtypes.bfloat16)
    ours = getattr(T, fn)(jnp.asarray(x), 1)
    theirs = getattr(torch, fn)(to_torch(x), 1)
    ours, theirs = (ours[0], theirs[0]) if fn == "sort" else (ours, theirs)
    assert ours.dtype == jnp.bfloat16
    assert_close(ours, theirs, rtol=3e-2, atol=3e-2)


def test_zero_dim_inputs_accept_dim_0_and_minus_1():
    x = jnp.asarray(3.0)
    assert T.sum(x, 0) == 3.0
    assert T.unsqueeze(x, -1).shape == (1,)
    assert T.flatten(x).shape == (1,)
    assert T.argmax(x, 0) == 0
    assert T.max(x, 0).values == 3.0


def test_sort_places_nan_like_torch():
    x = np.array([[3.0, np.nan, -1.0, 2.0]], dtype=F32)
    for desc in (False, True):
        ours = T.sort(jnp.asarray(x), descending=desc)
        theirs = torch.sort(to_torch(x), descending=desc)
        assert_close(ours.values, theirs.values)
        assert_close(ours.indices, theirs.indices)


def test_max_returns_named_tuple():
    out = T.max(jnp.arange(6.0).reshape(2, 3), dim=1)
    assert type(out).__name__ == "max"
    values, indices = out
    assert (values == out.values).all() and (indices == jnp.array([2, 2])).all()


def test_allclose_and_isclose(rng):
    a = rng.standard_normal(5).astype(F32)
    b = a * (1 + 1e-6)  # scaled, not shifted: a + 1e-7 is not close to an a below 0.01
    assert T.allclose(a, b) is True
    assert T.allclose(a, a * (1 + 1e-4)) is False  # beyond rtol=1e-5
    assert T.allclose(a, a + 1.0) is False
    assert_close(T.isclose(a, b), torch.isclose(to_torch(a), to_torch(b)))
    nan = jnp.array([np.nan])
    assert T.allclose(nan, nan, equal_nan=True) and not T.allclose(nan, nan)


def test_numel():
    assert T.numel(jnp.ones((3, 0, 2))) == 0
    assert T.numel(jnp.ones((3, 4, 2))) == 24


def test_vmap_through_ops(rng):
    x = jnp.asarray(rng.standard_normal((4, 3, 5)).astype(F32))
    out = jax.vmap(lambda a: T.max(T.transpose(a, 0, 1), 1).values)(x)
    assert_close(out, torch.max(to_torch(np.asarray(x)).transpose(1, 2), 2).values)


@pytest.mark.parametrize("call, match", [
    (lambda x: T.sum(x, 2),
     r"sum: Dimension out of range \(expected to be in range of \[-2, 1\], but got 2\)"),
    (lambda x: T.transpose(x, 0, -3), "transpose: Dimension out of range"),
    (lambda x: T.unsqueeze(x, 3), "unsqueeze: Dimension out of range"),
])
def test_bad_dim_raises_index_error_like_torch(call, match):
    x = jnp.ones((2, 3))
    with pytest.raises(IndexError, match=match):
        call(x)
    with pytest.raises(ValueError, match=match):  # DimensionError is both
        call(x)


@pytest.mark.parametrize("call, error, match", [
    (lambda: T.cat([jnp.ones((2, 3)), jnp.ones((3, 3))], 1), ValueError,
     "cat: sizes of arrays must match except in dimension 1"),
    (lambda: T.cat(jnp.ones((2, 3))), TypeError, "expected a sequence of arrays"),
    (lambda: T.stack([]), ValueError, "non-empty sequence"),
    (lambda: T.stack([jnp.ones(2), jnp.ones(3)]), ValueError, r"equal size, but got \(2,\)"),
    (lambda: T.split(jnp.ones(5), [2, 2]), ValueError, "sum exactly to 5"),
    (lambda: T.chunk(jnp.ones(5), 0), ValueError, "chunks must be a positive int"),
    (lambda: T.mm(jnp.ones((2, 3)), jnp.ones((4, 2))), ValueError, "cannot be multiplied"),
    (lambda: T.bmm(jnp.ones((2, 3)), jnp.ones((3, 2))), ValueError, "expected two 3-D arrays"),
    (lambda: T.matmul(jnp.ones((2, 3)), jnp.ones(4)), ValueError, r"\(3 != 4\)"),
    (lambda: T.outer(jnp.ones((2, 2)), jnp.ones(2)), ValueError, "expected two 1-D arrays"),
    (lambda: T.permute(jnp.ones((2, 3)), 0, 0), ValueError, "not a permutation"),
    (lambda: T.permute(jnp.ones((2, 3)), 0), ValueError, "number of dims don't match"),
    (lambda: T.gather(jnp.ones((2, 3)), 1, jnp.zeros((2,), jnp.int32)), ValueError,
     "must have input's number of dims"),
    (lambda: T.gather(jnp.ones((2, 3)), 1, jnp.zeros((2, 1))), TypeError, "integer array"),
    (lambda: T.masked_fill(jnp.ones(3), jnp.ones(3), 0.0), TypeError, "mask must be a bool"),
    (lambda: T.masked_fill(jnp.ones(3), jnp.ones(2, bool), 0.0), ValueError, "does not broadcast"),
    (lambda: T.clamp(jnp.ones(3)), ValueError, "at least one of 'min' or 'max'"),
    (lambda: T.mean(jnp.ones(3, jnp.int32)), TypeError, "could not infer output dtype"),
    (lambda: T.narrow(jnp.ones(5), 0, 3, 3), ValueError, "exceeds dimension size"),
    (lambda: T.unflatten(jnp.ones(6), 0, (4, -1)), ValueError, "don't multiply up"),
    (lambda: T.topk(jnp.ones(3), 4), ValueError, r"k \(4\) is out of range"),
    (lambda: T.reshape(jnp.ones(6), (4, 2)), ValueError, "invalid for input of shape"),
    (lambda: T.flatten(jnp.ones((2, 3, 4)), 2, 1), ValueError, "cannot come after"),
    (lambda: T.tril(jnp.ones(3)), ValueError, "at least 2 dims"),
    (lambda: T.max(jnp.ones((0, 3)), 0), ValueError, "empty dim"),
    (lambda: T.where(jnp.ones(3) > 0, 1.0), TypeError, "where\\(condition, input, other\\)"),
    (lambda: T.sum(jnp.ones(3), 0.5), TypeError, "dim must be an int"),
    (lambda: T.amax(jnp.ones((2, 3)), (0, -2)), ValueError, "appears multiple times"),
])
def test_bad_input_raises_clear_error(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_where_single_argument_gives_nonzero_indices():
    (idx,) = T.where(jnp.array([0, 3, 0, 1]))
    assert idx.tolist() == [1, 3]


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=25, deadline=None)
@given(shape=st.lists(st.integers(0, 4), min_size=1, max_size=4), data=st.data())
def test_reductions_and_splits_on_any_shape(shape, data):
    x = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape) - 3.5
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    keepdim = data.draw(st.booleans())
    tx = torch.from_numpy(x)
    assert_close(T.sum(x, dim, keepdim), torch.sum(tx, dim, keepdim))
    assert_close(T.amax(x, dim, keepdim) if shape[dim] else 0, torch.amax(tx, dim, keepdim)
                 if shape[dim] else 0)
    size = data.draw(st.integers(1, 3))
    for ours, theirs in zip(T.split(x, size, dim), torch.split(tx, size, dim), strict=True):
        assert_close(ours, theirs)
    assert_close(T.flatten(x, 0, dim), torch.flatten(tx, 0, dim))
