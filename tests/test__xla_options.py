"""``torsh_fn.jit`` compiles with the CPU's options, merged with the caller's, and none where
jaxlib does not know them; results are the same as without them."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import torsh_fn
from torsh_fn import _jit, _xla_options
from torsh_fn._xla_options import CPU_OPTIONS, cpu_compiler_options, has_convolution

KEY = "xla_cpu_experimental_ynn_fusion_type"


@pytest.fixture
def on_the_cpu():
    """The CPU's options are the CPU's: a GPU compiles with XLA's own."""
    if jax.default_backend() != "cpu":
        pytest.skip("the CPU's compiler options")


@pytest.fixture
def jit_calls(monkeypatch):
    """The keyword arguments of every jax.jit call torsh_fn.jit makes."""
    cpu_compiler_options()  # its one-time probe compiles with jax.jit too: not one of them
    calls, real = [], jax.jit

    def spy(fun, **kwargs):
        calls.append(kwargs)
        return real(fun, **kwargs)

    monkeypatch.setattr(_jit.jax, "jit", spy)
    return calls


def test_this_jaxlib_takes_the_cpu_options(on_the_cpu):
    assert cpu_compiler_options() == CPU_OPTIONS


def _conv(x, w):
    return jax.lax.conv_general_dilated(x, w, (1, 1), [(1, 1), (1, 1)])


X, W = jnp.ones((1, 2, 5, 5)), jnp.ones((3, 2, 3, 3))


def test_jit_compiles_programs_with_a_convolution_with_them(on_the_cpu, jit_calls):
    assert torsh_fn.jit(lambda x: x * 2)(jnp.arange(3.0)).tolist() == [0, 2, 4]
    np.testing.assert_allclose(torsh_fn.jit(_conv)(X, W), _conv(X, W))
    # a program without a convolution keeps XLA's defaults; one with gets the CPU's options
    assert [c["compiler_options"] for c in jit_calls] == [None, None, CPU_OPTIONS]


def test_the_caller_s_options_win(on_the_cpu, jit_calls):
    mine = {KEY: "", "xla_cpu_enable_fast_math": False}
    torsh_fn.jit(lambda x, w: _conv(x, w), compiler_options=mine)(X, W)
    torsh_fn.jit(lambda x: x + 1, compiler_options=mine)(X)
    assert [c["compiler_options"] for c in jit_calls] == [mine, mine, mine]
    assert CPU_OPTIONS == {KEY: "LIBRARY_FUSION_TYPE_DOT"}  # see torsh_fn/_xla_options.py


@pytest.mark.parametrize("wrap", [
    lambda f: f,
    lambda f: jax.jit(f),
    lambda f: lambda x, w: jax.grad(lambda w: f(x, w).sum())(w),
    lambda f: lambda x, w: jax.lax.cond(True, f, lambda x, w: jnp.zeros((1, 3, 5, 5)), x, w),
    lambda f: lambda x, w: jax.lax.scan(lambda c, _: (f(x, w), None), jnp.zeros((1, 3, 5, 5)),
                                        None, length=2)[0],
    lambda f: jax.checkpoint(f),
], ids=["plain", "jit", "grad", "cond", "scan", "checkpoint"])
def test_has_convolution_looks_into_nested_programs(wrap):
    assert has_convolution(jax.make_jaxpr(wrap(_conv))(X, W).jaxpr)
    assert not has_convolution(jax.make_jaxpr(wrap(lambda x, w: x[:, :1].repeat(3, 1) * 2))(
        X, W).jaxpr)


def test_a_jaxlib_without_them_gets_none(monkeypatch, jit_calls):
    monkeypatch.setattr(_xla_options, "CPU_OPTIONS", {"xla_cpu_no_such_option": "1"})
    _xla_options._cpu_takes_options.cache_clear()
    try:
        assert cpu_compiler_options() == {}
        assert torsh_fn.jit(_conv)(X, W).shape == (1, 3, 5, 5)
    finally:
        _xla_options._cpu_takes_options.cache_clear()
    assert jit_calls[-1]["compiler_options"] is None  # the one before is the probe


def test_a_convolution_step_gives_the_same_numbers_with_and_without_them(rng):
    x = jnp.asarray(rng.standard_normal((4, 8, 9, 9)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((16, 8, 3, 3)), jnp.float32)

    def loss(w, x):
        y = jax.lax.conv_general_dilated(x, w, (1, 1), [(1, 1), (1, 1)])
        return jnp.sum(jnp.tanh(y) ** 2)

    step = jax.value_and_grad(loss)
    ours = torsh_fn.jit(step)(w, x)
    plain = jax.jit(step)(w, x)  # XLA's default options
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(plain)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)
