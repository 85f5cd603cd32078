"""Run with 8 simulated CPU devices (the test sets XLA_FLAGS in the subprocess), or on the GPUs
of a machine (an even number): every row kernel (``impl="pallas"``; interpret mode on the CPU)
under ``jit`` with row-sharded inputs, against the XLA path; prints, per case, the largest error
of value and gradient, the gradient's sharding and the compiled program's all-gathers, as JSON.

Usage: python _sharded_rows.py  (prints one JSON object on its last line)
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from torsh_fn import kernels
from torsh_fn.kernels import reductions

ROWS, COLS, CLASSES = 24, 22, 13


def ops(labels: jax.Array, weight: jax.Array, bias: jax.Array) -> dict:
    """name -> (x, impl) -> a scalar to differentiate."""
    return {
        "softmax": lambda x, impl: jnp.sum(kernels.softmax(x, impl=impl) * x),
        "log_softmax": lambda x, impl: jnp.sum(kernels.log_softmax(x, impl=impl) * x),
        "layer_norm": lambda x, impl: jnp.sum(
            kernels.layer_norm(x, 1, weight, bias, impl=impl) * x),
        "rms_norm": lambda x, impl: jnp.sum(kernels.rms_norm(x, 1, weight, impl=impl) * x),
        "add_layer_norm": lambda x, impl: jnp.sum(
            kernels.add_layer_norm(x, 2 * x, weight, bias, impl=impl)[0] * x),
        "var": lambda x, impl: jnp.sum(reductions.var(x, impl=impl)),
        "bias_act": lambda x, impl: jnp.sum(kernels.bias_act(x, bias, "gelu", impl=impl) * x),
        "cross_entropy": lambda x, impl: jnp.sum(
            kernels.cross_entropy(x[:, :CLASSES], labels, impl=impl, label_smoothing=0.1)),
        "attention": lambda x, impl: _attention_loss(x, impl),
    }


def _attention_loss(x: jax.Array, impl: str) -> jax.Array:
    """Causal grouped-query attention over (batch=rows, 2 heads, 11 positions, 1 dim) queries."""
    q = x.reshape(ROWS, 2, COLS // 2, 1)
    kv = q[:, :1] * 0.5
    return jnp.sum(kernels.attention(q, kv, kv, is_causal=True, impl=impl) * q)


def run_case(loss, x: jax.Array, sharding: NamedSharding) -> dict:
    xs = jax.device_put(x, sharding)
    reference = jax.jit(jax.value_and_grad(lambda z: loss(z, "xla")))
    pallas = jax.jit(jax.value_and_grad(lambda z: loss(z, "pallas")))
    (v_ref, g_ref), (v, g) = reference(xs), pallas(xs)
    hlo = pallas.lower(xs).compile().as_text()
    return {"value_err": float(abs(v - v_ref)) / max(1.0, float(abs(v_ref))),
            "grad_err": float(jnp.max(jnp.abs(g - g_ref))),
            "grad_spec": str(g.sharding.spec), "all_gathers": hlo.count("all-gather(")}


def main() -> None:
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((ROWS, COLS)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, CLASSES, ROWS), jnp.int32)
    weight, bias = (jnp.asarray(rng.standard_normal(COLS), jnp.float32) for _ in range(2))
    auto = jax.sharding.AxisType.Auto
    n = jax.device_count()
    data = jax.make_mesh((n,), ("data",), axis_types=(auto,))
    grid = jax.make_mesh((n // 2, 2), ("data", "model"), axis_types=(auto, auto))
    layouts = {"rows": NamedSharding(data, P("data")),
               "rows_2d": NamedSharding(grid, P("data")),
               "cols": NamedSharding(grid, P(None, "model"))}
    results = {f"{name}/{layout}": run_case(loss, x, sharding)
               for name, loss in ops(labels, weight, bias).items()
               for layout, sharding in layouts.items()}
    print(json.dumps(results))


if __name__ == "__main__":
    main()
