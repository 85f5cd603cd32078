"""nn.Module: registration, traversal, state_dict, errors, hooks, pytrees, containers; PyTorch
is the oracle for names, order and reprs. Parameter itself: test_parameter.py."""

import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import torsh_fn
from tests.oracle import assert_close
from torsh_fn import nn


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2, bias=False))
        self.scale = nn.Parameter(jnp.ones(2))
        self.register_buffer("steps", jnp.zeros((), jnp.int32))
        self.register_buffer("cache", jnp.zeros(2), persistent=False)

    def forward(self, x):
        return self.body(x) * self.scale


class _TorchNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.ReLU(),
                                        torch.nn.Linear(5, 2, bias=False))
        self.scale = torch.nn.Parameter(torch.ones(2))
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))
        self.register_buffer("cache", torch.zeros(2), persistent=False)

    def forward(self, x):
        return self.body(x) * self.scale


def test_names_and_order_match_torch():
    ours, theirs = _Net(), _TorchNet()
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert [n for n, _ in ours.named_buffers()] == [n for n, _ in theirs.named_buffers()]
    assert [n for n, _ in ours.named_modules()] == [n for n, _ in theirs.named_modules()]
    assert [n for n, _ in ours.named_children()] == [n for n, _ in theirs.named_children()]
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert repr(ours).replace("_Net", "_TorchNet") == repr(theirs)


def test_load_torch_state_dict_as_is_and_match_outputs(rng):
    ours, theirs = _Net(), _TorchNet()
    result = ours.load_state_dict(theirs.state_dict())
    assert repr(result) == "<All keys matched successfully>"
    x = rng.standard_normal((4, 3)).astype(np.float32)
    assert_close(ours(jnp.asarray(x)), theirs(torch.from_numpy(x)))
    assert ours.steps.dtype == jnp.int32  # cast to the existing dtype


def test_load_state_dict_lists_missing_and_unexpected_keys():
    net = _Net()
    sd = dict(net.state_dict())
    del sd["scale"]
    sd["extra.weight"] = np.zeros(3)
    with pytest.raises(RuntimeError, match=r'Unexpected key\(s\) in state_dict: "extra.weight"'
                       r'.*\n.*Missing key\(s\) in state_dict: "scale"') as err:
        net.load_state_dict(sd)
    assert isinstance(err.value, ValueError)
    missing, unexpected = net.load_state_dict(sd, strict=False)
    assert (missing, unexpected) == (["scale"], ["extra.weight"])


def test_load_state_dict_wrong_shape_names_key_and_shapes_and_changes_nothing():
    net = _Net()
    before = net.body[0].bias.data
    sd = dict(net.state_dict())
    sd["body.0.bias"] = np.ones(5, np.float32) * 3
    sd["body.0.weight"] = np.zeros((3, 5), np.float32)
    with pytest.raises(ValueError, match=r"size mismatch for body.0.weight: copying a param with "
                       r"shape \(3, 5\) from checkpoint, the shape in current model is \(5, 3\)"):
        net.load_state_dict(sd, strict=False)
    assert net.body[0].bias.data is before


def test_load_state_dict_assign_keeps_given_dtype():
    net = nn.Linear(2, 2)
    net.load_state_dict({"weight": np.eye(2, dtype=np.float16), "bias": np.zeros(2, np.float16)},
                        assign=True)
    assert net.weight.dtype == jnp.float16


def test_registration_rules_and_errors():
    net = _Net()
    with pytest.raises(TypeError, match="cannot assign 'ArrayImpl' object to parameter 'scale'"):
        net.scale = jnp.ones(2)
    with pytest.raises(AttributeError, match=r"cannot assign parameters before Module\.__init__"):
        class Bad(nn.Module):
            def __init__(self):
                self.w = nn.Parameter(jnp.ones(1))

        Bad()
    net.steps = np.ones((), np.int32)  # buffers take arrays
    assert isinstance(net.steps, jax.Array)
    del net.scale
    assert "scale" not in dict(net.named_parameters())
    with pytest.raises(AttributeError, match="'_Net' object has no attribute 'nope'"):
        net.nope


