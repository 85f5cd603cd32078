"""make_mesh: axes ("data", "model") over all devices; sizes checked (8 devices in a
subprocess, 1 device here)."""

from __future__ import annotations

import jax
import pytest

from torsh_fn import distributed as dist


def test_on_eight_devices_data_defaults_to_every_device_left(eight):
    p = eight["placement"]
    assert p["mesh"] == {"data": 8, "model": 1}
    assert p["mesh42"] == {"data": 4, "model": 2}
    assert p["mesh_axes"] == ["data", "model"]


@pytest.mark.parametrize("key, message", [
    ("err_mesh", "ValueError: make_mesh: data * model must equal the number of devices (8), "
                 "got data=3, model=1 (product 3)"),
    ("err_mesh_model", "ValueError: make_mesh: model=3 does not divide the 8 devices; "
                       "expected a divisor of 8"),
    ("err_mesh_zero", "ValueError: make_mesh: data: expected a positive integer, got 0"),
])
def test_on_eight_devices_bad_sizes_raise(eight, key, message):
    assert eight["placement"][key] == message


def test_one_device_mesh():
    one = jax.devices()[:1]
    assert dict(dist.make_mesh(devices=one).shape) == {"data": 1, "model": 1}
    assert dict(dist.make_mesh().shape) == {"data": jax.device_count(), "model": 1}
    with pytest.raises(ValueError, match=r"make_mesh: data \* model must equal the number "
                                         r"of devices \(1\), got data=2, model=1"):
        dist.make_mesh(data=2, devices=one)
    with pytest.raises(ValueError, match="make_mesh: devices: expected at least one device"):
        dist.make_mesh(devices=[])


def test_default_mesh_is_cached_and_settable():
    dist.set_default_mesh(None)
    first = dist.get_default_mesh()
    assert dist.get_default_mesh() is first
    other = dist.make_mesh(devices=jax.devices())
    dist.set_default_mesh(other)
    assert dist.get_default_mesh() is other
    dist.set_default_mesh(None)
    with pytest.raises(TypeError, match=r"set_default_mesh: mesh: expected a "
                                        r"jax\.sharding\.Mesh, got int"):
        dist.set_default_mesh(3)


def test_a_mesh_of_explicit_axes_is_used_with_its_axes_auto():
    """``jax.make_mesh``'s default Explicit axes would type every placed array's sharding; the
    helpers keep the devices and names and leave shardings to XLA (8 devices: test__parallel)."""
    from torsh_fn.distributed._mesh import resolve_mesh

    given = jax.make_mesh((1, 1), ("data", "model"),
                          axis_types=(jax.sharding.AxisType.Explicit,) * 2)
    auto = [jax.sharding.AxisType.Auto] * 2
    for mesh in (resolve_mesh("test", given), dist.replicate(jax.numpy.ones(3), given)
                 .sharding.mesh):
        assert list(mesh.axis_types) == auto
        assert mesh.axis_names == given.axis_names and (mesh.devices == given.devices).all()
    dist.set_default_mesh(given)
    try:
        assert list(dist.get_default_mesh().axis_types) == auto
    finally:
        dist.set_default_mesh(None)
