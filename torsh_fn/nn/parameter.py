"""``Parameter``: a named, mutable holder of one array, as ``torch.nn.Parameter``.

A Parameter is what a Module registers as trainable state. Its array lives in ``.data``
(a ``jax.Array``, replaced rather than mutated), its gradient in ``.grad`` (``None`` until a
backward pass fills it), and ``.requires_grad`` says whether gradients and optimizers touch it.
It hashes and compares by identity, so it can key an optimizer's state dict.

It acts as its array: arithmetic, indexing, ``jnp`` functions (it is a JAX pytree with the
array as its one leaf) and array attributes (``shape``, ``dtype``, ``T``, ``sum()``, ...).

Example:
    >>> import jax.numpy as jnp
    >>> w = Parameter(jnp.ones((2, 3)))
    >>> (w * 2).shape, jnp.tanh(w).dtype
    ((2, 3), dtype('float32'))
    >>> w.data = jnp.zeros((2, 3))      # what an optimizer step does
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._backward import note_read
from .._creation import host_copy
from .._jit import structure_changed

__all__ = ["Parameter", "as_array"]


def as_array(value: Any, owner: str = "Parameter") -> jax.Array:
    """A jax/numpy array or torch tensor (torch is not imported) -> ``jax.Array``.

    Host memory is copied, never aliased: a parameter's buffer may be donated to XLA (and then
    overwritten in place), which must not change the caller's numpy array or tensor; the copy
    is made before returning (``host_copy``), so a write right after does not reach it either.

    Raises:
        TypeError: naming ``owner``, for anything that is not an array.
    """
    if isinstance(value, Parameter):
        return value.data
    if isinstance(value, jax.Array):
        return value
    if isinstance(value, np.ndarray | np.generic) or (
            type(value).__module__.startswith("torch") and hasattr(value, "detach")):
        return jnp.asarray(host_copy(value))
    raise TypeError(
        f"{owner}: expected an array (jax.Array, numpy.ndarray or torch.Tensor), "
        f"got {type(value).__name__}"
    )


class Parameter:
    """A trainable array registered on a Module; PyTorch's ``nn.Parameter``.

    Args:
        data: the initial array (jax/numpy array or torch tensor); ``None`` gives an empty
            float32 array.
        requires_grad: whether gradients are computed for it and optimizers update it.

    Attributes:
        data: the ``jax.Array`` (settable; must stay an array).
        grad: the accumulated gradient (``jax.Array``) or ``None``.
        requires_grad: bool.
    """

    __array_priority__ = 100  # numpy defers mixed operations to us
    __array_ufunc__ = None

    def __init__(self, data: Any = None, requires_grad: bool = True) -> None:
        self._data = jnp.zeros((0,), jnp.float32) if data is None else as_array(data)
        self.grad: jax.Array | None = None
        self._requires_grad = bool(requires_grad)

    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        if not isinstance(value, bool | np.bool_):  # PyTorch: "requires_grad must be a bool"
            raise TypeError(f"Parameter.requires_grad must be a bool, got "
                            f"{type(value).__name__} {value!r}")
        value = bool(value)
        if value != self._requires_grad:
            structure_changed()
        self._requires_grad = value

    @property
    def data(self) -> jax.Array:
        note_read(self)
        return self._data

    @data.setter
    def data(self, value: Any) -> None:
        self._data = as_array(value, "Parameter.data")

    # -- array facts ---------------------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._data.shape)

    @property
    def dtype(self) -> Any:
        return self._data.dtype

    @property
    def ndim(self) -> int:
        return self._data.ndim

    def __jax_array__(self) -> jax.Array:
        return self.data

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        return np.asarray(self._data, dtype)

    def __getattr__(self, name: str) -> Any:
        # Only reached for names not found normally: array methods and attributes (T, sum, ...).
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.data, name)

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self) -> Iterator[jax.Array]:
        return iter(self.data)

    def __getitem__(self, index: Any) -> jax.Array:
        return self.data[index]

    def __bool__(self) -> bool:
        return bool(self._data)

    def __float__(self) -> float:
        return float(self._data)

    def __int__(self) -> int:
        return int(self._data)

    def __index__(self) -> int:
        return operator.index(self._data)

    # -- identity ------------------------------------------------------------------------------

    __hash__ = object.__hash__

    def __eq__(self, other: object) -> bool:
        return self is other

    def __ne__(self, other: object) -> bool:
        return self is not other

    # -- PyTorch's methods ---------------------------------------------------------------------

    def requires_grad_(self, requires_grad: bool = True) -> Parameter:
        self.requires_grad = bool(requires_grad)
        return self

    def detach(self) -> jax.Array:
        """The array, cut from differentiation (``jax.lax.stop_gradient``)."""
        return jax.lax.stop_gradient(self.data)

    def numel(self) -> int:
        return int(self._data.size)

    def dim(self) -> int:
        return self._data.ndim

    def copy_(self, src: Any) -> Parameter:
        """Copy ``src`` in (same shape; cast to this dtype), as ``tensor.copy_``."""
        src = as_array(src, "Parameter.copy_")
        if tuple(src.shape) != self.shape:
            raise ValueError(f"Parameter.copy_: expected shape {self.shape}, "
                             f"got {tuple(src.shape)}")
        self._data = src.astype(self._data.dtype)
        return self

    def _jit_slots(self) -> list[tuple[Parameter, str]]:
        """State for ``torsh_fn.jit``: a Parameter passed to a jitted function is written back."""
        return [(self, "data"), (self, "grad")]

    def _jit_guard(self) -> int:
        """For ``torsh_fn.jit``: the slots above are always the same."""
        return 0

    def __getstate__(self) -> dict[str, Any]:
        """``copy``, ``deepcopy`` and pickle keep the array and ``requires_grad`` but not
        ``.grad``, as PyTorch's ``Parameter`` does."""
        return {**self.__dict__, "grad": None}

    def __repr__(self) -> str:
        return f"Parameter containing:\n{self._data!r}"


