"""Meshes: the devices of every process laid out on named axes ``("data", "model")``.

``make_mesh(data, model)`` builds a ``jax.sharding.Mesh`` over all devices of all processes
(``jax.devices()``). The *default mesh* is what the placement helpers use when given
``mesh=None``: the mesh of the last :class:`DistributedDataParallel` /
:class:`FullyShardedDataParallel` wrap, or :func:`set_default_mesh`'s, or else ``make_mesh()``
(every device on ``"data"``), built once and cached.

Placement leaves the shardings of what is computed to XLA's partitioner, so a mesh given here
is used with every axis Auto: ``jax.make_mesh``'s default Explicit axes would instead type every
array's sharding and ask each op for an output sharding it cannot infer (a convolution of a
batch split over ``"data"`` by a weight split FSDP-style).

Example:
    >>> mesh = make_mesh()              # 8 GPUs -> Mesh('data': 8, 'model': 1)
    >>> mesh = make_mesh(data=4, model=2)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh

__all__ = ["AXES", "get_default_mesh", "make_mesh", "set_default_mesh"]

AXES = ("data", "model")
_default: list[Mesh] = []


def _positive(owner: str, name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{owner}: {name}: expected a positive integer, got {value!r}")
    return int(value)


def make_mesh(data: int | None = None, model: int = 1, *,
              devices: Sequence[Any] | None = None) -> Mesh:
    """A ``Mesh`` of shape ``(data, model)`` with axis names ``("data", "model")``.

    Args:
        data: size of the data-parallel axis (the batch is split over it); ``None`` takes
            every device left after ``model``.
        model: size of the model axis (1 for plain data parallelism and FSDP over ``data``).
        devices: the devices, in order; default ``jax.devices()`` (all devices of all
            processes, which must all call ``make_mesh`` alike).

    Returns:
        A ``jax.sharding.Mesh`` with ``Auto`` axes (XLA's GSPMD propagates shardings).

    Raises:
        ValueError: ``data * model`` is not the number of devices, or a size is not positive.

    Example:
        >>> make_mesh(devices=jax.devices()[:1]).shape
        {'data': 1, 'model': 1}
    """
    devs = list(jax.devices() if devices is None else devices)
    if not devs:
        raise ValueError("make_mesh: devices: expected at least one device, got none")
    model = _positive("make_mesh", "model", model)
    if data is None:
        if len(devs) % model:
            raise ValueError(f"make_mesh: model={model} does not divide the {len(devs)} "
                             f"devices; expected a divisor of {len(devs)}")
        data = len(devs) // model
    data = _positive("make_mesh", "data", data)
    if data * model != len(devs):
        raise ValueError(f"make_mesh: data * model must equal the number of devices "
                         f"({len(devs)}), got data={data}, model={model} "
                         f"(product {data * model})")
    if devices is None:
        return jax.make_mesh((data, model), AXES, axis_types=(jax.sharding.AxisType.Auto,) * 2)
    return Mesh(np.asarray(devs, dtype=object).reshape(data, model), AXES)


def _with_auto_axes(mesh: Mesh) -> Mesh:
    """``mesh``'s devices and axis names, every axis Auto (see the module docstring)."""
    auto = jax.sharding.AxisType.Auto
    if all(t == auto for t in mesh.axis_types):
        return mesh
    return Mesh(mesh.devices, mesh.axis_names, axis_types=(auto,) * len(mesh.axis_names))


def set_default_mesh(mesh: Mesh | None) -> None:
    """Make ``mesh`` (its axes Auto) the one that ``mesh=None`` means (``None`` forgets it)."""
    if mesh is not None and not isinstance(mesh, Mesh):
        raise TypeError(f"set_default_mesh: mesh: expected a jax.sharding.Mesh, "
                        f"got {type(mesh).__name__}")
    _default.clear()
    if mesh is not None:
        _default.append(_with_auto_axes(mesh))


def get_default_mesh() -> Mesh:
    """The default mesh (see the module docstring); built by ``make_mesh()`` on first use."""
    if not _default:
        _default.append(make_mesh())
    return _default[0]


def resolve_mesh(owner: str, mesh: Mesh | None) -> Mesh:
    """``mesh`` with its axes Auto, or the default mesh for ``None``; TypeError naming
    ``owner`` otherwise."""
    if mesh is None:
        return get_default_mesh()
    if not isinstance(mesh, Mesh):
        raise TypeError(f"{owner}: mesh: expected a jax.sharding.Mesh or None, "
                        f"got {type(mesh).__name__}")
    return _with_auto_axes(mesh)
