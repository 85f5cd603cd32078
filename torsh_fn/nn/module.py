"""``Module``: PyTorch's ``nn.Module`` over JAX arrays.

A Module registers the :class:`Parameter`s, buffers and submodules assigned to its attributes,
runs ``forward`` (with hooks) when called, names its state with PyTorch's dotted keys
(``state_dict``/``load_state_dict``, which accepts torch tensors as they are) and switches
between ``train()`` and ``eval()``.

Every Module class is a JAX pytree: parameters and buffers are its leaves, the rest (submodule
structure, configuration, ``training``) is static, so ``jax.tree_util`` and JAX's transforms see
through modules. For the stateful route, ``_jit_slots``/``_jit_static`` let ``torsh_fn.jit``
pass a module's state into one compiled program and write the new state back.

Example:
    >>> class MLP(Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.fc = Linear(4, 2)
    ...     def forward(self, x):
    ...         return self.fc(x)
    >>> sorted(MLP().state_dict())
    ['fc.bias', 'fc.weight']
"""

from __future__ import annotations

import copy
import itertools
from collections import OrderedDict, namedtuple
from collections.abc import Callable, Hashable, Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from .._backward import note_write
from .._device import device as _device
from .._device import to_device
from .._dtypes import to_dtype
from .._jit import keeps_base_jit_state, structure_changed, structure_version
from .parameter import Parameter, as_array

__all__ = ["Module", "RemovableHandle", "StateDictError"]

_STATE = ("_parameters", "_buffers", "_modules")


class _Registry(dict):
    """A Module's ``_parameters`` or ``_modules``: every change, through Module's methods or
    written into the dict directly, is a change of structure (:func:`structure_changed`)."""

    def __setitem__(self, key: str, value: Any) -> None:
        structure_changed()
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        structure_changed()
        super().__delitem__(key)

    def __ior__(self, other: Any) -> _Registry:
        self.update(other)
        return self

    def pop(self, *args: Any) -> Any:
        structure_changed()
        return super().pop(*args)

    def popitem(self) -> tuple[str, Any]:
        structure_changed()
        return super().popitem()

    def clear(self) -> None:
        structure_changed()
        super().clear()

    def update(self, *args: Any, **kwargs: Any) -> None:
        structure_changed()
        super().update(*args, **kwargs)

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            structure_changed()
        return super().setdefault(key, default)


class _Buffers(_Registry):
    """A Module's ``_buffers``: a new value under a registered name is not a change of
    structure (BatchNorm writes its statistics every step), a new name is."""

    def __setitem__(self, key: str, value: Any) -> None:
        if key not in self:
            structure_changed()
        dict.__setitem__(self, key, value)


class StateDictError(RuntimeError, ValueError):
    """``load_state_dict`` found missing/unexpected keys or wrong shapes (PyTorch raises
    ``RuntimeError``; torsh_fn's rule is ``ValueError``: this is both)."""


class _IncompatibleKeys(namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])):
    """``load_state_dict``'s result: ``(missing_keys, unexpected_keys)``."""

    def __repr__(self) -> str:
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return super().__repr__()


class RemovableHandle:
    """Returned by the ``register_*_hook`` methods; ``remove()`` unregisters the hook."""

    _ids = itertools.count()

    def __init__(self, hooks: dict[int, Any]) -> None:
        self._hooks = hooks
        self.id = next(RemovableHandle._ids)

    def remove(self) -> None:
        self._hooks.pop(self.id, None)

    def __enter__(self) -> RemovableHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def _addindent(text: str, spaces: int) -> str:
    first, *rest = text.split("\n")
    return "\n".join([first, *[" " * spaces + line for line in rest]])


