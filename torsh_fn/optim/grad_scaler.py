"""``GradScaler``: dynamic loss scaling for float16 training, as ``torch.amp.GradScaler``.

Multiply the loss by ``scale`` before differentiating so that small float16 gradients do not
flush to zero; ``step`` divides the gradients by ``scale`` again and skips the optimizer step when
any of them is inf/NaN; ``update`` halves the scale after such a step and doubles it after
``growth_interval`` clean ones. A port of a PyTorch AMP loop changes only the backward line::

    scaler = torsh_fn.optim.GradScaler()
    opt.zero_grad()
    torsh_fn.backward(lambda: scaler.scale(loss_fn(model(x), y)))  # scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()

Everything is traceable: under ``torsh_fn.jit`` the scaler is state (its scale and growth
tracker are slots), and a skipped step is a select between the old and new optimizer state rather
than a Python branch. Call ``scale``/``unscale_``/``step``/``update`` within the same (jitted)
function, as one training step.

Where PyTorch differs: its ``device`` argument only picks where the scale tensor lives; here it is
accepted and ignored (arrays live where JAX puts them).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import jax
import jax.numpy as jnp

from .._backward import get_slot, set_slot
from .optimizer import Optimizer

_READY, _UNSCALED, _STEPPED = "ready", "unscaled", "stepped"


class GradScaler:
    """Dynamic loss scaler with ``torch.amp.GradScaler``'s signature, methods and state_dict.

    Args:
        device: accepted for PyTorch compatibility, ignored.
        init_scale: the first scale.
        growth_factor: scale multiplier after ``growth_interval`` steps without inf/NaN.
        backoff_factor: scale multiplier after a step with inf/NaN gradients.
        growth_interval: clean steps between growths.
        enabled: when False every method is a pass-through.
    """

    def __init__(self, device: str = "cuda", init_scale: float = 2.0**16,
                 growth_factor: float = 2.0, backoff_factor: float = 0.5,
                 growth_interval: int = 2000, enabled: bool = True) -> None:
        if not growth_factor > 1.0:
            raise ValueError(f"GradScaler: invalid growth_factor={growth_factor!r}: "
                             f"expected a value > 1")
        if not 0.0 < backoff_factor < 1.0:
            raise ValueError(f"GradScaler: invalid backoff_factor={backoff_factor!r}: "
                             f"expected a value in (0, 1)")
        if not (isinstance(growth_interval, int) and growth_interval > 0):
            raise ValueError(f"GradScaler: invalid growth_interval={growth_interval!r}: "
                             f"expected a positive int")
        self._device = device
        self._enabled = bool(enabled)
        self._scale = jnp.asarray(init_scale, jnp.float32)
        self._growth_tracker = jnp.asarray(0, jnp.int32)
        self._growth_factor = float(growth_factor)
        self._backoff_factor = float(backoff_factor)
        self._growth_interval = growth_interval
        self._per_optimizer: dict[int, dict[str, Any]] = {}

    # -- the loop -------------------------------------------------------------------------------

    def scale(self, outputs: Any) -> Any:
        """``outputs * scale`` (a pytree of arrays), in each output's dtype."""
        if not self._enabled:
            return outputs
        return jax.tree.map(
            lambda x: (jnp.asarray(x, jnp.promote_types(x.dtype, jnp.float32)) * self._scale
                       ).astype(x.dtype), outputs)

    def _record(self, optimizer: Optimizer) -> dict[str, Any]:
        return self._per_optimizer.setdefault(id(optimizer), {"stage": _READY, "found_inf": None})

    def unscale_(self, optimizer: Optimizer) -> None:
        """Divide the optimizer's gradients by the scale (once per step) and note inf/NaN."""
        if not self._enabled:
            return
        record = self._record(optimizer)
        if record["stage"] == _UNSCALED:
            raise RuntimeError("GradScaler.unscale_() has already been called on this optimizer "
                               "since the last update()")
        if record["stage"] == _STEPPED:
            raise RuntimeError("GradScaler.unscale_() is being called after step()")
        inv_scale = 1.0 / self._scale
        found = jnp.zeros([], jnp.bool_)
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                found = found | ~jnp.all(jnp.isfinite(p.grad))
                wide = jnp.promote_types(p.grad.dtype, jnp.float32)
                p.grad = (p.grad.astype(wide) * inv_scale).astype(p.grad.dtype)
        record.update(stage=_UNSCALED, found_inf=found)

    def step(self, optimizer: Optimizer, *args: Any, **kwargs: Any) -> Any:
        """Unscale (unless done), then ``optimizer.step()`` unless a gradient is inf/NaN.

        A skipped step leaves parameters and optimizer state as they were (a select, so it
        compiles into the jitted step). Returns what ``optimizer.step`` returned.
        """
        if not self._enabled:
            return optimizer.step(*args, **kwargs)
        if "closure" in kwargs or args:
            raise RuntimeError("GradScaler.step does not support a closure: compute the scaled "
                               "gradients first, then call scaler.step(optimizer)")
        record = self._record(optimizer)
        if record["stage"] == _STEPPED:
            raise RuntimeError("GradScaler.step() has already been called since the last "
                               "update()")
        if record["stage"] == _READY:
            self.unscale_(optimizer)
        slots = [(c, k) for c, k in optimizer._jit_slots() if k != "grad" and c is not None
                 and not _is_group(c, optimizer)]
        before = [get_slot(c, k) for c, k in slots]
        result = optimizer.step()
        skip = record["found_inf"]
        for (c, k), old in zip(slots, before):
            new = get_slot(c, k)
            if old is not None and new is not None and new is not old:
                set_slot(c, k, jnp.where(skip, old, new))
        record["stage"] = _STEPPED
        return result

    def update(self, new_scale: float | jax.Array | None = None) -> None:
        """Back off after an inf/NaN step, grow after ``growth_interval`` clean ones; or set
        ``new_scale``."""
        if not self._enabled:
            return
        if new_scale is not None:
            self._scale = jnp.asarray(new_scale, jnp.float32).reshape(())
        else:
            found = [r["found_inf"] for r in self._per_optimizer.values()
                     if r["found_inf"] is not None]
            if not found:
                raise RuntimeError("GradScaler.update(): no inf checks were recorded; call "
                                   "scaler.step(optimizer) or unscale_ first")
            found_inf = jnp.any(jnp.stack(found))
            grown = self._growth_tracker + 1
            grow = grown >= self._growth_interval
            scale = jnp.where(found_inf, self._scale * self._backoff_factor,
                              jnp.where(grow, self._scale * self._growth_factor, self._scale))
            self._scale = scale.astype(jnp.float32)
            tracker = jnp.where(found_inf | grow, 0, grown)
            self._growth_tracker = tracker.astype(jnp.int32)
        self._per_optimizer = {}

    # -- accessors and state --------------------------------------------------------------------

    def get_scale(self) -> float:
        return float(self._scale) if self._enabled else 1.0

    def get_growth_factor(self) -> float:
        return self._growth_factor

    def set_growth_factor(self, new_factor: float) -> None:
        self._growth_factor = float(new_factor)

    def get_backoff_factor(self) -> float:
        return self._backoff_factor

    def set_backoff_factor(self, new_factor: float) -> None:
        self._backoff_factor = float(new_factor)

    def get_growth_interval(self) -> int:
        return self._growth_interval

    def set_growth_interval(self, new_interval: int) -> None:
        self._growth_interval = int(new_interval)

    def is_enabled(self) -> bool:
        return self._enabled

    def state_dict(self) -> dict[str, Any]:
        """PyTorch's keys: scale, growth_factor, backoff_factor, growth_interval,
        _growth_tracker (empty when disabled)."""
        if not self._enabled:
            return {}
        return {"scale": self.get_scale(), "growth_factor": self._growth_factor,
                "backoff_factor": self._backoff_factor, "growth_interval": self._growth_interval,
                "_growth_tracker": int(self._growth_tracker)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not self._enabled:
            return
        if not state_dict:
            raise RuntimeError("GradScaler.load_state_dict: the state_dict is empty (saved from "
                               "a disabled scaler)")
        self._scale = jnp.asarray(float(state_dict["scale"]), jnp.float32)
        self._growth_factor = float(state_dict["growth_factor"])
        self._backoff_factor = float(state_dict["backoff_factor"])
        self._growth_interval = int(state_dict["growth_interval"])
        self._growth_tracker = jnp.asarray(int(state_dict["_growth_tracker"]), jnp.int32)

    # -- torsh_fn.jit state protocol -------------------------------------------------------------

    def _jit_slots(self) -> list[tuple[Any, str]]:
        return [(self, "_scale"), (self, "_growth_tracker"), (self, "_growth_factor"),
                (self, "_backoff_factor"), (self, "_growth_interval")]

    def _jit_static(self) -> Hashable:
        return self._enabled


def _is_group(container: Any, optimizer: Optimizer) -> bool:
    return any(container is g for g in optimizer.param_groups)
