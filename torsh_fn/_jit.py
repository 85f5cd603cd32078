"""``torsh_fn.jit``: ``jax.jit`` that also accepts stateful objects (Modules, Optimizers).

A PyTorch training step mutates its model and optimizer. ``torsh_fn.jit`` compiles such a step
into one XLA program: the state of every stateful argument goes in as arrays, the function runs
on them (traced), and whatever it changed (parameters, gradients, BatchNorm statistics, optimizer
state, the global generator used by dropout) comes out and is written back after the call.

The state protocol (duck-typed; nothing here imports the shim): an argument, or an element of a
list/tuple/dict argument, is *stateful* if it has ``_jit_slots()``, returning ``(container, key)``
pairs. A slot's value is ``container[key]`` (dict) or ``getattr(container, key)``: an array, a
pytree of arrays, ``None``, or a Python number (passed in as a weakly typed scalar, so changing an
optimizer's ``lr`` between calls does not recompile; written back as the same Python type).
Optional ``_jit_static()`` returns a hashable that joins the compilation key (train/eval mode,
frozen parameters). Slots are deduplicated, so a parameter reached through a model and an
optimizer is one slot; the global generator's state is always a slot. Optional ``_jit_guard()``
returns a cheap value that changes whenever ``_jit_slots()`` or ``_jit_static()`` might (None:
no such promise). When every stateful argument has one, a call whose objects, guards, argument
structure and kinds of state values (array, None, Python number) are those of the previous call
reuses that call's slots and program without asking for them again: the host work of a
training step is then reading the slots, one call of the program and writing the slots back.

Compiled programs are cached per (stateful objects, their static keys, the arguments' structure
and non-array values); ``jax.jit`` then retraces only for new shapes or dtypes. State arrays that
nothing else references are donated, so a step updates parameters in place on the device.
A state array placed over several devices (``torsh_fn.distributed``: replicated for DDP, split
for FSDP) comes out with the sharding it went in with, and its sharding joins the cache key.

Example:
    >>> @torsh_fn.jit
    ... def step(model, opt, x, y):
    ...     opt.zero_grad()
    ...     loss = torsh_fn.backward(lambda: F.cross_entropy(model(x), y))
    ...     opt.step()
    ...     return loss
    >>> loss = step(model, opt, x, y)       # model and opt now hold the updated state

Limits: configuration read from Python attributes (``eps``, ``p``) is baked into the program of
that object; assigning new non-array attributes inside the function is not written back; a lazy
module must be materialised (called once) before its first jitted call; a slot that is ``None``
on one call and an array on the next is a different program.

Gradients are the one such slot handled for you. When an optimizer is among the arguments and
a trainable parameter's ``.grad`` is None (the first step), the call first traces the program
of the later calls, with zeros for those gradients. If the trace shows that the step overwrites
each of them unread, with a computed gradient or None (``zero_grad()`` then ``backward``), that
program runs now too, and a training step is traced and compiled once. Otherwise (a step that
adds into ``.grad`` across calls, ``zero_grad(set_to_none=False)``, which would turn a None
gradient into zeros) the first call has its own program, as PyTorch's semantics need. A step
that branches in Python on ``p.grad is None`` before overwriting it cannot be seen by that check.
With state over several devices, state arrays not yet placed (a generator key, step counters)
are replicated onto that mesh first, so DDP and FSDP steps compile once too.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import threading
import warnings
import weakref
from collections.abc import Callable, Hashable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import random as _random
from ._allocator import keep_freed_memory_on_cpu
from ._backward import get_slot, set_slot
from ._xla_options import cpu_compiler_options, has_convolution

__all__ = ["jit", "keeps_base_jit_state", "structure_changed", "structure_version"]

_SCALARS = (bool, int, float, complex)
_DEVICES_HINT = (
    "torsh_fn.jit: the state and arguments of this call live on different devices (see the "
    "error above). After torsh_fn.distributed.DDP/FSDP, make the optimizer from the wrapped "
    "model's parameters, or call torsh_fn.distributed.place_optimizer_state(optimizer) for one "
    "made before; place batches with torsh_fn.distributed.shard_batch.")
_UNSUPPORTED = ("donate_argnums", "donate_argnames", "in_shardings", "out_shardings")


def _is_stateful(x: Any) -> bool:
    return _is_stateful_type(type(x))


def _is_stateful_type(t: type) -> bool:
    return callable(getattr(t, "_jit_slots", None))


def _is_dynamic(x: Any) -> bool:
    return isinstance(x, (jax.Array, np.ndarray, np.generic, *_SCALARS))


def _ref(obj: Any) -> Callable[[], Any]:
    try:
        return weakref.ref(obj)
    except TypeError:
        return lambda: obj


class _Marker:
    """Stands for the i-th stateful argument in the flattened arguments."""

    def __init__(self, index: int) -> None:
        self.index = index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Marker) and other.index == self.index

    def __hash__(self) -> int:
        return hash(("stateful", self.index))


class _StaticArg:
    """An argument named in ``static_argnums``/``static_argnames``: a hashable leaf."""

    def __init__(self, value: Any) -> None:
        self.value = _hashable(value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _StaticArg) and other.value == self.value

    def __hash__(self) -> int:
        return hash(self.value)


class _Call:
    """What one call hands to its trace: the live objects and the static parts of the inputs."""

    def __init__(self, objects: list[Any], slots: list[tuple[Any, Any]], treedef: Any,
                 pattern: list[Any], placements: tuple[Any, ...],
                 mask: tuple[bool, ...]) -> None:
        self.objects, self.slots, self.treedef, self.pattern = objects, slots, treedef, pattern
        self.placements, self.mask = placements, mask


class _Entry:
    def __init__(self, compiled: Callable[..., Any], refs: list[Callable[[], Any]],
                 recompile: Callable[[dict[str, Any]], Callable[..., Any]]) -> None:
        self.compiled, self.refs = compiled, refs
        # What the program does with each gradient slot's input (see _gradient_uses); None:
        # not looked at yet.
        self.gradient_uses: dict[int, str] | None = None
        # ``compiled`` again with more compile options (see StatefulJit._settle_options), and
        # whether that choice has been made.
        self.recompile, self.settled = recompile, False


class _Plan:
    """The previous call's structure, for a next call that :meth:`StatefulJit._planned` finds
    unchanged: the objects (weakly), their guards, the argument structure, the slots, the type
    of each slot's value, the program and its static call data. ``arg_types``: the types of
    the positional arguments where each was a stateful object or an array (else None), which
    lets a call with arguments of the same types skip flattening them."""

    def __init__(self, refs: list[weakref.ref], guards: list[Any], treedef: Any,
                 pattern: list[Any], arg_types: tuple[type, ...] | None,
                 slots: list[tuple[Any, Any]], values: list[Any], types: list[type | None],
                 entry: _Entry, layout: tuple[tuple, tuple]) -> None:
        self.refs, self.guards, self.treedef, self.pattern = refs, guards, treedef, pattern
        self.arg_types = arg_types
        self.object_at = [i for i, t in enumerate(arg_types or ()) if _is_stateful_type(t)]
        self.dynamic_at = [i for i, t in enumerate(arg_types or ()) if not _is_stateful_type(t)]
        self.slots, self.types, self.entry, self.layout = slots, types, entry, layout
        self.kinds = tuple(map(type, values))
        self.generator = _random.default_generator
        # Placements over several devices can change without a change of type.
        self.multi_device = jax.device_count() > 1


class StatefulJit:
    """The callable ``torsh_fn.jit`` returns; ``__wrapped__`` is the original function."""

    def __init__(self, fun: Callable[..., Any], static_argnums: tuple[int, ...],
                 static_argnames: tuple[str, ...], donate: bool, jax_kwargs: dict[str, Any]):
        functools.update_wrapper(self, fun)
        self._fun = fun
        self._static_argnums = static_argnums
        self._static_argnames = static_argnames
        self._donate = donate
        self._jax_kwargs = jax_kwargs
        self._cache: dict[Hashable, _Entry] = {}
        self._local = threading.local()
        self._plan: _Plan | None = None

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        return self if obj is None else functools.partial(self, obj)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # The host-side work below runs on every call of a training step, between its device
        # programs, so a call like the previous one reuses its plan (issue 10: no shim overhead).
        plan = self._plan
        arg_types = None if kwargs else tuple(map(type, args))
        if plan is not None and arg_types is not None and arg_types == plan.arg_types:
            # positional arguments, each a stateful object or an array, as last time
            objects = [args[i] for i in plan.object_at]
            dynamic = [args[i] for i in plan.dynamic_at]
            treedef, pattern = plan.treedef, plan.pattern
        else:
            objects, treedef, pattern, dynamic = self._flatten(args, kwargs)
        values = None if plan is None else self._planned(plan, objects, treedef, pattern)
        if values is not None:
            mask = plan.layout[0]
            call = _Call(objects, plan.slots, treedef, pattern, plan.layout[1], mask)
            arrays = [v for v, is_array in zip(values, mask) if is_array]
            others = [v for v, is_array in zip(values, mask) if not is_array]
            del values
            return self._run(plan.entry, call, (arrays, others, dynamic), plan.types, False)
        simple = arg_types is not None and not self._static_argnums and all(
            _is_stateful(a) or _is_dynamic(a) for a in args)
        return self._call_unplanned(objects, treedef, pattern, dynamic,
                                    arg_types if simple else None)

    def _flatten(self, args: tuple, kwargs: dict[str, Any]) -> tuple[list, Any, list, list]:
        """The stateful objects among the arguments, the arguments' tree structure, the pattern
        of its leaves (a ``_Marker`` per object, None per array, static values as they are) and
        the arrays."""
        if self._static_argnums or self._static_argnames:
            n = len(args)
            args = tuple(_StaticArg(a) if i in self._static_argnums
                         or i - n in self._static_argnums else a for i, a in enumerate(args))
            kwargs = {k: _StaticArg(v) if k in self._static_argnames else v
                      for k, v in kwargs.items()}
        flat, treedef = jax.tree_util.tree_flatten((args, kwargs), is_leaf=_is_stateful)
        objects, pattern, dynamic = [], [], []
        for leaf in flat:
            if _is_stateful(leaf):
                pattern.append(_Marker(len(objects)))
                objects.append(leaf)
            elif _is_dynamic(leaf):
                pattern.append(None)
                dynamic.append(leaf)
            else:
                pattern.append(leaf if isinstance(leaf, _StaticArg) else _hashable(leaf))
        return objects, treedef, pattern, dynamic

    def _planned(self, plan: _Plan, objects: list[Any], treedef: Any,
                 pattern: list[Any]) -> list[Any] | None:
        """The state values for ``plan``'s slots, or None where the plan does not serve this
        call (other objects, a changed guard or argument structure, a value of another kind)."""
        if (len(objects) != len(plan.refs)
                or (treedef is not plan.treedef and treedef != plan.treedef)
                or (pattern is not plan.pattern and pattern != plan.pattern)
                or plan.generator is not _random.default_generator
                or any(r() is not o for r, o in zip(plan.refs, objects))
                or any(o._jit_guard() != g for o, g in zip(objects, plan.guards))):
            return None
        values = self._state_values(plan.slots)
        if tuple(map(type, values)) != plan.kinds or (
                plan.multi_device and _layout(values) != plan.layout):
            return None
        return values

    def _call_unplanned(self, objects: list[Any], treedef: Any, pattern: list[Any],
                        dynamic: list[Any], arg_types: tuple[type, ...] | None) -> Any:
        """A call that asks every object for its slots and static key, and looks the program up
        (or traces it); it leaves a plan for the next call where it can."""
        slots = _collect_slots(objects)
        values = self._state_values(slots)
        layout = _layout(values)
        if any(layout[1]):  # state over devices: put the unplaced state there too
            values = _onto_state_mesh(values)
            layout = _layout(values)
        types = [None if is_array or not isinstance(v, _SCALARS) else type(v)
                 for v, is_array in zip(values, layout[0])]
        statics = tuple((id(o), o._jit_static() if hasattr(o, "_jit_static") else None)
                        for o in objects)
        unset = _unset_grads(slots, values) if any(
            hasattr(o, "param_groups") for o in objects) else []  # a training step
        prepared = None
        if unset:
            # A step with an optimizer: try the program of the later calls, with zeros for the
            # None gradients. If it sets them all without reading them (zero_grad, then
            # backward), it is also this call's program, and the step compiles once, not for
            # None gradients and again for arrays. Otherwise (gradients left alone, or added
            # into) this call runs its own program, and later calls skip the trial.
            parameters = list(values)
            for i in unset:  # the parameter stands in for its gradient in the cache key
                parameters[i] = get_slot(slots[i][0], "data")
            trial = self._cache.get(self._key(slots, treedef, pattern, parameters, statics))
            if trial is None or trial.gradient_uses is None or _zeros_serve(trial, unset):
                filled = list(values)
                for i in unset:  # placed (and committed to devices, or not) like the parameter
                    filled[i] = jnp.zeros_like(parameters[i])
                entry, call, call_args = self._prepare(objects, slots, treedef, pattern,
                                                       dynamic, filled, statics)
                if entry.gradient_uses is None:
                    entry.gradient_uses = self._gradient_uses(entry, call, call_args)
                if _zeros_serve(entry, unset):  # that program, with these zeros, is this call's
                    prepared = entry, call, call_args
        entry, call, call_args = prepared or self._prepare(objects, slots, treedef, pattern,
                                                           dynamic, values, statics, layout)
        self._plan = None if unset else self._new_plan(objects, treedef, pattern, arg_types,
                                                       slots, values, types, entry, layout)
        del values
        return self._run(entry, call, call_args, types, bool(unset))

    def _new_plan(self, objects: list[Any], treedef: Any, pattern: list[Any],
                  arg_types: tuple[type, ...] | None, slots: list[tuple[Any, Any]],
                  values: list[Any], types: list[type | None], entry: _Entry,
                  layout: tuple[tuple, tuple]) -> _Plan | None:
        """A plan for the next call, or None: some object has no guard or is not weakly
        referable, or some state is a tracer (a call inside another trace)."""
        guards = [o._jit_guard() if hasattr(o, "_jit_guard") else None for o in objects]
        if any(g is None for g in guards) or not all(
                _is_concrete(v) for v, is_array in zip(values, layout[0]) if is_array):
            return None
        try:  # the plan must not keep the objects alive, and goes when one of them does
            refs = [weakref.ref(o, self._drop_plan) for o in objects]
        except TypeError:
            return None
        return _Plan(refs, guards, treedef, pattern, arg_types, slots, values, types, entry,
                     layout)

    def _drop_plan(self, _: weakref.ref) -> None:
        self._plan = None

    def _run(self, entry: _Entry, call: _Call, call_args: tuple, types: list[type | None],
             zeros_for_none: bool) -> Any:
        """Run the program and write the changed state back into the slots."""
        self._local.call = call
        try:
            # The first run compiles: state the step leaves alone (the generator's key in a step
            # without randomness, a frozen parameter) has no output for its donated buffer.
            quiet = zeros_for_none or not entry.settled
            if not entry.settled:
                self._settle_options(entry, call_args)
            with _quiet_donation() if quiet else contextlib.nullcontext():
                new, out = entry.compiled(*call_args)
        except ValueError as err:
            if "incompatible devices" not in str(err):
                raise
            raise ValueError(_DEVICES_HINT) from err
        finally:
            self._local.call = None
        for (container, k), changed, old_type in zip(call.slots, new, types):
            if changed:
                value = changed[0]
                if old_type is not None and value is not None:
                    value = old_type(np.asarray(value).item())
                set_slot(container, k, value)
        return out

    def _prepare(self, objects: list[Any], slots: list[tuple[Any, Any]], treedef: Any,
                 pattern: list[Any], dynamic: list[Any], values: list[Any], statics: tuple,
                 layout: tuple[tuple, tuple] | None = None) -> tuple[_Entry, _Call, tuple]:
        """The cached (or new) program for these state values, its call and its arguments."""
        key = self._key(slots, treedef, pattern, values, statics, layout)
        mask, placements = key[3], key[4]
        entry = self._cache.get(key)
        if entry is None or any(r() is not o for r, o in zip(entry.refs, objects)):
            entry = self._cache[key] = self._compile(objects, mask)
        arrays = [v for v, is_array in zip(values, mask) if is_array]
        others = [v for v, is_array in zip(values, mask) if not is_array]
        return entry, _Call(objects, slots, treedef, pattern, placements, mask), (
            arrays, others, dynamic)

    @staticmethod
    def _key(slots: list[tuple[Any, Any]], treedef: Any, pattern: list[Any], values: list[Any],
             statics: tuple, layout: tuple[tuple, tuple] | None = None) -> tuple:
        """The cache key: what a program depends on besides the shapes and dtypes jax.jit
        handles. Its fourth item is the array mask (arrays are donated), its fifth the
        multi-device placements (``layout``: both, when already computed for ``values``)."""
        mask, placements = _layout(values) if layout is None else layout
        return (treedef, tuple(pattern), tuple([k for _, k in slots]), mask, placements,
                statics)

    @staticmethod
    def _settle_options(entry: _Entry, args: tuple) -> None:
        """Before a program's first run: a program with a convolution, on the CPU, is compiled
        with ``cpu_compiler_options()`` (its trace, which the call reuses, tells); any other
        keeps XLA's defaults, which its matrix products measured fastest with. The caller has
        set ``self._local.call`` (the trace reads it)."""
        entry.settled = True
        options = cpu_compiler_options()
        if options and has_convolution(entry.compiled.trace(*args).jaxpr.jaxpr):
            entry.compiled = entry.recompile(options)

    def _gradient_uses(self, entry: _Entry, call: _Call, args: tuple) -> dict[int, str]:
        """For every ``.grad`` slot, what the program does with its input, from its trace
        (traced once; the call that follows reuses the trace): ``"read"`` (an operation or an
        output takes it), ``"untouched"`` (no output: the slot is left alone), ``"none"`` (set
        to None), ``"constant"`` (set to an array that depends on no input, as ``zero_grad(
        set_to_none=False)`` makes: the step would not leave a None gradient None) or
        ``"written"`` (set to an array computed from the inputs, as by backward)."""
        self._local.call = call
        try:
            traced = entry.compiled.trace(*args)
        finally:
            self._local.call = None
        jaxpr = traced.jaxpr.jaxpr
        used = {id(v) for eqn in jaxpr.eqns for v in eqn.invars} | {id(v) for v in jaxpr.outvars}
        computed = {id(v) for v in jaxpr.invars}  # what depends on some input
        for eqn in jaxpr.eqns:
            if any(id(v) in computed for v in eqn.invars):
                computed.update(id(v) for v in eqn.outvars)
        changed, position, uses = traced.out_info[0], 0, {}
        for i, ((_, k), out) in enumerate(zip(call.slots, changed)):
            n_out = len(jax.tree_util.tree_leaves(out))
            if k == "grad" and call.mask[i]:
                if id(jaxpr.invars[sum(call.mask[:i])]) in used:
                    uses[i] = "read"
                elif out == ():
                    uses[i] = "untouched"
                elif n_out == 0:
                    uses[i] = "none"
                else:
                    uses[i] = ("written" if id(jaxpr.outvars[position]) in computed
                               else "constant")
            position += n_out
        return uses

    def _state_values(self, slots: list[tuple[Any, Any]]) -> list[Any]:
        """The slots' values, ready to donate: an array someone else also references (more
        than its slot, this list, the loop variable and getrefcount's argument) is copied."""
        values = [get_slot(c, k) for c, k in slots]
        if not self._donate:
            return values
        counts = [sys.getrefcount(v) for v in values]
        return [v.copy() if c > 4 and _is_concrete(v) else jnp.asarray(v)
                if isinstance(v, np.ndarray) else v for v, c in zip(values, counts)]

    def _compile(self, objects: list[Any], mask: tuple[bool, ...]) -> _Entry:
        keep_freed_memory_on_cpu()  # before the steps' buffers: see _allocator
        def pure(arrays: list[Any], others: list[Any], dynamic: list[Any]):
            call: _Call = self._local.call
            arrays_in, others_in = iter(arrays), iter(others)
            values = [next(arrays_in) if is_array else next(others_in) for is_array in mask]
            originals = [get_slot(c, k) for c, k in call.slots]
            try:
                for (c, k), v in zip(call.slots, values):
                    set_slot(c, k, v)
                args, kwargs = _rebuild(call, dynamic)
                out = self._fun(*args, **kwargs)
                new = [get_slot(c, k) for c, k in call.slots]
            finally:
                for (c, k), v in zip(call.slots, originals):
                    set_slot(c, k, v)
            # Unchanged non-arrays come back as (): no rounding of an lr through float32, and a
            # None gradient passed in as zeros that the step left alone stays None.
            changed = [() if n is v and not isinstance(o, jax.Array) else
                       (_keep_placement(n, s),)
                       for n, v, o, s in zip(new, values, originals, call.placements)]
            return changed, out

        # keep_unused: a state array the step never reads (a .grad zeroed first) must stay an
        # input, or donated buffers no longer line up with the state outputs. The state comes
        # first among the outputs so XLA pairs each donated buffer with its own new value.
        donate = (0,) if self._donate else ()

        def compile_with(options: dict[str, Any]) -> Callable[..., Any]:
            mine = {**options, **(self._jax_kwargs.get("compiler_options") or {})}
            kwargs = {**self._jax_kwargs, "compiler_options": mine or None}
            return jax.jit(pure, donate_argnums=donate, keep_unused=True, **kwargs)

        return _Entry(compile_with({}), [_ref(o) for o in objects], compile_with)


