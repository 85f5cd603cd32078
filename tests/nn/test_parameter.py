"""``torsh_fn.nn.parameter``: ``Parameter`` (construction, ``requires_grad`` and the structure
changes it notes for ``torsh_fn.jit``, ``data`` and ``grad``, acting as its array, the pytree,
copies and pickles, the repr) and ``as_array``; ``torch.nn.Parameter`` is the oracle where they
mirror it."""

import copy
import pickle

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import torch

from tests.oracle import assert_close
from torsh_fn import nn
from torsh_fn._jit import structure_version
from torsh_fn.nn.parameter import Parameter, as_array


def _normal(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


# -- construction ---------------------------------------------------------------------------------


def test_nn_exports_this_parameter():
    assert nn.Parameter is Parameter


def test_default_is_an_empty_float32_parameter_as_torch_s():
    ours, theirs = Parameter(), torch.nn.Parameter()
    assert ours.shape == tuple(theirs.shape) == (0,)
    assert ours.dtype == jnp.float32 and theirs.dtype == torch.float32
    assert ours.requires_grad is theirs.requires_grad is True
    assert ours.grad is None and theirs.grad is None


@pytest.mark.parametrize("requires_grad", [True, False])
def test_construction_from_each_kind_of_array_matches_torch(rng, requires_grad):
    data = _normal(rng, 3, 4)
    theirs = torch.nn.Parameter(torch.tensor(data), requires_grad=requires_grad)
    for source in (data, jnp.asarray(data), torch.tensor(data)):
        ours = Parameter(source, requires_grad=requires_grad)
        assert isinstance(ours.data, jax.Array)
        assert_close(ours.data, theirs, rtol=0, atol=0)
        assert ours.requires_grad is theirs.requires_grad is requires_grad
        assert ours.grad is None


def _aligned(data: np.ndarray) -> np.ndarray:
    """A copy of ``data`` at a 64-byte boundary, where ``jax.device_put`` on the CPU would
    alias the buffer rather than copy it."""
    buf = np.empty(data.nbytes + 64, np.uint8)
    start = -buf.ctypes.data % 64
    out = buf[start:start + data.nbytes].view(data.dtype).reshape(data.shape)
    out[...] = data
    return out


def test_a_jax_array_is_held_as_it_is_host_memory_is_copied(rng):
    """Host buffers are copied: a parameter's buffer may be donated to XLA, which must not
    write into the caller's numpy array or tensor (nor see the caller's later writes)."""
    data = _normal(rng, 1024)
    array = jnp.asarray(data)
    assert Parameter(array).data is array
    host, tensor = _aligned(data), torch.tensor(data)
    assert tensor.data_ptr() % 64 == 0
    from_numpy, from_torch = Parameter(host), Parameter(tensor)
    set_later = Parameter(jnp.zeros(1024))
    set_later.data = host
    params = (from_numpy, from_torch, set_later)
    host += 1.0
    tensor.add_(1.0)
    for p in params:
        np.testing.assert_array_equal(p.data, data)


def test_a_write_right_after_construction_does_not_reach_the_parameter():
    """The copy is made before ``Parameter`` returns: ``jnp.array(copy=True)`` alone copies in
    the background on the CPU, and a write right after reached a 32 MiB parameter in about one
    construction in eight."""
    for _ in range(20):
        host = np.zeros(1 << 23, np.float32)
        p = Parameter(host)
        host += 1.0
        assert not np.asarray(p.data).any()


def test_a_bfloat16_tensor_becomes_a_bfloat16_array(rng):
    data = _normal(rng, 4, 3)
    tensor = torch.tensor(data).to(torch.bfloat16)
    p = Parameter(tensor)
    assert p.dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(p.data),
                                  tensor.float().numpy().astype(ml_dtypes.bfloat16))


# -- requires_grad ------------------------------------------------------------------------------


def test_requires_grad_setter_notes_a_structure_change_only_when_it_changes():
    """``torsh_fn.jit`` keys compiled programs on ``requires_grad`` through
    ``structure_version()``: a change must move it, setting the same value must not."""
    p = Parameter(jnp.ones(2))
    version = structure_version()
    p.requires_grad = True
    assert structure_version() == version
    p.requires_grad = False
    assert p.requires_grad is False and structure_version() == version + 1
    p.requires_grad = False
    assert structure_version() == version + 1
    assert p.requires_grad_() is p  # as torch's, returns the parameter
    assert p.requires_grad is True and structure_version() == version + 2
    assert p.requires_grad_(True) is p and structure_version() == version + 2


