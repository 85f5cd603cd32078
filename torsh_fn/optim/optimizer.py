"""The stateful ``Optimizer`` base of the PyTorch face.

An optimizer holds ``param_groups`` (a list of dicts: ``params`` plus per-group options, as in
PyTorch) and ``state`` (a dict from parameter to a dict of arrays with PyTorch's names). ``step()``
reads each parameter's ``.grad`` and writes its ``.data`` through the class's pure leaf rule
(:mod:`torsh_fn.optim._rule`), compiled once per group structure.

Inside ``torsh_fn.jit`` an optimizer is state: ``_jit_slots()`` lists the parameters' data and
grads, the per-parameter state and every group's numeric hyperparameters, so changing
``param_groups[i]["lr"]`` between calls does not recompile. A ``weight_decay`` of 0 is the one
exception: PyTorch skips the decay term then, and so does the compiled program (it does not read
the parameters for it), so a group whose weight decay turns non-zero compiles once more.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from .._backward import backward
from .._jit import keeps_base_jit_state, structure_version
from ._rule import LeafInit, LeafUpdate, apply_leaf, decay_option, zero_weight_decay

_TORCH_FLAGS = {"foreach": None, "capturable": False, "differentiable": False, "fused": None}


def to_jax(value: Any, dtype: Any = None) -> Any:
    """A torch tensor (without importing torch), numpy array or number -> jax array.

    Host arrays are copied first: on the CPU ``jnp.asarray`` may alias a large numpy buffer,
    and a torch optimizer's state tensors keep changing in place after its ``state_dict()``.
    """
    if type(value).__module__.startswith("torch"):
        tensor = value.detach().cpu()
        if str(tensor.dtype) == "torch.bfloat16":
            tensor = tensor.float()
        value = tensor.numpy()
    if isinstance(value, np.ndarray):
        value = value.copy()
    return jnp.asarray(value, dtype)


def to_python(value: Any) -> Any:
    """Group option from a state_dict (torch tensors and 0-d arrays included) -> Python value."""
    if isinstance(value, list | tuple):
        return tuple(to_python(v) for v in value)
    if type(value).__module__.startswith("torch") or isinstance(value, np.ndarray | jax.Array):
        return np.asarray(to_jax(value)).item()
    return value


def check_nonnegative(owner: str, name: str, value: Any) -> None:
    if not value >= 0.0:
        raise ValueError(f"{owner}: invalid {name}={value!r}: expected a value >= 0")


def check_unit(owner: str, name: str, value: Any, upper_open: bool = True) -> None:
    ok = 0.0 <= value < 1.0 if upper_open else 0.0 <= value <= 1.0
    if not ok:
        bound = "1)" if upper_open else "1]"
        raise ValueError(f"{owner}: invalid {name}={value!r}: expected a value in [0, {bound}")


def _is_param(obj: Any) -> bool:
    return hasattr(obj, "data") and hasattr(obj, "requires_grad") and hasattr(obj, "grad")


class Optimizer:
    """Base of the PyTorch-face optimizers.

    Subclasses set ``init`` and ``update`` (the leaf rule), ``hyperparams`` (the group keys that
    are numbers and may change between steps) and ``flags`` (the group keys that choose the code
    path and so join the compilation key).

    Args:
        params: an iterable of Parameters, or of dicts with a ``"params"`` entry and per-group
            options that override ``defaults``.
        defaults: every option of the optimizer with its default value.
        master_weights: keep a float32 ``"master_weight"`` in the state of each bfloat16/float16
            parameter, update it, and write its rounded copy into the parameter (not in PyTorch).
    """

    init: ClassVar[LeafInit]
    update: ClassVar[LeafUpdate]
    hyperparams: ClassVar[tuple[str, ...]] = ()
    flags: ClassVar[tuple[str, ...]] = ()

    def __init__(self, params: Iterable[Any], defaults: Mapping[str, Any], *,
                 master_weights: bool = False) -> None:
        name = type(self).__name__
        if _is_param(params) or isinstance(params, jax.Array | np.ndarray):
            raise TypeError(f"{name}: params should be an iterable of Parameters or dicts, "
                            f"got a single {type(params).__name__}; wrap it in a list")
        self.defaults = dict(defaults)
        self.master_weights = bool(master_weights)
        self.state: dict[Any, dict[str, Any]] = {}
        self.param_groups: list[dict[str, Any]] = []
        groups = list(params)
        if not groups:
            raise ValueError(f"{name} got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines += [""] * (i > 0) + [f"Parameter Group {i}"]  # PyTorch's blank line between
            lines += [f"    {k}: {v}" for k, v in sorted(group.items()) if k != "params"]
        return "\n".join([*lines, ")"])

    # -- groups --------------------------------------------------------------------------------

    def add_param_group(self, param_group: Mapping[str, Any]) -> None:
        """Add a group: its ``params`` plus options; options it leaves out take the defaults."""
        name = type(self).__name__
        if not isinstance(param_group, Mapping) or "params" not in param_group:
            raise TypeError(f"{name}.add_param_group: expected a dict with a 'params' entry, "
                            f"got {type(param_group).__name__}")
        group = dict(param_group)
        params = group["params"]
        params = [params] if _is_param(params) else list(params)
        for p in params:
            if not _is_param(p):
                raise TypeError(f"{name} can only optimize torsh_fn.nn.Parameter objects, "
                                f"got {type(p).__name__}")
        if len({id(p) for p in params}) != len(params):
            raise ValueError(f"{name}: a parameter group contains the same parameter twice")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in params):
            raise ValueError(f"{name}: some parameters appear in more than one parameter group")
        group["params"] = params
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        self.validate_group(group)
        self.param_groups.append(group)

    def validate_group(self, group: Mapping[str, Any]) -> None:
        """Raise ValueError for out-of-range options (subclasses extend it)."""
        check_nonnegative(type(self).__name__, "lr", group["lr"])

    # -- gradients ------------------------------------------------------------------------------

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients: to None (default) or, where one exists, to zeros."""
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none or p.grad is None:
                    p.grad = None
                else:
                    p.grad = jnp.zeros_like(p.grad)

    def _trainable(self) -> list[Any]:
        return [p for g in self.param_groups for p in g["params"] if p.requires_grad]

    def _fill_grads(self, closure: Callable[[], Any]) -> Any:
        """``torsh_fn.backward`` over the trainable parameters: accumulate d(closure())/dp into
        ``.grad`` (the closure zeroes them first, as in PyTorch) and return the loss."""
        return backward(closure, params=self._trainable())

    # -- the step -------------------------------------------------------------------------------

    def _init_state(self, p: Any, group: Mapping[str, Any]) -> dict[str, Any]:
        half = jnp.dtype(p.data.dtype) in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
        if self.master_weights and half:
            master = jnp.asarray(p.data, jnp.float32)
            return {**type(self).init(master, group), "master_weight": master}
        return type(self).init(jnp.asarray(p.data), group)

    def _ensure_state(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.requires_grad and p not in self.state:
                    self.state[p] = self._init_state(p, group)

    def _opts(self, group: Mapping[str, Any]) -> tuple[tuple[str, Hashable], ...]:
        """The group's static options: its flags, and whether its weight decay is non-zero."""
        decay = decay_option(group) if "weight_decay" in self.hyperparams else {}
        return tuple((k, group[k]) for k in self.flags) + tuple(decay.items())

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One update of every trainable parameter that has a gradient.

        Args:
            closure: optional; returns the loss. The optimizer differentiates it w.r.t. its
                parameters (filling ``.grad``) before the update, and ``step`` returns the loss.
        """
        loss = None if closure is None else self._fill_grads(closure)
        self._ensure_state()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.requires_grad and p.grad is not None]
            if not params:
                continue
            hp = {k: group[k] for k in self.hyperparams}
            new_datas, new_states = _group_step(
                type(self).update, self._opts(group),
                [p.data for p in params], [p.grad for p in params],
                [self.state[p] for p in params], hp)
            for p, d, s in zip(params, new_datas, new_states):
                p.data = d
                self.state[p].update(s)  # in place: the dict is a torsh_fn.jit slot container
        return loss

    # -- torsh_fn.jit state protocol -------------------------------------------------------------

    def _jit_slots(self) -> list[tuple[Any, str]]:
        """(container, key) pairs holding everything ``step`` reads or writes."""
        self._ensure_state()
        slots: list[tuple[Any, str]] = []
        for group in self.param_groups:
            for p in group["params"]:
                slots += [(p, "data"), (p, "grad")]
                slots += [(self.state[p], k) for k in self.state.get(p, {})]
            # A zero weight decay stays a Python 0 in the trace, so the rules leave it out.
            slots += [(group, k) for k in self.hyperparams
                      if k != "weight_decay" or not zero_weight_decay(group)]
        return slots

    def _jit_static(self) -> Hashable:
        return (type(self).__name__, tuple(
            (self._opts(g), tuple(p.requires_grad for p in g["params"]))
            for g in self.param_groups))

    def _jit_guard(self) -> Hashable:
        """What ``_jit_slots`` and ``_jit_static`` depend on besides the state's values: the
        group dicts, their parameters and flags, the per-parameter state dicts (all public, so
        compared by identity, and their sizes: a key added in place is a new slot), and
        ``requires_grad`` (through ``structure_version``). None for a
        subclass with its own ``_jit_slots``/``_jit_static``."""
        if not keeps_base_jit_state(self, Optimizer):
            return None
        groups = self.param_groups
        return (structure_version(), tuple(map(id, groups)),
                tuple(id(p) for g in groups for p in g["params"]),
                tuple(map(self._opts, groups)), id(self.state),
                tuple(map(id, self.state.values())), tuple(map(len, self.state.values())))

    # -- state_dict -----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """``{"state": {index: {name: array}}, "param_groups": [{..., "params": [index]}]}``,
        PyTorch's layout: parameters numbered in order of appearance across groups."""
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            packed["params"] = [index.setdefault(id(p), len(index)) for p in group["params"]]
            groups.append(packed)
        state = {index[id(p)]: dict(s) for p, s in self.state.items() if s}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Load a state_dict from :meth:`state_dict` or from a PyTorch optimizer of the same
        class (torch tensors are converted; torch is not imported)."""
        name = type(self).__name__
        if not isinstance(state_dict, Mapping) or set(state_dict) != {"state", "param_groups"}:
            raise ValueError(f"{name}.load_state_dict: expected a dict with keys 'state' and "
                             f"'param_groups', got {type(state_dict).__name__}")
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"{name}.load_state_dict: the state_dict has {len(saved_groups)} "
                             f"parameter groups, the optimizer has {len(self.param_groups)}")
        by_index: dict[int, tuple[Any, dict[str, Any]]] = {}
        for i, (group, saved) in enumerate(zip(self.param_groups, saved_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(
                    f"{name}.load_state_dict: parameter group {i} has {len(saved['params'])} "
                    f"parameters in the state_dict, {len(group['params'])} in the optimizer")
            missing = [k for k in (*self.hyperparams, *self.flags) if k not in saved]
            if missing:
                raise ValueError(f"{name}.load_state_dict: parameter group {i} lacks {missing}; "
                                 f"is this the state_dict of another optimizer?")
            by_index.update({int(j): (p, group) for j, p in zip(saved["params"], group["params"])})
        new_state = {}
        for j, saved_state in state_dict["state"].items():
            if int(j) not in by_index:
                raise ValueError(f"{name}.load_state_dict: state for parameter {j}, which no "
                                 f"parameter group lists")
            p, group = by_index[int(j)]
            new_state[p] = self._convert_state(int(j), p, group, saved_state)
        for group, saved in zip(self.param_groups, saved_groups):
            group.update({k: to_python(v) for k, v in saved.items() if k != "params"})
        self.state = new_state

    def _convert_state(self, index: int, p: Any, group: Mapping[str, Any],
                       saved: Mapping[str, Any]) -> dict[str, Any]:
        expected = self._init_state(p, group)
        if set(saved) != set(expected):
            raise ValueError(
                f"{type(self).__name__}.load_state_dict: state of parameter {index} has keys "
                f"{sorted(saved)}, expected {sorted(expected)}; is this the state_dict of another "
                f"optimizer or of other options?")
        out = {}
        for key, value in saved.items():
            ref = expected[key]
            if value is None or ref is None:
                out[key] = None if value is None else to_jax(value, p.data.dtype)
            elif jnp.shape(value) != ref.shape:
                raise ValueError(f"{type(self).__name__}.load_state_dict: state {key!r} of "
                                 f"parameter {index} has shape {tuple(jnp.shape(value))}, the "
                                 f"parameter needs {ref.shape}")
            else:
                out[key] = to_jax(value, ref.dtype)
        return out


def torch_flags(**given: Any) -> dict[str, Any]:
    """PyTorch's implementation switches (foreach, fused, ...): accepted, stored, ignored."""
    return {**_TORCH_FLAGS, **given}


def _group_step_impl(update: LeafUpdate, opts: tuple[tuple[str, Hashable], ...],
                     datas: list[jax.Array], grads: list[jax.Array],
                     states: list[dict[str, Any]], hp: dict[str, Any]):
    options = dict(opts)
    out = [apply_leaf(update, d, g, s, hp, options) for d, g, s in zip(datas, grads, states)]
    return [d for d, _ in out], [s for _, s in out]


_group_step = jax.jit(_group_step_impl, static_argnums=(0, 1))