class _Structure:
    version = 0


def structure_changed() -> None:
    """Note a change of some stateful object's slots or static key (a parameter frozen, a
    submodule added, ...): objects whose changes all go through this can return
    :func:`structure_version` as their ``_jit_guard()``."""
    _Structure.version += 1


def keeps_base_jit_state(obj: Any, base: type) -> bool:
    """Whether ``obj``'s class keeps ``base``'s ``_jit_slots`` and ``_jit_static``: a subclass
    that overrides either has state that ``base``'s ``_jit_guard`` cannot vouch for."""
    cls = type(obj)
    return cls._jit_slots is base._jit_slots and cls._jit_static is base._jit_static


def structure_version() -> int:
    """How many changes :func:`structure_changed` has noted in this process."""
    return _Structure.version


def _onto_state_mesh(values: list[Any]) -> list[Any]:
    """With state placed over several devices (torsh_fn.distributed), the state arrays not yet
    placed anywhere (the generator's key, step counters made by an optimizer) go onto that mesh,
    replicated, as the step's outputs will be: so the second call has the first one's cache key
    instead of compiling again."""
    mesh = next((v.sharding.mesh for v in values if _is_concrete(v)
                 and isinstance(v.sharding, jax.sharding.NamedSharding)
                 and v.sharding.mesh.size > 1), None)
    if mesh is None:
        return values
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    return [jax.device_put(v, replicated) if _is_concrete(v) and not v.committed
            and isinstance(v.sharding, jax.sharding.SingleDeviceSharding) else v
            for v in values]


