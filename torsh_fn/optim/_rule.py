"""One optimizer rule, two faces.

Every optimizer in ``torsh_fn.optim`` is written once as a *leaf rule*: two pure functions on one
parameter tensor, its gradient and its state, with PyTorch's state names::

    init(param, group) -> state                       # e.g. {"step": 0., "exp_avg": 0, ...}
    update(param, grad, state, hp, opts) -> (param, state)

``hp`` holds the numeric hyperparameters (``lr``, ``betas``, ...: Python numbers or 0-d arrays,
tracers inside ``jit``); ``opts`` holds the static options (``amsgrad``, ``nesterov``, ...).
``update`` returns the new parameter computed in PyTorch's order of operations (so that float32
trajectories agree with PyTorch's to rounding), never a delta.

The stateful classes (:class:`torsh_fn.optim.Optimizer`) run the rule over their param groups;
:func:`from_rule` turns it into an ``optax.GradientTransformation`` for the functional face.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

LeafState = dict[str, Any]
LeafInit = Callable[[jax.Array, Mapping[str, Any]], LeafState]
LeafUpdate = Callable[..., tuple[jax.Array, LeafState]]


def lerp(start: jax.Array, end: jax.Array, weight: Any) -> jax.Array:
    """``torch.lerp`` with a scalar weight, in PyTorch's two-branch form (exact for weight ~0/1)."""
    return jnp.where(weight < 0.5, start + weight * (end - start),
                     end - (end - start) * (1 - weight))


def coupled_weight_decay(grad: jax.Array, param: jax.Array, hp: Mapping[str, Any],
                         opts: Mapping[str, Any]) -> jax.Array:
    """PyTorch's L2 weight decay ``grad + weight_decay * param``, left out where the group's
    ``weight_decay`` is 0 (``opts["nonzero_weight_decay"]``, see :func:`decay_option`), as
    PyTorch leaves it out: the program then does not read the parameter for it."""
    return grad + hp["weight_decay"] * param if opts["nonzero_weight_decay"] else grad


def zero_weight_decay(hp: Mapping[str, Any]) -> bool:
    """Whether ``hp`` has a ``weight_decay`` that is a Python 0: the optimizer then compiles it
    in rather than passing it to ``torsh_fn.jit`` as a traced slot."""
    wd = hp.get("weight_decay")
    return isinstance(wd, int | float) and wd == 0


def decay_option(hp: Mapping[str, Any]) -> dict[str, bool]:
    """The static option the rules' weight decay reads: whether ``hp["weight_decay"]`` may be
    non-zero (empty for optimizers without weight decay; a traced value counts as non-zero).
    Static, so a group whose weight decay turns non-zero (or back to 0) between steps compiles
    its program once more."""
    return {"nonzero_weight_decay": not zero_weight_decay(hp)} if "weight_decay" in hp else {}


def compute_dtype(dtype: Any) -> Any:
    """Rules compute in float32 or wider: half-precision tensors are upcast, as PyTorch's
    opmath does."""
    return jnp.promote_types(dtype, jnp.float32)


def apply_leaf(update: LeafUpdate, param: jax.Array, grad: jax.Array, state: LeafState,
               hp: Mapping[str, Any], opts: Mapping[str, Any]) -> tuple[jax.Array, LeafState]:
    """Run ``update`` in the compute dtype and give back the parameter's and state's dtypes.

    A ``"master_weight"`` entry in ``state`` (float32 copy of a half-precision parameter) is
    what gets updated; the parameter becomes its rounded copy.
    """
    master = state.get("master_weight")
    base = param if master is None else master
    cd = compute_dtype(base.dtype)
    hp = jax.tree.map(lambda v: jnp.asarray(v, cd), dict(hp))
    rule_state = {k: v for k, v in state.items() if k != "master_weight"}
    cast_state = {k: None if v is None else v.astype(cd) for k, v in rule_state.items()}
    new_base, new_state = update(base.astype(cd), grad.astype(cd), cast_state, hp, opts)
    out_state = {}
    for key, value in new_state.items():
        old = rule_state.get(key)
        dtype = base.dtype if old is None else old.dtype
        out_state[key] = None if value is None else value.astype(dtype)
    if master is None:
        return new_base.astype(param.dtype), out_state
    out_state["master_weight"] = new_base.astype(master.dtype)
    return new_base.astype(param.dtype), out_state


class TorchRuleState(NamedTuple):
    """State of a transformation built by :func:`from_rule`.

    count: number of updates so far (drives learning-rate schedules).
    per_param: one dict per parameter leaf, in ``jax.tree.leaves`` order, with PyTorch's names.
    """

    count: jax.Array
    per_param: list[LeafState]


def from_rule(init: LeafInit, update: LeafUpdate, hp: Mapping[str, Any],
              opts: Mapping[str, Any]) -> optax.GradientTransformation:
    """An ``optax.GradientTransformation`` running a leaf rule on every parameter.

    ``hp["lr"]`` may be an optax schedule (a function of the update count). The updates returned
    are ``new_param - param``, so ``optax.apply_updates`` reproduces PyTorch's parameters up to
    one rounding per step; ``params`` is required, as in ``optax.add_decayed_weights``.
    """

    opts = {**opts, **decay_option(hp)}

    def hyperparams(count: jax.Array) -> dict[str, Any]:
        return {k: v(count) if callable(v) else v for k, v in hp.items()}

    def init_fn(params: Any) -> TorchRuleState:
        group = {**hyperparams(jnp.zeros([], jnp.int32)), **opts}
        states = [init(p, group) for p in jax.tree.leaves(params)]
        return TorchRuleState(jnp.zeros([], jnp.int32), states)

    def update_fn(updates: Any, state: TorchRuleState, params: Any = None):
        if params is None:
            raise ValueError("this torsh_fn.optim transformation needs `params` in update(): "
                             "call tx.update(grads, state, params)")
        leaves, treedef = jax.tree.flatten(params)
        grads = treedef.flatten_up_to(updates)
        values = hyperparams(state.count)
        deltas, states = [], []
        for p, g, s in zip(leaves, grads, state.per_param):
            new_p, new_s = apply_leaf(update, p, g, s, values, opts)
            deltas.append((new_p - p).astype(p.dtype))
            states.append(new_s)
        count = optax.safe_increment(state.count)
        return treedef.unflatten(deltas), TorchRuleState(count, states)

    return optax.GradientTransformation(init_fn, update_fn)