class Module:
    """Base class of every layer and model; subclass it and define ``forward``.

    Attributes:
        training: True after ``train()`` (the default), False after ``eval()``.
    """

    training: bool

    def __init__(self) -> None:
        d = self.__dict__
        d["training"] = True
        d["_parameters"] = _Registry()
        d["_buffers"] = _Buffers()
        d["_non_persistent_buffers_set"] = set()
        d["_modules"] = _Registry()
        d["_forward_pre_hooks"] = {}
        d["_forward_hooks"] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        jax.tree_util.register_pytree_with_keys(cls, _flatten_with_keys, _unflatten, _flatten)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"{self._get_name()} has no forward(); define it in the subclass")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        for hook, with_kwargs in list(self._forward_pre_hooks.values()):
            if with_kwargs:
                result = hook(self, args, kwargs)
                if result is not None:
                    args, kwargs = result
            else:
                result = hook(self, args)
                if result is not None:
                    args = result if isinstance(result, tuple) else (result,)
        out = self.forward(*args, **kwargs)
        for hook, with_kwargs in list(self._forward_hooks.values()):
            result = hook(self, args, kwargs, out) if with_kwargs else hook(self, args, out)
            if result is not None:
                out = result
        return out

    # -- registration --------------------------------------------------------------------------

    def _check_init(self, what: str) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"cannot assign {what} before Module.__init__() call")

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Register ``param`` (or a ``None`` placeholder) as ``name``."""
        self._check_init("parameters")
        _check_name(self, name, "parameter")
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"cannot assign '{type(param).__name__}' object to parameter "
                            f"'{name}' (torsh_fn.nn.Parameter or None required)")
        self._parameters[name] = param

    def register_buffer(self, name: str, tensor: Any, persistent: bool = True) -> None:
        """Register an array (or ``None``) as a buffer; ``persistent=False`` leaves it out of
        ``state_dict``."""
        self._check_init("buffers")
        _check_name(self, name, "buffer")
        self._buffers[name] = None if tensor is None else as_array(tensor, f"buffer '{name}'")
        if persistent:
            self._non_persistent_buffers_set.discard(name)
        else:
            self._non_persistent_buffers_set.add(name)

    def add_module(self, name: str, module: Module | None) -> None:
        """Register ``module`` as the submodule ``name``."""
        self._check_init("child modules")
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        _check_name(self, name, "module", allow_dotted=False)
        self._modules[name] = module

    register_module = add_module

    def __setattr__(self, name: str, value: Any) -> None:
        d = self.__dict__
        if isinstance(value, Parameter):
            self._check_init("parameters")
            _forget(self, name, keep="_parameters")
            self.register_parameter(name, value)
        elif "_parameters" in d and name in d["_parameters"]:
            self.register_parameter(name, value)
        elif isinstance(value, Module):
            self._check_init("child modules")
            _forget(self, name, keep="_modules")
            self._modules[name] = value
        elif "_modules" in d and name in d["_modules"]:
            self.add_module(name, value)
        elif "_buffers" in d and name in d["_buffers"]:
            buffers = d["_buffers"]
            note_write(buffers, name)
            buffers[name] = None if value is None else as_array(value, f"buffer '{name}'")
        else:
            if name in ("training", "__class__") and getattr(self, name, None) is not value:
                structure_changed()
            object.__setattr__(self, name, value)

    def __getattr__(self, name: str) -> Any:
        d = self.__dict__
        for store in _STATE:
            if store in d and name in d[store]:
                return d[store][name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name: str) -> None:
        for store in _STATE:
            if name in self.__dict__.get(store, {}):
                del self.__dict__[store][name]
                self._non_persistent_buffers_set.discard(name)
                return
        object.__delattr__(self, name)

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *self._parameters, *self._buffers, *self._modules})

    # -- traversal -----------------------------------------------------------------------------

    def named_modules(self, memo: set[int] | None = None, prefix: str = "",
                      remove_duplicate: bool = True) -> Iterator[tuple[str, Module]]:
        memo = set() if memo is None else memo
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, module in self._modules.items():
            if module is not None:
                sub = f"{prefix}.{name}" if prefix else name
                yield from module.named_modules(memo, sub, remove_duplicate)

    def modules(self) -> Iterator[Module]:
        for _, module in self.named_modules():
            yield module

    def named_children(self) -> Iterator[tuple[str, Module]]:
        seen: set[int] = set()
        for name, module in self._modules.items():
            if module is not None and id(module) not in seen:
                seen.add(id(module))
                yield name, module

    def children(self) -> Iterator[Module]:
        for _, module in self.named_children():
            yield module

    def _named_members(self, store: str, prefix: str, recurse: bool,
                       remove_duplicate: bool) -> Iterator[tuple[str, Any]]:
        modules = (self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate)
                   if recurse else [(prefix, self)])
        seen: set[int] = set()
        for mod_prefix, module in modules:
            for name, value in module.__dict__[store].items():
                # Tied parameters are reported once; buffers are plain arrays, never deduplicated.
                if value is None or (remove_duplicate and id(value) in seen):
                    continue
                if store == "_parameters":
                    seen.add(id(value))
                yield (f"{mod_prefix}.{name}" if mod_prefix else name), value

    def named_parameters(self, prefix: str = "", recurse: bool = True,
                         remove_duplicate: bool = True) -> Iterator[tuple[str, Parameter]]:
        yield from self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "", recurse: bool = True,
                      remove_duplicate: bool = True) -> Iterator[tuple[str, jax.Array]]:
        yield from self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse: bool = True) -> Iterator[jax.Array]:
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def get_submodule(self, target: str) -> Module:
        """The submodule at dotted path ``target`` (``""`` is ``self``)."""
        module = self
        for part in target.split(".") if target else []:
            sub = module._modules.get(part)
            if sub is None:
                raise AttributeError(f"{module._get_name()} has no submodule '{part}' "
                                     f"(in target '{target}')")
            module = sub
        return module

    def get_parameter(self, target: str) -> Parameter:
        owner, _, name = target.rpartition(".")
        module = self.get_submodule(owner)
        if name not in module._parameters:
            raise AttributeError(f"{module._get_name()} has no parameter '{name}'")
        return module._parameters[name]

    def get_buffer(self, target: str) -> jax.Array:
        owner, _, name = target.rpartition(".")
        module = self.get_submodule(owner)
        if name not in module._buffers:
            raise AttributeError(f"{module._get_name()} has no buffer '{name}'")
        return module._buffers[name]

    # -- modes and gradients -------------------------------------------------------------------

    def train(self, mode: bool = True) -> Module:
        if not isinstance(mode, bool):
            raise ValueError(f"training mode is expected to be boolean, got {mode!r}")
        for module in self.modules():
            if module.__dict__["training"] is not mode:
                structure_changed()
                module.__dict__["training"] = mode
        return self

    def eval(self) -> Module:
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        """Freeze (False) or unfreeze every parameter: frozen ones get no gradient and are left
        alone by optimizers."""
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.parameters():
            p.grad = None if set_to_none or p.grad is None else jnp.zeros_like(p.grad)

    def apply(self, fn: Callable[[Module], Any]) -> Module:
        """Call ``fn`` on every submodule (children first) and on ``self``; returns ``self``."""
        for module in self.children():
            module.apply(fn)
        fn(self)
        return self

    # -- dtype and device ----------------------------------------------------------------------

    def _apply(self, fn: Callable[[jax.Array], jax.Array]) -> Module:
        for p in self.parameters():
            p.data = fn(p.data)
            if p.grad is not None:
                p.grad = fn(p.grad)
        for module in self.modules():
            for name, b in module._buffers.items():
                if b is not None:
                    module._buffers[name] = fn(b)
        return self

    def to(self, *args: Any, **kwargs: Any) -> Module:
        """``to(device)``, ``to(dtype)``, ``to(device, dtype)`` or ``to(array)``; floating
        parameters and buffers take the dtype, all arrays move to the device."""
        dev, dtype = _parse_to(args, kwargs)

        def convert(a: jax.Array) -> jax.Array:
            if dtype is not None and jnp.issubdtype(a.dtype, jnp.inexact):
                a = a.astype(dtype)
            return a if dev is None else to_device(a, dev)

        return self._apply(convert)

    def float(self) -> Module:
        return self.to(jnp.float32)

    def double(self) -> Module:
        return self.to(jnp.float64)

    def half(self) -> Module:
        return self.to(jnp.float16)

    def bfloat16(self) -> Module:
        return self.to(jnp.bfloat16)

    def cpu(self) -> Module:
        return self.to("cpu")

    def cuda(self, device: int | None = None) -> Module:
        return self.to("cuda" if device is None else f"cuda:{device}")

    # -- hooks ---------------------------------------------------------------------------------

    def register_forward_pre_hook(self, hook: Callable[..., Any], *, prepend: bool = False,
                                  with_kwargs: bool = False) -> RemovableHandle:
        """``hook(module, args)`` (or ``hook(module, args, kwargs)``) runs before ``forward``;
        a non-None result replaces the inputs."""
        return _add_hook(self._forward_pre_hooks, hook, prepend, with_kwargs)

    def register_forward_hook(self, hook: Callable[..., Any], *, prepend: bool = False,
                              with_kwargs: bool = False,
                              always_call: bool = False) -> RemovableHandle:
        """``hook(module, args, output)`` (or ``hook(module, args, kwargs, output)``) runs after
        ``forward``; a non-None result replaces the output."""
        return _add_hook(self._forward_hooks, hook, prepend, with_kwargs)

    # -- state_dict ----------------------------------------------------------------------------

    def _state_entries(self) -> Iterator[tuple[str, Module, str, bool]]:
        """(key, owning module, local name, is_parameter) in PyTorch's state_dict order."""
        for prefix, module in self.named_modules(remove_duplicate=False):
            head = f"{prefix}." if prefix else ""
            for name, p in module._parameters.items():
                if p is not None:
                    yield head + name, module, name, True
            for name, b in module._buffers.items():
                if b is not None and name not in module._non_persistent_buffers_set:
                    yield head + name, module, name, False

    def state_dict(self, *, destination: dict[str, Any] | None = None, prefix: str = "",
                   keep_vars: bool = False) -> dict[str, Any]:
        """An ordered dict from PyTorch's dotted keys to arrays (Parameters if ``keep_vars``)."""
        out = OrderedDict() if destination is None else destination
        for key, module, name, is_param in self._state_entries():
            if is_param:
                p = module._parameters[name]
                out[prefix + key] = p if keep_vars else p.data
            else:
                out[prefix + key] = module._buffers[name]
        return out

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True,
                        assign: bool = False) -> _IncompatibleKeys:
        """Copy arrays (jax, numpy or torch tensors) into the parameters and buffers.

        Values are cast to the existing dtype unless ``assign=True`` (then taken as they are).
        Nothing is changed unless every shape matches (and, with ``strict``, every key).

        Returns:
            ``(missing_keys, unexpected_keys)`` as a named tuple.

        Raises:
            StateDictError (a ``RuntimeError`` and ``ValueError``): listing missing/unexpected
                keys (when ``strict``) and every shape mismatch with the key and both shapes.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"Expected state_dict to be dict-like, got {type(state_dict)}.")
        entries = {key: (module, name, is_param)
                   for key, module, name, is_param in self._state_entries()}
        missing = [k for k in entries if k not in state_dict]
        unexpected = [k for k in state_dict if k not in entries]
        errors, loaded = [], {}
        if strict and unexpected:
            errors.append("Unexpected key(s) in state_dict: "
                          + ", ".join(f'"{k}"' for k in unexpected) + ".")
        if strict and missing:
            errors.append("Missing key(s) in state_dict: "
                          + ", ".join(f'"{k}"' for k in missing) + ".")
        for key, (module, name, is_param) in entries.items():
            if key not in state_dict:
                continue
            value = as_array(state_dict[key], f"load_state_dict: value of '{key}'")
            current = module._parameters[name] if is_param else module._buffers[name]
            if tuple(value.shape) != tuple(current.shape):
                errors.append(f"size mismatch for {key}: copying a param with shape "
                              f"{tuple(value.shape)} from checkpoint, the shape in current model "
                              f"is {tuple(current.shape)}.")
            loaded[key] = value if assign else value.astype(current.dtype)
        if errors:
            raise StateDictError(f"Error(s) in loading state_dict for {self._get_name()}:\n\t"
                                 + "\n\t".join(errors))
        for key, value in loaded.items():
            module, name, is_param = entries[key]
            if is_param:
                module._parameters[name].data = value
            else:
                setattr(module, name, value)
        return _IncompatibleKeys(missing, unexpected)

    # -- torsh_fn.jit state protocol -----------------------------------------------------------

    def _jit_slots(self) -> list[tuple[Any, str]]:
        """Every parameter's ``data`` and ``grad`` and every buffer, as (container, key)."""
        modules, params = self._jit_members()
        slots: list[tuple[Any, str]] = []
        for p in params:
            slots += [(p, "data"), (p, "grad")]
        for module in modules:
            slots += [(module._buffers, name) for name in module._buffers]
        return slots

    def _jit_static(self) -> Hashable:
        """What the compiled program depends on besides array shapes: classes, train/eval
        mode, which parameters are frozen."""
        modules, params = self._jit_members()
        return (tuple((type(m).__name__, m.training) for m in modules),
                tuple(p.requires_grad for p in params))

    def _jit_guard(self) -> Hashable:
        """What lets ``torsh_fn.jit`` reuse this module's slots and static key from the previous
        call: the count of structure changes, which moves whenever they might have changed
        (``_Registry``, ``Parameter.requires_grad``, ``training``). None for a subclass with its
        own ``_jit_slots``/``_jit_static``."""
        return structure_version() if keeps_base_jit_state(self, Module) else None

    def _jit_members(self) -> tuple[list[Module], list[Parameter]]:
        """``list(self.modules())`` and ``list(self.parameters())`` without building their
        names: ``torsh_fn.jit`` asks on every call of a step."""
        modules: list[Module] = []
        seen: set[int] = set()
        stack = [self]
        while stack:  # depth first, children in order: the order of named_modules
            module = stack.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            modules.append(module)
            stack.extend(m for m in reversed(module._modules.values()) if m is not None)
        params = {id(p): p for m in modules for p in m._parameters.values() if p is not None}
        return modules, list(params.values())

    # -- repr ----------------------------------------------------------------------------------

    def _get_name(self) -> str:
        return type(self).__name__

    def extra_repr(self) -> str:
        """The text inside the parentheses of this module's repr (configuration)."""
        return ""

    def __repr__(self) -> str:
        extra = self.extra_repr()
        lines = extra.split("\n") if extra else []
        children = [f"({name}): {_addindent(repr(m), 2)}" for name, m in self._modules.items()]
        text = self._get_name() + "("
        if lines and not children and len(lines) == 1:
            text += lines[0]
        elif lines or children:
            text += "\n  " + "\n  ".join(lines + children) + "\n"
        return text + ")"


