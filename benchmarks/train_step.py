"""Training-step benchmark on the CPU: torsh_fn's PyTorch face against its peers, in one run.

The peers: hand-written jax.jit, Flax NNX, Equinox, PyTorch eager and torch.compile, on the same
work.

    PYTHONPATH=$PWD python benchmarks/train_step.py [--models mlp cnn seed_cnn resnet18]
        [--frameworks ...] [--repeats 5] [--steps N] [--threads T] [--no-compile]

The work (issue 10): one training step (forward, cross-entropy, backward, Adam with lr 1e-3 and
PyTorch's defaults otherwise), float32, of

- ``mlp``: Linear 784-512-512-10 with ReLU, batch 256;
- ``cnn``: Conv(1,32,3,p1)-ReLU-MaxPool2-Conv(32,64,3,p1)-ReLU-MaxPool2-Flatten-Linear(3136,128)-
  ReLU-Linear(128,10) on 1x28x28, batch 128;
- ``seed_cnn``: the zoo's ``seed_cnn`` (conv-BatchNorm-ReLU blocks, dropout) on its native 1x8x8
  digits, batch 64;
- ``resnet18``: the zoo's ``resnet18(num_classes=10)`` on 3x32x32, batch 64.

BatchNorm and dropout run in training mode everywhere. Each framework is written as its users
write it: torsh_fn's PyTorch face (``nn``, ``optim.Adam``, and ``torsh_fn.training.train_step``:
``opt.zero_grad()``, ``torsh_fn.backward(...)``, ``opt.step()`` compiled by ``torsh_fn.jit``);
hand-written pure functions under ``jax.jit`` with ``optax.adam`` and donated state (XLA's own
convolution and pooling); Flax NNX (``nnx.jit``, ``nnx.Optimizer``; images in NHWC, Flax's
layout); Equinox (``eqx.filter_jit``, per-sample modules under ``jax.vmap``); PyTorch eager;
``torch.compile`` of the whole step (skipped, with the reason, if it fails). All start from the
weights of the torsh_fn model and see the same batch, so the first losses agree (except
``seed_cnn``, whose dropout masks differ between frameworks).

Timing: after a warm-up, ``repeats`` rounds of ``steps`` steps, the frameworks interleaved within
each round (load from other processes then falls on all of them), each step blocking on its loss
as a training loop that logs it would. PyTorch's OpenMP threads spin on after its last step,
and on two cores they slow whichever framework comes next (MLP: 6.9 and 4.3 ms for jax.jit's
first two steps after PyTorch's round, 2.5 ms from the fourth; a few percent for tens of steps
more): so each round starts with untimed steps (for at least ``SETTLE_S``), and the order of
the frameworks reverses every other round, so that no framework always follows PyTorch (with
one fixed order it was always torsh_fn.jit). Reported per step: the median round and the
spread (fastest-slowest round), the speed relative to PyTorch eager (its time / ours: above 1 is
faster) and the time relative to hand-written jax.jit (ours / its: below 1 is faster).
Flax and Equinox are the optional ``bench`` extra: without them their rows are skipped.

On a CPU shared with other work, PyTorch's OpenMP threads spin at their barriers and a step can
take 10-60x its time on a quiet machine (XLA's thread pool is far less affected): compare with a
run of ``--frameworks "torch eager"`` alone, or run with ``OMP_WAIT_POLICY=PASSIVE``.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import torsh_fn
from torsh_fn import models, nn, optim
from torsh_fn.training import train_step

try:
    import torch
except ImportError:  # pragma: no cover - torch is a test dependency
    torch = None
try:
    from flax import nnx
except ImportError:
    nnx = None
try:
    import equinox as eqx
except ImportError:
    eqx = None

LR = 1e-3

# A model is a list of layers, each a tuple (kind, *arguments), listed in the order of the
# torsh_fn model's parameters, so every framework takes its weights from the same arrays.
#   ("linear", in, out)       ("conv", in, out, kernel, stride, padding, bias)
#   ("bn", channels)          ("relu",)          ("maxpool", kernel, stride, padding)
#   ("avgpool", out_side)     ("dropout", p)     ("flatten", C, H, W)  (the shape it flattens)
#   ("block", in, out, stride): ResNet's BasicBlock (conv-bn-relu-conv-bn, shortcut, relu)


def _mlp_spec() -> list[tuple]:
    return [("linear", 784, 512), ("relu",), ("linear", 512, 512), ("relu",),
            ("linear", 512, 10)]


def _cnn_spec() -> list[tuple]:
    return [("conv", 1, 32, 3, 1, 1, True), ("relu",), ("maxpool", 2, 2, 0),
            ("conv", 32, 64, 3, 1, 1, True), ("relu",), ("maxpool", 2, 2, 0),
            ("flatten", 64, 7, 7), ("linear", 3136, 128), ("relu",), ("linear", 128, 10)]


def _seed_cnn_spec() -> list[tuple]:
    def conv_bn(cin: int, cout: int) -> list[tuple]:
        return [("conv", cin, cout, 3, 1, 1, False), ("bn", cout), ("relu",)]

    return [*conv_bn(1, 32), *conv_bn(32, 64), ("maxpool", 2, 2, 0), *conv_bn(64, 64),
            ("avgpool", 2), ("flatten", 64, 2, 2), ("dropout", 0.25), ("linear", 256, 128),
            ("relu",), ("dropout", 0.25), ("linear", 128, 10)]


def _resnet18_spec() -> list[tuple]:
    blocks, cin = [], 64
    for width in (64, 128, 256, 512):
        for j in range(2):
            blocks.append(("block", cin, width, 2 if width > 64 and j == 0 else 1))
            cin = width
    return [("conv", 3, 64, 7, 2, 3, False), ("bn", 64), ("relu",), ("maxpool", 3, 2, 1),
            *blocks, ("avgpool", 1), ("flatten", 512, 1, 1), ("linear", 512, 10)]


def _sequential(spec: list[tuple]) -> nn.Module:
    """torsh_fn's nn.Sequential for the plain models (a) and (b)."""
    layers = {"linear": lambda a, b: nn.Linear(a, b), "relu": nn.ReLU,
              "conv": lambda a, b, k, s, p, bias: nn.Conv2d(a, b, k, s, p, bias=bias),
              "maxpool": lambda k, s, p: nn.MaxPool2d(k, s, p), "flatten": lambda *_: nn.Flatten()}
    return nn.Sequential(*(layers[kind](*rest) for kind, *rest in spec))


