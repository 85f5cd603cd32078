"""nn.functional dropout family: masks, scaling, keys, the global generator, jit and grad."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch.nn.functional as TF

import torsh_fn
import torsh_fn.nn.functional as F
from tests.oracle import assert_close, to_torch

KEY = jax.random.PRNGKey(7)


@pytest.mark.parametrize("p", [0.2, 0.7])
def test_dropout_masks_and_scales(p, variant):
    x = jnp.ones((101, 37))
    y = variant(lambda x, k: F.dropout(x, p, key=k))(x, KEY)
    dropped = float(jnp.mean(y == 0))
    assert abs(dropped - p) < 0.03
    assert np.allclose(np.asarray(y)[np.asarray(y) != 0], 1 / (1 - p), rtol=1e-6)
    grad = jax.grad(lambda x: jnp.sum(F.dropout(x, p, key=KEY)))(x)
    assert jnp.array_equal(grad, y)


def test_identity_cases_draw_no_key():
    x = jnp.arange(5.0)
    gen = torsh_fn.random.Generator().manual_seed(0)
    state = gen.get_state()
    for fn in (F.dropout, F.alpha_dropout, F.feature_alpha_dropout):
        assert fn(x[None], 0.5, training=False, generator=gen) is not None
    assert F.dropout(x, 0.5, training=False) is x
    assert F.dropout(x, 0.0) is x
    assert jnp.array_equal(gen.get_state(), state)
    assert jnp.array_equal(F.dropout(x, 1.0, key=KEY), jnp.zeros(5))


def test_global_generator_and_generator_argument():
    x = jnp.ones(1000)
    torsh_fn.manual_seed(3)
    a, b = F.dropout(x), F.dropout(x)
    torsh_fn.manual_seed(3)
    assert jnp.array_equal(a, F.dropout(x)) and not jnp.array_equal(a, b)
    gen = torsh_fn.random.Generator().manual_seed(5)
    c = F.dropout(x, generator=gen)
    assert jnp.array_equal(c, F.dropout(x, generator=torsh_fn.random.Generator().manual_seed(5)))
    assert jnp.array_equal(F.dropout(x, key=KEY), F.dropout(x, key=KEY))


FEATURE_CASES = [("dropout1d", (4, 9, 5)), ("dropout1d", (9, 5)), ("dropout2d", (3, 8, 4, 5)),
                 ("dropout3d", (2, 9, 3, 2, 4))]


@pytest.mark.parametrize("name, shape", FEATURE_CASES)
def test_feature_dropout_zeroes_whole_channels(name, shape):
    x = jnp.ones(shape)
    y = getattr(F, name)(x, 0.5, key=KEY)
    nd = int(name[-2])
    flat = np.asarray(y).reshape(*shape[:len(shape) - nd], -1)
    assert (flat.min(-1) == flat.max(-1)).all()
    assert set(np.unique(flat)) <= {0.0, 2.0} and len(np.unique(flat)) == 2


def test_alpha_dropout_keeps_mean_and_variance(rng):
    x = jnp.asarray(rng.standard_normal((200, 300)), jnp.float32)
    y = F.alpha_dropout(x, 0.3, training=True, key=KEY)
    assert abs(float(y.mean())) < 0.02 and abs(float(y.std()) - 1) < 0.02
    assert jnp.array_equal(F.alpha_dropout(x, 0.3), x)
    t = TF.alpha_dropout(to_torch(np.array(x)), 0.3, training=True).numpy()
    assert abs(t.std() - float(y.std())) < 0.03
    z = F.feature_alpha_dropout(x.reshape(20, 30, 100), 0.5, training=True, key=KEY)
    assert (z.std(axis=-1) > 0).all()


def test_dropout_errors():
    with pytest.raises(ValueError, match=r"dropout: p must be in \[0, 1\], got 1.5"):
        F.dropout(jnp.ones(3), 1.5)
    with pytest.raises(ValueError, match=r"dropout2d: expected input of rank 3 \(unbatched\) or "
                                         r"4 \(batched\), got shape \(3, 4\)"):
        F.dropout2d(jnp.ones((3, 4)), key=KEY)
    with pytest.raises(ValueError, match="pass either key= or generator="):
        F.dropout(jnp.ones(3), key=KEY, generator=torsh_fn.random.Generator())


def test_dropout_under_vmap_with_keys():
    keys = jax.random.split(KEY, 4)
    y = jax.vmap(lambda k: F.dropout(jnp.ones(50), 0.5, key=k))(keys)
    assert not jnp.array_equal(y[0], y[1])
    assert_close(y[2], F.dropout(jnp.ones(50), 0.5, key=keys[2]))