def _zeros_serve(entry: _Entry, unset: list[int]) -> bool:
    """Whether ``entry``'s program, run with zeros for the None gradients ``unset``, does what
    running with None would: it overwrites each of them unread (with a computed array, or None),
    and it computes gradients at all (else the None program is the steady state)."""
    uses = entry.gradient_uses
    return (all(uses.get(i) in ("written", "none") for i in unset)
            and "written" in uses.values())


@contextlib.contextmanager
def _quiet_donation() -> Any:
    """Donated state without an output to take its buffer (zeros standing in for None
    gradients that the step sets back to None; state the step leaves alone): XLA warns at
    compile time, and it is harmless."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Some donated buffers were not usable")
        yield


def _unset_grads(slots: list[tuple[Any, Any]], values: list[Any]) -> list[int]:
    """Indices of the ``.grad`` slots that are None while their trainable parameter holds a
    concrete array (before the first backward, or after ``zero_grad()``)."""
    return [i for i, ((c, k), v) in enumerate(zip(slots, values))
            if k == "grad" and v is None and getattr(c, "requires_grad", False)
            and _is_concrete(getattr(c, "data", None))]


def _layout(values: list[Any]) -> tuple[tuple[bool, ...], tuple[Any, ...]]:
    """In one pass over the state values: which are arrays (the mask), and the placement of
    each, ``(sharding, shape)`` for an array placed over several devices (as by
    ``torsh_fn.distributed``), else None; both are part of the cache key."""
    mask, placements = [], []
    for v in values:
        is_array, concrete = _array_kind(v)
        mask.append(is_array)
        sharding = v.sharding if concrete else None
        placements.append(None if sharding is None or isinstance(
            sharding, jax.sharding.SingleDeviceSharding) else (sharding, v.shape))
    return tuple(mask), tuple(placements)


# type -> (is a jax.Array, is a concrete one), for the types that decide it alone (not tracers)
_ARRAY_KINDS: dict[type, tuple[bool, bool]] = {}


def _array_kind(v: Any) -> tuple[bool, bool]:
    """``(isinstance(v, jax.Array), _is_concrete(v))``, cached by type: called for every state
    value on every call."""
    kind = _ARRAY_KINDS.get(type(v))
    if kind is None:
        if isinstance(v, jax.core.Tracer):
            return isinstance(v, jax.Array), False
        kind = _ARRAY_KINDS[type(v)] = (isinstance(v, jax.Array),) * 2
    return kind


def _keep_placement(new: Any, placement: Any) -> Any:
    """A slot that came in sharded over several devices leaves with the same sharding (an
    FSDP-sharded parameter or momentum stays sharded, a replicated one replicated), rather
    than with whatever sharding XLA's propagation picks."""
    if placement is None or getattr(new, "shape", None) != placement[1]:
        return new
    return jax.lax.with_sharding_constraint(new, placement[0])