# name: (spec, torsh_fn model, input shape (N, C, H, W) or (N, features), default steps a round)
MODELS: dict[str, tuple[Callable[[], list], Callable[[], nn.Module], tuple[int, ...], int]] = {
    "mlp": (_mlp_spec, lambda: _sequential(_mlp_spec()), (256, 784), 40),
    "cnn": (_cnn_spec, lambda: _sequential(_cnn_spec()), (128, 1, 28, 28), 6),
    "seed_cnn": (_seed_cnn_spec, models.seed_cnn, (64, 1, 8, 8), 20),
    "resnet18": (_resnet18_spec, lambda: models.resnet18(num_classes=10), (64, 3, 32, 32), 2),
}
FRAMEWORKS = ("torsh_fn.jit", "jax.jit+optax", "flax.nnx", "equinox", "torch eager",
              "torch.compile")


def _take(arrays: list[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    """The next weight array, checked against the shape this framework's layer expects."""
    a = arrays.pop(0)
    if a.shape != shape:
        raise ValueError(f"weight order: expected {shape}, got {a.shape}")
    return a


# --- torsh_fn: the PyTorch face under torsh_fn.jit ---------------------------------------------

def torsh_fn_runner(model: nn.Module, x: np.ndarray, y: np.ndarray) -> Callable[[], Any]:
    """``torsh_fn.training.train_step``: ``opt.zero_grad()``, ``torsh_fn.backward(lambda:
    F.cross_entropy(model(x), y))``, ``opt.step()`` under ``torsh_fn.jit``."""
    model.train()
    opt = optim.Adam(model.parameters(), lr=LR)
    x, y = jnp.asarray(x), jnp.asarray(y)
    return lambda: train_step(model, opt, x, y)


# --- hand-written pure functions under jax.jit, optax.adam ---------------------------------------

def _jax_layer_params(layer: tuple, arrays: list[np.ndarray]) -> Any:
    kind, *a = layer
    if kind == "linear":
        return {"w": _take(arrays, (a[1], a[0])), "b": _take(arrays, (a[1],))}
    if kind == "conv":
        p = {"w": _take(arrays, (a[1], a[0], a[2], a[2]))}
        if a[5]:
            p["b"] = _take(arrays, (a[1],))
        return p
    if kind == "bn":
        return {"w": _take(arrays, (a[0],)), "b": _take(arrays, (a[0],))}
    if kind == "block":
        cin, cout, stride = a
        p = {"conv1": _jax_layer_params(("conv", cin, cout, 3, stride, 1, False), arrays),
             "bn1": _jax_layer_params(("bn", cout), arrays),
             "conv2": _jax_layer_params(("conv", cout, cout, 3, 1, 1, False), arrays),
             "bn2": _jax_layer_params(("bn", cout), arrays)}
        if stride != 1 or cin != cout:
            p["down_conv"] = _jax_layer_params(("conv", cin, cout, 1, stride, 0, False), arrays)
            p["down_bn"] = _jax_layer_params(("bn", cout), arrays)
        return p
    return {}


def _jax_layer_state(layer: tuple) -> Any:
    kind, *a = layer
    if kind == "bn":
        return {"mean": jnp.zeros(a[0]), "var": jnp.ones(a[0])}
    if kind == "block":
        s = {"bn1": _jax_layer_state(("bn", a[1])), "bn2": _jax_layer_state(("bn", a[1]))}
        if a[2] != 1 or a[0] != a[1]:
            s["down_bn"] = _jax_layer_state(("bn", a[1]))
        return s
    return {}


def _conv(x, p, stride: int, padding: int):
    y = jax.lax.conv_general_dilated(x, p["w"], (stride, stride), [(padding, padding)] * 2,
                                     dimension_numbers=("NCHW", "OIHW", "NCHW"))
    return y + p["b"][None, :, None, None] if "b" in p else y


def _batch_norm(x, p, s):
    mean, var = x.mean((0, 2, 3)), x.var((0, 2, 3))
    n = x.size // x.shape[1]
    new = {"mean": 0.9 * s["mean"] + 0.1 * jax.lax.stop_gradient(mean),
           "var": 0.9 * s["var"] + 0.1 * jax.lax.stop_gradient(var) * n / (n - 1)}
    y = (x - mean[None, :, None, None]) * jax.lax.rsqrt(var[None, :, None, None] + 1e-5)
    return y * p["w"][None, :, None, None] + p["b"][None, :, None, None], new


def _jax_layer(layer: tuple, p: Any, s: Any, x: jax.Array, key: jax.Array):
    kind, *a = layer
    if kind == "linear":
        return x @ p["w"].T + p["b"], s
    if kind == "conv":
        return _conv(x, p, a[3], a[4]), s
    if kind == "bn":
        return _batch_norm(x, p, s)
    if kind == "relu":
        return jax.nn.relu(x), s
    if kind == "maxpool":
        k, stride, pad = a
        return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 1, k, k),
                                     (1, 1, stride, stride),
                                     [(0, 0), (0, 0), (pad, pad), (pad, pad)]), s
    if kind == "avgpool":
        n, c, h, w = x.shape
        o = a[0]
        return x.reshape(n, c, o, h // o, o, w // o).mean((3, 5)), s
    if kind == "flatten":
        return x.reshape(x.shape[0], -1), s
    if kind == "dropout":
        keep = jax.random.bernoulli(key, 1 - a[0], x.shape)
        return jnp.where(keep, x / (1 - a[0]), 0), s
    # block
    new = {}
    h, new["bn1"] = _batch_norm(_conv(x, p["conv1"], a[2], 1), p["bn1"], s["bn1"])
    h, new["bn2"] = _batch_norm(_conv(jax.nn.relu(h), p["conv2"], 1, 1), p["bn2"], s["bn2"])
    if "down_conv" in p:
        x, new["down_bn"] = _batch_norm(_conv(x, p["down_conv"], a[2], 0), p["down_bn"],
                                        s["down_bn"])
    return jax.nn.relu(h + x), new


def jax_runner(spec: list[tuple], arrays: list[np.ndarray], x: np.ndarray,
               y: np.ndarray) -> Callable[[], Any]:
    arrays = list(arrays)
    params = [jax.tree.map(jnp.asarray, _jax_layer_params(layer, arrays)) for layer in spec]
    state = [_jax_layer_state(layer) for layer in spec]
    tx = optax.adam(LR)
    x, y = jnp.asarray(x), jnp.asarray(y)

    dropout = any(layer[0] == "dropout" for layer in spec)

    def loss_fn(params, state, x, y, key):
        keys = jax.random.split(key, len(spec)) if dropout else [None] * len(spec)
        new_state = []
        for layer, p, s, k in zip(spec, params, state, keys):
            x, s = _jax_layer(layer, p, s, x, k)
            new_state.append(s)
        return optax.softmax_cross_entropy_with_integer_labels(x, y).mean(), new_state

    @functools.partial(jax.jit, donate_argnums=(0, 1, 2, 3))
    def step(params, state, opt_state, key, x, y):
        key, sub = jax.random.split(key) if dropout else (key, key)
        (loss, state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, state, x, y,
                                                                          sub)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), state, opt_state, key, loss

    carry = [params, state, tx.init(params), jax.random.key(0)]

    def run():
        *carry[:], loss = step(*carry, x, y)
        return loss

    return run