def test_train_eval_requires_grad_zero_grad_apply():
    net = _Net()
    assert net.eval() is net and not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    net.body[0].requires_grad_(False)
    assert [p.requires_grad for p in net.parameters()] == [True, False, False, True]
    for p in net.parameters():
        p.grad = jnp.ones(p.shape)
    net.zero_grad(set_to_none=False)
    assert all(float(p.grad.sum()) == 0 for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())
    seen = []
    net.apply(lambda m: seen.append(type(m).__name__))
    assert seen == ["Linear", "ReLU", "Linear", "Sequential", "_Net"]


def test_to_dtype_converts_floating_state_only():
    net = _Net().to(torsh_fn.bfloat16)
    assert net.body[0].weight.dtype == jnp.bfloat16 and net.steps.dtype == jnp.int32
    assert net.float().scale.dtype == jnp.float32
    assert net.half().cache.dtype == jnp.float16
    assert net.to("cpu", dtype=jnp.float32).scale.dtype == jnp.float32


def test_forward_hooks_and_pre_hooks():
    net = nn.Linear(2, 2)
    calls = []
    pre = net.register_forward_pre_hook(lambda m, args: (args[0] * 0,))
    post = net.register_forward_hook(lambda m, args, out: calls.append(out.shape) or out + 1)
    out = net(jnp.ones((3, 2)))
    assert_close(out, jnp.broadcast_to(net.bias.data + 1, (3, 2)))
    assert calls == [(3, 2)]
    pre.remove()
    post.remove()
    assert_close(net(jnp.zeros((1, 2))), net.bias.data[None])


def test_module_is_a_pytree():
    net = _Net()
    leaves = jax.tree.leaves(net)
    assert len(leaves) == 6  # 4 parameters (bias=False drops one... plus scale) and 2 buffers
    doubled = jax.tree.map(lambda a: a * 2, net)
    assert isinstance(doubled, _Net) and isinstance(doubled.scale, nn.Parameter)
    assert_close(doubled.scale.data, 2 * net.scale.data)
    x = jnp.ones((2, 3))
    assert_close(jax.jit(lambda m, x: m(x))(net, x), net(x))
    grads = jax.grad(lambda m: m(x).sum(), allow_int=True)(net)
    assert grads.body[0].weight.shape == (5, 3)
    assert jax.tree.structure(net) != jax.tree.structure(copy.deepcopy(net).eval())


def test_containers_behave_like_torch():
    seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    assert isinstance(seq[0], nn.Linear) and isinstance(seq[-1], nn.Linear)
    assert len(seq[1:]) == 2 and list(seq[1:].state_dict()) == ["2.weight", "2.bias"]
    seq.append(nn.Tanh())
    del seq[1]
    assert [type(m).__name__ for m in seq] == ["Linear", "Linear", "Tanh"]
    assert list(seq.state_dict()) == ["0.weight", "0.bias", "1.weight", "1.bias"]
    layers = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    layers.insert(0, nn.Identity())
    assert len(layers) == 4 and next(iter(layers.state_dict())) == "1.weight"
    blocks = nn.ModuleDict({"a": nn.Linear(1, 1), "b": nn.ReLU()})
    assert list(blocks) == ["a", "b"] and "a" in blocks
    plist = nn.ParameterList([jnp.ones(2), nn.Parameter(jnp.zeros(3))])
    pdict = nn.ParameterDict({"w": jnp.ones(2)})
    assert list(plist.state_dict()) == ["0", "1"] and isinstance(pdict["w"], nn.Parameter)
    theirs = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU())
    assert repr(nn.Sequential(nn.Linear(2, 3), nn.ReLU())) == repr(theirs)


def test_tied_parameters_are_reported_once():
    a, b = nn.Linear(2, 2), nn.Linear(2, 2)
    b.weight = a.weight
    tied = nn.Sequential(a, b)
    assert len(list(tied.parameters())) == 3
    assert len(list(tied.named_parameters(remove_duplicate=False))) == 4
    assert list(tied.state_dict()) == ["0.weight", "0.bias", "1.weight", "1.bias"]


