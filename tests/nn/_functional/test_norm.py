"""nn.functional normalisation ops against torch.nn.functional, running statistics included."""

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import torch.nn.functional as TF

import torsh_fn.nn.functional as F
from tests.oracle import assert_close, check_vs_torch, to_torch

TOL = {"rtol": 1e-4, "atol": 1e-5}


def _normal(rng, *shape):
    return (rng.standard_normal(shape) * 2 + 0.5).astype(np.float32)


@pytest.mark.parametrize("shape", [(5, 3), (4, 3, 7), (2, 3, 5, 4)])
def test_batch_norm_training_and_running_stats(shape, rng, variant):
    x, w, b = _normal(rng, *shape), _normal(rng, 3), _normal(rng, 3)
    mean, var = rng.standard_normal(3).astype(np.float32), rng.uniform(0.5, 2, 3).astype(np.float32)
    check_vs_torch(lambda x, w, b: F.batch_norm(x, None, None, w, b, True, 0.3, 1e-3),
                   lambda x, w, b: TF.batch_norm(x, None, None, w, b, True, 0.3, 1e-3),
                   x, w, b, variant=variant, rng=rng, **TOL)
    t_mean, t_var = to_torch(mean.copy()), to_torch(var.copy())
    TF.batch_norm(to_torch(x), t_mean, t_var, training=True, momentum=0.3)
    fn = variant(lambda x, m, v: F.batch_norm_with_stats(x, m, v, training=True, momentum=0.3))
    _, new_mean, new_var = fn(jnp.asarray(x), jnp.asarray(mean), jnp.asarray(var))
    assert_close(new_mean, t_mean, **TOL)
    assert_close(new_var, t_var, **TOL)


def test_batch_norm_eval(rng, variant):
    x, w, b = _normal(rng, 4, 3, 5), _normal(rng, 3), _normal(rng, 3)
    mean, var = rng.standard_normal(3).astype(np.float32), rng.uniform(0.5, 2, 3).astype(np.float32)
    check_vs_torch(lambda x, m, v, w, b: F.batch_norm(x, m, v, w, b),
                   lambda x, m, v, w, b: TF.batch_norm(x, m, v, w, b),
                   x, mean, var, w, b, grad=[0, 3, 4], variant=variant, rng=rng, **TOL)
    _out, m, v = F.batch_norm_with_stats(jnp.asarray(x), jnp.asarray(mean), jnp.asarray(var))
    assert m is not None and np.array_equal(m, mean) and np.array_equal(v, var)


def test_batch_norm_errors():
    with pytest.raises(ValueError, match="batch_norm: expected more than 1 value per channel"):
        F.batch_norm(jnp.zeros((1, 3)), None, None, training=True)
    with pytest.raises(ValueError, match="batch_norm: running_mean and running_var are required"):
        F.batch_norm(jnp.zeros((2, 3)), None, None)
    with pytest.raises(ValueError, match=r"batch_norm: weight must have shape \(3,\) for input "
                                         r"with 3 channels, got \(4,\)"):
        F.batch_norm(jnp.zeros((2, 3)), None, None, jnp.ones(4), training=True)


def test_instance_norm(rng, variant):
    x, w, b = _normal(rng, 2, 3, 5, 4), _normal(rng, 3), _normal(rng, 3)
    check_vs_torch(lambda x, w, b: F.instance_norm(x, weight=w, bias=b, eps=1e-3),
                   lambda x, w, b: TF.instance_norm(x, weight=w, bias=b, eps=1e-3),
                   x, w, b, variant=variant, rng=rng, **TOL)
    mean, var = np.zeros(3, np.float32), np.ones(3, np.float32)
    t_mean, t_var = to_torch(mean.copy()), to_torch(var.copy())
    TF.instance_norm(to_torch(x), t_mean, t_var, momentum=0.2)
    _, m, v = F.instance_norm_with_stats(jnp.asarray(x), jnp.asarray(mean), jnp.asarray(var),
                                         momentum=0.2)
    assert_close(m, t_mean, **TOL)
    assert_close(v, t_var, **TOL)
    check_vs_torch(lambda x: F.instance_norm(x, jnp.asarray(mean), jnp.asarray(var),
                                             use_input_stats=False),
                   lambda x: TF.instance_norm(x, to_torch(mean), to_torch(var),
                                              use_input_stats=False), x, **TOL)


