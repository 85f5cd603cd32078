"""``_pallas_common``: the launch helpers shared by the row kernels (block widths, warps, chunked
loads and stores with masked edges, ``row_call`` over rows with shared inputs)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from torsh_fn.kernels import _pallas_common as pc


@pytest.mark.parametrize("n, block", [(1, 1), (5, 8), (4096, 4096), (5000, 8192), (40000, 8192)])
def test_row_block_is_the_next_power_of_two_up_to_the_cap(n, block):
    assert pc.row_block(n) == block
    assert pc.chunk_count(n, block) == -(-n // block)


def test_warps_use_the_tuned_table_then_a_warp_per_256_elements():
    assert pc.num_warps_for(4096, "softmax_fwd") == pc.TUNED_WARPS[("softmax_fwd", 4096)]
    assert [pc.num_warps_for(b, "untuned") for b in (64, 1024, 8192, 65536)] == [1, 4, 16, 16]
    params = pc.compiler_params(4, 2)
    assert (params.num_warps, params.num_stages) == (4, 2)


def test_warps_tuned_for_this_gpu_model_come_first(monkeypatch):
    kind = jax.devices()[0].device_kind
    monkeypatch.setitem(pc.TUNED_WARPS_BY_DEVICE, kind, {("softmax_fwd", 4096): 32})
    assert pc.num_warps_for(4096, "softmax_fwd") == 32
    assert pc.num_warps_for(4096, "log_softmax_fwd") == pc.TUNED_WARPS[("log_softmax_fwd", 4096)]
    monkeypatch.setitem(pc.TUNED_WARPS_BY_DEVICE, kind, {})
    assert pc.num_warps_for(4096, "softmax_fwd") == pc.TUNED_WARPS[("softmax_fwd", 4096)]


def test_as_rows_flattens_leading_dims():
    x = jnp.arange(24.0).reshape(2, 3, 4)
    rows, lead = pc.as_rows(x)
    assert rows.shape == (6, 4) and lead == (2, 3)
    assert pc.f32(x.astype(jnp.bfloat16)).dtype == jnp.float32


def _scaled_sum_kernel(x_ref, w_ref, y_ref, s_ref, *, block: int):
    """Per row: y = x * w (chunk by chunk, masked past the row's end) and s = sum(y)."""
    n = x_ref.shape[0]

    def body(i, total):
        start = i * block
        y = pc.load_chunk(x_ref, start, block, n) * pc.load_chunk(w_ref, start, block, n)
        pc.store_chunk(y_ref, start, block, n, y)
        return total + jnp.sum(y)

    s_ref[...] = jax.lax.fori_loop(0, pc.chunk_count(n, block), body, jnp.float32(0.0))


def test_row_call_runs_the_kernel_per_row_with_a_shared_input(rng):
    x = jnp.asarray(rng.standard_normal((5, 13)), jnp.float32)  # 13: the last chunk is partial
    w = jnp.asarray(rng.standard_normal(13), jnp.float32)
    call = pc.row_call(functools.partial(_scaled_sum_kernel, block=4),
                       [jax.ShapeDtypeStruct((13,), jnp.float32),
                        jax.ShapeDtypeStruct((), jnp.float32)],
                       name="scaled_sum", num_warps=1, row_inputs=[True, False])
    y, s = call(x, w)
    np.testing.assert_allclose(y, x * w, rtol=1e-6)
    np.testing.assert_allclose(s, jnp.sum(x * w, axis=1), rtol=1e-5, atol=1e-6)
