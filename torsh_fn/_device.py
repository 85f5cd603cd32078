"""``torsh_fn.device``: PyTorch's device names over JAX devices, and moving pytrees between them."""

from __future__ import annotations

from typing import Any

import jax

__all__ = ["device", "to_device"]

_PLATFORMS = {"cpu": "cpu", "cuda": "gpu", "gpu": "gpu", "tpu": "tpu"}


class device:
    """A device named as in PyTorch: ``device("cpu")``, ``device("cuda")``, ``device("cuda:1")``.

    ``.type`` and ``.index`` are PyTorch's; ``.jax_device`` is the ``jax.Device`` it stands for.

    Example:
        >>> device("cpu").jax_device.platform
        'cpu'
    """

    def __init__(self, type: str | device | jax.Device, index: int | None = None) -> None:
        if isinstance(type, device):
            type, index = type.type, type.index
        elif isinstance(type, jax.Device):
            type, index = ("cuda" if type.platform == "gpu" else type.platform), type.id
        if not isinstance(type, str):
            raise TypeError(f"device: expected a string such as 'cuda:0', got {type!r}")
        name, _, idx = type.partition(":")
        if name not in _PLATFORMS:
            raise ValueError(f"device: expected one of {sorted(_PLATFORMS)} (optionally ':N'), "
                             f"got {type!r}")
        if idx:
            if index is not None:
                raise ValueError(f"device: index given twice in {type!r} and index={index}")
            if not idx.isdigit():
                raise ValueError(f"device: invalid index in {type!r}")
            index = int(idx)
        self.type = "cuda" if name == "gpu" else name
        self.index = index

    @property
    def jax_device(self) -> jax.Device:
        """The ``jax.Device``; raises ``RuntimeError`` if this machine has no such device."""
        try:
            devices = jax.devices(_PLATFORMS[self.type])
        except RuntimeError as err:
            raise RuntimeError(f"device {self}: no {self.type} devices are available") from err
        index = self.index or 0
        if index >= len(devices):
            raise RuntimeError(f"device {self}: index out of range, {len(devices)} "
                               f"{self.type} device(s) available")
        return devices[index]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            other = device(other)
        return (isinstance(other, device) and self.type == other.type
                and (self.index or 0) == (other.index or 0))

    def __hash__(self) -> int:
        return hash((self.type, self.index or 0))

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __repr__(self) -> str:
        idx = "" if self.index is None else f", index={self.index}"
        return f"device(type={self.type!r}{idx})"


def _as_jax_device(dev: Any) -> Any:
    if isinstance(dev, jax.Device | jax.sharding.Sharding):
        return dev
    return device(dev).jax_device


def to_device(tree: Any, device: Any) -> Any:
    """Move every array in a pytree to ``device`` ("cpu", "cuda:0", a ``jax.Device`` or a
    ``jax.sharding.Sharding``).

    Example:
        >>> import jax.numpy as jnp
        >>> to_device({"w": jnp.ones(2)}, "cpu")["w"].devices()
        {CpuDevice(id=0)}
    """
    return jax.device_put(tree, _as_jax_device(device))


def place(x: Any, dev: Any) -> Any:
    """``to_device`` that leaves ``x`` where it is when ``dev`` is None."""
    return x if dev is None else to_device(x, dev)