def test_jit_members_are_modules_and_parameters_in_their_order():
    """What torsh_fn.jit reads on every call: shared modules and tied parameters once, at
    their first place, None children skipped."""
    shared = nn.Linear(2, 2)
    net = nn.Sequential(nn.Sequential(shared, nn.ReLU()), _Net(), shared)
    net[1].tied = shared.weight
    net[1].add_module("gone", None)
    modules, params = net._jit_members()
    assert modules == list(net.modules())
    assert params == list(net.parameters())


def test_jit_guard_moves_with_structure_and_is_none_for_own_slots():
    """torsh_fn.jit reuses a call's slots while the guard holds: it moves when a parameter is
    frozen or the mode changes, not when a buffer gets a new value; a subclass with its own
    ``_jit_slots`` or ``_jit_static`` makes no promise."""
    net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    guard = net._jit_guard()
    net[1].running_mean = jnp.ones(2)
    assert net._jit_guard() == guard
    net[0].weight.requires_grad = False
    assert net._jit_guard() != guard
    guard = net._jit_guard()
    net.eval()
    assert net._jit_guard() != guard

    class OwnSlots(nn.Linear):
        def _jit_slots(self):
            return super()._jit_slots()

    class OwnStatic(nn.Linear):
        def _jit_static(self):
            return super()._jit_static()

    assert OwnSlots(2, 2)._jit_guard() is None and OwnStatic(2, 2)._jit_guard() is None


def test_layer_errors_name_the_layer():
    with pytest.raises(ValueError, match=r"Linear\(in_features=4, out_features=2, bias=True\): "
                       r"expected input with in_features 4 \(dim -1\), got shape \(3, 5\)"):
        nn.Linear(4, 2)(jnp.ones((3, 5)))
    with pytest.raises(ValueError, match=r"Conv2d\(3, 4, kernel_size=\(3, 3\).*expected 3 or 4-D "
                       r"input, got 2-D input of shape \(3, 5\)"):
        nn.Conv2d(3, 4, 3)(jnp.ones((3, 5)))
    with pytest.raises(ValueError, match=r"Conv2d\(3, 4.*expected input with channels 3 "
                       r"\(dim -3\), got shape \(1, 2, 5, 5\)"):
        nn.Conv2d(3, 4, 3)(jnp.ones((1, 2, 5, 5)))


def test_parameters_to_vector_and_back_and_clipping():
    net = nn.Linear(3, 2)
    vec = nn.utils.parameters_to_vector(net.parameters())
    assert vec.shape == (8,)
    nn.utils.vector_to_parameters(jnp.arange(8.0), net.parameters())
    assert_close(net.bias.data, jnp.array([6.0, 7.0]))
    t = torch.nn.Linear(3, 2)
    grads = [np.full(p.shape, 3.0, np.float32) for p in net.parameters()]
    for p, tp, g in zip(net.parameters(), t.parameters(), grads):
        p.grad, tp.grad = jnp.asarray(g), torch.from_numpy(g.copy())
    total = nn.utils.clip_grad_norm_(net.parameters(), 1.0)
    t_total = torch.nn.utils.clip_grad_norm_(t.parameters(), 1.0)
    assert_close(total, t_total)
    for p, tp in zip(net.parameters(), t.parameters()):
        assert_close(p.grad, tp.grad)
    nn.utils.clip_grad_value_(net.parameters(), 0.1)
    assert_close(net.weight.grad, jnp.full((2, 3), 0.1))


