"""Row kernels under SPMD sharding (``_row_partition``): on 8 simulated devices each device runs
the kernel on its own rows, with no all-gather of a row-sharded input, and results equal XLA's;
on an Explicit mesh every kernel's results also have the XLA path's types
(``_explicit_sharding``)."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.distributed._subprocess import run_once
from torsh_fn.kernels._row_partition import _einsum_rule, partition_rows

OPS = ["softmax", "log_softmax", "layer_norm", "rms_norm", "add_layer_norm", "var", "bias_act",
       "cross_entropy", "attention", "attention_split", "attention_padding",
       "attention_shared_bias"]
EXPLICIT_ONLY = ["matmul", "max_pool", "avg_pool_auto", "max_pool_auto", "batch_norm",
                 "conv_auto", "conv_bias_act_auto"]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return run_once(tmp_path_factory, str(Path(__file__).with_name("_sharded_rows.py")))


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("layout", ["rows", "rows_2d", "rows_explicit", "rows_mixed"])
def test_row_sharded_inputs_stay_sharded_without_gathers(results, op, layout):
    case = results[f"{op}/{layout}"]
    assert case["all_gathers"] == 0
    assert case["grad_spec"] == case["xla_grad_spec"]
    assert case["grad_spec"] in ("P('data',)", "P('data', None)")
    assert case["value_err"] < 1e-5 and case["grad_err"] < 1e-5


@pytest.mark.parametrize("op", EXPLICIT_ONLY)
@pytest.mark.parametrize("layout", ["rows_explicit", "rows_mixed"])
def test_kernels_without_a_row_rule_type_as_xla_on_an_explicit_mesh(results, op, layout):
    """On ``jax.make_mesh``'s default (Explicit) axes a Pallas call, or a reshape of the rows,
    has no sharding rule of its own: each gets the XLA path's result types."""
    case = results[f"{op}/{layout}"]
    assert case["grad_spec"] == case["xla_grad_spec"] == "P('data', None)"
    assert case["value_err"] < 1e-5 and case["grad_err"] < 1e-5


@pytest.mark.parametrize("op", OPS)
def test_column_sharded_inputs_are_gathered_and_still_correct(results, op):
    case = results[f"{op}/cols"]
    assert case["all_gathers"] >= 1
    assert case["value_err"] < 1e-5 and case["grad_err"] < 1e-5


def test_rule_shares_rows_and_replicates_the_rest():
    rule, replicated = _einsum_rule([2, 1, 1], [True, False, True], [2, 1])
    assert rule == "r c0, c1, r -> r c2, r"
    assert replicated == ("c0", "c1", "c2")


def test_on_one_device_the_wrapper_is_the_function(rng):
    x = jnp.asarray(rng.standard_normal((5, 3)), jnp.float32)
    fn = partition_rows(lambda a, b: [a * b, jnp.sum(a, axis=1)], row_inputs=[True, False])
    y, s = jax.jit(fn)(x, x[0])
    np.testing.assert_array_equal(y, x * x[0])
    np.testing.assert_array_equal(s, jnp.sum(x, axis=1))


@pytest.mark.parametrize("weight_batched", [False, True])
def test_vmap_over_a_row_kernel_matches_xla(rng, weight_batched):
    from torsh_fn import kernels

    x = jnp.asarray(rng.standard_normal((3, 4, 7)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((3, 7) if weight_batched else (7,)), jnp.float32)

    def grads(impl):
        loss = lambda x, w: jnp.sum(kernels.layer_norm(x, 1, w, None, impl=impl) ** 3)
        in_axes = (0, 0 if weight_batched else None)
        return jax.jit(jax.vmap(jax.value_and_grad(loss, argnums=(0, 1)), in_axes))(x, w)

    for got, want in zip(jax.tree.leaves(grads("pallas")), jax.tree.leaves(grads("xla"))):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
