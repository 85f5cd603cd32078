"""Whole models against PyTorch: each model is written once as a function of the ``nn`` package
(``torsh_fn.nn`` or ``torch.nn``), so the two definitions are the same code modulo the import.

For every model: identical ``state_dict`` keys (in order) and shapes; the PyTorch state_dict
loads as it is; outputs match in eval mode and in train mode (with Dropout layers switched off,
so BatchNorm's batch statistics are the only train-mode difference); BatchNorm's running
statistics after a training forward match; and the gradients of a loss with respect to every
parameter, through ``torsh_fn.func.functional_call`` and ``jax.grad``, match torch autograd.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from tests.oracle import assert_close, to_torch
from torsh_fn import func
from torsh_fn import nn as tnn

RTOL, ATOL = 1e-4, 1e-5  # several float32 layers deep: summation orders differ


# -- the models, written once for either nn package -------------------------------------------


def mlp(nn: Any) -> Any:
    return nn.Sequential(nn.Linear(13, 29), nn.ReLU(), nn.Linear(29, 17), nn.Tanh(),
                         nn.Linear(17, 5))


def cnn(nn: Any) -> Any:
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
        nn.Dropout(0.3),
        nn.Conv2d(6, 8, 3, stride=2), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d((2, 3)), nn.Flatten(), nn.Linear(48, 7))


def resnet_basic_block(nn: Any) -> Any:
    class BasicBlock(nn.Module):
        """torchvision's BasicBlock with a strided 1x1 downsample on the shortcut."""

        def __init__(self, inplanes: int, planes: int, stride: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.relu = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

        def forward(self, x: Any) -> Any:
            identity = self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return self.relu(out + identity)

    return BasicBlock(5, 6, stride=2)


def lstm_language_model(nn: Any) -> Any:
    class LanguageModel(nn.Module):
        def __init__(self, vocab: int, embed: int, hidden: int) -> None:
            super().__init__()
            self.embed = nn.Embedding(vocab, embed, padding_idx=0)
            self.lstm = nn.LSTM(embed, hidden, num_layers=2, batch_first=True)
            self.head = nn.Linear(hidden, vocab)

        def forward(self, tokens: Any) -> Any:
            hidden, _ = self.lstm(self.embed(tokens))
            return self.head(hidden)

    return LanguageModel(vocab=23, embed=10, hidden=14)


def transformer_encoder(nn: Any) -> Any:
    class Encoder(nn.Module):
        def __init__(self, d_model: int, nhead: int) -> None:
            super().__init__()
            layer = nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward=20, dropout=0.0,
                                               batch_first=True)
            # enable_nested_tensor=False: PyTorch's eval fast path would zero padded positions
            self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
            self.head = nn.Linear(d_model, 4)

        def forward(self, x: Any, mask: Any, padding: Any) -> Any:
            return self.head(self.encoder(x, mask=mask, src_key_padding_mask=padding))

    return Encoder(d_model=12, nhead=3)


# -- inputs (numpy; converted for each side) ----------------------------------------------------


