"""``typed_like``: a kernel on arrays of an Explicit mesh gets the reference's result types (here
on a one-device mesh; ``test__row_partition`` runs every kernel on eight simulated devices)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import pallas as pl
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from torsh_fn.kernels._explicit_sharding import has_explicit_axes, typed_like


def _on_mesh(x, axis_type):
    mesh = jax.make_mesh((1,), ("data",), axis_types=(axis_type,))
    return jax.device_put(x, NamedSharding(mesh, P("data")))


def test_only_arrays_of_an_explicit_mesh_count(rng):
    x = rng.standard_normal((3, 2)).astype(np.float32)
    assert has_explicit_axes(None, {"w": _on_mesh(x, AxisType.Explicit)})
    assert not has_explicit_axes(x, jnp.asarray(x), 2.0, None, _on_mesh(x, AxisType.Auto))


def _tanh_kernel(x):
    """tanh by a Pallas call, one row per step (interpret mode)."""
    def body(x_ref, o_ref):
        o_ref[...] = jnp.tanh(x_ref[...])

    rows = pl.BlockSpec((1, x.shape[1]), lambda i: (i, 0))
    return pl.pallas_call(body, out_shape=jax.ShapeDtypeStruct(x.shape, x.dtype),
                          grid=(x.shape[0],), in_specs=[rows], out_specs=rows,
                          interpret=True)(x)


def test_a_pallas_call_gets_the_reference_result_types_under_jit(rng):
    x = _on_mesh(rng.standard_normal((4, 5)).astype(np.float32), AxisType.Explicit)
    with pytest.raises((ValueError, TypeError)):  # JAX refuses the call without typed_like
        jax.jit(_tanh_kernel)(x)
    out = jax.jit(lambda x: typed_like(jnp.tanh, _tanh_kernel, x))(x)
    np.testing.assert_allclose(out, np.tanh(np.asarray(x)), rtol=1e-6)
    assert jax.typeof(out).sharding.spec == jax.typeof(jnp.tanh(x)).sharding.spec
    assert jax.typeof(out).sharding.spec == P("data", None)


def test_without_explicit_axes_it_is_a_plain_call():
    def reference(x):
        raise AssertionError("traced without explicit axes")

    calls = []
    out = typed_like(reference, lambda x: calls.append(x) or x + 1, jnp.ones(2))
    assert len(calls) == 1 and jnp.array_equal(out, jnp.full(2, 2.0))
