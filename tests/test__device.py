"""torsh_fn.device and to_device."""

import jax
import jax.numpy as jnp
import pytest

import torsh_fn as T


def test_device_names_like_torch():
    d = T.device("cuda:1")
    assert (d.type, d.index, str(d)) == ("cuda", 1, "cuda:1")
    assert repr(T.device("cpu")) == "device(type='cpu')"
    assert T.device("cpu") == "cpu" and T.device("cuda", 0) == T.device("cuda:0")
    assert T.device(T.device("cpu")) == T.device("cpu")
    assert T.device(jax.devices("cpu")[0]).type == "cpu"
    assert len({T.device("cpu"), T.device("cpu:0")}) == 1


def test_to_device_moves_pytrees():
    tree = {"a": jnp.ones(2), "b": [jnp.zeros(3)]}
    out = T.to_device(tree, "cpu")
    assert out["b"][0].devices() == {jax.devices("cpu")[0]}
    assert T.to_device(tree, jax.devices("cpu")[0])["a"].shape == (2,)


@pytest.mark.parametrize("name, error, match", [
    ("npu", ValueError, "expected one of"), ("cuda:x", ValueError, "invalid index"),
    (3, TypeError, "expected a string"),
])
def test_bad_device_names(name, error, match):
    with pytest.raises(error, match=match):
        T.device(name)


def test_unavailable_device_raises_runtime_error():
    if T.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(RuntimeError, match="no cuda devices are available"):
        T.to_device(jnp.ones(1), "cuda")
    with pytest.raises(RuntimeError, match="index out of range"):
        T.device("cpu:5").jax_device
