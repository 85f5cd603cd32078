"""Default initialisation and ``nn.init`` against PyTorch's distributions.

Every expected distribution is written down once (uniform with a bound, normal with a std, or a
constant) from PyTorch's own fan and gain helpers, and checked on PyTorch's layer first (so the
table is right) and then on ours. The checks are statistical but tight: a uniform draw must stay
within its bound and come close to it; a normal draw must exceed three standard deviations
somewhere; the std must be within a few standard errors. A wrong initialiser (kaiming for
xavier, fan_out for fan_in, a normal for a uniform) fails them. Layers are large enough for that.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import torsh_fn
from tests.oracle import assert_close, to_numpy
from torsh_fn import nn
from torsh_fn.nn import init

_fans = torch.nn.init._calculate_fan_in_and_fan_out


def _sample(w: Any) -> np.ndarray:
    return to_numpy(getattr(w, "data", w)).astype(np.float64).ravel()


def assert_uniform(w: Any, bound: float, name: str = "") -> None:
    """U(-bound, bound): inside the bound, near it at the extremes, std bound/sqrt(3)."""
    x = _sample(w)
    n, std = x.size, bound / math.sqrt(3)
    assert np.abs(x).max() <= bound * (1 + 1e-6), f"{name}: max {np.abs(x).max()} > {bound}"
    # P(max |x| < bound (1 - eps)) = (1 - eps)^n ~ exp(-30) with eps = 30 / n (exp(-12) failed
    # once in CI, on torch's side: over a few hundred arrays a run, that bound was too tight)
    assert np.abs(x).max() >= bound * (1 - min(0.5, 30 / n)), f"{name}: never near {bound}"
    assert abs(x.std() - std) <= 3.0 * std / math.sqrt(n) + 1e-3 * std, f"{name}: std {x.std()}"
    assert abs(x.mean()) <= 6 * std / math.sqrt(n), f"{name}: mean {x.mean()}"


def assert_normal(w: Any, std: float, mean: float = 0.0, name: str = "") -> None:
    """N(mean, std²): std within a few standard errors, tails beyond 3 std (n >= 5000)."""
    x = _sample(w)
    n = x.size
    assert abs(x.std() - std) <= 5 * std / math.sqrt(2 * n) + 1e-3 * std, f"{name}: {x.std()}"
    assert abs(x.mean() - mean) <= 6 * std / math.sqrt(n), f"{name}: mean {x.mean()}"
    if n >= 5000:
        assert np.abs(x - mean).max() > 3 * std, f"{name}: no tail: not a normal"


def assert_constant(w: Any, value: float, name: str = "") -> None:
    x = to_numpy(getattr(w, "data", w))  # in its own dtype: 0.1 is float32(0.1)
    assert np.array_equal(x, np.full_like(x, value)), f"{name}: not all {value}"


def _linear_default(fan_in: int) -> tuple[str, float]:
    """Linear/Conv weights and biases: kaiming_uniform(a=sqrt(5)) is U(±1/sqrt(fan_in))."""
    return ("uniform", 1 / math.sqrt(fan_in))


def _xavier_uniform(shape: tuple[int, ...]) -> tuple[str, float]:
    fan_in, fan_out = _fans(torch.empty(shape))
    return ("uniform", math.sqrt(6 / (fan_in + fan_out)))


def _check(w: Any, spec: tuple[Any, ...], name: str) -> None:
    kind, value = spec
    check = {"uniform": assert_uniform, "normal": assert_normal, "constant": assert_constant}
    check[kind](w, value, name=name)


def _rnn_specs(m: Any) -> dict[str, tuple[str, float]]:
    return {name: ("uniform", 1 / math.sqrt(m.hidden_size)) for name, _ in m.named_parameters()}


def _mha_specs(e: int, kdim: int, vdim: int) -> dict[str, tuple[str, float]]:
    return {"q_proj_weight": _xavier_uniform((e, e)), "k_proj_weight": _xavier_uniform((e, kdim)),
            "v_proj_weight": _xavier_uniform((e, vdim)), "in_proj_bias": ("constant", 0.0),
            "out_proj.weight": _linear_default(e), "out_proj.bias": ("constant", 0.0),
            "bias_k": ("normal", math.sqrt(2 / (2 * e))), "bias_v": ("normal", 1 / math.sqrt(e))}


def _norm_specs(running: bool) -> dict[str, tuple[str, float]]:
    specs = {"weight": ("constant", 1.0), "bias": ("constant", 0.0)}
    if running:
        specs |= {"running_mean": ("constant", 0.0), "running_var": ("constant", 1.0),
                  "num_batches_tracked": ("constant", 0)}
    return specs


# name -> (build(nn), {state_dict key: expected distribution}, or a function of the torch layer)
LAYERS: dict[str, tuple[Callable[[Any], Any], Any]] = {
    "Linear": (lambda nn: nn.Linear(300, 2000),
               {"weight": _linear_default(300), "bias": _linear_default(300)}),
    "Bilinear": (lambda nn: nn.Bilinear(40, 30, 1000),
                 {"weight": _linear_default(40), "bias": _linear_default(40)}),
    "Conv1d": (lambda nn: nn.Conv1d(16, 1200, 5),
               {"weight": _linear_default(80), "bias": _linear_default(80)}),
    "Conv2d_groups": (lambda nn: nn.Conv2d(12, 1000, 3, groups=4),
                      {"weight": _linear_default(27), "bias": _linear_default(27)}),
    "Conv3d": (lambda nn: nn.Conv3d(6, 1000, 2),
               {"weight": _linear_default(48), "bias": _linear_default(48)}),
    # transposed weights are (in, out / groups, *k): PyTorch's fan_in is out / groups * k
    "ConvTranspose1d": (lambda nn: nn.ConvTranspose1d(40, 1000, 3),
                        {"weight": _linear_default(3000), "bias": _linear_default(3000)}),
    "ConvTranspose2d_groups": (lambda nn: nn.ConvTranspose2d(64, 1200, 3, groups=2),
                               {"weight": _linear_default(5400), "bias": _linear_default(5400)}),
    "ConvTranspose3d": (lambda nn: nn.ConvTranspose3d(8, 1000, 2),
                        {"weight": _linear_default(8000), "bias": _linear_default(8000)}),
    "Embedding": (lambda nn: nn.Embedding(1000, 30), {"weight": ("normal", 1.0)}),
    "EmbeddingBag": (lambda nn: nn.EmbeddingBag(800, 20), {"weight": ("normal", 1.0)}),
    "RNN": (lambda nn: nn.RNN(20, 1000, num_layers=2, bidirectional=True), _rnn_specs),
    "LSTM": (lambda nn: nn.LSTM(64, 600, batch_first=True), _rnn_specs),
    "GRU": (lambda nn: nn.GRU(32, 500, num_layers=2), _rnn_specs),
    "RNNCell": (lambda nn: nn.RNNCell(30, 1000), _rnn_specs),
    "LSTMCell": (lambda nn: nn.LSTMCell(30, 600), _rnn_specs),
    "GRUCell": (lambda nn: nn.GRUCell(30, 800), _rnn_specs),
    "MultiheadAttention": (lambda nn: nn.MultiheadAttention(600, 6),
                           {"in_proj_weight": _xavier_uniform((1800, 600)),
                            "in_proj_bias": ("constant", 0.0),
                            "out_proj.weight": _linear_default(600),
                            "out_proj.bias": ("constant", 0.0)}),
    "MultiheadAttention_kdim_vdim_bias_kv": (
        lambda nn: nn.MultiheadAttention(600, 6, kdim=200, vdim=300, add_bias_kv=True),
        _mha_specs(600, 200, 300)),
    "TransformerEncoderLayer": (
        lambda nn: nn.TransformerEncoderLayer(600, 6, dim_feedforward=900),
        {"self_attn.in_proj_weight": _xavier_uniform((1800, 600)),
         "self_attn.out_proj.weight": _linear_default(600),
         "linear1.weight": _linear_default(600), "linear1.bias": _linear_default(600),
         "linear2.weight": _linear_default(900), "linear2.bias": _linear_default(900),
         "norm1.weight": ("constant", 1.0), "norm2.bias": ("constant", 0.0)}),
    "BatchNorm1d": (lambda nn: nn.BatchNorm1d(7), _norm_specs(running=True)),
    "BatchNorm2d": (lambda nn: nn.BatchNorm2d(5, momentum=None), _norm_specs(running=True)),
    "BatchNorm3d": (lambda nn: nn.BatchNorm3d(3), _norm_specs(running=True)),
    "InstanceNorm2d": (lambda nn: nn.InstanceNorm2d(4, affine=True, track_running_stats=True),
                       _norm_specs(running=True)),
    "LayerNorm": (lambda nn: nn.LayerNorm((3, 4)), _norm_specs(running=False)),
    "GroupNorm": (lambda nn: nn.GroupNorm(2, 6), _norm_specs(running=False)),
    "RMSNorm": (lambda nn: nn.RMSNorm(9), {"weight": ("constant", 1.0)}),
    "PReLU": (lambda nn: nn.PReLU(), {"weight": ("constant", 0.25)}),
    "PReLU_channels": (lambda nn: nn.PReLU(6, init=0.1), {"weight": ("constant", 0.1)}),
}


@pytest.fixture
def seeded(rng):
    """A fresh seed for both generators each run (printed seed reproduces it)."""
    seed = int(rng.integers(2**31))
    torsh_fn.manual_seed(seed)
    torch.manual_seed(seed)


@pytest.mark.parametrize("name", list(LAYERS))
def test_default_init_matches_torch_distribution(name, seeded):
    build, specs = LAYERS[name]
    theirs, ours = build(torch.nn), build(nn)
    if callable(specs):
        specs = specs(theirs)
    t_state, state = theirs.state_dict(), ours.state_dict()
    assert sorted(specs) == sorted(k for k in specs if k in t_state)  # the table names real keys
    if name.startswith(("Linear", "Conv", "RNN", "LSTM", "GRU", "Embedding", "Bilinear")):
        assert sorted(specs) == sorted(t_state)  # ...all of them
    for key, spec in specs.items():
        _check(t_state[key], spec, f"torch {name}.{key}")  # the table is PyTorch's
        _check(state[key], spec, f"torsh_fn {name}.{key}")


def test_embedding_padding_row_is_zero_rest_normal(seeded):
    ours = nn.Embedding(5000, 8, padding_idx=-2)
    w = np.asarray(ours.weight.data)
    assert np.array_equal(w[-2], np.zeros(8))
    assert_normal(np.delete(w, -2 % 5000, axis=0), 1.0)


def test_lazy_linear_initialises_on_first_call(seeded):
    ours = nn.LazyLinear(1500)
    ours(jnp.ones((2, 250)))
    assert_uniform(ours.weight, 1 / math.sqrt(250))
    assert_uniform(ours.bias, 1 / math.sqrt(250))


def test_two_layers_draw_different_values_and_seed_repeats_them():
    torsh_fn.manual_seed(7)
    a, b = nn.Linear(20, 30), nn.Linear(20, 30)
    torsh_fn.manual_seed(7)
    again = nn.Linear(20, 30)
    assert not np.allclose(np.asarray(a.weight.data), np.asarray(b.weight.data))
    assert np.array_equal(np.asarray(a.weight.data), np.asarray(again.weight.data))


# -- nn.init functions --------------------------------------------------------------------------

_GAINS = [("linear", None), ("conv1d", None), ("conv2d", None), ("conv3d", None),
          ("conv_transpose1d", None), ("conv_transpose2d", None), ("conv_transpose3d", None),
          ("sigmoid", None), ("tanh", None), ("relu", None), ("leaky_relu", None),
          ("leaky_relu", 0.2), ("leaky_relu", 3), ("selu", None)]


@pytest.mark.parametrize(("nonlinearity", "param"), _GAINS)
def test_calculate_gain_equals_torch(nonlinearity, param):
    assert init.calculate_gain(nonlinearity, param) == pytest.approx(
        torch.nn.init.calculate_gain(nonlinearity, param), rel=1e-15)


def test_calculate_gain_rejects_what_torch_rejects():
    for args in (("softmax",), ("leaky_relu", "0.1"), ("leaky_relu", True)):
        with pytest.raises(ValueError):
            torch.nn.init.calculate_gain(*args)
        with pytest.raises(ValueError):
            init.calculate_gain(*args)


@pytest.mark.parametrize("shape", [(3, 5), (6, 2), (4, 4)])
def test_deterministic_fills_equal_torch(shape):
    for fill, args in ((init.constant_, (1.5,)), (init.ones_, ()), (init.zeros_, ()),
                       (init.eye_, ())):
        p = nn.Parameter(jnp.full(shape, 9.0))
        expected = getattr(torch.nn.init, fill.__name__)(torch.full(shape, 9.0), *args)
        assert fill(p, *args) is p  # in place on a Parameter, returned
        assert_close(p.data, expected)
        assert_close(fill(jnp.full(shape, 9.0), *args), expected)  # a new array otherwise


@pytest.mark.parametrize(("shape", "groups"), [((4, 3, 5), 1), ((6, 2, 3, 3), 2),
                                               ((2, 4, 3, 2, 3), 1), ((6, 6, 1, 1), 3)])
def test_dirac_equals_torch(shape, groups):
    ours = init.dirac_(jnp.ones(shape), groups=groups)
    assert_close(ours, torch.nn.init.dirac_(torch.ones(shape), groups=groups))


def test_shape_errors_follow_torch():
    with pytest.raises(ValueError, match="2-D"):
        init.eye_(jnp.ones((2, 3, 4)))
    with pytest.raises(ValueError, match="3, 4 or 5-D"):
        init.dirac_(jnp.ones((2, 3)))
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init.xavier_uniform_(jnp.ones(5))
    with pytest.raises(ValueError, match="Mode fan_avg not supported"):
        init.kaiming_normal_(jnp.ones((3, 3)), mode="fan_avg")
    with pytest.raises(TypeError):
        init.uniform_([1.0, 2.0])


def test_uniform_and_normal_with_arguments(seeded):
    shape = (200, 100)
    x = np.asarray(init.uniform_(jnp.zeros(shape), -0.5, 2.5))
    assert x.min() >= -0.5 and x.max() <= 2.5 and x.min() < -0.49 and x.max() > 2.49
    assert_uniform(x - 1.0, 1.5)
    assert_normal(init.normal_(jnp.zeros(shape), mean=3.0, std=0.2), 0.2, mean=3.0)


def test_trunc_normal_bounds_and_std_match_torch(seeded):
    shape, kwargs = (300, 200), {"mean": 0.5, "std": 2.0, "a": -1.0, "b": 3.0}
    ours = np.asarray(init.trunc_normal_(jnp.zeros(shape), **kwargs))
    theirs = torch.nn.init.trunc_normal_(torch.zeros(shape), **kwargs).numpy()
    assert ours.min() >= -1.0 and ours.max() <= 3.0
    assert ours.min() < -0.99 and ours.max() > 2.99
    assert abs(ours.std() - theirs.std()) < 0.02 and abs(ours.mean() - theirs.mean()) < 0.03


_KAIMING = [("fan_in", "leaky_relu", 0), ("fan_in", "leaky_relu", math.sqrt(5)),
            ("fan_out", "relu", 0), ("fan_in", "tanh", 0), ("fan_out", "linear", 0),
            ("fan_in", "leaky_relu", 0.3)]


@pytest.mark.parametrize(("mode", "nonlinearity", "a"), _KAIMING)
def test_kaiming_matches_torch_formula(mode, nonlinearity, a, seeded):
    shape = (400, 30, 3, 2)  # fan_in 180, fan_out 2400: the mode matters
    fan = _fans(torch.empty(shape))[0 if mode == "fan_in" else 1]
    gain = torch.nn.init.calculate_gain(nonlinearity, a)
    kwargs = {"a": a, "mode": mode, "nonlinearity": nonlinearity}
    for fill, check, scale in ((init.kaiming_uniform_, assert_uniform, math.sqrt(3 / fan)),
                               (init.kaiming_normal_, assert_normal, 1 / math.sqrt(fan))):
        torch_fill = getattr(torch.nn.init, fill.__name__)
        check(torch_fill(torch.empty(shape), **kwargs), gain * scale, name="torch")
        check(fill(jnp.zeros(shape), **kwargs), gain * scale, name=fill.__name__)


@pytest.mark.parametrize("gain", [1.0, 0.7])
def test_xavier_matches_torch_formula(gain, seeded):
    shape = (300, 50, 5)  # fan_in 250, fan_out 1500
    fan_in, fan_out = _fans(torch.empty(shape))
    bound = gain * math.sqrt(6 / (fan_in + fan_out))
    assert_uniform(torch.nn.init.xavier_uniform_(torch.empty(shape), gain=gain), bound)
    assert_uniform(init.xavier_uniform_(jnp.zeros(shape), gain=gain), bound)
    std = gain * math.sqrt(2 / (fan_in + fan_out))
    assert_normal(torch.nn.init.xavier_normal_(torch.empty(shape), gain=gain), std)
    assert_normal(init.xavier_normal_(jnp.zeros(shape), gain=gain), std)


@pytest.mark.parametrize("shape", [(30, 50), (50, 30), (8, 3, 2, 2), (16, 4, 2)])
def test_orthogonal_is_orthogonal_with_gain(shape, seeded):
    gain = 1.7
    w = np.asarray(init.orthogonal_(jnp.zeros(shape), gain=gain), np.float64)
    flat = w.reshape(shape[0], -1)
    gram = flat @ flat.T if flat.shape[0] <= flat.shape[1] else flat.T @ flat
    np.testing.assert_allclose(gram, gain**2 * np.eye(len(gram)), atol=1e-5)
    t = torch.nn.init.orthogonal_(torch.empty(shape), gain=gain).numpy().reshape(shape[0], -1)
    # same entry distribution as torch's (Haar): every entry has variance gain^2 / max(rows, cols)
    assert abs(flat.std() - t.std()) < 0.15 * t.std()
    assert not np.allclose(np.abs(flat), np.abs(flat[0, 0]))


def test_generator_and_key_make_draws_repeatable():
    g1, g2 = torsh_fn.Generator().manual_seed(3), torsh_fn.Generator().manual_seed(3)
    a = init.normal_(jnp.zeros(50), generator=g1)
    assert np.array_equal(np.asarray(a), np.asarray(init.normal_(jnp.zeros(50), generator=g2)))
    key = jax.random.key(1)
    b = init.kaiming_uniform_(jnp.zeros((4, 5)), key=key)
    assert np.array_equal(np.asarray(b), np.asarray(init.kaiming_uniform_(jnp.zeros((4, 5)),
                                                                          key=key)))
    assert init.uniform_(jnp.zeros(3, jnp.bfloat16)).dtype == jnp.bfloat16