# --- Flax NNX -------------------------------------------------------------------------------------

def _nnx_layer(layer: tuple, arrays: list[np.ndarray], rngs: Any) -> Any:
    kind, *a = layer
    if kind == "linear":
        m = nnx.Linear(a[0], a[1], rngs=rngs)
        m.kernel.value = jnp.asarray(_take(arrays, (a[1], a[0])).T)
        m.bias.value = jnp.asarray(_take(arrays, (a[1],)))
        return m
    if kind == "conv":
        cin, cout, k, stride, pad, bias = a
        m = nnx.Conv(cin, cout, (k, k), strides=stride, padding=[(pad, pad)] * 2,
                     use_bias=bias, rngs=rngs)
        m.kernel.value = jnp.asarray(_take(arrays, (cout, cin, k, k)).transpose(2, 3, 1, 0))
        if bias:
            m.bias.value = jnp.asarray(_take(arrays, (cout,)))
        return m
    if kind == "bn":
        m = nnx.BatchNorm(a[0], momentum=0.9, epsilon=1e-5, rngs=rngs)
        m.scale.value = jnp.asarray(_take(arrays, (a[0],)))
        m.bias.value = jnp.asarray(_take(arrays, (a[0],)))
        return m
    if kind == "relu":
        return nnx.relu
    if kind == "maxpool":
        k, s, p = a
        return functools.partial(nnx.max_pool, window_shape=(k, k), strides=(s, s),
                                 padding=[(p, p)] * 2)
    if kind == "avgpool":
        return lambda x: x.reshape(x.shape[0], a[0], x.shape[1] // a[0], a[0],
                                   x.shape[2] // a[0], x.shape[3]).mean((2, 4))
    if kind == "flatten":
        return lambda x: x.reshape(x.shape[0], -1)
    if kind == "dropout":
        return nnx.Dropout(a[0], rngs=rngs)
    return _NNXBlock(*a, arrays, rngs)


if nnx is not None:
    class _NNXBlock(nnx.Module):
        def __init__(self, cin: int, cout: int, stride: int, arrays: list[np.ndarray],
                     rngs: Any) -> None:
            self.conv1 = _nnx_layer(("conv", cin, cout, 3, stride, 1, False), arrays, rngs)
            self.bn1 = _nnx_layer(("bn", cout), arrays, rngs)
            self.conv2 = _nnx_layer(("conv", cout, cout, 3, 1, 1, False), arrays, rngs)
            self.bn2 = _nnx_layer(("bn", cout), arrays, rngs)
            self.down = nnx.Sequential(
                _nnx_layer(("conv", cin, cout, 1, stride, 0, False), arrays, rngs),
                _nnx_layer(("bn", cout), arrays, rngs)) if stride != 1 or cin != cout else None

        def __call__(self, x: jax.Array) -> jax.Array:
            h = self.bn2(self.conv2(nnx.relu(self.bn1(self.conv1(x)))))
            return nnx.relu(h + (x if self.down is None else self.down(x)))


def _n_arrays(layer: tuple) -> int:
    """How many weight arrays a layer takes."""
    kind, *a = layer
    if kind == "block":
        return 9 if a[2] != 1 or a[0] != a[1] else 6
    return {"linear": 2, "bn": 2, "conv": 1 + bool(a[-1]) if kind == "conv" else 0}.get(kind, 0)


def _nhwc_weights(spec: list[tuple], arrays: list[np.ndarray]) -> list[np.ndarray]:
    """The weights with the Linear after each Flatten taking (H, W, C)-ordered features."""
    arrays, out = list(arrays), []
    for layer in spec:
        out.extend(arrays.pop(0) for _ in range(_n_arrays(layer)))
        if layer[0] == "flatten":
            c, h, w = layer[1:]
            weight = arrays.pop(0)
            arrays.insert(0, weight.reshape(-1, c, h, w).transpose(0, 2, 3, 1)
                          .reshape(weight.shape[0], -1))
    return out


def nnx_runner(spec: list[tuple], arrays: list[np.ndarray], x: np.ndarray,
               y: np.ndarray) -> Callable[[], Any]:
    weights = _nhwc_weights(spec, arrays)
    rngs = nnx.Rngs(0)
    model = nnx.Sequential(*(_nnx_layer(layer, weights, rngs) for layer in spec))
    model.train()
    opt = nnx.Optimizer(model, optax.adam(LR), wrt=nnx.Param)
    x = jnp.asarray(x.transpose(0, 2, 3, 1) if x.ndim == 4 else x)
    y = jnp.asarray(y)

    @nnx.jit
    def step(model, opt, x, y):
        def loss_fn(model):
            return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        opt.update(model, grads)
        return loss

    return lambda: step(model, opt, x, y)


# --- Equinox --------------------------------------------------------------------------------------

def _eqx_layer(layer: tuple, arrays: list[np.ndarray], key: jax.Array) -> Any:
    kind, *a = layer
    if kind == "linear":
        m = eqx.nn.Linear(a[0], a[1], key=key)
        w, b = _take(arrays, (a[1], a[0])), _take(arrays, (a[1],))
        return eqx.tree_at(lambda m: (m.weight, m.bias), m, (jnp.asarray(w), jnp.asarray(b)))
    if kind == "conv":
        cin, cout, k, stride, pad, bias = a
        m = eqx.nn.Conv2d(cin, cout, k, stride, pad, use_bias=bias, key=key)
        m = eqx.tree_at(lambda m: m.weight, m, jnp.asarray(_take(arrays, (cout, cin, k, k))))
        if bias:
            m = eqx.tree_at(lambda m: m.bias, m,
                            jnp.asarray(_take(arrays, (cout,)).reshape(cout, 1, 1)))
        return m
    if kind == "bn":
        m = eqx.nn.BatchNorm(a[0], axis_name="batch", eps=1e-5, momentum=0.9, mode="batch")
        w, b = _take(arrays, (a[0],)), _take(arrays, (a[0],))
        return eqx.tree_at(lambda m: (m.weight, m.bias), m, (jnp.asarray(w), jnp.asarray(b)))
    if kind == "relu":
        return eqx.nn.Lambda(jax.nn.relu)
    if kind == "maxpool":
        return eqx.nn.MaxPool2d(a[0], a[1], a[2])
    if kind == "avgpool":
        return eqx.nn.AdaptiveAvgPool2d(a[0])
    if kind == "flatten":
        return eqx.nn.Lambda(jnp.ravel)
    if kind == "dropout":
        return eqx.nn.Dropout(a[0])
    return _EqxBlock(*a, arrays, key)


if eqx is not None:
    class _EqxBlock(eqx.nn.StatefulLayer):
        conv1: Any
        bn1: Any
        conv2: Any
        bn2: Any
        down: Any

        def __init__(self, cin: int, cout: int, stride: int, arrays: list[np.ndarray],
                     key: jax.Array) -> None:
            keys = jax.random.split(key, 3)
            self.conv1 = _eqx_layer(("conv", cin, cout, 3, stride, 1, False), arrays, keys[0])
            self.bn1 = _eqx_layer(("bn", cout), arrays, key)
            self.conv2 = _eqx_layer(("conv", cout, cout, 3, 1, 1, False), arrays, keys[1])
            self.bn2 = _eqx_layer(("bn", cout), arrays, key)
            self.down = None
            if stride != 1 or cin != cout:
                self.down = eqx.nn.Sequential([
                    _eqx_layer(("conv", cin, cout, 1, stride, 0, False), arrays, keys[2]),
                    _eqx_layer(("bn", cout), arrays, key)])

        def __call__(self, x, state, *, key=None):
            h, state = self.bn1(self.conv1(x), state)
            h, state = self.bn2(self.conv2(jax.nn.relu(h)), state)
            if self.down is not None:
                x, state = self.down(x, state)
            return jax.nn.relu(h + x), state

        def is_stateful(self) -> bool:
            return True


def eqx_runner(spec: list[tuple], arrays: list[np.ndarray], x: np.ndarray,
               y: np.ndarray) -> Callable[[], Any]:
    arrays = list(arrays)
    keys = jax.random.split(jax.random.key(0), len(spec))
    model = eqx.nn.Sequential([_eqx_layer(layer, arrays, k) for layer, k in zip(spec, keys)])
    state = eqx.nn.State(model)
    model = eqx.nn.delete_init_state(model)  # as eqx.nn.make_with_state does
    tx = optax.adam(LR)
    opt_state = tx.init(eqx.filter(model, eqx.is_array))
    x, y = jnp.asarray(x), jnp.asarray(y)

    dropout = any(layer[0] == "dropout" for layer in spec)

    @eqx.filter_jit
    def step(model, state, opt_state, key, x, y):
        key, sub = jax.random.split(key) if dropout else (key, None)

        def loss_fn(model, state):
            batched = jax.vmap(lambda x, state, key: model(x, state, key=key), axis_name="batch",
                               in_axes=(0, None, 0 if dropout else None), out_axes=(0, None))
            keys = jax.random.split(sub, x.shape[0]) if dropout else None
            logits, state = batched(x, state, keys)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), state

        (loss, state), grads = eqx.filter_value_and_grad(loss_fn, has_aux=True)(model, state)
        updates, opt_state = tx.update(grads, opt_state, eqx.filter(model, eqx.is_array))
        return eqx.apply_updates(model, updates), state, opt_state, key, loss

    carry = [model, state, opt_state, jax.random.key(1)]

    def run():
        *carry[:], loss = step(*carry, x, y)
        return loss

    return run