@pytest.mark.parametrize("normalized_shape", [(7,), (5, 7)])
def test_layer_norm(normalized_shape, rng):
    x = _normal(rng, 3, 5, 7)
    w, b = _normal(rng, *normalized_shape), _normal(rng, *normalized_shape)
    check_vs_torch(lambda x, w, b: F.layer_norm(x, normalized_shape, w, b),
                   lambda x, w, b: TF.layer_norm(x, normalized_shape, w, b), x, w, b,
                   variant=jax.jit, rng=rng, **TOL)
    check_vs_torch(lambda x: F.layer_norm(x, normalized_shape, eps=0.1),
                   lambda x: TF.layer_norm(x, normalized_shape, eps=0.1), x, variant=jax.jit,
                   rng=rng, **TOL)


def test_rms_norm(rng, variant):
    x, w = _normal(rng, 3, 5, 7), _normal(rng, 7)
    check_vs_torch(lambda x, w: F.rms_norm(x, (7,), w), lambda x, w: TF.rms_norm(x, (7,), w),
                   x, w, variant=variant, rng=rng, **TOL)
    check_vs_torch(lambda x: F.rms_norm(x, [5, 7], eps=1e-3),
                   lambda x: TF.rms_norm(x, [5, 7], eps=1e-3), x, variant=variant, rng=rng, **TOL)


def test_norms_bfloat16_forward(rng):
    x = _normal(rng, 4, 6, 5).astype(ml_dtypes.bfloat16)
    cases = [(lambda f, x: f.layer_norm(x, (5,))), (lambda f, x: f.rms_norm(x, (5,))),
             (lambda f, x: f.group_norm(x, 3)), (lambda f, x: f.batch_norm(x, None, None,
                                                                          training=True))]
    for case in cases:
        out = case(F, jnp.asarray(x))
        assert out.dtype == jnp.bfloat16
        assert_close(out, case(TF, to_torch(x)), rtol=3e-2, atol=3e-2)


def test_norm_shape_errors():
    with pytest.raises(ValueError, match=r"layer_norm: input's trailing dims must equal "
                                         r"normalized_shape=\(4,\), got input shape \(2, 5\)"):
        F.layer_norm(jnp.zeros((2, 5)), 4)
    with pytest.raises(ValueError, match=r"rms_norm: weight must have shape \(5,\), got \(4,\)"):
        F.rms_norm(jnp.zeros((2, 5)), 5, jnp.ones(4))
    with pytest.raises(ValueError, match="group_norm: num_groups=4 must divide the 6 channels"):
        F.group_norm(jnp.zeros((2, 6, 3)), 4)


def test_group_norm(rng, variant):
    x, w, b = _normal(rng, 2, 6, 5, 3), _normal(rng, 6), _normal(rng, 6)
    check_vs_torch(lambda x, w, b: F.group_norm(x, 3, w, b),
                   lambda x, w, b: TF.group_norm(x, 3, w, b), x, w, b, variant=variant,
                   rng=rng, **TOL)


@pytest.mark.parametrize("shape", [(2, 7, 5), (2, 6, 4, 3)])
def test_local_response_norm(shape, rng):
    x = _normal(rng, *shape)
    for size in (2, 3):
        check_vs_torch(lambda x, size=size: F.local_response_norm(x, size, 1e-2, 0.6, 2.0),
                       lambda x, size=size: TF.local_response_norm(x, size, 1e-2, 0.6, 2.0), x,
                       variant=jax.jit, rng=rng, **TOL)


@pytest.mark.parametrize("p, dim", [(2.0, 1), (1.0, -1), (3.0, 0), (float("inf"), 1)])
def test_normalize(p, dim, rng):
    x = _normal(rng, 3, 5, 4)
    check_vs_torch(lambda x: F.normalize(x, p, dim), lambda x: TF.normalize(x, p, dim), x,
                   variant=jax.jit, rng=rng, **TOL)


def test_normalize_zero_rows_have_zero_gradient():
    x = np.zeros((2, 3), np.float32)
    check_vs_torch(F.normalize, TF.normalize, x)


def test_under_vmap(rng):
    x = _normal(rng, 4, 3, 5, 6)
    out = jax.vmap(lambda x: F.layer_norm(x, 6))(jnp.asarray(x))
    assert_close(out, TF.layer_norm(to_torch(x), (6,)), **TOL)
    out = jax.vmap(lambda x: F.batch_norm(x, None, None, training=True))(jnp.asarray(x))
    assert_close(out[1], TF.batch_norm(to_torch(x[1]), None, None, training=True), **TOL)
