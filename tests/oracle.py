"""One helper for the whole suite: "same as PyTorch, values and gradients".

``check_vs_torch(jax_fn, torch_fn, *inputs)`` runs both on the same numpy inputs, compares the
outputs, then pulls a random cotangent back through both and compares the gradients of every
floating input. Tolerances are looked up by dtype unless given.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import torch

TOLERANCES = {  # dtype name -> (rtol, atol)
    "float64": (1e-10, 1e-12),
    "float32": (1e-5, 1e-5),
    "float16": (1e-2, 1e-2),
    "bfloat16": (2e-2, 2e-2),
}


def tolerance(dtype: Any) -> tuple[float, float]:
    return TOLERANCES.get(np.dtype(dtype).name, (0.0, 0.0))


def to_torch(x: Any, requires_grad: bool = False) -> Any:
    """numpy/JAX array -> torch tensor (bfloat16 included); other values pass through."""
    if isinstance(x, jax.Array):
        x = np.asarray(x)
    if not isinstance(x, np.ndarray | np.generic):
        return x
    x = np.asarray(x)
    if x.dtype == ml_dtypes.bfloat16:
        t = torch.from_numpy(x.astype(np.float32)).to(torch.bfloat16)
    else:
        t = torch.from_numpy(np.array(x, order="C"))  # a writable copy: torch warns on views
    if requires_grad:
        t.requires_grad_(True)
    return t


def to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach()
        if x.dtype == torch.bfloat16:
            return x.float().numpy().astype(ml_dtypes.bfloat16)
        return x.numpy()
    return np.asarray(x)


def assert_close(actual: Any, expected: Any, rtol: float | None = None, atol: float | None = None,
                 err_msg: str = "") -> None:
    """Compare values (and dtypes' kinds) with tolerances looked up from ``expected``'s dtype."""
    a, e = to_numpy(actual), to_numpy(expected)
    assert a.shape == e.shape, f"{err_msg} shape {a.shape} != expected {e.shape}"
    d_rtol, d_atol = tolerance(e.dtype)
    rtol = d_rtol if rtol is None else rtol
    atol = d_atol if atol is None else atol
    if a.dtype.kind in "fc" or e.dtype.kind in "fc" or a.dtype == ml_dtypes.bfloat16:
        a, e = a.astype(np.float64 if a.dtype.kind != "c" else np.complex128), e.astype(
            np.float64 if e.dtype.kind != "c" else np.complex128)
        np.testing.assert_allclose(a, e, rtol=rtol, atol=atol, err_msg=err_msg)
    else:
        np.testing.assert_array_equal(a, e, err_msg=err_msg)


def _leaves(out: Any) -> list[Any]:
    if isinstance(out, torch.Tensor | jax.Array | np.ndarray | np.generic | float | int):
        return [out]
    if isinstance(out, tuple | list):
        return [leaf for o in out for leaf in _leaves(o)]
    raise TypeError(f"unsupported output type {type(out)}")


def _is_float(x: Any) -> bool:
    return isinstance(x, np.ndarray) and (x.dtype.kind == "f" or x.dtype == ml_dtypes.bfloat16)


def check_vs_torch(
    jax_fn: Callable[..., Any],
    torch_fn: Callable[..., Any],
    *inputs: Any,
    grad: bool | Sequence[int] = True,
    rtol: float | None = None,
    atol: float | None = None,
    grad_rtol: float | None = None,
    grad_atol: float | None = None,
    variant: Callable[..., Any] | None = None,
    rng: np.random.Generator | None = None,
) -> None:
    """Assert ``jax_fn(*inputs)`` matches ``torch_fn(*inputs)`` in values and gradients.

    Args:
        inputs: numpy arrays (converted for each side) or plain Python values (passed as they are).
        grad: True for the gradients of every floating input, a list of input positions, or False.
        variant: the ``variant`` fixture (jit or not) applied to ``jax_fn``.
    """
    rng = rng or np.random.default_rng(0)
    fn = variant(jax_fn) if variant is not None else jax_fn
    if grad is True:
        grad_pos = [i for i, x in enumerate(inputs) if _is_float(x)]
    else:
        grad_pos = list(grad or [])
    t_inputs = [to_torch(x, requires_grad=i in grad_pos) for i, x in enumerate(inputs)]
    j_inputs = [jnp.asarray(x) if isinstance(x, np.ndarray | np.generic) else x for x in inputs]

    t_out = torch_fn(*t_inputs)
    j_out = fn(*j_inputs)
    t_leaves, j_leaves = _leaves(t_out), _leaves(j_out)
    assert len(t_leaves) == len(j_leaves), f"{len(j_leaves)} outputs, torch has {len(t_leaves)}"
    for k, (j, t) in enumerate(zip(j_leaves, t_leaves)):
        assert_close(j, t, rtol, atol, err_msg=f"output {k}")
    if not grad_pos:
        return

    float_out = [k for k, t in enumerate(t_leaves)
                 if isinstance(t, torch.Tensor) and t.is_floating_point()]
    if not float_out:
        return
    cots = [rng.standard_normal(np.shape(to_numpy(t_leaves[k]))).astype(np.float32)
            for k in float_out]

    def scalar_objective(*diff_args):
        args = list(j_inputs)
        for p, a in zip(grad_pos, diff_args):
            args[p] = a
        leaves = _leaves(fn(*args))
        return sum((jnp.sum(leaves[k].astype(jnp.float32) * c) for k, c in zip(float_out, cots)),
                   start=jnp.float32(0))

    j_grads = jax.grad(scalar_objective, argnums=tuple(range(len(grad_pos))))(
        *[j_inputs[p] for p in grad_pos])
    t_grads = torch.autograd.grad(
        [t_leaves[k] for k in float_out],
        [t_inputs[p] for p in grad_pos],
        grad_outputs=[torch.from_numpy(c).to(t_leaves[k].dtype) for k, c in zip(float_out, cots)],
        allow_unused=True,
    )
    for p, jg, tg in zip(grad_pos, j_grads, t_grads):
        expected = np.zeros_like(to_numpy(inputs[p])) if tg is None else tg
        assert_close(jg, expected, grad_rtol if grad_rtol is not None else rtol,
                     grad_atol if grad_atol is not None else atol, err_msg=f"gradient of input {p}")