# --- PyTorch --------------------------------------------------------------------------------------

def _torch_layer(layer: tuple, arrays: list[np.ndarray]) -> Any:
    tnn = torch.nn
    kind, *a = layer

    def load(module: Any, *names: str) -> Any:
        for name in names:
            param = getattr(module, name)
            param.data = torch.from_numpy(_take(arrays, tuple(param.shape)).copy())
        return module

    if kind == "linear":
        return load(tnn.Linear(a[0], a[1]), "weight", "bias")
    if kind == "conv":
        cin, cout, k, stride, pad, bias = a
        conv = tnn.Conv2d(cin, cout, k, stride, pad, bias=bias)
        return load(conv, "weight", "bias") if bias else load(conv, "weight")
    if kind == "bn":
        return load(tnn.BatchNorm2d(a[0]), "weight", "bias")
    if kind == "relu":
        return tnn.ReLU()
    if kind == "maxpool":
        return tnn.MaxPool2d(*a)
    if kind == "avgpool":
        return tnn.AdaptiveAvgPool2d(a[0])
    if kind == "flatten":
        return tnn.Flatten()
    if kind == "dropout":
        return tnn.Dropout(a[0])
    return _torch_block(*a, arrays)


def _torch_block(cin: int, cout: int, stride: int, arrays: list[np.ndarray]) -> Any:
    class BasicBlock(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = _torch_layer(("conv", cin, cout, 3, stride, 1, False), arrays)
            self.bn1 = _torch_layer(("bn", cout), arrays)
            self.conv2 = _torch_layer(("conv", cout, cout, 3, 1, 1, False), arrays)
            self.bn2 = _torch_layer(("bn", cout), arrays)
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = torch.nn.Sequential(
                    _torch_layer(("conv", cin, cout, 1, stride, 0, False), arrays),
                    _torch_layer(("bn", cout), arrays))

        def forward(self, x):
            h = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
            return torch.relu(h + (x if self.downsample is None else self.downsample(x)))

    return BasicBlock()


def torch_runner(spec: list[tuple], arrays: list[np.ndarray], x: np.ndarray, y: np.ndarray,
                 compile: bool = False) -> Callable[[], Any]:
    arrays = list(arrays)
    model = torch.nn.Sequential(*(_torch_layer(layer, arrays) for layer in spec)).train()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    x, y = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))

    def step():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss.detach()

    return torch.compile(step) if compile else step