def test_requires_grad_methods_match_torch():
    ours, theirs = Parameter(jnp.ones(2)), torch.nn.Parameter(torch.ones(2))
    for value in (False, False, True):
        assert ours.requires_grad_(value) is ours
        assert theirs.requires_grad_(value) is theirs
        assert ours.requires_grad is theirs.requires_grad is value


# -- data and grad ------------------------------------------------------------------------------


def test_data_and_grad_are_replaced_not_mutated(rng):
    p = Parameter(jnp.asarray(_normal(rng, 2, 3)))
    old = p.data
    new = _normal(rng, 2, 3)
    p.data = new
    assert isinstance(p.data, jax.Array)
    np.testing.assert_array_equal(p.data, new)
    assert p.data is not old
    grad = jnp.asarray(_normal(rng, 2, 3))
    p.grad = grad
    assert p.grad is grad
    p.grad = None
    assert p.grad is None


def test_copy__casts_to_its_dtype_as_torch_and_checks_the_shape(rng):
    src = rng.standard_normal(3)  # float64
    ours, theirs = Parameter(jnp.zeros(3)), torch.nn.Parameter(torch.zeros(3))
    assert ours.copy_(src) is ours
    with torch.no_grad():
        theirs.copy_(torch.tensor(src))
    assert ours.dtype == jnp.float32 and theirs.dtype == torch.float32
    assert_close(ours.data, theirs, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"Parameter.copy_: expected shape \(3,\), got \(4,\)"):
        ours.copy_(np.ones(4))


def test_detach_cuts_the_gradient_as_torch_s(rng):
    data = _normal(rng, 4)
    grad = jax.grad(lambda w: jnp.sum(w.detach() * w))(Parameter(jnp.asarray(data)))
    t = torch.nn.Parameter(torch.tensor(data))
    (t.detach() * t).sum().backward()
    assert isinstance(grad, Parameter)
    assert_close(grad.data, t.grad)


# -- acting as its array ------------------------------------------------------------------------


def test_parameter_acts_as_array_and_hashes_by_identity():
    w = nn.Parameter(jnp.arange(6.0).reshape(2, 3))
    assert (w * 2).shape == (2, 3) and jnp.tanh(w).dtype == jnp.float32
    assert (jnp.ones((4, 2)) @ w).shape == (4, 3) and w.T.shape == (3, 2)
    assert float(w.sum()) == 15.0 and w.ndim == 2 and w.numel() == 6
    twin = nn.Parameter(jnp.arange(6.0).reshape(2, 3))
    assert w != twin and {w: 1, twin: 2}[w] == 1
    assert jax.tree.leaves(w)[0] is w.data
    assert jax.grad(lambda p: jnp.sum(p * p))(w).data.shape == (2, 3)


def test_operators_give_arrays_in_place_ones_keep_the_parameter(rng):
    data, other = _normal(rng, 3), _normal(rng, 3)
    p = Parameter(jnp.asarray(data))
    for result, expected in [(2 - p, 2 - data), (np.asarray(other) + p, other + data),
                             (p / Parameter(jnp.asarray(other)), data / other),
                             (-p, -data), (p > 0, data > 0)]:
        assert isinstance(result, jax.Array)
        assert_close(result, expected)
    same = p
    p += 1  # an int: the dtype stays float32
    p *= Parameter(jnp.asarray(other))
    assert p is same and p.dtype == jnp.float32
    assert_close(p.data, (data + 1) * other)


def test_python_conversions():
    assert bool(Parameter(jnp.ones(()))) and not bool(Parameter(jnp.zeros(())))
    assert float(Parameter(jnp.full((), 2.5))) == 2.5 and int(Parameter(jnp.full((), 3))) == 3
    assert [10, 20, 30][Parameter(jnp.asarray(2))] == 30
    p = Parameter(jnp.arange(3.0))
    assert len(p) == 3 and [float(x) for x in p] == [0.0, 1.0, 2.0]
    assert np.asarray(p, np.float64).dtype == np.float64
    with pytest.raises(AttributeError):
        p._no_such_private_name  # private names are not forwarded to the array


# -- pytree -------------------------------------------------------------------------------------


@pytest.mark.parametrize("requires_grad", [True, False])
def test_pytree_keeps_requires_grad_and_drops_the_grad(rng, requires_grad):
    p = Parameter(jnp.asarray(_normal(rng, 2, 2)), requires_grad=requires_grad)
    p.grad = jnp.ones((2, 2))
    leaves, treedef = jax.tree.flatten(p)
    assert leaves == [p.data]
    rebuilt = jax.tree.unflatten(treedef, leaves)
    assert isinstance(rebuilt, Parameter) and rebuilt is not p
    assert rebuilt.data is p.data and rebuilt.requires_grad is requires_grad
    assert rebuilt.grad is None
    doubled = jax.tree.map(lambda a: 2 * a, p)
    assert doubled.requires_grad is requires_grad
    assert_close(doubled.data, 2 * p.data)
    seen = []  # under jit: a Python bool (the tree's static part), not a traced leaf
    jax.jit(lambda q: seen.append(q.requires_grad) or q.data)(p)
    assert len(seen) == 1 and seen[0] is requires_grad
    ((path, leaf),), _ = jax.tree_util.tree_flatten_with_path(p)
    assert path == (jax.tree_util.GetAttrKey("data"),) and leaf is p.data


