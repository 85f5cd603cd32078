"""nn.functional distances against torch.nn.functional."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch.nn.functional as TF

import torsh_fn.nn.functional as F
from tests.oracle import assert_close, check_vs_torch, to_torch

TOL = {"rtol": 1e-5, "atol": 1e-5}


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0, float("inf")])
def test_pairwise_distance(p, rng, variant):
    x1, x2 = rng.standard_normal((2, 4, 5)).astype(np.float32)
    check_vs_torch(lambda a, b: F.pairwise_distance(a, b, p), lambda a, b: TF.pairwise_distance(
        a, b, p), x1, x2, variant=variant, rng=rng, **TOL)
    check_vs_torch(lambda a, b: F.pairwise_distance(a, b, p, keepdim=True),
                   lambda a, b: TF.pairwise_distance(a, b, p, keepdim=True), x1, x2[:1],
                   variant=variant, rng=rng, **TOL)


def test_cosine_similarity(rng, variant):
    x1, x2 = rng.standard_normal((2, 3, 5, 4)).astype(np.float32)
    check_vs_torch(F.cosine_similarity, TF.cosine_similarity, x1, x2, variant=variant, rng=rng,
                   **TOL)
    check_vs_torch(lambda a, b: F.cosine_similarity(a, b, -1),
                   lambda a, b: TF.cosine_similarity(a, b, -1), x1, x2[:1], variant=variant,
                   rng=rng, **TOL)


def test_cosine_similarity_clamps_small_norms_like_torch():
    x1 = np.array([[1e-5, 0.0], [1e-9, 0.0]], np.float32)
    x2 = np.array([[1e-5, 1e-5], [1e-9, 0.0]], np.float32)
    check_vs_torch(lambda a, b: F.cosine_similarity(a, b, 1, 1e-3),
                   lambda a, b: TF.cosine_similarity(a, b, 1, 1e-3), x1, x2, **TOL)


@pytest.mark.parametrize("p", [1.0, 2.0, 0.5])
def test_pdist(p, rng, variant):
    x = rng.standard_normal((6, 5)).astype(np.float32)
    check_vs_torch(lambda x: F.pdist(x, p), lambda x: TF.pdist(x, p), x, variant=variant,
                   rng=rng, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match=r"pdist: expected input of shape \(N, M\)"):
        F.pdist(jnp.zeros(3))


def test_under_vmap(rng):
    x1, x2 = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    out = jax.vmap(F.pairwise_distance)(jnp.asarray(x1), jnp.asarray(x2))
    assert_close(out, TF.pairwise_distance(to_torch(x1), to_torch(x2)), **TOL)