def _check_name(module: Module, name: str, kind: str, allow_dotted: bool = False) -> None:
    if not isinstance(name, str):
        raise TypeError(f"{kind} name should be a string, got {type(name).__name__}")
    if not name or (not allow_dotted and "." in name):
        raise KeyError(f'{kind} name can\'t be empty or contain ".", got: {name!r}')
    if hasattr(type(module), name) or (name in module.__dict__ and name not in _stores(module)):
        raise KeyError(f"attribute '{name}' already exists")


def _stores(module: Module) -> set[str]:
    return {n for store in _STATE for n in module.__dict__.get(store, {})}


def _forget(module: Module, name: str, keep: str) -> None:
    """Drop ``name`` from every store but ``keep`` (where it is replaced in place)."""
    module.__dict__.pop(name, None)
    for store in _STATE:
        if store != keep:
            module.__dict__[store].pop(name, None)
    module._non_persistent_buffers_set.discard(name)


def _add_hook(hooks: dict[int, Any], hook: Callable[..., Any], prepend: bool,
              with_kwargs: bool) -> RemovableHandle:
    handle = RemovableHandle(hooks)
    hooks[handle.id] = (hook, with_kwargs)
    if prepend:
        hooks_items = list(hooks.items())
        hooks.clear()
        hooks.update([hooks_items[-1], *hooks_items[:-1]])
    return handle