def _normal(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


def _tokens(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    return (rng.integers(0, 23, (3, 9)),)  # some are padding_idx 0


def _sequence_with_masks(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    seq = 7
    causal = np.triu(np.ones((seq, seq), bool), k=1)  # True: may not attend
    lengths = np.array([7, 5, 3])
    padding = np.arange(seq)[None, :] >= lengths[:, None]
    return _normal(rng, 3, seq, 12), causal, padding


MODELS: dict[str, tuple[Callable[[Any], Any], Callable[[np.random.Generator], tuple]]] = {
    "mlp": (mlp, lambda rng: (_normal(rng, 7, 13),)),
    "cnn": (cnn, lambda rng: (_normal(rng, 5, 3, 11, 13),)),
    "resnet_basic_block": (resnet_basic_block, lambda rng: (_normal(rng, 3, 5, 9, 7),)),
    "lstm_language_model": (lstm_language_model, _tokens),
    "transformer_encoder": (transformer_encoder, _sequence_with_masks),
}


def _pair(name: str) -> tuple[Any, Any]:
    build, _ = MODELS[name]
    torch.manual_seed(0)
    return build(tnn), build(torch.nn)


def _jax_inputs(inputs: tuple[np.ndarray, ...]) -> tuple[jax.Array, ...]:
    return tuple(jnp.asarray(x) for x in inputs)


def _set_mode(ours: Any, theirs: Any, training: bool) -> None:
    """eval(), or train() with every Dropout layer kept in eval (random masks cannot match)."""
    for model, dropout in ((ours, tnn.Dropout), (theirs, torch.nn.Dropout)):
        model.train(training)
        for m in model.modules():
            if isinstance(m, dropout):
                m.eval()


def _shapes(state_dict: Any) -> list[tuple[str, tuple[int, ...]]]:
    return [(k, tuple(v.shape)) for k, v in state_dict.items()]


# -- the tests ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(MODELS))
def test_state_dict_keys_and_shapes_match_torch(name):
    ours, theirs = _pair(name)
    assert _shapes(ours.state_dict()) == _shapes(theirs.state_dict())
    assert [n for n, _ in ours.named_modules()] == [n for n, _ in theirs.named_modules()]
    result = ours.load_state_dict(theirs.state_dict())  # torch tensors, as they are
    assert (result.missing_keys, result.unexpected_keys) == ([], [])
    for key, value in theirs.state_dict().items():
        assert_close(ours.state_dict()[key], value, err_msg=key)


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("name", list(MODELS))
def test_outputs_and_gradients_match_torch(name, training, rng):
    ours, theirs = _pair(name)
    ours.load_state_dict(theirs.state_dict())
    _set_mode(ours, theirs, training)
    inputs = MODELS[name][1](rng)
    j_inputs = _jax_inputs(inputs)

    t_out = theirs(*[to_torch(x) for x in inputs])  # in train mode this updates BatchNorm
    cotangent = _normal(rng, *t_out.shape)
    (t_out * torch.from_numpy(cotangent)).sum().backward()

    # Gradients first: functional_call leaves the model (and its running statistics) as it was.
    params = {k: p.data for k, p in ours.named_parameters()}

    def loss(p: dict[str, jax.Array]) -> jax.Array:
        return jnp.sum(func.functional_call(ours, p, j_inputs) * cotangent)

    grads = jax.jit(jax.grad(loss))(params)
    out = ours(*j_inputs)

    assert_close(out, t_out, RTOL, ATOL, err_msg="output")
    t_grads = {k: p.grad for k, p in theirs.named_parameters()}
    assert sorted(grads) == sorted(t_grads)
    for key, g in grads.items():
        assert_close(g, t_grads[key], RTOL, 1e-4, err_msg=f"gradient of {key}")
    for key, value in theirs.state_dict().items():  # running statistics after one forward
        assert_close(ours.state_dict()[key], value, RTOL, ATOL, err_msg=key)


def test_loaded_weights_are_used_not_the_initial_ones(rng):
    """The parity above cannot pass by accident: two different PyTorch inits disagree."""
    ours, theirs = _pair("mlp")
    x = _normal(rng, 4, 13)
    torch.manual_seed(1)
    other = mlp(torch.nn)
    assert not np.allclose(np.asarray(ours(jnp.asarray(x))), theirs(to_torch(x)).detach().numpy())
    ours.load_state_dict(other.state_dict())
    assert_close(ours(jnp.asarray(x)), other(to_torch(x)), RTOL, ATOL)


def test_cnn_in_train_mode_differs_from_eval(rng):
    """Train mode is really exercised: BatchNorm uses the batch statistics."""
    ours, _ = _pair("cnn")
    x = jnp.asarray(_normal(rng, 4, 3, 11, 13) * 3 + 1)
    eval_out = ours.eval()(x)
    ours.train()
    ours[4].eval()  # the Dropout
    assert not np.allclose(np.asarray(ours(x)), np.asarray(eval_out), atol=1e-3)
    assert int(ours[1].num_batches_tracked) == 1