# --- timing ---------------------------------------------------------------------------------------

def _runners(name: str, frameworks: list[str], notes: list[str]) -> tuple[dict, dict]:
    """The step of each framework for model ``name``, built from one torsh_fn model's weights,
    and the seconds each took to build and run its first (compiling) step, with that loss."""
    spec_fn, make, shape, _ = MODELS[name]
    spec = spec_fn()
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape, np.float32)
    y = rng.integers(0, 10, shape[0]).astype(np.int32)
    torsh_fn.manual_seed(0)
    model = make()
    arrays = [np.asarray(p.data) for p in model.parameters()]
    builders = {
        "torsh_fn.jit": lambda: torsh_fn_runner(model, x, y),
        "jax.jit+optax": lambda: jax_runner(spec, arrays, x, y),
        "flax.nnx": lambda: nnx_runner(spec, arrays, x, y),
        "equinox": lambda: eqx_runner(spec, arrays, x, y),
        "torch eager": lambda: torch_runner(spec, arrays, x, y),
        "torch.compile": lambda: torch_runner(spec, arrays, x, y, compile=True),
    }
    runners, first = {}, {}
    for label in frameworks:
        start = time.perf_counter()
        try:
            run = builders[label]()
            loss = float(run())
            # two more warm-up steps: lazy optimizer state, recompiles on the second call
            float(run())
            float(run())
        except Exception as err:  # torch.compile without a working compiler, ...
            if label != "torch.compile":
                raise
            notes.append(f"{name}: torch.compile skipped: {type(err).__name__}: "
                         f"{str(err).splitlines()[0][:200] if str(err) else ''}")
            continue
        runners[label] = run
        first[label] = (time.perf_counter() - start, loss)
    return runners, first