def _parse_to(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
    dev, dtype = kwargs.pop("device", None), kwargs.pop("dtype", None)
    kwargs.pop("non_blocking", None)
    kwargs.pop("copy", None)
    if kwargs:
        raise TypeError(f"to() got unexpected keyword arguments {sorted(kwargs)}")
    for arg in args:
        if isinstance(arg, str | _device | jax.Device):
            dev = arg
        elif isinstance(arg, jax.Array | Parameter):
            dtype, dev = arg.dtype, next(iter(jnp.asarray(arg).devices()))
        elif arg is not None and not isinstance(arg, bool):
            dtype = arg
    return dev, to_dtype(dtype)


# -- pytree --------------------------------------------------------------------------------------


class _Static:
    """A module's non-array part (class, names, configuration): the pytree's aux data."""

    def __init__(self, cls: type, names: tuple[tuple[str, ...], ...], rest: dict[str, Any]):
        self.cls, self.names, self.rest = cls, names, rest

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, _Static) and self.cls is other.cls
                and self.names == other.names and self.rest.keys() == other.rest.keys()
                and all(_same(v, other.rest[k]) for k, v in self.rest.items()))

    def __hash__(self) -> int:
        return hash((self.cls, self.names, tuple(self.rest)))


def _same(a: Any, b: Any) -> bool:
    if a is b:
        return True
    try:
        result = a == b
    except Exception:
        return False
    return result if isinstance(result, bool) else False


def _flatten_with_keys(m: Module) -> tuple[list[tuple[Any, Any]], _Static]:
    d = m.__dict__
    names = tuple(tuple(d[store]) for store in _STATE)
    children = [(jax.tree_util.GetAttrKey(name), d[store][name])
                for store in _STATE for name in d[store]]
    rest = {k: v for k, v in d.items() if k not in _STATE}
    return children, _Static(type(m), names, rest)


def _flatten(m: Module) -> tuple[list[Any], _Static]:
    children, static = _flatten_with_keys(m)
    return [c for _, c in children], static


def _unflatten(static: _Static, children: Any) -> Module:
    m = object.__new__(static.cls)
    d = m.__dict__
    d.update({k: copy.copy(v) if isinstance(v, dict | set) else v for k, v in static.rest.items()})
    values = iter(children)
    for store, names in zip(_STATE, static.names):
        registry = _Buffers if store == "_buffers" else _Registry
        d[store] = registry({name: next(values) for name in names})
    return m


jax.tree_util.register_pytree_with_keys(Module, _flatten_with_keys, _unflatten, _flatten)
