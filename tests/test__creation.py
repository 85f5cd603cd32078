"""Array creation against PyTorch: shapes, dtypes, values, the size conventions and bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import torsh_fn as T
from tests.oracle import assert_close, to_numpy, to_torch
from torsh_fn import _compat

DTYPES = {T.float32: torch.float32, T.float16: torch.float16, T.bfloat16: torch.bfloat16,
          T.int32: torch.int32, T.int8: torch.int8, T.uint8: torch.uint8, T.bool: torch.bool}


def _same_kind(ours, theirs):
    assert ours.shape == tuple(theirs.shape)
    assert np.dtype(ours.dtype).kind == to_numpy(theirs).dtype.kind or (
        ours.dtype == jnp.bfloat16 and theirs.dtype == torch.bfloat16)


@pytest.mark.parametrize("name", ["zeros", "ones", "empty"])
@pytest.mark.parametrize("size", [(2, 3), ((2, 3),), ([4],), ((),), ((0, 5),)])
def test_filled_sizes_and_values(name, size):
    ours, theirs = getattr(T, name)(*size), getattr(torch, name)(*size)
    _same_kind(ours, theirs)
    assert ours.dtype == jnp.float32
    if name != "empty":
        assert_close(ours, theirs)


@pytest.mark.parametrize("dtype", list(DTYPES))
def test_dtype_argument(dtype):
    assert T.ones(3, dtype=dtype).dtype == jnp.dtype(dtype)
    assert T.full((2,), 1, dtype=dtype).dtype == jnp.dtype(dtype)
    assert_close(T.eye(3, 4, dtype=dtype), torch.eye(3, 4, dtype=DTYPES[dtype]))


def test_torch_and_string_dtypes_are_accepted():
    assert T.zeros(2, dtype=torch.float16).dtype == jnp.float16
    assert T.zeros(2, dtype="bfloat16").dtype == jnp.bfloat16


@pytest.mark.parametrize("fill", [1.5, 3, True])
def test_full_infers_dtype_from_fill_value_like_torch(fill):
    ours, theirs = T.full((2, 3), fill), torch.full((2, 3), fill)
    _same_kind(ours, theirs)
    assert_close(ours, theirs)


@pytest.mark.parametrize("data", [[[1.0, 2.0], [3.0, 4.5]], [1, 2, 3], [True, False], 2.5, 7,
                                  [1 + 2j]])
def test_tensor_infers_dtypes_like_torch(data):
    ours, theirs = T.tensor(data), torch.tensor(data)
    _same_kind(ours, theirs)
    assert_close(ours, theirs)


def test_tensor_from_numpy_torch_and_jax(rng):
    x = rng.standard_normal((3, 4)).astype(np.float32)
    assert_close(T.tensor(x), x)
    assert_close(T.as_tensor(to_torch(x)), x)
    bf = torch.randn(3).to(torch.bfloat16)
    assert T.as_tensor(bf).dtype == jnp.bfloat16
    assert_close(T.as_tensor(bf), bf)
    j = jnp.asarray(x)
    assert T.as_tensor(j) is j  # no copy where none is needed
    assert T.tensor([1, 2], dtype=T.float32).dtype == jnp.float32


def test_from_numpy_keeps_dtype_and_rejects_other_types(rng):
    x = rng.integers(0, 9, (2, 5)).astype(np.int16)
    out = T.from_numpy(x)
    assert out.dtype == jnp.int16 and (np.asarray(out) == x).all()
    with pytest.raises(TypeError, match=r"from_numpy: expected np\.ndarray, got list"):
        T.from_numpy([1, 2])


@pytest.mark.parametrize("args", [(5,), (2, 9), (1, 2, 0.25), (0.5, 3.3, 0.7), (10, 0, -3),
                                  (-1.0, 1.0, 0.1)])
def test_arange_matches_torch(args):
    ours, theirs = T.arange(*args), torch.arange(*args)
    _same_kind(ours, theirs)
    assert_close(ours, theirs, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("args", [(0, 1, 5), (-3.5, 2.0, 11), (2, 2, 1), (0, 1, 0)])
def test_linspace_and_logspace_match_torch(args):
    assert_close(T.linspace(*args), torch.linspace(*args), rtol=1e-6, atol=1e-6)
    assert_close(T.logspace(*args, base=2.0), torch.logspace(*args, base=2.0), rtol=1e-5)


def test_float64_with_x64_enabled():
    with _compat.enable_x64(True):
        assert T.tensor([1.0], dtype=T.float64).dtype == jnp.float64
        assert T.arange(3).dtype == jnp.int64  # as torch's int64
        assert T.ones(2, dtype=torch.float64).dtype == jnp.float64
    assert T.arange(3).dtype == jnp.int32  # JAX's default without x64


def test_default_dtype_round_trip():
    assert T.get_default_dtype() == jnp.float32
    try:
        T.set_default_dtype(T.bfloat16)
        assert T.zeros(2).dtype == jnp.bfloat16
        assert T.tensor([1.5]).dtype == jnp.bfloat16
        assert T.randn(2).dtype == jnp.bfloat16
        with pytest.raises(TypeError, match="expected a floating dtype, got int32"):
            T.set_default_dtype(T.int32)
    finally:
        T.set_default_dtype(T.float32)


@pytest.mark.parametrize("name", ["zeros_like", "ones_like", "empty_like"])
def test_like_functions(name, rng):
    x = rng.standard_normal((3, 2)).astype(np.float16)
    ours = getattr(T, name)(x)
    assert ours.shape == (3, 2) and ours.dtype == jnp.float16
    assert getattr(T, name)(x, dtype=T.int8).dtype == jnp.int8
    assert_close(T.full_like(x, 7), torch.full_like(to_torch(x), 7))


def test_random_shapes_dtypes_and_ranges():
    T.manual_seed(0)
    u = T.rand(1000, 3)
    assert u.shape == (1000, 3) and u.dtype == jnp.float32
    assert 0.0 <= float(u.min()) and float(u.max()) < 1.0 and abs(float(u.mean()) - 0.5) < 0.03
    n = T.randn((4000,), dtype=T.float16)
    assert n.dtype == jnp.float16 and abs(float(n.astype(jnp.float32).std()) - 1.0) < 0.05
    r = T.randint(3, 7, (500,))
    assert int(r.min()) == 3 and int(r.max()) == 6 and jnp.issubdtype(r.dtype, jnp.integer)
    assert T.randint(5, (2, 3)).shape == (2, 3)
    assert T.randint(0, 4, (3,), dtype=T.float32).dtype == jnp.float32
    p = T.randperm(17)
    assert sorted(np.asarray(p).tolist()) == list(range(17))
    assert T.rand_like(n).dtype == jnp.float16 and T.randn_like(u).shape == u.shape
    assert T.randint_like(u, 10).shape == u.shape


def test_normal_and_bernoulli_statistics():
    T.manual_seed(1)
    x = T.normal(2.0, 3.0, (20000,))
    assert abs(float(x.mean()) - 2.0) < 0.1 and abs(float(x.std()) - 3.0) < 0.1
    means = jnp.array([0.0, 10.0])
    y = T.normal(means, jnp.array([1.0, 0.5]))
    assert y.shape == (2,)
    probs = jnp.full((20000,), 0.3)
    b = T.bernoulli(probs)
    assert b.dtype == jnp.float32 and set(np.unique(b).tolist()) <= {0.0, 1.0}
    assert abs(float(b.mean()) - 0.3) < 0.02
    assert abs(float(T.bernoulli(jnp.zeros(20000), p=0.8).mean()) - 0.8) < 0.02
    with pytest.raises(ValueError, match="std must be non-negative"):
        T.normal(0.0, -1.0, (3,))


def test_key_argument_touches_no_global_state():
    state = T.get_rng_state()
    key = jax.random.PRNGKey(3)
    a, b = T.randn(4, key=key), T.randn(4, key=key)
    assert (a == b).all()
    assert (T.get_rng_state() == state).all()


def test_random_is_jittable_with_keys():
    f = jax.jit(lambda key: T.rand(3, key=key) + T.randn(3, key=key))
    assert f(jax.random.PRNGKey(0)).shape == (3,)


@pytest.mark.parametrize("call, error, match", [
    (lambda: T.zeros(2, -1), ValueError, r"zeros: negative dimension in size \(2, -1\)"),
    (lambda: T.ones(2.5), TypeError, "ones: size must be ints"),
    (lambda: T.arange(0, 5, 0), ValueError, "step must be nonzero"),
    (lambda: T.arange(5, 0, 1), ValueError, "upper bound and step are inconsistent"),
    (lambda: T.linspace(0, 1, -1), ValueError, "steps must be a non-negative int"),
    (lambda: T.randint(5, 5, (2,)), ValueError, "expected low < high"),
    (lambda: T.randint(5), TypeError, "randint"),
    (lambda: T.rand(2, dtype=T.int32), TypeError, "rand: expected a floating dtype, got int32"),
    (lambda: T.zeros(2, dtype="floaty"), TypeError, "dtype: expected a dtype"),
    (lambda: T.randn(2, key=jax.random.PRNGKey(0), generator=T.Generator()), ValueError,
     "either key= or generator="),
])
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_device_argument_places_array():
    x = T.zeros(2, device="cpu")
    assert x.devices() == {jax.devices("cpu")[0]}


def test_tensor_copies_host_memory_before_returning():
    # JAX copies a numpy array in the background on the CPU; torch.tensor copies at once.
    for _ in range(20):
        host = np.zeros(1 << 22, np.float32)
        t = T.tensor(host)
        host += 1.0
        assert not np.asarray(t).any()
    source = torch.zeros(1 << 20)
    t = T.tensor(source)
    source += 1.0
    assert not np.asarray(t).any()
