"""A GPT-2 style decoder whose ``state_dict`` keys match Hugging Face's ``GPT2LMHeadModel``
(``transformer.h.<i>.attn.c_attn.weight`` ..., ``Conv1D`` weights stored ``(in, out)``,
``lm_head.weight`` tied to ``transformer.wte.weight``), with ``generate()``."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from .. import kernels, nn
from .. import random as _random
from .._jit import jit
from ..nn import functional as F
from ..nn import init
from ._attention import merge_heads, split_heads
from ._layers import Dropout, LayerNorm

__all__ = ["GPT", "GPTConfig", "gpt"]


@dataclasses.dataclass(frozen=True)
class GPTConfig:
    """Sizes of a GPT; the defaults are GPT-2 small (124M parameters)."""

    vocab_size: int = 50257
    block_size: int = 1024
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head:
            raise ValueError(f"GPTConfig: n_embd={self.n_embd} must be divisible by "
                             f"n_head={self.n_head}")


class Conv1D(nn.Module):
    """GPT-2's linear layer: ``x @ weight + bias`` with ``weight`` of shape ``(nx, nf)``."""

    def __init__(self, nf: int, nx: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(jnp.zeros((nx, nf)))
        self.bias = nn.Parameter(jnp.zeros(nf))
        init.normal_(self.weight, std=0.02)

    def forward(self, x: jax.Array) -> jax.Array:
        return x @ self.weight.data + self.bias.data


class _Attention(nn.Module):
    def __init__(self, c: GPTConfig) -> None:
        super().__init__()
        self.n_head = c.n_head
        self.c_attn, self.c_proj = Conv1D(3 * c.n_embd, c.n_embd), Conv1D(c.n_embd, c.n_embd)
        self.resid_dropout = Dropout(c.dropout)

    def forward(self, x: jax.Array) -> jax.Array:
        q, k, v = (split_heads(t, self.n_head) for t in jnp.split(self.c_attn(x), 3, axis=-1))
        y = merge_heads(kernels.attention(q, k, v, is_causal=True))
        return self.resid_dropout(self.c_proj(y))


class _MLP(nn.Module):
    def __init__(self, c: GPTConfig) -> None:
        super().__init__()
        self.c_fc, self.c_proj = Conv1D(4 * c.n_embd, c.n_embd), Conv1D(c.n_embd, 4 * c.n_embd)
        self.dropout = Dropout(c.dropout)

    def forward(self, x: jax.Array) -> jax.Array:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class Block(nn.Module):
    """``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))``."""

    def __init__(self, c: GPTConfig) -> None:
        super().__init__()
        self.ln_1, self.attn = LayerNorm(c.n_embd), _Attention(c)
        self.ln_2, self.mlp = LayerNorm(c.n_embd), _MLP(c)

    def forward(self, x: jax.Array) -> jax.Array:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """GPT-2: token and position embeddings, ``n_layer`` pre-norm blocks with causal attention,
    a final LayerNorm and a language-model head tied to the token embedding.

    Shapes: ``idx`` ``(N, T)`` integer tokens, ``T <= block_size`` -> logits
    ``(N, T, vocab_size)``.

    Example:
        >>> model = GPT(GPTConfig(vocab_size=16, block_size=8, n_layer=1, n_head=2, n_embd=8))
        >>> model(jnp.zeros((1, 4), jnp.int32)).shape
        (1, 4, 16)
    """

    def __init__(self, config: GPTConfig | None = None) -> None:
        super().__init__()
        c = self.config = config or GPTConfig()
        self.transformer = nn.ModuleDict({
            "wte": nn.Embedding(c.vocab_size, c.n_embd),
            "wpe": nn.Embedding(c.block_size, c.n_embd),
            "drop": Dropout(c.dropout),
            "h": nn.ModuleList([Block(c) for _ in range(c.n_layer)]),
            "ln_f": LayerNorm(c.n_embd),
        })
        init.normal_(self.transformer.wte.weight, std=0.02)
        init.normal_(self.transformer.wpe.weight, std=0.01)
        self.lm_head = nn.Linear(c.n_embd, c.vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight

    def forward(self, idx: jax.Array) -> jax.Array:
        t = idx.shape[-1]
        if t > self.config.block_size:
            raise ValueError(f"GPT: sequence of length {t} is longer than block_size="
                             f"{self.config.block_size}")
        tr = self.transformer
        x = tr.drop(tr.wte(idx) + tr.wpe(jnp.arange(t)))
        for block in tr.h:
            x = block(x)
        return self.lm_head(tr.ln_f(x))

    def generate(self, idx: jax.Array, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, *, key: jax.Array | None = None) -> jax.Array:
        """Extend ``idx`` ``(N, T)`` by ``max_new_tokens`` tokens sampled one at a time.

        Args:
            temperature: divides the logits; ``0`` picks the most likely token (greedy).
            top_k: sample only among the ``top_k`` most likely tokens.
            key: a JAX PRNG key; by default drawn from the global generator.

        Returns: ``(N, T + max_new_tokens)`` tokens. Call ``eval()`` first to turn off dropout.
        Each step runs the model on a window of ``block_size`` tokens, so it compiles once.
        """
        key = _random.next_key(key)
        tokens = np.asarray(idx)
        block = self.config.block_size
        for _ in range(max_new_tokens):
            t = tokens.shape[1]
            window = tokens[:, -block:] if t >= block else np.pad(tokens, ((0, 0), (0, block - t)))
            logits = _last_logits(self, window, min(t, block) - 1)
            if temperature == 0:
                nxt = jnp.argmax(logits, -1)
            else:
                logits = logits / temperature
                if top_k is not None:
                    kth = jax.lax.top_k(logits, min(top_k, logits.shape[-1]))[0][:, -1:]
                    logits = jnp.where(logits < kth, -jnp.inf, logits)
                key, sub = jax.random.split(key)
                nxt = jax.random.categorical(sub, logits, -1)
            tokens = np.concatenate([tokens, np.asarray(nxt)[:, None].astype(tokens.dtype)], 1)
        return jnp.asarray(tokens)


@jit
def _last_logits(model: GPT, window: jax.Array, pos: jax.Array) -> jax.Array:
    """Logits at position ``pos`` of a fixed-size window (causal: later padding is ignored), so
    generation compiles once."""
    return jax.lax.dynamic_index_in_dim(model(window), pos, 1, keepdims=False)


def gpt(**kwargs) -> GPT:
    """:class:`GPT` with :class:`GPTConfig` fields as keywords (GPT-2 small by default)."""
    return GPT(GPTConfig(**kwargs))