def _is_concrete(v: Any) -> bool:
    return isinstance(v, jax.Array) and not isinstance(v, jax.core.Tracer)


def _hashable(leaf: Any) -> Any:
    try:
        hash(leaf)
    except TypeError:
        raise TypeError(f"torsh_fn.jit: argument of type {type(leaf).__name__} is neither an "
                        f"array nor hashable; pass arrays, Modules/Optimizers or hashable "
                        f"static values") from None
    return leaf


def _collect_slots(objects: list[Any]) -> list[tuple[Any, Any]]:
    """The slots of ``objects`` and the global generator's, each once, in order of first
    appearance (a dict keeps the first position of a repeated key)."""
    slots = {(id(c), k): (c, k) for o in objects for c, k in o._jit_slots()}
    slots.setdefault((id(_random.default_generator), "_key"), (_random.default_generator, "_key"))
    return list(slots.values())


def _rebuild(call: _Call, dynamic: list[Any]) -> tuple[tuple, dict]:
    dyn = iter(dynamic)
    leaves = [call.objects[p.index] if isinstance(p, _Marker) else next(dyn) if p is None
              else p.value if isinstance(p, _StaticArg) else p for p in call.pattern]
    return jax.tree_util.tree_unflatten(call.treedef, leaves)


def jit(fun: Callable[..., Any] | None = None, *, static_argnums: int | tuple[int, ...] = (),
        static_argnames: str | tuple[str, ...] = (), donate_state: bool = True,
        **jax_kwargs: Any) -> Any:
    """Compile ``fun`` with XLA, accepting Modules and Optimizers among its arguments.

    Works as ``jax.jit`` for pure functions of arrays; usable as ``@jit`` or ``@jit(...)``.

    Args:
        fun: the function; it may mutate the stateful arguments as PyTorch code does.
        static_argnums, static_argnames: arguments whose (hashable) values are compiled in.
        donate_state: let XLA reuse the buffers of state arrays that nothing else references.
        jax_kwargs: passed to ``jax.jit`` (``donate_argnums`` and shardings are not supported);
            ``compiler_options`` are added to the CPU's for programs with a convolution
            (``_xla_options``).

    Returns:
        A callable with ``fun``'s signature; the stateful arguments hold the new state after
        each call.
    """
    bad = [k for k in _UNSUPPORTED if k in jax_kwargs]
    if bad:
        raise TypeError(f"torsh_fn.jit does not support {bad}; use jax.jit for that")
    if not jax_kwargs.pop("keep_unused", True):
        raise TypeError("torsh_fn.jit: keep_unused=False is not supported: unused state inputs "
                        "are kept so that every donated buffer pairs with its own output")
    nums = (static_argnums,) if isinstance(static_argnums, int) else tuple(static_argnums)
    names = (static_argnames,) if isinstance(static_argnames, str) else tuple(static_argnames)

    def wrap(f: Callable[..., Any]) -> StatefulJit:
        return StatefulJit(f, nums, names, donate_state, jax_kwargs)

    return wrap if fun is None else wrap(fun)
