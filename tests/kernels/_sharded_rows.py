"""Run with 8 simulated CPU devices (the test sets XLA_FLAGS in the subprocess), or on the GPUs
of a machine (an even number): every row kernel (``impl="pallas"``; interpret mode on the CPU)
under ``jit`` with row-sharded inputs, against the XLA path; prints, per case, the largest error
of value and gradient, the gradient's sharding (and the XLA path's) and the compiled program's
all-gathers (synchronous, as on the CPU, or started asynchronously, as on a GPU), as JSON.

Layouts: rows on an Auto mesh (1-D and 2-D), columns on an Auto mesh, rows on an Explicit mesh
(``jax.make_mesh``'s default), and rows on a 2-D mesh of an Explicit "data" axis and an Auto
"model" axis; on the last two, the ops without a row rule (``explicit_only``) run too.

Usage: python _sharded_rows.py  (prints one JSON object on its last line)
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from torsh_fn import kernels
from torsh_fn.kernels import reductions
from torsh_fn.kernels.attention import inference_or_training

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
        "attention_split": lambda x, impl: _attention_split_loss(x, impl),
        "attention_padding": lambda x, impl: _attention_masked_loss(x, impl, shared=False),
        "attention_shared_bias": lambda x, impl: _attention_masked_loss(x, impl, shared=True),
    }


def explicit_only(weight: jax.Array) -> dict:
    """Ops whose kernels XLA places as a whole (no row rule: their inputs may be gathered), run
    on an Explicit mesh only. The "auto" ones are the CPU's lowerings of pooling (over the
    window's taps) and convolution (patches times a matrix, for these 3 outputs per image; with
    a bias and GELU after it in ``conv_bias_act``),
    which reshape the rows; on a GPU, "auto" picks XLA's pooling and a channels-last
    convolution instead."""
    def images(x: jax.Array) -> jax.Array:
        return x.reshape(ROWS, 2, 1, COLS // 2)  # (N, C, H, W)

    def auto(impl: str) -> str:
        return "auto" if impl == "pallas" else "xla"

    pool = {"kernel_size": (1, 2), "stride": (1, 2), "padding": (0, 0)}
    return {
        "matmul": lambda x, impl: jnp.sum(kernels.matmul(x, jnp.outer(weight, weight[:5]),
                                                         impl=impl) * x[:, :5]),
        "max_pool": lambda x, impl: jnp.sum(
            kernels.max_pool(images(x), dilation=(1, 1), impl=impl, **pool) ** 2),
        "avg_pool_auto": lambda x, impl: jnp.sum(
            kernels.avg_pool(images(x), impl=auto(impl), **pool) ** 2),
        "max_pool_auto": lambda x, impl: jnp.sum(
            kernels.max_pool(images(x), dilation=(1, 1), impl=auto(impl), **pool) ** 2),
        "batch_norm": lambda x, impl: jnp.sum(
            kernels.batch_norm(images(x), impl=impl)[0] * images(x)),
        "conv_auto": lambda x, impl: jnp.sum(kernels.conv(
            images(x), weight[:18].reshape(3, 2, 1, 3), (1, 3), [(0, 0)] * 2, (1, 1),
            impl=auto(impl)) ** 2),
        "conv_bias_act_auto": lambda x, impl: jnp.sum(kernels.conv_bias_act(
            images(x), weight[:18].reshape(3, 2, 1, 3), weight[:3], (1, 3), [(0, 0)] * 2,
            (1, 1), act="gelu", impl=auto(impl)) ** 2),
    }


def _attention_loss(x: jax.Array, impl: str) -> jax.Array:
    """Causal grouped-query attention over (batch=rows, 2 heads, 11 positions, 1 dim) queries."""
    q = x.reshape(ROWS, 2, COLS // 2, 1)
    kv = q[:, :1] * 0.5
    return jnp.sum(kernels.attention(q, kv, kv, is_causal=True, impl=impl) * q)


def _attention_masked_loss(x: jax.Array, impl: str, shared: bool) -> jax.Array:
    """``_attention_loss`` (not causal) with a mask: a key padding mask of the rows' own
    (batch, 1, 1, 11), sharded with them, or one float bias (1, 2, 11, 11) that every row
    shares (replicated)."""
    q = x.reshape(ROWS, 2, COLS // 2, 1)
    kv = q[:, :1] * 0.5
    if shared:
        mask = jnp.linspace(-2.0, 2.0, 2 * (COLS // 2) ** 2).reshape(1, 2, COLS // 2, COLS // 2)
    else:
        mask = lax.stop_gradient(kv[:, :, :, 0] > -0.4)[:, :, None, :]
    return jnp.sum(kernels.attention(q, kv, kv, mask, impl=impl) * q)


def _attention_split_loss(x: jax.Array, impl: str) -> jax.Array:
    """``_attention_loss`` through "auto"'s wrapper for two implementations
    (``inference_or_training``): the Pallas kernel where nothing is differentiated (the second
    term, of stopped inputs), XLA's attention in the differentiated first term."""
    q = x.reshape(ROWS, 2, COLS // 2, 1)
    kv = q[:, :1] * 0.5

    def run(choice):
        return lambda q, k, v: kernels.attention(q, k, v, is_causal=True, impl=choice)

    both = inference_or_training(run("pallas"), run("xla")) if impl == "pallas" else run("xla")
    stopped = [lax.stop_gradient(a) for a in (q, kv, kv)]
    return jnp.sum(both(q, kv, kv) * q) + jnp.sum(both(*stopped) * stopped[0])


def run_case(loss, x: jax.Array, sharding: NamedSharding) -> dict:
    xs = jax.device_put(x, sharding)
    reference = jax.jit(jax.value_and_grad(lambda z: loss(z, "xla")))
    pallas = jax.jit(jax.value_and_grad(lambda z: loss(z, "pallas")))
    with jax.set_mesh(sharding.mesh):  # an Explicit mesh's scalars need it
        (v_ref, g_ref), (v, g) = reference(xs), pallas(xs)
        hlo = pallas.lower(xs).compile().as_text()
    return {"value_err": float(abs(v - v_ref)) / max(1.0, float(abs(v_ref))),
            "grad_err": float(jnp.max(jnp.abs(g - g_ref))),
            "grad_spec": str(g.sharding.spec), "xla_grad_spec": str(g_ref.sharding.spec),
            "all_gathers": hlo.count("all-gather(") + hlo.count("all-gather-start(")}


def main() -> None:
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((ROWS, COLS)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, CLASSES, ROWS), jnp.int32)
    weight, bias = (jnp.asarray(rng.standard_normal(COLS), jnp.float32) for _ in range(2))
    auto, explicit = jax.sharding.AxisType.Auto, jax.sharding.AxisType.Explicit
    n = jax.device_count()
    data = jax.make_mesh((n,), ("data",), axis_types=(auto,))
    grid = jax.make_mesh((n // 2, 2), ("data", "model"), axis_types=(auto, auto))
    typed = jax.make_mesh((n,), ("data",), axis_types=(explicit,))
    mixed = jax.make_mesh((n // 2, 2), ("data", "model"), axis_types=(explicit, auto))
    layouts = {"rows": NamedSharding(data, P("data")),
               "rows_2d": NamedSharding(grid, P("data")),
               "cols": NamedSharding(grid, P(None, "model")),
               "rows_explicit": NamedSharding(typed, P("data")),
               "rows_mixed": NamedSharding(mixed, P("data"))}
    results = {f"{name}/{layout}": run_case(loss, x, sharding)
               for name, loss in ops(labels, weight, bias).items()
               for layout, sharding in layouts.items()}
    results |= {f"{name}/{layout}": run_case(loss, x, layouts[layout])
                for name, loss in explicit_only(weight).items()
                for layout in ("rows_explicit", "rows_mixed")}
    print(json.dumps(results))


if __name__ == "__main__":
    main()
