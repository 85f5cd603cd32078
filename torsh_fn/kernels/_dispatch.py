"""Choosing an implementation: ``impl="auto" | "pallas" | "xla"`` for every kernel op.

``"xla"`` runs the ``jax.numpy`` reference, ``"pallas"`` the Pallas kernel (in interpret mode where
there is no GPU), and ``"auto"`` asks the op's dispatch rule, which picks Pallas only where a
benchmark on that backend measured it faster. ``set_default_impl`` or the environment variable
``TORSH_FN_KERNEL_IMPL`` overrides ``"auto"`` everywhere, for debugging.

Some ops also choose among XLA lowerings of their own under ``"auto"`` (``picks_lowering``):
convolution and pooling on the CPU (``conv.py``, ``pooling.py``); ``"xla"`` always runs the
reference.

The measurements behind ``"auto"`` live in ``dispatch_table.json`` beside this file, written by
``benchmarks/kernels.py --sweep``: one table per GPU model (JAX's ``device_kind``), and in each,
for each op and dtype, a list of ``[n, pallas_ms, xla_ms]`` where ``n`` is the op's size key (the
row length, or the pooled plane's size). A call uses Pallas only on a GPU whose model was
measured, and only if the entry nearest its size key (on a log scale) shows Pallas faster by more
than the file's margin. Where this GPU model has no entry for an op, the entries of a model of
the same compute capability stand in: a proxy, not a measurement (the H200's attention entries
on an H100, both 9.0, where the same kernels run, until an H100 is swept). On any other GPU
"auto" is XLA.
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Callable
from pathlib import Path

import jax

IMPLS = ("auto", "pallas", "xla")
_default_impl = os.environ.get("TORSH_FN_KERNEL_IMPL", "auto")


def _check(impl: str, where: str) -> str:
    if impl not in IMPLS:
        raise ValueError(f"{where}: impl must be one of {IMPLS}, got {impl!r}")
    return impl


_check(_default_impl, "TORSH_FN_KERNEL_IMPL")


def set_default_impl(impl: str) -> None:
    """Force every op's ``impl="auto"`` to ``impl`` ("auto" restores per-op dispatch)."""
    global _default_impl
    _default_impl = _check(impl, "set_default_impl")


def get_default_impl() -> str:
    return _default_impl


def resolve_impl(op: str, impl: str, prefers_pallas: Callable[[], bool] | None = None) -> str:
    """The concrete implementation ("pallas" or "xla") for one call of ``op``.

    Args:
        op: the op's name, for error messages.
        impl: what the caller asked for.
        prefers_pallas: the op's rule for ``"auto"`` (backend and shape known to the caller);
            ops without a Pallas kernel pass None and always get "xla".
    """
    impl = _check(impl, op)
    if impl == "auto":
        impl = _default_impl
    if impl == "auto":
        return "pallas" if prefers_pallas is not None and prefers_pallas() else "xla"
    if impl == "pallas" and prefers_pallas is None:
        raise ValueError(f"{op}: has no Pallas kernel; use impl='xla' or 'auto'")
    return impl


def picks_lowering(impl: str) -> bool:
    """Whether a call with ``impl`` leaves the choice among XLA lowerings to the op's own rule:
    ``"auto"``, with no ``set_default_impl`` override."""
    return impl == "auto" and _default_impl == "auto"


_TABLE_PATH = Path(__file__).with_name("dispatch_table.json")


@functools.cache
def _tables() -> dict:
    return json.loads(_TABLE_PATH.read_text())


def _device_kind() -> str:
    return jax.devices()[0].device_kind


def _table() -> dict:
    """This GPU model's measurements (``{"ops": ...}``), empty where it was never measured."""
    return _tables()["devices"].get(_device_kind(), {"ops": {}})


def compute_capability() -> str | None:
    """The default device's CUDA compute capability ("9.0"); None off CUDA GPUs."""
    capability = getattr(jax.devices()[0], "compute_capability", None)
    return None if capability is None else str(capability)


def stand_ins(tables: dict | None = None) -> list[str]:
    """The other GPU models of ``tables`` (the shipped file by default) with this device's
    compute capability, by name (the sweep records each model's): whose entries stand in for
    the ops this model has none of."""
    tables = _tables() if tables is None else tables
    capability, kind = compute_capability(), _device_kind()
    return [other for other, entry in sorted(tables["devices"].items())
            if other != kind and capability is not None
            and entry.get("compute_capability") == capability]


def _entries(op: str, dtype: object) -> list:
    """The ``[size key, kernel ms, xla ms]`` entries for ``op`` and ``dtype``: this GPU model's,
    or where it has none, those of the first of its ``stand_ins`` that has them."""
    name = jax.numpy.dtype(dtype).name
    for table in (_table(), *(_tables()["devices"][other] for other in stand_ins())):
        entries = table["ops"].get(op, {}).get(name)
        if entries:
            return entries
    return []


def measured_ms(op: str, dtype: object, size_key: int, within: float | None = None,
                above_largest: bool = False) -> tuple[float, float] | None:
    """``(kernel_ms, xla_ms)`` of the dispatch table's entry for ``op`` at this dtype nearest
    ``size_key`` (on a log scale), on a GPU; None off the GPU, where nothing was measured, or
    (with ``within``) where the nearest entry is more than that factor away, except, with
    ``above_largest``, above the largest measured size (for ops whose lead over XLA grows with
    the size). A size halfway between two measured ones takes the smaller's entry, or with
    ``above_largest`` the larger's."""
    if jax.default_backend() != "gpu" or size_key <= 0:
        return None
    entries = _entries(op, dtype)
    if not entries:
        return None
    key, kernel_ms, xla_ms = min(entries, key=lambda e: (abs(math.log(e[0] / size_key)),
                                                         -e[0] if above_largest else e[0]))
    far = within is not None and abs(math.log(key / size_key)) > math.log(within)
    if far and not (above_largest and size_key > max(e[0] for e in entries)):
        return None
    return kernel_ms, xla_ms


def beats_xla(measured: tuple[float, float] | None) -> bool:
    """Whether a :func:`measured_ms` entry is faster than XLA by more than the table's margin."""
    return measured is not None and faster_by_margin(*measured)


def faster_by_margin(ms: float, other_ms: float) -> bool:
    """Whether ``ms`` is faster than ``other_ms`` by more than the table's margin."""
    return ms * (1.0 + _tables()["margin"]) < other_ms


def measured_faster(op: str, dtype: object, size_key: int) -> bool:
    """Whether the dispatch table says Pallas beats XLA for ``op`` at this dtype and size."""
    return beats_xla(measured_ms(op, dtype, size_key))
