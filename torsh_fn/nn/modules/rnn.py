"""Recurrent layers: ``RNN``, ``LSTM``, ``GRU`` and their cells, on ``jax.lax.scan``.

PyTorch's constructors, parameter names (``weight_ih_l0``, ``bias_hh_l1_reverse``, LSTM's
``weight_hr_l0`` with ``proj_size``), gate order (LSTM i, f, g, o; GRU r, z, n), shapes and
init (every weight and bias ``U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))``). The input
projection of all time steps is one matrix product; only the hidden-state product is scanned.

Shapes (``D`` = 2 if bidirectional else 1): input ``(L, N, H_in)`` (``(N, L, H_in)`` with
``batch_first``, or unbatched ``(L, H_in)``); output ``(L, N, D * H_out)``; hidden states
``(D * num_layers, N, H_out)`` (LSTM: a tuple ``(h, c)``, ``c`` of size ``hidden_size``).

Example:
    >>> lstm = LSTM(8, 16, num_layers=2, batch_first=True)
    >>> out, (h, c) = lstm(jnp.ones((4, 5, 8)))
    >>> out.shape, h.shape
    ((4, 5, 16), (2, 4, 16))
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from .. import functional as F
from .. import init
from ..module import Module
from ._checks import check_rank, check_size, describe, empty_parameter

__all__ = ["GRU", "GRUCell", "LSTM", "LSTMCell", "RNN", "RNNCell"]

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}

# -- one time step: (input projection xw, state, hidden weights) -> (output h, new state) --------


def _rnn_step(activation: Callable[[jax.Array], jax.Array]):
    def step(xw: jax.Array, h: jax.Array, w_hh: jax.Array, b_hh: Any, w_hr: Any):
        h = activation(xw + F.linear(h, w_hh, b_hh))
        return h, h

    return step


def _lstm_step(xw: jax.Array, state: tuple[jax.Array, jax.Array], w_hh: jax.Array, b_hh: Any,
               w_hr: Any):
    h, c = state
    i, f, g, o = jnp.split(xw + F.linear(h, w_hh, b_hh), 4, axis=-1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    if w_hr is not None:
        h = F.linear(h, w_hr)
    return h, (h, c)


def _gru_step(xw: jax.Array, h: jax.Array, w_hh: jax.Array, b_hh: Any, w_hr: Any):
    x_r, x_z, x_n = jnp.split(xw, 3, axis=-1)
    h_r, h_z, h_n = jnp.split(F.linear(h, w_hh, b_hh), 3, axis=-1)
    r = jax.nn.sigmoid(x_r + h_r)
    z = jax.nn.sigmoid(x_z + h_z)
    n = jnp.tanh(x_n + r * h_n)
    h = (1 - z) * n + z * h
    return h, h


_STEPS = {"RNN_TANH": _rnn_step(jnp.tanh), "RNN_RELU": _rnn_step(jax.nn.relu),
          "LSTM": _lstm_step, "GRU": _gru_step}


def _scan_direction(step, x: jax.Array, state: Any, weights: tuple[Any, ...],
                    reverse: bool) -> tuple[jax.Array, Any]:
    """Run one layer in one direction over time-major ``x`` ``(L, N, H_in)``."""
    w_ih, w_hh, b_ih, b_hh, w_hr = weights
    xw = F.linear(x, w_ih, b_ih)  # all time steps at once: (L, N, gates * H)

    def body(carry: Any, xw_t: jax.Array) -> tuple[Any, jax.Array]:
        out, carry = step(xw_t, carry, w_hh, b_hh, w_hr)
        return carry, out

    state, out = jax.lax.scan(body, state, xw, reverse=reverse)
    return out, state


class RNNBase(Module):
    """The shared machinery of RNN, LSTM and GRU (PyTorch's ``nn.RNNBase``)."""

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__()
        name = type(self).__name__
        if not 0 <= dropout <= 1:
            raise ValueError(f"{name}: dropout must be in [0, 1], got {dropout}")
        if num_layers < 1 or hidden_size < 1:
            raise ValueError(f"{name}: num_layers and hidden_size must be positive, got "
                             f"{num_layers} and {hidden_size}")
        if proj_size < 0 or (proj_size and (mode != "LSTM" or proj_size >= hidden_size)):
            raise ValueError(f"{name}: proj_size must be 0, or (LSTM only) in "
                             f"[1, hidden_size), got {proj_size}")
        self.mode, self.input_size, self.hidden_size = mode, input_size, hidden_size
        self.num_layers, self.bias, self.batch_first = num_layers, bias, batch_first
        self.dropout, self.bidirectional, self.proj_size = float(dropout), bidirectional, proj_size
        gate_size = _GATES[mode] * hidden_size
        real_hidden = proj_size or hidden_size
        directions = 2 if bidirectional else 1
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else real_hidden * directions
            for suffix in ("", "_reverse")[:directions]:
                shapes = {"weight_ih": (gate_size, layer_input),
                          "weight_hh": (gate_size, real_hidden)}
                if bias:
                    shapes |= {"bias_ih": (gate_size,), "bias_hh": (gate_size,)}
                if proj_size:
                    shapes["weight_hr"] = (proj_size, hidden_size)
                for kind, shape in shapes.items():
                    setattr(self, f"{kind}_l{layer}{suffix}",
                            empty_parameter(shape, device, dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            init.uniform_(p, -bound, bound)

    def _weights(self, layer: int, suffix: str) -> tuple[Any, ...]:
        get = self._parameters.get
        return tuple(get(f"{kind}_l{layer}{suffix}")
                     for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr"))

    def _initial(self, hx: Any, batch: int, dtype: Any, unbatched: bool) -> tuple[Any, ...]:
        """Per-(layer, direction) initial states, batched."""
        rows = self.num_layers * (2 if self.bidirectional else 1)
        h_size = self.proj_size or self.hidden_size
        if hx is None:
            h = jnp.zeros((rows, batch, h_size), dtype)
            return (h, jnp.zeros((rows, batch, self.hidden_size), dtype)) if self.mode == "LSTM" \
                else (h,)
        parts = tuple(hx) if self.mode == "LSTM" else (hx,)
        sizes = (h_size, self.hidden_size) if self.mode == "LSTM" else (h_size,)
        out = []
        for part, size in zip(parts, sizes):
            expected = (rows, size) if unbatched else (rows, batch, size)
            if tuple(jnp.shape(part)) != expected:
                raise ValueError(f"{describe(self)}: expected hidden state of shape {expected}, "
                                 f"got {tuple(jnp.shape(part))}")
            part = jnp.asarray(part)
            out.append((part[:, None] if unbatched else part).astype(dtype))
        return tuple(out)

    def forward(self, input: jax.Array, hx: Any = None) -> tuple[jax.Array, Any]:
        check_rank(self, input, (2, 3))
        check_size(self, input, -1, self.input_size, "input_size")
        unbatched = input.ndim == 2
        x = input[:, None] if unbatched else (jnp.swapaxes(input, 0, 1) if self.batch_first
                                              else input)
        states = self._initial(hx, x.shape[1], x.dtype, unbatched)
        step = _STEPS[self.mode]
        directions = ("", "_reverse") if self.bidirectional else ("",)
        finals = []
        for layer in range(self.num_layers):
            if layer and self.dropout and self.training:
                x = F.dropout(x, self.dropout, True)
            outs = []
            for d, suffix in enumerate(directions):
                row = layer * len(directions) + d
                state = tuple(s[row] for s in states)
                out, final = _scan_direction(step, x, state if self.mode == "LSTM" else state[0],
                                             self._weights(layer, suffix), reverse=d == 1)
                outs.append(out)
                finals.append(final if self.mode == "LSTM" else (final,))
            x = jnp.concatenate(outs, axis=-1) if len(outs) > 1 else outs[0]
        new = tuple(jnp.stack([f[i] for f in finals]) for i in range(len(finals[0])))
        if unbatched:
            x, new = x[:, 0], tuple(s[:, 0] for s in new)
        elif self.batch_first:
            x = jnp.swapaxes(x, 0, 1)
        return x, (new if self.mode == "LSTM" else new[0])

    def extra_repr(self) -> str:
        text = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size:
            text += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            text += f", num_layers={self.num_layers}"
        if not self.bias:
            text += ", bias=False"
        if self.batch_first:
            text += ", batch_first=True"
        if self.dropout:
            text += f", dropout={self.dropout}"
        if self.bidirectional:
            text += ", bidirectional=True"
        return text


class RNN(RNNBase):
    """Elman RNN: ``h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)`` (or ReLU)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False, device: Any = None,
                 dtype: Any = None) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNN: unknown nonlinearity {nonlinearity!r}; use 'tanh' or 'relu'")
        self.nonlinearity = nonlinearity
        super().__init__(f"RNN_{nonlinearity.upper()}", input_size, hidden_size, num_layers,
                         bias, batch_first, dropout, bidirectional, 0, device, dtype)


class LSTM(RNNBase):
    """Long short-term memory; ``proj_size > 0`` projects ``h`` (LSTMP)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 proj_size: int = 0, device: Any = None, dtype: Any = None) -> None:
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, proj_size, device, dtype)


class GRU(RNNBase):
    """Gated recurrent unit."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, 0, device, dtype)


class RNNCellBase(Module):
    """One time step of RNN/LSTM/GRU: ``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``."""

    mode: str

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__()
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        gate_size = _GATES[self.mode] * hidden_size
        self.weight_ih = empty_parameter((gate_size, input_size), device, dtype)
        self.weight_hh = empty_parameter((gate_size, hidden_size), device, dtype)
        if bias:
            self.bias_ih = empty_parameter((gate_size,), device, dtype)
            self.bias_hh = empty_parameter((gate_size,), device, dtype)
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    reset_parameters = RNNBase.reset_parameters

    def _run(self, input: jax.Array, state: Any) -> Any:
        check_rank(self, input, (1, 2))
        check_size(self, input, -1, self.input_size, "input_size")
        unbatched = input.ndim == 1
        x = input[None] if unbatched else input
        zeros = jnp.zeros((x.shape[0], self.hidden_size), x.dtype)
        if state is None:
            state = (zeros, zeros) if self.mode == "LSTM" else zeros
        elif unbatched:
            state = jax.tree_util.tree_map(lambda s: jnp.asarray(s)[None], state)
        xw = F.linear(x, self.weight_ih, self.bias_ih)
        _, new = _STEPS[self.mode](xw, state, self.weight_hh, self.bias_hh, None)
        return jax.tree_util.tree_map(lambda s: s[0], new) if unbatched else new

    def extra_repr(self) -> str:
        text = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            text += ", bias=False"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            text += f", nonlinearity={self.nonlinearity}"
        return text


class RNNCell(RNNCellBase):
    """``h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh)`` (or ReLU)."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: str = "tanh", device: Any = None, dtype: Any = None) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNNCell: unknown nonlinearity {nonlinearity!r}")
        self.mode, self.nonlinearity = f"RNN_{nonlinearity.upper()}", nonlinearity
        super().__init__(input_size, hidden_size, bias, device, dtype)

    def forward(self, input: jax.Array, hx: Any = None) -> jax.Array:
        return self._run(input, hx)


class LSTMCell(RNNCellBase):
    """One LSTM step: ``forward(input, (h, c)) -> (h', c')``."""

    mode = "LSTM"

    def forward(self, input: jax.Array, hx: Any = None) -> tuple[jax.Array, jax.Array]:
        return self._run(input, None if hx is None else tuple(hx))


class GRUCell(RNNCellBase):
    """One GRU step: ``forward(input, h) -> h'``."""

    mode = "GRU"

    def forward(self, input: jax.Array, hx: Any = None) -> jax.Array:
        return self._run(input, hx)