_CONFIG = r"\(.*\)"  # the layer's configuration, as in its repr
_LAYER_ERRORS = [
    (lambda: nn.BatchNorm2d(4)(jnp.ones((2, 4, 5))),
     r"BatchNorm2d\(4, eps=1e-05.*\): expected 4-D input, got 3-D input of shape \(2, 4, 5\)"),
    (lambda: nn.BatchNorm1d(4)(jnp.ones((2, 5))),
     rf"BatchNorm1d{_CONFIG}: expected input with num_features 4 \(dim 1\), got shape \(2, 5\)"),
    (lambda: nn.LayerNorm((3, 4))(jnp.ones((2, 4, 3))),
     rf"LayerNorm{_CONFIG}: expected input whose last dimensions are \(3, 4\), got shape "
     r"\(2, 4, 3\)"),
    (lambda: nn.GroupNorm(2, 6)(jnp.ones((2, 4, 3))),
     rf"GroupNorm{_CONFIG}: expected input with num_channels 6 \(dim 1\), got shape \(2, 4, 3\)"),
    (lambda: nn.LSTM(3, 5)(jnp.ones((4, 2, 6))),
     r"LSTM\(3, 5\): expected input with input_size 3 \(dim -1\), got shape \(4, 2, 6\)"),
    (lambda: nn.GRU(3, 5)(jnp.ones((4, 2, 3, 1))),
     r"GRU\(3, 5\): expected 2 or 3-D input, got 4-D input of shape \(4, 2, 3, 1\)"),
    (lambda: nn.Bilinear(2, 3, 4)(jnp.ones((5, 2)), jnp.ones((5, 4))),
     rf"Bilinear{_CONFIG}: expected input with in2_features 3 \(dim -1\), got shape \(5, 4\)"),
    (lambda: nn.ConvTranspose2d(3, 2, 2)(jnp.ones((1, 4, 5, 5))),
     rf"ConvTranspose2d{_CONFIG}: expected input with channels 3 \(dim -3\), got shape "
     r"\(1, 4, 5, 5\)"),
    (lambda: nn.MultiheadAttention(6, 2)(*[jnp.ones((2, 3, 5))] * 3),
     r"MultiheadAttention.*: expected input with embed_dim 6 \(dim -1\), got shape \(2, 3, 5\)"),
    (lambda: nn.PReLU(3)(jnp.ones((2, 4))),
     r"PReLU\(num_parameters=3\): expected input with channels 3 \(dim 1\), got shape \(2, 4\)"),
    (lambda: nn.MaxPool2d(2)(jnp.ones(5)),
     rf"MaxPool2d{_CONFIG}: expected 3 or 4-D input, got 1-D input of shape \(5,\)"),
]


@pytest.mark.parametrize(("call", "message"), _LAYER_ERRORS)
def test_wrong_feature_count_or_rank_names_the_layer(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_embedding_rejects_float_indices_naming_the_layer():
    with pytest.raises(TypeError, match=r"Embedding\(10, 3\): expected integer indices, got "
                       r"float32"):
        nn.Embedding(10, 3)(jnp.ones(2))


def test_load_state_dict_non_array_value_names_the_key():
    with pytest.raises(TypeError, match=r"load_state_dict: value of 'weight': expected an array "
                       r"\(jax.Array, numpy.ndarray or torch.Tensor\), got str"):
        nn.Linear(3, 2).load_state_dict({"weight": "w", "bias": np.zeros(2)})
    with pytest.raises(TypeError, match="Expected state_dict to be dict-like"):
        nn.Linear(3, 2).load_state_dict([("weight", np.zeros((2, 3)))])


def test_prelu_weight_follows_the_default_dtype_as_other_layers():
    previous = torsh_fn.get_default_dtype()
    torsh_fn.set_default_dtype(torsh_fn.float16)
    try:
        assert nn.PReLU(2).weight.dtype == nn.Linear(2, 2).weight.dtype == jnp.float16
    finally:
        torsh_fn.set_default_dtype(previous)
    assert nn.PReLU(2, dtype=torsh_fn.bfloat16).weight.dtype == jnp.bfloat16
    assert_close(nn.PReLU(2, init=0.1).weight.data, np.full(2, 0.1, np.float32))


def test_reprs_match_torch_for_repeated_blocks_and_cells():
    def build(m):
        blocks = m.ModuleList([m.ReLU(), m.ReLU(), m.Linear(2, 2), m.ReLU(), m.ReLU(), m.ReLU()])
        cells = m.ModuleList([m.RNNCell(3, 4, bias=False, nonlinearity="relu"), m.GRUCell(2, 3)])
        return m.ModuleDict({"blocks": blocks, "cells": cells, "empty": m.ModuleList()})

    assert repr(build(nn)) == repr(build(torch.nn))
