"""Shared checks for Pallas kernels: forward and gradient against a ``jax.numpy`` reference.

On the CPU the kernels run in Pallas' interpreter; on a GPU the same tests run the compiled
kernels. Inputs are fresh random data of odd shapes; tolerances are looked up by dtype.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

TOL = {jnp.float32: 2e-5, jnp.bfloat16: 2e-2, jnp.float16: 5e-3}


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def check_fwd_and_grad(fn, ref, args, rng, dtype, argnums=(0,), grad_tol=None):
    """``fn(*args)`` ~ ``ref(*args)`` and the vjp of a random cotangent through both, within
    ``TOL[dtype]`` (``grad_tol``, default five times that, for the gradients)."""
    tol = TOL[dtype]
    grad_tol = 5 * tol if grad_tol is None else grad_tol
    out, ref_out = fn(*args), ref(*args)
    outs = out if isinstance(out, tuple) else (out,)
    refs = ref_out if isinstance(ref_out, tuple) else (ref_out,)
    for o, r in zip(outs, refs, strict=True):
        assert o.shape == r.shape and o.dtype == r.dtype
        assert np.isfinite(np.asarray(o, np.float32)).all()
        assert rel_err(o, r) < tol, (rel_err(o, r), tol)
    cots = tuple(jnp.asarray(rng.standard_normal(r.shape), r.dtype) for r in refs)
    cot = cots if isinstance(out, tuple) else cots[0]
    _, vjp = jax.vjp(lambda *a: fn(*a), *args)
    _, ref_vjp = jax.vjp(lambda *a: ref(*a), *args)
    for i, g, rg in zip(range(len(args)), vjp(cot), ref_vjp(cot)):
        if i in argnums:
            assert rel_err(g, rg) < grad_tol, (i, rel_err(g, rg), grad_tol)


def normal(rng, shape, dtype, scale=1.0, shift=0.0):
    return jnp.asarray(rng.standard_normal(shape) * scale + shift, dtype)


def check_fwd_and_grad_jit(fn, ref, args, rng, dtype):
    """``check_fwd_and_grad`` for every argument, with output and vjp in one jitted program per
    side (one compile each: what keeps interpret-mode kernels with backward passes fast)."""
    tol = TOL[dtype]
    shape = jax.eval_shape(ref, *args)
    cot = jnp.asarray(rng.standard_normal(shape.shape), shape.dtype)

    @functools.partial(jax.jit, static_argnums=0)
    def run(f, args, cot):
        out, vjp = jax.vjp(f, *args)
        return out, vjp(cot)

    (out, grads), (ref_out, ref_grads) = run(fn, args, cot), run(ref, args, cot)
    assert out.shape == ref_out.shape and out.dtype == ref_out.dtype
    assert np.isfinite(np.asarray(out, np.float32)).all()
    assert rel_err(out, ref_out) < tol, (rel_err(out, ref_out), tol)
    for i, g, rg in zip(range(len(args)), grads, ref_grads, strict=True):
        assert g.shape == rg.shape and g.dtype == rg.dtype, i
        assert np.isfinite(np.asarray(g, np.float32)).all(), i
        assert rel_err(g, rg) < 5 * tol, (i, rel_err(g, rg), tol)
