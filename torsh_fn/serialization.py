"""``torsh_fn.save`` / ``torsh_fn.load``: checkpoints without pickle.

A file is one `safetensors <https://github.com/huggingface/safetensors>`_ file: the arrays as
named tensors, and the nesting of dicts, lists, tuples and plain values (numbers, strings, bools,
None) as JSON in the header's metadata under ``"torsh_fn"``. Loading therefore never executes
code, and any safetensors reader can open the arrays. The format is written here with numpy
because the ``safetensors`` package's numpy API has no bfloat16.

Writes are atomic (a temporary file in the same folder, then a rename), so a crash mid-save
leaves the previous file intact.

Example:
    >>> import jax.numpy as jnp, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "ckpt.safetensors")
    >>> save({"w": jnp.ones(3), "epoch": 2}, path)
    >>> load(path)["epoch"]
    2
"""

from __future__ import annotations

import io
import json
import os
import struct
import tempfile
from typing import Any, BinaryIO

import jax
import jax.numpy as jnp
import numpy as np

from ._device import place

__all__ = ["load", "save"]

_FORMAT_KEY = "torsh_fn"
_FORMAT_VERSION = 1
_MAX_HEADER = 100 * 1024 * 1024
# torch.save's default (zip) format, and its legacy format (a pickled magic number first)
_TORCH_ZIP = b"PK\x03\x04"
_TORCH_LEGACY = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"  # legacy magic

_CODES = {  # safetensors dtype code <-> numpy dtype
    "BOOL": np.dtype(np.bool_), "U8": np.dtype(np.uint8), "I8": np.dtype(np.int8),
    "I16": np.dtype(np.int16), "U16": np.dtype(np.uint16), "I32": np.dtype(np.int32),
    "U32": np.dtype(np.uint32), "I64": np.dtype(np.int64), "U64": np.dtype(np.uint64),
    "F16": np.dtype(np.float16), "BF16": np.dtype(jnp.bfloat16), "F32": np.dtype(np.float32),
    "F64": np.dtype(np.float64), "C64": np.dtype(np.complex64),
}
_NAMES = {dtype: code for code, dtype in _CODES.items()}


class CheckpointError(ValueError):
    """The file is not a readable torsh_fn/safetensors checkpoint."""


def _to_numpy(x: Any, path: str) -> np.ndarray:
    if type(x).__module__.startswith("torch"):
        from ._creation import as_tensor  # torch tensors, without importing torch here

        x = as_tensor(x)
    arr = np.asarray(x)
    if arr.dtype not in _NAMES:
        raise TypeError(f"save: array at {path} has dtype {arr.dtype}, which cannot be stored")
    return np.asarray(arr, order="C")


def _is_array(x: Any) -> bool:
    return (isinstance(x, jax.Array | np.ndarray | np.generic) or hasattr(x, "__jax_array__")
            or (type(x).__module__.startswith("torch") and hasattr(x, "detach")))


def _encode(obj: Any, path: str, tensors: dict[str, np.ndarray]) -> Any:
    """The JSON description of ``obj``; arrays are moved into ``tensors``."""
    if _is_array(obj) and not isinstance(obj, bool | int | float):
        name = str(len(tensors))
        tensors[name] = _to_numpy(obj, path)
        return {"t": "array", "name": name}
    if isinstance(obj, dict):
        for k in obj:
            if not isinstance(k, str | int) or isinstance(k, bool):
                raise TypeError(f"save: dict keys must be str or int, got {k!r} at {path}")
        return {"t": "dict", "items": [[k, _encode(v, f"{path}[{k!r}]", tensors)]
                                       for k, v in obj.items()]}
    if isinstance(obj, list | tuple):
        return {"t": type(obj).__name__ if type(obj) in (list, tuple) else "tuple",
                "items": [_encode(v, f"{path}[{i}]", tensors) for i, v in enumerate(obj)]}
    if obj is None or isinstance(obj, bool | int | float | str):
        return {"t": "value", "v": obj}
    raise TypeError(f"save: cannot store {type(obj).__name__} at {path}; expected arrays, "
                    "dicts, lists, tuples, numbers, strings, bools or None")


def _serialize(obj: Any) -> bytes:
    tensors: dict[str, np.ndarray] = {}
    tree = _encode(obj, "obj", tensors)
    header: dict[str, Any] = {"__metadata__": {
        _FORMAT_KEY: json.dumps({"version": _FORMAT_VERSION, "tree": tree})}}
    offset = 0
    for name, arr in tensors.items():
        header[name] = {"dtype": _NAMES[arr.dtype], "shape": list(arr.shape),
                        "data_offsets": [offset, offset + arr.nbytes]}
        offset += arr.nbytes
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    body = b"".join(arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
                    for arr in tensors.values())
    return struct.pack("<Q", len(head)) + head + body


def save(obj: Any, f: str | os.PathLike | BinaryIO) -> None:
    """Store ``obj`` (nested dicts/lists/tuples of arrays and plain values) at ``f``.

    Args:
        obj: e.g. a ``state_dict``, an optimizer's ``state_dict``, or a whole training checkpoint.
        f: a path (written atomically) or a binary file object.
    """
    data = _serialize(obj)
    if not isinstance(f, str | os.PathLike):
        f.write(data)
        return
    folder = os.path.dirname(os.path.abspath(f))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".safetensors")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, f)
    except BaseException:
        os.unlink(tmp)
        raise