def _binary(op: Callable[[Any, Any], Any]) -> tuple[Callable, Callable]:
    def forward(self: Parameter, other: Any) -> Any:
        other = other.data if isinstance(other, Parameter) else other
        return op(self.data, other)

    def reflected(self: Parameter, other: Any) -> Any:
        return op(other, self.data)

    return forward, reflected


def _inplace(op: Callable[[Any, Any], Any]) -> Callable:
    def method(self: Parameter, other: Any) -> Parameter:
        other = other.data if isinstance(other, Parameter) else other
        self.data = jnp.asarray(op(self.data, other), self._data.dtype)
        return self

    return method


for _name, _op in {
    "add": operator.add, "sub": operator.sub, "mul": operator.mul, "truediv": operator.truediv,
    "floordiv": operator.floordiv, "mod": operator.mod, "pow": operator.pow,
    "matmul": operator.matmul, "and": operator.and_, "or": operator.or_, "xor": operator.xor,
    "lshift": operator.lshift, "rshift": operator.rshift,
}.items():
    _fwd, _ref = _binary(_op)
    setattr(Parameter, f"__{_name}__", _fwd)
    setattr(Parameter, f"__r{_name}__", _ref)
    setattr(Parameter, f"__i{_name}__", _inplace(_op))

for _name, _op in {"lt": operator.lt, "le": operator.le, "gt": operator.gt,
                   "ge": operator.ge}.items():
    setattr(Parameter, f"__{_name}__", _binary(_op)[0])

for _name, _op in {"neg": operator.neg, "pos": operator.pos, "abs": operator.abs,
                   "invert": operator.invert}.items():
    setattr(Parameter, f"__{_name}__", lambda self, _op=_op: _op(self.data))


def _flatten(p: Parameter) -> tuple[tuple[jax.Array], bool]:
    return (p.data,), p.requires_grad


def _flatten_with_keys(p: Parameter) -> tuple[tuple[tuple[Any, jax.Array]], bool]:
    return ((jax.tree_util.GetAttrKey("data"), p.data),), p.requires_grad


def _unflatten(requires_grad: bool, children: tuple[Any]) -> Parameter:
    # JAX rebuilds with tracers, gradients or placeholder objects: no validation here.
    p = object.__new__(Parameter)
    p._data, p.grad, p._requires_grad = children[0], None, requires_grad
    return p


jax.tree_util.register_pytree_with_keys(Parameter, _flatten_with_keys, _unflatten, _flatten)