def test_requires_grad_is_part_of_the_tree_structure():
    frozen = Parameter(jnp.ones(2), requires_grad=False)
    assert jax.tree.structure(Parameter(jnp.ones(2))) != jax.tree.structure(frozen)


# -- copies, pickles, repr ----------------------------------------------------------------------


_ROUND_TRIPS = {
    "copy": copy.copy,
    "deepcopy": copy.deepcopy,
    "pickle": lambda p: pickle.loads(pickle.dumps(p)),
}


@pytest.mark.parametrize("requires_grad", [True, False])
@pytest.mark.parametrize("how", list(_ROUND_TRIPS))
def test_copies_and_pickles_keep_data_and_requires_grad_as_torch_s(rng, how, requires_grad):
    data = _normal(rng, 3, 2)
    ours = Parameter(jnp.asarray(data), requires_grad=requires_grad)
    theirs = torch.nn.Parameter(torch.tensor(data), requires_grad=requires_grad)
    ours.grad, theirs.grad = jnp.ones((3, 2)), torch.ones(3, 2)
    ours_copy, theirs_copy = _ROUND_TRIPS[how](ours), _ROUND_TRIPS[how](theirs)
    assert ours_copy.grad is None and theirs_copy.grad is None  # the gradient is not copied
    assert ours.grad is not None
    assert type(ours_copy) is Parameter and type(theirs_copy) is torch.nn.Parameter
    assert ours_copy is not ours and ours_copy != ours  # a new identity: a new state dict key
    assert ours_copy.requires_grad is theirs_copy.requires_grad is requires_grad
    assert ours_copy.dtype == ours.dtype
    assert_close(ours_copy.data, theirs_copy, rtol=0, atol=0)
    ours_copy.requires_grad = not requires_grad
    assert ours.requires_grad is requires_grad


def test_repr_is_torch_s_header_over_the_array(rng):
    data = _normal(rng, 2)
    ours = repr(Parameter(jnp.asarray(data)))
    theirs = repr(torch.nn.Parameter(torch.tensor(data)))
    assert ours.splitlines()[0] == theirs.splitlines()[0] == "Parameter containing:"
    assert ours == f"Parameter containing:\n{jnp.asarray(data)!r}"


# -- as_array -----------------------------------------------------------------------------------


def test_as_array_takes_arrays_tensors_and_parameters(rng):
    data = _normal(rng, 3)
    p = Parameter(jnp.asarray(data))
    assert as_array(p) is p.data
    array = jnp.asarray(data)
    assert as_array(array) is array
    for source in (data, np.float32(1.5), torch.tensor(data)):
        out = as_array(source)
        assert isinstance(out, jax.Array)
        np.testing.assert_array_equal(out, np.asarray(source))


@pytest.mark.parametrize("value", ["weights", [1.0, 2.0], 1.0, None])
def test_as_array_names_its_owner_and_the_type_it_got(value):
    name = type(value).__name__
    with pytest.raises(TypeError, match=rf"^Layer\.weight: expected an array \(jax\.Array, "
                                        rf"numpy\.ndarray or torch\.Tensor\), got {name}$"):
        as_array(value, "Layer.weight")
    with pytest.raises(TypeError, match=rf"^Parameter: expected an array .* got {name}$"):
        as_array(value)


def test_parameter_rejects_non_arrays():
    with pytest.raises(TypeError, match=r"Parameter: expected an array .* got str"):
        nn.Parameter("weights")
    w = nn.Parameter(jnp.ones(2))
    with pytest.raises(TypeError, match=r"Parameter.data: expected an array .* got list"):
        w.data = [1.0, 2.0]


@pytest.mark.parametrize("value", [0, 1, None, "yes", 1.0])
def test_requires_grad_must_be_a_bool_as_in_pytorch(value):
    p = Parameter(jnp.ones(2))
    with pytest.raises(TypeError, match="requires_grad must be a bool, got"):
        p.requires_grad = value
    with pytest.raises(RuntimeError, match="requires_grad must be a bool"):
        torch.nn.Parameter(torch.ones(2)).requires_grad = value
    assert p.requires_grad is True
    p.requires_grad = np.bool_(False)
    assert p.requires_grad is False