SETTLE_S = 0.02


def _round(run: Callable[[], Any], steps: int) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < SETTLE_S:  # untimed: see the module docstring
        float(run())
    start = time.perf_counter()
    for _ in range(steps):
        float(run())  # block on the loss, as a loop that logs it does
    return (time.perf_counter() - start) / steps


def measure(name: str, frameworks: list[str], repeats: int, steps: int | None,
            notes: list[str]) -> list[dict[str, Any]]:
    """Rows ``{model, framework, times (s per step, one per round), warmup_s, loss0}``."""
    runners, first = _runners(name, frameworks, notes)
    steps = steps or MODELS[name][3]
    times: dict[str, list[float]] = {label: [] for label in runners}
    labels = list(runners)
    for r in range(repeats):
        for label in labels if r % 2 == 0 else labels[::-1]:  # see the module docstring
            times[label].append(_round(runners[label], steps))
    return [{"model": name, "framework": label, "steps": steps, "times": times[label],
             "warmup_s": first[label][0], "loss0": first[label][1]} for label in runners]


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: median and spread of ms/step, speed vs PyTorch eager, time vs jax.jit."""
    lines = ["| model | framework | median ms/step | spread (min-max) | speed vs torch eager "
             "| time vs jax.jit | loss at step 0 | warm-up s |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    by_model: dict[str, dict[str, float]] = {}
    for r in rows:
        by_model.setdefault(r["model"], {})[r["framework"]] = statistics.median(r["times"])
    for r in rows:
        med = statistics.median(r["times"])
        ref = by_model[r["model"]]
        vs_torch = (f"{ref['torch eager'] / med:.2f}x" if "torch eager" in ref else "-")
        vs_jax = f"{med / ref['jax.jit+optax']:.2f}x" if "jax.jit+optax" in ref else "-"
        lines.append(f"| {r['model']} | {r['framework']} | {med * 1e3:.2f} | "
                     f"{min(r['times']) * 1e3:.2f}-{max(r['times']) * 1e3:.2f} | {vs_torch} | "
                     f"{vs_jax} | {r['loss0']:.6f} | {r['warmup_s']:.1f} |")
    return "\n".join(lines)


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def header(args: argparse.Namespace) -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    versions = [f"jax {jax.__version__}", f"optax {optax.__version__}"]
    if nnx is not None:
        import flax

        versions.append(f"flax {flax.__version__}")
    if eqx is not None:
        versions.append(f"equinox {eqx.__version__}")
    if torch is not None:
        versions.append(f"torch {torch.__version__} ({torch.get_num_threads()} threads)")
    return (f"# train_step  {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC  "
            f"{_cpu_name()}, "
            f"{len(os.sched_getaffinity(0))} of {os.cpu_count()} CPUs, load average {load:.1f}; "
            f"Python {platform.python_version()}, {', '.join(versions)}\n"
            f"{args.repeats} interleaved rounds; steps a round: "
            + ", ".join(f"{m} {args.steps or MODELS[m][3]}" for m in args.models))


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--frameworks", nargs="+", choices=FRAMEWORKS, default=list(FRAMEWORKS))
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds")
    parser.add_argument("--steps", type=int, default=None,
                        help="steps a round (default: per model, a few tenths of a second)")
    parser.add_argument("--threads", type=int, default=None,
                        help="PyTorch's intra-op threads (default: PyTorch's own choice)")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    args = parser.parse_args(argv)

    notes: list[str] = []
    frameworks = list(args.frameworks)
    missing = {"flax.nnx": (nnx, "flax"), "equinox": (eqx, "equinox"),
               "torch eager": (torch, "torch"), "torch.compile": (torch, "torch")}
    for label, (module, package) in missing.items():
        if label in frameworks and module is None:
            frameworks.remove(label)
            notes.append(f"{label} skipped: {package} is not installed "
                         f"(pip install 'torsh-fn[bench]')")
    if args.no_compile and "torch.compile" in frameworks:
        frameworks.remove("torch.compile")
    if torch is not None and args.threads:
        torch.set_num_threads(args.threads)
    print(header(args), flush=True)
    rows = []
    for name in args.models:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rows.extend(measure(name, frameworks, args.repeats, args.steps, notes))
        print(f"{name}: done", file=sys.stderr, flush=True)
    print()
    print(table(rows))
    print()
    for note in notes:
        print(f"note: {note}")
    for r in rows:
        print(f"rounds, {r['model']} {r['framework']} (ms/step): "
              + ", ".join(f"{t * 1e3:.2f}" for t in r["times"]))
    return rows


if __name__ == "__main__":
    main()
