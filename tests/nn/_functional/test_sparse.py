"""nn.functional embedding, embedding_bag and one_hot against torch.nn.functional."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import torsh_fn.nn.functional as F
from tests.oracle import assert_close, check_vs_torch, to_torch


def test_embedding(rng, variant):
    w = rng.standard_normal((7, 5)).astype(np.float32)
    idx = rng.integers(0, 7, (3, 4))
    check_vs_torch(F.embedding, TF.embedding, idx, w, variant=variant, rng=rng)
    for kwargs in [{"padding_idx": 2}, {"padding_idx": -1}, {"scale_grad_by_freq": True},
                   {"max_norm": 1.0}, {"max_norm": 1.5, "norm_type": 1.0, "padding_idx": 0}]:
        check_vs_torch(lambda i, w, kw=kwargs: F.embedding(i, w, **kw),
                       lambda i, w, kw=kwargs: TF.embedding(i, w.clone(), **kw), idx, w,
                       variant=variant, rng=rng)


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_embedding_bag(mode, rng):
    w = rng.standard_normal((9, 4)).astype(np.float32)
    flat = rng.integers(0, 9, 11)
    offsets = np.array([0, 3, 3, 8])
    check_vs_torch(lambda i, w, o: F.embedding_bag(i, w, o, mode=mode, padding_idx=1),
                   lambda i, w, o: TF.embedding_bag(i, w, o, mode=mode, padding_idx=1),
                   flat, w, offsets, variant=jax.jit, rng=rng)
    idx2 = rng.integers(0, 9, (3, 5))
    check_vs_torch(lambda i, w: F.embedding_bag(i, w, mode=mode),
                   lambda i, w: TF.embedding_bag(i, w, mode=mode), idx2, w, variant=jax.jit,
                   rng=rng)


def test_embedding_bag_weights_and_last_offset(rng):
    w = rng.standard_normal((9, 4)).astype(np.float32)
    flat, offsets = rng.integers(0, 9, 7), np.array([0, 2, 7])
    psw = rng.standard_normal(7).astype(np.float32)
    check_vs_torch(
        lambda i, w, o, p: F.embedding_bag(i, w, o, mode="sum", per_sample_weights=p,
                                           include_last_offset=True),
        lambda i, w, o, p: TF.embedding_bag(i, w, o, mode="sum", per_sample_weights=p,
                                            include_last_offset=True), flat, w, offsets, psw)


def test_one_hot(rng, variant):
    idx = rng.integers(0, 5, (3, 4))
    assert_close(variant(lambda i: F.one_hot(i, 6))(jnp.asarray(idx)),
                 TF.one_hot(to_torch(idx), 6))
    assert_close(F.one_hot(jnp.asarray(idx)), TF.one_hot(to_torch(idx)))
    with pytest.raises(ValueError, match="one_hot: num_classes=-1 infers the count"):
        jax.jit(F.one_hot)(jnp.asarray(idx))


def test_errors():
    with pytest.raises(TypeError, match="embedding: input must hold integer indices, got dtype "
                                        "float32"):
        F.embedding(jnp.zeros(3), jnp.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"embedding: padding_idx must be within \[-4, 4\), got 4"):
        F.embedding(jnp.zeros(3, int), jnp.zeros((4, 2)), padding_idx=4)
    with pytest.raises(ValueError, match="embedding_bag: mode must be 'sum', 'mean' or 'max'"):
        F.embedding_bag(jnp.zeros((2, 3), int), jnp.zeros((4, 2)), mode="min")


def test_embedding_under_vmap(rng):
    w = rng.standard_normal((7, 5)).astype(np.float32)
    idx = rng.integers(0, 7, (4, 3))
    out = jax.vmap(lambda i: F.embedding(i, jnp.asarray(w)))(jnp.asarray(idx))
    assert_close(out, TF.embedding(torch.from_numpy(idx), torch.from_numpy(w)))