def _read_tensors(raw: bytes, where: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    if len(raw) < 8:
        raise CheckpointError(f"load: {where} is not a safetensors file (too short)")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > min(_MAX_HEADER, len(raw) - 8):
        raise CheckpointError(f"load: {where} is not a safetensors file (bad header length)")
    try:
        header = json.loads(raw[8:8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(
            f"load: {where} is not a safetensors file (header is not JSON)") from err
    if not isinstance(header, dict):
        raise CheckpointError(f"load: {where} has a malformed header")
    meta = header.pop("__metadata__", None) or {}
    body = memoryview(raw)[8 + n:]
    tensors = {}
    for name, info in header.items():
        try:
            dtype = _CODES[info["dtype"]]
            shape = tuple(int(s) for s in info["shape"])
            start, end = (int(o) for o in info["data_offsets"])
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"load: {where}: tensor {name!r} has a malformed or "
                                  f"unsupported entry {info!r}") from err
        count = int(np.prod(shape, dtype=np.int64))
        if not 0 <= start <= end <= len(body) or end - start != count * dtype.itemsize:
            raise CheckpointError(f"load: {where}: tensor {name!r} lies outside the file or has "
                                  "the wrong size (truncated or corrupt file)")
        arr = np.frombuffer(body[start:end], dtype=dtype.newbyteorder("<"), count=count)
        tensors[name] = arr.reshape(shape).astype(dtype, copy=False)
    return tensors, meta


def _decode(node: Any, tensors: dict[str, Any], where: str) -> Any:
    kind = node.get("t") if isinstance(node, dict) else None
    if kind == "array":
        return tensors[node["name"]]
    if kind == "dict":
        return {k: _decode(v, tensors, where) for k, v in node["items"]}
    if kind in ("list", "tuple"):
        items = [_decode(v, tensors, where) for v in node["items"]]
        return items if kind == "list" else tuple(items)
    if kind == "value":
        return node["v"]
    raise CheckpointError(f"load: {where}: malformed structure entry {node!r}")


def _from_torch_tree(obj: Any, dev: Any) -> Any:
    if type(obj).__module__.startswith("torch") and hasattr(obj, "detach"):
        from ._creation import as_tensor  # bfloat16 included

        return place(as_tensor(obj.detach().cpu().contiguous()), dev)
    if isinstance(obj, dict):
        return {k: _from_torch_tree(v, dev) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_from_torch_tree(v, dev) for v in obj)
    return obj


def _load_torch(raw: bytes, where: str, dev: Any) -> Any:
    """A ``torch.save`` file through ``torch.load(weights_only=True)``; tensors -> jax arrays."""
    try:
        import torch
    except ImportError as err:
        raise ImportError(f"load: {where} is a PyTorch file; reading it needs torch (pip install "
                          f"torch), which torsh_fn calls as torch.load(weights_only=True), "
                          f"executing no code from the file") from err
    try:
        obj = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError, ... for bad files
        raise CheckpointError(f"load: {where} is not a safetensors file, and torch.load("
                              f"weights_only=True) refused it as a PyTorch file ({err}); only "
                              f"tensors and plain containers are read") from err
    return _from_torch_tree(obj, dev)


def _to_jax(arr: np.ndarray, dev: Any) -> Any:
    """A ``jax.Array``, unless JAX would narrow the dtype (64-bit types without x64): then the
    numpy array is returned so that no stored precision is lost."""
    if jax.dtypes.canonicalize_dtype(arr.dtype) != arr.dtype:
        return arr
    return place(jnp.asarray(arr), dev)


def load(f: str | os.PathLike | BinaryIO, device: Any = None, *, map_location: Any = None,
         weights_only: bool = True) -> Any:
    """Read what :func:`save` wrote; arrays come back as ``jax.Array`` on ``device``.

    64-bit arrays stay numpy arrays unless ``jax_enable_x64`` is on, so nothing is narrowed.

    A safetensors file written by another program loads as a flat ``{name: array}`` dict. A PyTorch
file (``torch.save``'s zip or legacy format, as ``.pt``/``.pth``) is read with
``torch.load(weights_only=True)``, which executes no code, when torch is installed; its tensors
come back as ``jax.Array``s in the same structure (a ``state_dict`` loads into the matching
``nn.Module`` unchanged).
    ``map_location`` is PyTorch's name for ``device``; ``weights_only`` is accepted for
    compatibility (nothing is ever unpickled).

    Raises:
        FileNotFoundError: no file at ``f``.
        ValueError: (``CheckpointError``) the file is corrupt or not a safetensors file.
    """
    dev = device if device is not None else map_location
    where = repr(os.fspath(f)) if isinstance(f, str | os.PathLike) else "the stream"
    if isinstance(f, str | os.PathLike):
        with open(f, "rb") as stream:
            raw = stream.read()
    else:
        raw = f.read()
    if raw[:4] == _TORCH_ZIP or raw.startswith(_TORCH_LEGACY):
        return _load_torch(raw, where, dev)
    arrays, meta = _read_tensors(raw, where)
    tensors = {name: _to_jax(a, dev) for name, a in arrays.items()}
    if _FORMAT_KEY not in meta:
        return tensors
    try:
        info = json.loads(meta[_FORMAT_KEY])
        tree = info["tree"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise CheckpointError(f"load: {where}: malformed torsh_fn metadata") from err
    if info.get("version", 0) > _FORMAT_VERSION:
        raise CheckpointError(f"load: {where} was written by a newer torsh_fn (format "
                              f"{info['version']}); upgrade torsh_fn to read it")
    try:
        return _decode(tree, tensors, where)
    except (KeyError, TypeError, ValueError) as err:
        if isinstance(err, CheckpointError):
            raise
        raise CheckpointError(f"load: {where}: structure refers to missing tensors") from err
