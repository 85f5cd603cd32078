"""Kernel benchmark: correctness on fresh data, then Pallas vs XLA vs PyTorch (vs cuDNN, tokamax /
JAX's own Pallas ops where they have the op), in one run on one GPU.

    PYTHONPATH=$PWD python3 benchmarks/kernels.py                 # the table (GB/s, % of copy)
    PYTHONPATH=$PWD python3 benchmarks/kernels.py --sweep FILE    # dispatch table for "auto"
    PYTHONPATH=$PWD python3 benchmarks/kernels.py --only auto     # auto vs xla on its shapes

Bandwidth counts the fewest bytes each op must move: every input read once, every output
written once. "% copy" is that over the measured device-to-device copy bandwidth (x + 1 on 1 GiB
of float32, bytes read plus written). Matmul and attention report TFLOP/s: 2 M N K for a product;
4 B H Sq Sk D for attention's forward (half when causal), 3.5 times that forward + backward.

    PYTHONPATH=$PWD python3 benchmarks/kernels.py --only matmul,attention --tiles

tokamax (Google's kernel library; a benchmark-only peer, never a torsh_fn dependency) is timed
where it has the op: layer_norm / rms_norm (its Triton kernel), matmul (its ragged_dot with one
group, Mosaic GPU and Triton) and attention (Mosaic GPU and Triton). On a machine without a
network, install it from the git-ignored wheelhouse first; --only tokamax runs just those ops:

    bash benchmarks/install_tokamax.sh
    PYTHONPATH=$PWD python3 benchmarks/kernels.py --only tokamax

The dispatch table holds one entry per GPU model (JAX's device_kind): --sweep replaces this
GPU's entry (--sweep-ops: only those ops of it) and keeps the other GPUs' entries. A sweep too
long for one run goes in parts, each to its own file, merged op by op afterwards:

    PYTHONPATH=$PWD python3 benchmarks/kernels.py --sweep part1.json --sweep-ops softmax,var
    PYTHONPATH=$PWD python3 benchmarks/kernels.py --merge part1.json,part2.json
"""

from __future__ import annotations

import argparse
import datetime
import functools
import itertools
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from torsh_fn import kernels
from torsh_fn.kernels import _dispatch, reductions
from torsh_fn.kernels._cudnn_attention import cudnn_attention
from torsh_fn.kernels._mosaic_attention import MosaicAttentionConfig, mosaic_attention
from torsh_fn.kernels._pallas_attention import AttentionStatic, attention_pallas, default_config
from torsh_fn.kernels._pallas_cross_entropy import cross_entropy_pallas
from torsh_fn.kernels._pallas_norm import add_layer_norm_pallas, layer_norm_pallas, rms_norm_pallas
from torsh_fn.kernels._pallas_rows_reduce import reduce_last_dim_pallas
from torsh_fn.kernels._pallas_softmax import softmax_pallas
from torsh_fn.kernels.attention import _flash
from torsh_fn.kernels.bias_act import bias_act

try:
    import torch

    if not torch.cuda.is_available():  # time PyTorch only on the GPU, beside our kernels
        torch = None
except ImportError:
    torch = None


def time_jax(fn: Callable, *args, iters: int = 50, reps: int = 7) -> float:
    """Median milliseconds per call of a jitted ``fn`` (batches of ``iters`` async calls)."""
    fn = jax.jit(fn)
    jax.block_until_ready(fn(*args))
    samples = []
    for _ in range(reps):
        start = time.perf_counter()
        for _ in range(iters):
            out = fn(*args)
        jax.block_until_ready(out)
        samples.append((time.perf_counter() - start) / iters * 1e3)
    return statistics.median(samples)


def time_torch(fn: Callable, *args, iters: int = 50, reps: int = 7) -> float:
    fn(*args)
    torch.cuda.synchronize()
    samples = []
    for _ in range(reps):
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        for _ in range(iters):
            fn(*args)
        end.record()
        torch.cuda.synchronize()
        samples.append(begin.elapsed_time(end) / iters)
    return statistics.median(samples)


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def copy_bandwidth() -> float:
    x = jnp.ones((1 << 28,), jnp.float32)
    ms = time_jax(lambda x: x + 1, x)
    return 2 * x.nbytes / ms / 1e9  # TB/s


def to_torch(x):
    return torch.from_dlpack(x) if torch is not None else None


def _ln_ref(x, w, b):
    x32 = x.astype(jnp.float32)
    m = x32.mean(-1, keepdims=True)
    v = ((x32 - m) ** 2).mean(-1, keepdims=True)
    return ((x32 - m) * jax.lax.rsqrt(v + 1e-5) * w + b).astype(x.dtype)


def _rms_ref(x, w):
    x32 = x.astype(jnp.float32)
    return (x32 * jax.lax.rsqrt((x32**2).mean(-1, keepdims=True) + 1e-6) * w).astype(x.dtype)


# install_tokamax.sh's last resort (no pip): the wheels unpacked here, appended to sys.path
_TOKAMAX_SITE = Path(__file__).resolve().with_name("wheelhouse") / "site"
# tokamax's absl flags, set before its first use (--tokamax-autotune adds one)
TOKAMAX_FLAGS: list[str] = []


@functools.cache
def tokamax_module():
    """tokamax, or None (printing once why) where it is not installed or does not import."""
    try:
        import tokamax
    except ImportError:
        if _TOKAMAX_SITE.is_dir() and str(_TOKAMAX_SITE) not in sys.path:
            sys.path.append(str(_TOKAMAX_SITE))
        try:
            import tokamax
        except Exception as err:  # missing, or an API of this jax that it does not know
            print(f"tokamax not installed ({type(err).__name__}: {str(err)[:160]}); its columns "
                  "stay empty (bash benchmarks/install_tokamax.sh)", flush=True)
            return None
    except Exception as err:
        print(f"tokamax does not import: {type(err).__name__}: {str(err)[:160]}", flush=True)
        return None
    from absl import flags  # tokamax's options are absl flags, parsed from sys.argv on first use

    if not flags.FLAGS.is_parsed():
        flags.FLAGS(sys.argv[:1] + TOKAMAX_FLAGS)  # this script's own arguments are not its flags
    return tokamax


# The ops tokamax has, in this script's names. On a GPU its kernels; elsewhere (the --quick CPU
# smoke run) its XLA implementation, to exercise the plumbing.
TOKAMAX_OPS = ("layer_norm", "rms_norm", "matmul", "attention")
_TOKAMAX_GPU_IMPLS = {"layer_norm": ("triton",), "rms_norm": ("triton",),
                      "matmul": ("mosaic", "triton"), "attention": ("mosaic", "triton")}


def tokamax_impls(op: str) -> tuple[str, ...]:
    """tokamax's implementations of ``op`` to time here (none without tokamax)."""
    if op not in TOKAMAX_OPS or tokamax_module() is None:
        return ()
    return _TOKAMAX_GPU_IMPLS[op] if jax.default_backend() == "gpu" else ("xla",)


def tokamax_fn(op: str, impl: str, causal: bool = True) -> Callable:
    """tokamax's ``op`` with this script's signature: rows ``(x, w, b)``, matmul ``(a, b)``,
    attention ``(q, k, v)`` in (B, H, S, D) (tokamax's layout is (B, S, H, D))."""
    tk = tokamax_module()
    if op in ("layer_norm", "rms_norm"):
        mean = op == "layer_norm"  # the epsilons of _ln_ref and _rms_ref
        return lambda x, w, b: tk.layer_norm(x, w, b if mean else None,
                                             epsilon=1e-5 if mean else 1e-6,
                                             subtract_mean=mean, implementation=impl)
    if op == "matmul":  # a ragged product with one group of all M rows is A @ B
        return lambda a, b: tk.ragged_dot(a, b[None], jnp.array([a.shape[0]], jnp.int32),
                                          implementation=impl)
    if op == "attention":
        return lambda q, k, v: tk.dot_product_attention(
            *(x.swapaxes(1, 2) for x in (q, k, v)), is_causal=causal,
            implementation=impl).swapaxes(1, 2)
    raise ValueError(f"tokamax has no {op} here")


def tokamax_summary() -> str:
    """One line: tokamax's version and the implementations of each of its ops found installed."""
    tk = tokamax_module()
    if tk is None:
        return "tokamax: not installed"
    apis = {"dot_product_attention": "attention", "layer_norm": "normalization",
            "ragged_dot": "ragged_dot",
            "linear_softmax_cross_entropy_loss": "linear_softmax_cross_entropy_loss"}
    found = []
    for name, module in apis.items():
        try:
            impls = __import__(f"tokamax._src.ops.{module}.api", fromlist=["api"]).IMPLEMENTATIONS
            found.append(f"{name} [{', '.join(sorted(impls))}]")
        except Exception:  # a private module that a later tokamax moved
            found.append(name)
    return (f"tokamax {tk.__version__}: " + "; ".join(found) + ". No softmax / log_softmax or "
            "logits-in cross-entropy (its cross-entropy fuses the x @ W projection, with "
            "mosaic_tpu and xla implementations only), no reductions, pooling or batch norm.")


def _peers(name: str, dtype):
    """Other implementations of ``name`` for the "other" column: JAX's own Pallas ops."""
    peers = {}
    if jax.default_backend() != "gpu":
        return peers
    if name == "softmax":
        try:
            from jax.experimental.pallas.ops.gpu import softmax as jax_softmax

            peers["jax-pallas"] = lambda x, w, b: jax_softmax.softmax(x, axis=-1)
        except ImportError:
            pass
    return peers


def row_ops():
    """name -> (pallas, xla, torch, bytes moved per element factor (reads + writes))."""
    F = torch.nn.functional if torch else None
    return {
        "softmax": (
            lambda x, w, b: softmax_pallas(x),
            lambda x, w, b: jax.nn.softmax(x.astype(jnp.float32), -1).astype(x.dtype),
            lambda x, w, b: torch.softmax(x, -1),
            2,
        ),
        "log_softmax": (
            lambda x, w, b: softmax_pallas(x, log=True),
            lambda x, w, b: jax.nn.log_softmax(x.astype(jnp.float32), -1).astype(x.dtype),
            lambda x, w, b: torch.log_softmax(x, -1),
            2,
        ),
        "layer_norm": (
            layer_norm_pallas,
            _ln_ref,
            lambda x, w, b: F.layer_norm(x, (x.shape[-1],), w, b),
            2,
        ),
        "rms_norm": (
            lambda x, w, b: rms_norm_pallas(x, w),
            lambda x, w, b: _rms_ref(x, w),
            lambda x, w, b: F.rms_norm(x, (x.shape[-1],), w, 1e-6),
            2,
        ),
        "add_layer_norm": (
            lambda x, w, b: add_layer_norm_pallas(x, x * 0.5, w, b),
            lambda x, w, b: (_ln_ref(x + x * 0.5, w, b), x + x * 0.5),
            lambda x, w, b: (lambda s: (F.layer_norm(s, (s.shape[-1],), w, b), s))(x + x * 0.5),
            3,
        ),
        "bias_gelu": (
            lambda x, w, b: bias_act(x, b, "gelu", impl="pallas"),
            lambda x, w, b: bias_act(x, b, "gelu", impl="xla"),
            lambda x, w, b: F.gelu(x + b),
            2,
        ),
        "sum": (
            lambda x, w, b: reduce_last_dim_pallas(x, "sum"),
            lambda x, w, b: jnp.sum(x, -1, dtype=jnp.float32).astype(x.dtype),
            lambda x, w, b: torch.sum(x, -1),
            1,
        ),
        "amax": (
            lambda x, w, b: reduce_last_dim_pallas(x, "amax"),
            lambda x, w, b: jnp.max(x, -1),
            lambda x, w, b: torch.amax(x, -1),
            1,
        ),
        "var": (
            lambda x, w, b: reduce_last_dim_pallas(x, "var"),
            lambda x, w, b: jnp.var(x.astype(jnp.float32), -1, ddof=1).astype(x.dtype),
            lambda x, w, b: torch.var(x, -1),
            1,
        ),
    }


GRAD_OPS = ("softmax", "log_softmax", "layer_norm", "rms_norm")


def _tokamax_cells(op: str, wrap: Callable, ref, args, nbytes: float) -> tuple[str, str]:
    """tokamax's "GB/s" and "rel err" cells for a row op: each of its implementations here, as
    ``impl value``; ``wrap`` turns its ``(x, w, b)`` function into the timed one (fwd or
    fwd+bwd), ``ref`` is XLA's output of the same."""
    gbs, errs = [], []
    for impl in tokamax_impls(op):
        fn = wrap(tokamax_fn(op, impl))
        label = f"tokamax {impl} {op}"
        ms = _time_or_nan(time_jax, fn, *args, label=label)
        if ms != ms:
            gbs.append(f"{impl} -")
            errs.append(f"{impl} skipped: {_SKIPPED[label][:60]}")
            continue
        out = jax.jit(fn)(*args)
        gbs.append(f"{impl} {nbytes / ms / 1e6:.0f}")
        errs.append(f"{impl} {rel_err(out, ref):.1e}")
    return ", ".join(gbs), ", ".join(errs)


def bench_rows(rows: int, n: int, dtypes, copy_tbs: float, report: list[str],
               ops: tuple[str, ...] | None = None) -> None:
    """Row ops (softmax, norms, reductions, ...) on (rows, n), or only ``ops`` of them."""
    rng = np.random.default_rng()
    header = (
        "| op | dtype | pass | rel err | Pallas GB/s | % copy | XLA GB/s | PyTorch GB/s | "
        "tokamax GB/s | tokamax rel err | other | Pallas / XLA |"
    )
    report += ["", f"### rows {rows} x {n}", "", header, "|" + " --- |" * 12]
    for dtype in dtypes:
        x = jnp.asarray(rng.standard_normal((rows, n)), dtype)
        w = jnp.asarray(rng.standard_normal(n), dtype)
        b = jnp.asarray(rng.standard_normal(n), dtype)
        tx, tw, tb = to_torch(x), to_torch(w), to_torch(b)
        for name, (pal, xla, tor, factor) in row_ops().items():
            if ops is not None and name not in ops:
                continue
            out, ref = jax.jit(pal)(x, w, b), jax.jit(xla)(x, w, b)
            err = max(rel_err(o, r) for o, r in zip(jax.tree.leaves(out), jax.tree.leaves(ref)))
            nbytes = factor * x.nbytes
            t_pal, t_xla = time_jax(pal, x, w, b), time_jax(xla, x, w, b)
            t_tor = time_torch(tor, tx, tw, tb) if torch else float("nan")
            tk_gbs, tk_err = _tokamax_cells(name, lambda f: f, ref, (x, w, b), nbytes)
            others = ", ".join(
                f"{k} {nbytes / time_jax(f, x, w, b) / 1e6:.0f}"
                for k, f in _peers(name, dtype).items()
            )
            report.append(
                f"| {name} | {jnp.dtype(dtype).name} | fwd | {err:.1e} | "
                f"{nbytes / t_pal / 1e6:.0f} | {nbytes / t_pal / 1e6 / (copy_tbs * 10):.0f}% | "
                f"{nbytes / t_xla / 1e6:.0f} | {nbytes / t_tor / 1e6:.0f} | {tk_gbs} | "
                f"{tk_err} | {others} | {t_xla / t_pal:.2f}x |"
            )
            print(report[-1], flush=True)
            if name not in GRAD_OPS:
                continue
            cot = jnp.asarray(rng.standard_normal((rows, n)), dtype)

            def fwd_bwd(f, cot=cot):
                def run(x_in, w_in, b_in):
                    return jax.vjp(lambda v: f(v, w_in, b_in), x_in)[1](cot)[0]

                return run

            g_ref = jax.jit(fwd_bwd(xla))(x, w, b)
            g_err = rel_err(jax.jit(fwd_bwd(pal))(x, w, b), g_ref)
            t_pal, t_xla = time_jax(fwd_bwd(pal), x, w, b), time_jax(fwd_bwd(xla), x, w, b)
            nbytes = 5 * x.nbytes  # fwd read + write, bwd read two + write one
            tk_gbs, tk_err = _tokamax_cells(name, fwd_bwd, g_ref, (x, w, b), nbytes)
            report.append(
                f"| {name} | {jnp.dtype(dtype).name} | fwd+bwd | {g_err:.1e} | "
                f"{nbytes / t_pal / 1e6:.0f} | {nbytes / t_pal / 1e6 / (copy_tbs * 10):.0f}% "
                f"| {nbytes / t_xla / 1e6:.0f} | | {tk_gbs} | {tk_err} | | {t_xla / t_pal:.2f}x |"
            )
            print(report[-1], flush=True)


def bench_cross_entropy(rows: int, classes: int, copy_tbs: float, report: list[str]) -> None:
    rng = np.random.default_rng()
    x = jnp.asarray(rng.standard_normal((rows, classes)) * 3, jnp.bfloat16)
    y = jnp.asarray(rng.integers(0, classes, rows), jnp.int32)

    def ours(x, y):
        return jax.value_and_grad(lambda x: cross_entropy_pallas(x, y).mean())(x)

    def xla(x, y):
        def loss(x):
            logp = jax.nn.log_softmax(x.astype(jnp.float32), -1)
            return -jnp.take_along_axis(logp, y[:, None], -1).mean()

        return jax.value_and_grad(loss)(x)

    (l1, g1), (l2, g2) = jax.jit(ours)(x, y), jax.jit(xla)(x, y)
    t_ours, t_xla = time_jax(ours, x, y, iters=10), time_jax(xla, x, y, iters=10)
    t_torch = float("nan")
    if torch:
        tx, ty = to_torch(x).clone().requires_grad_(True), to_torch(y).long()

        def step(tx, ty):
            tx.grad = None
            torch.nn.functional.cross_entropy(tx, ty).backward()

        t_torch = time_torch(step, tx, ty, iters=10)
    floor = 3 * x.nbytes / (copy_tbs * 1e12) * 1e3
    report += [
        "",
        f"### cross-entropy fwd+bwd, {rows} x {classes} bf16",
        "",
        "| impl | ms | vs XLA | loss rel err | grad rel err |",
        "| --- | --- | --- | --- | --- |",
        f"| Pallas (fused) | {t_ours:.3f} | {t_xla / t_ours:.2f}x | {rel_err(l1, l2):.1e} | "
        f"{rel_err(g1, g2):.1e} |",
        f"| XLA log_softmax + gather + grad | {t_xla:.3f} | 1.00x | | |",
        f"| PyTorch F.cross_entropy + backward | {t_torch:.3f} | {t_xla / t_torch:.2f}x | | |",
        f"| floor: read logits twice + write grad at the copy rate ({copy_tbs:.2f} TB/s) | "
        f"{floor:.3f} | | | |",
        "| tokamax: none (its linear_softmax_cross_entropy_loss fuses x @ W into the loss; "
        "mosaic_tpu and xla only) | | | | |",
    ]
    print("\n".join(report[-8:]), flush=True)


def _tflops(flops: float, ms: float) -> str:
    return f"{flops / ms / 1e9:.0f}" if ms == ms else "-"  # ms is NaN where a peer is missing


def _speedup(base_ms: float, ms: float) -> str:
    return f"{base_ms / ms:.2f}x" if ms == ms else "-"


_SKIPPED: dict[str, str] = {}  # label -> why _time_or_nan could not time it


def _time_or_nan(timer: Callable, *args, label: str = "", **kwargs) -> float:
    """A peer's time, or NaN (with a printed note, kept in ``_SKIPPED``) where it cannot run."""
    try:
        return timer(*args, **kwargs)
    except Exception as err:  # a peer this machine lacks (cuDNN, tokamax, a Triton config)
        while isinstance(err, ExceptionGroup) and err.exceptions:  # tokamax's "all failed"
            err = err.exceptions[0]
        why = " ".join(f"{type(err).__name__}: {str(err)[:200]}".split()).replace("|", "/")
        _SKIPPED[label] = why
        print(f"  {label or 'a peer'} skipped: {why}", flush=True)
        return float("nan")


def jax_hopper_matmul(tile_n: int = 128, grid_tile_width: int = 8) -> Callable | None:
    """JAX's own Mosaic GPU matmul (``pallas.ops.gpu.hopper_matmul_mgpu``: two warpgroups of
    128 x ``tile_n`` side by side in N, four steps in flight, a persistent grid), or None where
    this jax has none."""
    try:
        from jax.experimental.pallas.ops.gpu import hopper_matmul_mgpu as hopper
    except ImportError:
        return None
    config = hopper.TuningConfig(tile_m=128, tile_n=tile_n, tile_k=64, max_concurrent_steps=4,
                                 grid_tile_width=grid_tile_width,
                                 wg_dimension=hopper.MatmulDimension.N)
    return lambda a, b: hopper.matmul(a, b, None, config)


def _tile_label(cfg) -> str:
    from torsh_fn.kernels._mosaic_matmul import MosaicMatmulConfig

    if isinstance(cfg, MosaicMatmulConfig):
        return (f"Pallas Mosaic {cfg.block_m}x{cfg.block_n}x{cfg.block_k} s{cfg.stages} "
                f"g{cfg.group_m} e{cfg.epilogue_n}" + (f" ctas{cfg.ctas}" if cfg.ctas else ""))
    return (f"Pallas Triton {cfg.block_m}x{cfg.block_n}x{cfg.block_k} w{cfg.num_warps} "
            f"s{cfg.num_stages}")


def _tile_fn(cfg) -> Callable:
    from torsh_fn.kernels._mosaic_matmul import MosaicMatmulConfig, mosaic_matmul
    from torsh_fn.kernels._pallas_matmul import MatmulStatic, matmul_pallas3

    if isinstance(cfg, MosaicMatmulConfig):
        return lambda a, b: mosaic_matmul(a[None], b[None], config=cfg)[0]
    return lambda a, b: matmul_pallas3(a[None], b[None], None, MatmulStatic(None, cfg))[0]


def bench_matmul(size: int, report: list[str], configs=()) -> None:
    """C = A @ B on size^3 (bf16 and f32): Pallas, XLA, PyTorch, tokamax (its ragged_dot with one
    group), JAX's own Mosaic GPU matmul, in TFLOP/s (2 * size^3 flops); then, in bf16, the
    products of the backward (an operand read transposed) against XLA's.

    "Pallas (ours)" is ``kernels.matmul(impl="pallas")``: the Mosaic GPU kernel on Hopper, the
    Triton kernel otherwise ("Pallas Triton": its default tiles). XLA's float32 product runs at
    its default precision (TF32 on the GPU), at HIGHEST (full float32, PyTorch's default) and
    with its own float32-class algorithms; ours uses three TF32 products. ``configs`` are
    extra tile configs to time (``MatmulConfig``: Triton, ``MosaicMatmulConfig``: Mosaic; bf16).
    """
    from torsh_fn.kernels._pallas_matmul import DEFAULT_CONFIGS

    rng = np.random.default_rng()
    flops = 2.0 * size**3
    report += ["", f"### matmul {size}^3 (TFLOP/s)", "",
               "| impl | dtype | rel err vs f32 HIGHEST | TFLOP/s | vs XLA |", "|" + " --- |" * 5]
    for dtype in (jnp.bfloat16, jnp.float32):
        a = jnp.asarray(rng.standard_normal((size, size)), dtype)
        b = jnp.asarray(rng.standard_normal((size, size)), dtype)
        exact = jax.jit(lambda a, b: jnp.matmul(a.astype(jnp.float32), b.astype(jnp.float32),
                                                precision="highest"))(a, b)
        name = jnp.dtype(dtype).name
        cases = {"XLA default": jnp.matmul,
                 "Pallas (ours)": lambda a, b: kernels.matmul(a, b, impl="pallas")}
        cases["Pallas Triton (default tiles)"] = _tile_fn(DEFAULT_CONFIGS[name])
        if dtype == jnp.float32:
            cases["XLA HIGHEST"] = functools.partial(jnp.matmul, precision="highest")
            for preset in ("TF32_TF32_F32_X3", "BF16_BF16_F32_X6"):  # float32-class, on tensor
                cases[f"XLA {preset}"] = functools.partial(  # cores (GPU only)
                    jnp.matmul, precision=getattr(jax.lax.DotAlgorithmPreset, preset))
        else:
            if (hopper := jax_hopper_matmul()) is not None:
                cases["JAX hopper_matmul_mgpu 128x256"] = hopper
        for impl in tokamax_impls("matmul"):
            cases[f"tokamax ragged_dot {impl} (1 group)"] = tokamax_fn("matmul", impl)
        if dtype != jnp.float32:  # tile sweeps in 16-bit only
            cases.update({_tile_label(cfg): _tile_fn(cfg) for cfg in configs})
        times = {}
        for label, fn in cases.items():
            times[label] = _time_or_nan(time_jax, fn, a, b, iters=10, reps=5, label=label)
            if times[label] != times[label]:
                report.append(f"| {label} | {name} | skipped: {_SKIPPED[label][:120]} | - | - |")
                print(report[-1], flush=True)
                continue
            err = rel_err(jax.jit(fn)(a, b), exact)
            xla = times.get("XLA default", float("nan"))
            report.append(f"| {label} | {name} | {err:.1e} | {_tflops(flops, times[label])} | "
                          f"{xla / times[label]:.2f}x |")
            print(report[-1], flush=True)
        if torch:
            ta, tb = to_torch(a), to_torch(b)
            t = time_torch(torch.matmul, ta, tb, iters=10, reps=5)
            report.append(f"| PyTorch torch.matmul | {name} | | {_tflops(flops, t)} | "
                          f"{times['XLA default'] / t:.2f}x |")
            print(report[-1], flush=True)
    report.append(f"default Triton tiles: {DEFAULT_CONFIGS}")
    bench_matmul_uses(size, report)


def bench_matmul_uses(size: int, report: list[str]) -> None:
    """bf16 size^3 as a model uses the product, ours (``impl="pallas"``) against XLA's: with a
    bias and an activation, each of the backward's products (an operand read transposed), and a
    training step (the product and both gradients: 3x the flops), plain and with the bias and
    GELU (the forward saving the pre-activation)."""
    from torsh_fn.kernels._mosaic_matmul import mosaic_matmul

    rng = np.random.default_rng()
    flops = 2.0 * size**3
    a, b = (jnp.asarray(rng.standard_normal((size, size)), jnp.bfloat16) for _ in range(2))
    bias = jnp.asarray(rng.standard_normal(size), jnp.bfloat16)
    report += ["", f"### matmul {size}^3 bf16 as models use it (TFLOP/s)", "",
               "| call | rel err vs XLA | ours | XLA | vs XLA |", "|" + " --- |" * 5]

    def transposed(trans_a, trans_b):
        return (lambda a, b: mosaic_matmul(a[None], b[None], trans_a=trans_a,
                                           trans_b=trans_b)[0],
                lambda a, b: jnp.matmul(a.T if trans_a else a, b.T if trans_b else b))

    def with_act(act):
        return tuple(lambda a, b, impl=impl: kernels.matmul_bias_act(a, b, bias, act, impl=impl)
                     for impl in ("pallas", "xla"))

    def training(impl, act=None):
        def loss(a, b, bias):
            out = (kernels.matmul(a, b, impl=impl) if act is None else
                   kernels.matmul_bias_act(a, b, bias, act, impl=impl))
            return jnp.sum(out.astype(jnp.float32) ** 2)
        return lambda a, b: jax.grad(loss, (0, 1, 2))(a, b, bias)

    calls = {"A^T B (dB of a product)": (*transposed(True, False), 1),
             "A B^T (dA of a product)": (*transposed(False, True), 1),
             "act(A B + bias), relu": (*with_act("relu"), 1),
             "act(A B + bias), gelu": (*with_act("gelu"), 1),
             "training step (forward, dA, dB)": (training("pallas"), training("xla"), 3),
             "training step, bias and gelu": (training("pallas", "gelu"),
                                              training("xla", "gelu"), 3)}
    for label, (ours, xla, products) in calls.items():
        t_ours = _time_or_nan(time_jax, ours, a, b, iters=10, reps=5, label=f"ours {label}")
        t_xla = time_jax(xla, a, b, iters=10, reps=5)
        err = "-"
        if t_ours == t_ours:
            outs = (jax.tree.leaves(jax.jit(f)(a, b)) for f in (ours, xla))
            err = f"{max(rel_err(o, x) for o, x in zip(*outs, strict=True)):.1e}"
        report.append(f"| {label} | {err} | {_tflops(products * flops, t_ours)} | "
                      f"{_tflops(products * flops, t_xla)} | {_speedup(t_xla, t_ours)} |")
        print(report[-1], flush=True)

def _attention_flops(b, h, sq, sk, d, causal, backward) -> float:
    """4 B H Sq Sk D for the two products of the forward (half of it when causal); the backward
    does 2.5 times the forward's (five products instead of two)."""
    fwd = 4.0 * b * h * sq * sk * d / (2 if causal else 1)
    return fwd * (3.5 if backward else 1.0)


def _attention_tiles(c) -> str:
    return (f"fwd {c.block_q}x{c.block_k} w{c.num_warps} s{c.num_stages}, dkv "
            f"{c.block_q_dkv}x{c.block_k_dkv}, dq {c.block_q_dq}x{c.block_k_dq} "
            f"w{c.bwd_num_warps} s{c.bwd_num_stages}")


def _attention_cases(causal: bool, configs=()):
    """impl -> (function of q, k, v in (B, H, S, D)), the peers in their own layouts inside."""
    def cudnn(q, k, v):
        t = [x.swapaxes(1, 2) for x in (q, k, v)]  # cuDNN's native (B, S, H, D)
        return jax.nn.dot_product_attention(*t, is_causal=causal,
                                            implementation="cudnn").swapaxes(1, 2)

    cases = {"XLA (plain)": lambda q, k, v: kernels.attention(q, k, v, is_causal=causal,
                                                               impl="xla"),
             "Pallas (ours; Mosaic GPU on Hopper)": lambda q, k, v: kernels.attention(
                 q, k, v, is_causal=causal, impl="pallas"),
             "Pallas, Triton (a tile config given)": lambda q, k, v: attention_pallas(
                 q, k, v, AttentionStatic(causal, q.shape[-1] ** -0.5,
                                          default_config(q.shape[-1]))),
             "cuDNN (jax.nn, BHSD<->BSHD)": cudnn,
             "cuDNN (BHSD as is, as auto calls it)": lambda q, k, v: cudnn_attention(
                 q, k, v, scale=q.shape[-1] ** -0.5, is_causal=causal),
             "Pallas forward, cuDNN backward": lambda q, k, v: _flash(
                 q, k, v, causal, q.shape[-1] ** -0.5, None, "pallas_cudnn"),
             "auto": lambda q, k, v: kernels.attention(q, k, v, is_causal=causal)}
    other = "overlap" if causal else "pingpong"  # the schedule Mosaic's default does not take
    cases[f"Mosaic GPU forward, {other} schedule (no gradient)"] = lambda q, k, v: (
        mosaic_attention(q, k, v, scale=q.shape[-1] ** -0.5, is_causal=causal,
                         config=MosaicAttentionConfig(schedule=other)))
    for c in configs:
        cases["Pallas " + _attention_tiles(c)] = lambda q, k, v, cfg=c: attention_pallas(
            q, k, v, AttentionStatic(causal, q.shape[-1] ** -0.5, cfg))
    for impl in tokamax_impls("attention"):
        cases[f"tokamax {impl} (BHSD<->BSHD)"] = tokamax_fn("attention", impl, causal)
    return cases


def bench_attention(batch: int, seq: int, heads: int, head_dim: int, report: list[str],
                    configs=(), causal: bool = True) -> None:
    """Attention (B, H, S, D) bf16, forward and forward+backward, in TFLOP/s."""
    rng = np.random.default_rng()
    shape = (batch, heads, seq, head_dim)
    q, k, v, d_out = (jnp.asarray(rng.standard_normal(shape), jnp.bfloat16) for _ in range(4))
    report += ["", f"### {'causal ' if causal else ''}attention B{batch} S{seq} H{heads} "
               f"D{head_dim} bf16 (TFLOP/s)", "",
               "| impl | fwd rel err | fwd | fwd+bwd | grad rel err | fwd vs XLA "
               "| fwd+bwd vs XLA |", "|" + " --- |" * 7]
    exact = jax.jit(lambda q, k, v: attention_reference_f32(q, k, v, causal))
    ref_out = exact(q, k, v)
    ref_grads = jax.jit(lambda q, k, v, g: jax.vjp(
        lambda *a: exact(*a), q, k, v)[1](g))(q, k, v, d_out.astype(jnp.float32))
    flops_f = _attention_flops(batch, heads, seq, seq, head_dim, causal, False)
    flops_b = _attention_flops(batch, heads, seq, seq, head_dim, causal, True)
    xla = None
    for label, fn in _attention_cases(causal, configs).items():
        def train(q, k, v, g, fn=fn):
            return jax.vjp(fn, q, k, v)[1](g)

        t_f = _time_or_nan(time_jax, fn, q, k, v, iters=10, reps=5, label=label)
        if t_f != t_f:
            report.append(f"| {label} | skipped: {_SKIPPED[label][:120]} | | | | | |")
            print(report[-1], flush=True)
            continue
        t_b = _time_or_nan(time_jax, train, q, k, v, d_out, iters=5, reps=5,
                           label=f"{label} fwd+bwd")
        err = rel_err(jax.jit(fn)(q, k, v), ref_out)
        grads = jax.jit(train)(q, k, v, d_out) if t_b == t_b else None
        g_err = f"{max(map(rel_err, grads, ref_grads)):.1e}" if grads is not None else "-"
        xla = xla or (t_f, t_b)
        report.append(f"| {label} | {err:.1e} | {_tflops(flops_f, t_f)} | "
                      f"{_tflops(flops_b, t_b)} | {g_err} | {_speedup(xla[0], t_f)} | "
                      f"{_speedup(xla[1], t_b)} |")
        print(report[-1], flush=True)
    if torch:
        t_f, t_b = _torch_sdpa_times(q, k, v, d_out, (10, 5), is_causal=causal)
        report.append(f"| PyTorch SDPA | | {_tflops(flops_f, t_f)} | {_tflops(flops_b, t_b)} | "
                      f"| {xla[0] / t_f:.2f}x | {xla[1] / t_b:.2f}x |")
        print(report[-1], flush=True)


def _torch_sdpa_times(q, k, v, d_out, iters: tuple[int, int], **sdpa_kwargs):
    """PyTorch's SDPA on the same arrays: (forward ms, forward+backward ms), timed with
    ``iters`` calls per sample for each."""
    F = torch.nn.functional
    tq, tk, tv = (to_torch(x).clone().requires_grad_(True) for x in (q, k, v))
    tg = to_torch(d_out)

    def torch_train(tq, tk, tv):
        for x in (tq, tk, tv):
            x.grad = None
        F.scaled_dot_product_attention(tq, tk, tv, **sdpa_kwargs).backward(tg)

    t_f = time_torch(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, **sdpa_kwargs),
                     tq.detach(), tk.detach(), tv.detach(), iters=iters[0], reps=5)
    return t_f, time_torch(torch_train, tq, tk, tv, iters=iters[1], reps=5)


def attention_reference_f32(q, k, v, causal: bool, mask=None, dropout_p: float = 0.0,
                            key=None):
    """The float32 Precision.HIGHEST reference on upcast inputs."""
    from torsh_fn.kernels.attention import attention_reference

    return attention_reference(*(x.astype(jnp.float32) for x in (q, k, v)), mask,
                               is_causal=causal, dropout_p=dropout_p, key=key)


def padding_mask(batch: int, seq: int) -> jax.Array:
    """A (batch, 1, 1, seq) key padding mask: batch rows of seq, 3/4, 1/2 and 1/4 of it keys."""
    lengths = np.array([seq, 3 * seq // 4, seq // 2, seq // 4])[np.arange(batch) % 4]
    return jnp.asarray(np.arange(seq)[None, None, None, :] < lengths[:, None, None, None])


def bench_masked_attention(batch: int, heads: int, seq: int, head_dim: int,
                           report: list[str], causal: bool = False, configs=(),
                           dropout_p: float = 0.0) -> None:
    """Attention (B, H, S, D) bf16 with a key padding mask (``padding_mask``), or with dropout
    (``dropout_p``) and no mask: the XLA reference (its 16-bit products with float32 sums), the
    same on float32 products of the upcast inputs, the Pallas kernels (the Mosaic kernels on
    Hopper; the Triton kernels, which read the mask tile by tile and draw the same dropout
    pattern, with their default tiles and the tile ``configs``), what
    ``impl="auto"`` picks, and PyTorch's SDPA, in TFLOP/s counted dense (every key, as the
    products do). With dropout no error is shown: each implementation draws its own pattern."""
    rng = np.random.default_rng()
    shape = (batch, heads, seq, head_dim)
    q, k, v, d_out = (jnp.asarray(rng.standard_normal(shape), jnp.bfloat16)
                      for _ in range(4))
    mask = None if dropout_p else padding_mask(batch, seq)
    key = jax.random.key(0)
    what = f"dropout {dropout_p}" if dropout_p else "a padding mask"
    report += ["", f"### {'causal ' if causal else ''}attention with {what} B{batch} "
               f"S{seq} H{heads} D{head_dim} bf16 (TFLOP/s, dense)", "",
               "| impl | fwd rel err | fwd | fwd+bwd | fwd vs XLA | fwd+bwd vs XLA |",
               "|" + " --- |" * 6]
    flops_f = _attention_flops(batch, heads, seq, seq, head_dim, causal, False)
    flops_b = _attention_flops(batch, heads, seq, seq, head_dim, causal, True)
    exact = jax.jit(lambda q, k, v: attention_reference_f32(q, k, v, causal, mask))(q, k, v)

    def ours(impl, config=None):
        return lambda q, k, v: kernels.attention(q, k, v, mask, is_causal=causal, impl=impl,
                                                 config=config, dropout_p=dropout_p, key=key)

    cases = {"XLA (impl='xla')": ours("xla"),
             "XLA on float32 products (upcast inputs, HIGHEST)": lambda q, k, v: (
                 attention_reference_f32(q, k, v, causal, mask, dropout_p, key).astype(q.dtype)),
             "Pallas (impl='pallas'; the Mosaic kernels on Hopper)": ours("pallas"),
             "Pallas, Triton kernels (the default tiles given)": ours(
                 "pallas", default_config(head_dim, masked=mask is not None)),
             **{f"Pallas, Triton {_attention_tiles(c)}": ours("pallas", c) for c in configs},
             "auto": ours("auto")}
    xla = None
    for label, fn in cases.items():
        def train(q, k, v, g, fn=fn):
            return jax.vjp(fn, q, k, v)[1](g)

        t_f = time_jax(fn, q, k, v, iters=5, reps=5)
        t_b = time_jax(train, q, k, v, d_out, iters=3, reps=5)
        xla = xla or (t_f, t_b)
        err = "-" if dropout_p else f"{rel_err(jax.jit(fn)(q, k, v), exact):.1e}"
        report.append(f"| {label} | {err} | {_tflops(flops_f, t_f)} | "
                      f"{_tflops(flops_b, t_b)} | {_speedup(xla[0], t_f)} | "
                      f"{_speedup(xla[1], t_b)} |")
        print(report[-1], flush=True)
    if torch:
        t_f, t_b = _torch_sdpa_times(
            q, k, v, d_out, (5, 3), is_causal=causal, dropout_p=dropout_p,
            attn_mask=None if mask is None else torch.as_tensor(np.array(mask), device="cuda"))
        report.append(f"| PyTorch SDPA | | {_tflops(flops_f, t_f)} | "
                      f"{_tflops(flops_b, t_b)} | {xla[0] / t_f:.2f}x | {xla[1] / t_b:.2f}x |")
        print(report[-1], flush=True)


def tile_configs():
    """A few tile configs around the defaults, timed by ``--tiles`` (H100/H200 starting points)."""
    from torsh_fn.kernels._mosaic_matmul import MosaicMatmulConfig
    from torsh_fn.kernels._pallas_attention import AttentionConfig
    from torsh_fn.kernels._pallas_matmul import MatmulConfig

    matmul = [MatmulConfig(128, 256, 64, 8, 8, 4), MatmulConfig(128, 128, 64, 8, 4, 4),
              MosaicMatmulConfig(), MosaicMatmulConfig(stages=3, epilogue_n=128),
              MosaicMatmulConfig(group_m=16), MosaicMatmulConfig(block_n=128, stages=6),
              MosaicMatmulConfig(block_m=256, block_n=128, stages=3)]
    attention = [AttentionConfig(128, 128, num_warps=8, num_stages=2),
                 AttentionConfig(64, 64, num_warps=4, num_stages=3,
                                 block_q_dkv=32, block_k_dkv=128, block_q_dq=128, block_k_dq=32),
                 AttentionConfig(block_q_dkv=64, block_k_dkv=64, block_q_dq=64, block_k_dq=64,
                                 bwd_num_warps=4, bwd_num_stages=3)]
    return matmul, attention


def tune(report: list[str]) -> None:
    """Time each kernel at 1..16 warps per program on bf16 16384 x 4096 (CE: 8192 x 32768) and
    print the ``TUNED_WARPS`` entries to paste into ``_pallas_common``."""
    from torsh_fn.kernels import (
        _pallas_common,
        _pallas_cross_entropy,
        _pallas_norm,
        _pallas_softmax,
    )

    rng = np.random.default_rng()
    x = jnp.asarray(rng.standard_normal((16384, 4096)), jnp.bfloat16)
    w = jnp.asarray(rng.standard_normal(4096), jnp.bfloat16)
    logits = jnp.asarray(rng.standard_normal((8192, 32768)), jnp.bfloat16)
    labels = jnp.asarray(rng.integers(0, 32768, 8192), jnp.int32)
    lse = jax.nn.logsumexp(logits.astype(jnp.float32), -1)
    g = jnp.ones((8192,), jnp.float32)
    mean = jnp.zeros((16384,), jnp.float32)
    rstd = jnp.ones((16384,), jnp.float32)
    sm, nm, ce = _pallas_softmax, _pallas_norm, _pallas_cross_entropy
    cases = {  # name -> (function of arrays, its arguments): nothing large is a closure constant
        "softmax_fwd": (
            lambda x: sm._launch(sm._fwd_kernel, x, log=False, name="softmax_fwd"),
            (x,),
        ),
        "log_softmax_fwd": (
            lambda x: sm._launch(sm._fwd_kernel, x, log=True, name="log_softmax_fwd"),
            (x,),
        ),
        "softmax_bwd": (
            lambda x: sm._launch(sm._bwd_kernel, x, x, log=False, name="softmax_bwd"),
            (x,),
        ),
        "log_softmax_bwd": (
            lambda x: sm._launch(sm._bwd_kernel, x, x, log=True, name="log_softmax_bwd"),
            (x,),
        ),
        "layer_norm_fwd": (lambda x, w: nm._forward(x, None, w, w, 1e-5, False), (x, w)),
        "rms_norm_fwd": (lambda x, w: nm._forward(x, None, w, w, 1e-5, True), (x, w)),
        "layer_norm_bwd": (
            lambda x, w, m, r: nm._backward(x, w, m, r, x, False)[0],
            (x, w, mean, rstd),
        ),
        "rms_norm_bwd": (
            lambda x, w, m, r: nm._backward(x, w, m, r, x, True)[0],
            (x, w, mean, rstd),
        ),
        "cross_entropy_fwd": (lambda lg, lb: ce._forward(lg, lb, -100, 0.0), (logits, labels)),
        "cross_entropy_bwd": (
            lambda lg, lb, ls, g: ce._cross_entropy_rows_bwd(-100, 0.0, (lg, lb, ls), g)[0],
            (logits, labels, lse, g),
        ),
        "row_sum": (lambda x: reduce_last_dim_pallas(x, "sum"), (x,)),
        "row_var": (lambda x: reduce_last_dim_pallas(x, "var"), (x,)),
        "bias_gelu_fwd": (lambda x, w: bias_act(x, w, "gelu", impl="pallas"), (x, w)),
    }
    report += [
        "",
        "### warps per program (ms; bf16)",
        "",
        "| kernel | " + " | ".join(f"{w} warps" for w in (1, 2, 4, 8, 16)) + " | best |",
        "|" + " --- |" * 7,
    ]
    for name, (fn, fn_args) in cases.items():
        block = 4096
        times = {}
        for warps in (1, 2, 4, 8, 16):
            _pallas_common.TUNED_WARPS[(name, block)] = warps
            try:
                times[warps] = min(time_jax(fn, *fn_args, iters=20, reps=3) for _ in range(2))
            except Exception as err:  # a config Triton cannot compile
                print(f"{name} {warps} warps failed: {type(err).__name__}", flush=True)
                times[warps] = float("inf")
        best = min(times, key=times.get)
        _pallas_common.TUNED_WARPS[(name, block)] = best
        report.append(
            f"| {name} | "
            + " | ".join(f"{t:.3f}" for t in times.values())
            + f" | ({name!r}, {block}): {best} |"
        )
        print(report[-1], flush=True)


def bench_pool_and_batch_norm(report: list[str]) -> None:
    """NCHW pooling and training batch norm on N64 C256 56x56 (bf16 and f32)."""
    from torsh_fn.kernels import pooling
    from torsh_fn.kernels._pallas_batch_norm import batch_norm_reference, batch_norm_train_pallas
    from torsh_fn.kernels._pallas_pool import PoolConfig, pool2d_pallas

    rng = np.random.default_rng()
    report += ["", "### NCHW 64 x 256 x 56 x 56", "",
               "| op | dtype | rel err | Pallas GB/s | % copy | XLA GB/s | PyTorch GB/s | "
               "Pallas / XLA |", "|" + " --- |" * 8]
    for dtype in (jnp.bfloat16, jnp.float32):
        x = jnp.asarray(rng.standard_normal((64, 256, 56, 56)), dtype)
        tx = to_torch(x)
        cases = []
        for op, k, s, p in (("max", 2, 2, 0), ("max", 3, 2, 1), ("avg", 2, 2, 0)):
            out = pooling.pool_output_size(56, k, s, p)
            cfg = PoolConfig(op, (k, k), (s, s), (p, p), (56, 56), (out, out))
            if op == "max":
                def ref(x, k=k, s=s, p=p):
                    return pooling.max_pool_reference(x, (k, k), (s, s), (p, p), (1, 1))

                div, tfn = None, (lambda t, k=k, s=s, p=p:
                                  torch.nn.functional.max_pool2d(t, k, s, p))
            else:
                def ref(x, k=k, s=s, p=p):
                    return pooling.avg_pool_reference(x, (k, k), (s, s), (p, p))

                div = pooling._divisor((56, 56), (k, k), (s, s), (p, p), False, True)
                tfn = lambda t, k=k, s=s, p=p: torch.nn.functional.avg_pool2d(t, k, s, p)
            pal = functools.partial(pool2d_pallas, cfg=cfg, divisor=div, reference=ref)
            nbytes = x.nbytes * (1 + (out / 56) ** 2)
            cases.append((f"{op}_pool2d k{k} s{s} p{p}", pal, ref, tfn, nbytes))
        cases.append(("batch_norm train", lambda x: batch_norm_train_pallas(x)[0],
                      lambda x: batch_norm_reference(x, None, None, 1e-5)[0],
                      lambda t: torch.nn.functional.batch_norm(t, None, None, training=True),
                      3 * x.nbytes))
        for name, pal, ref, tfn, nbytes in cases:
            err = rel_err(jax.jit(pal)(x), jax.jit(ref)(x))
            t_pal, t_xla = time_jax(pal, x), time_jax(ref, x)
            t_tor = time_torch(tfn, tx) if torch else float("nan")
            report.append(f"| {name} | {jnp.dtype(dtype).name} | {err:.1e} | "
                          f"{nbytes / t_pal / 1e6:.0f} | {nbytes / t_pal / 1e6 / 29.5:.0f}% | "
                          f"{nbytes / t_xla / 1e6:.0f} | {nbytes / t_tor / 1e6:.0f} | "
                          f"{t_xla / t_pal:.2f}x |")
            print(report[-1], flush=True)


def _public_cases(dtype):
    """op -> (size keys, make inputs for a size key, fn(impl) -> callable, differentiate?).

    Every case calls the public op (``torsh_fn.kernels``), so the sweep measures exactly what
    ``impl="pallas"`` and ``impl="xla"`` run, and ``--only auto`` what ``impl="auto"`` picks.
    The size key is what the op's dispatch rule looks up: the reduced row's length, the number
    of classes, or the pooled plane's height x width.
    """
    rng = np.random.default_rng()
    total = 1 << 25

    def rows(n):
        return (jnp.asarray(rng.standard_normal((total // n, n)), dtype),)

    def logits(n):
        r = (1 << 28) // n // 2
        return (jnp.asarray(rng.standard_normal((r, n)), dtype),
                jnp.asarray(rng.integers(0, n, r), jnp.int32))

    def planes(hw):
        side = round(hw**0.5)
        return (jnp.asarray(rng.standard_normal((total // hw // 64, 64, side, side)), dtype),)

    def affine(op):
        return lambda impl: lambda x: op(x, jnp.ones(x.shape[-1], x.dtype),
                                         jnp.zeros(x.shape[-1], x.dtype), impl)

    def square(n):  # matmul's size key is the geometric mean of M, N, K
        return tuple(jnp.asarray(rng.standard_normal((n, n)), dtype) for _ in range(2))

    def square_and_bias(n):
        return (*square(n), jnp.asarray(rng.standard_normal(n), dtype))

    def heads(s):  # attention's size key is the key length; B H D fixed at 4 16 128
        return tuple(jnp.asarray(rng.standard_normal((4, 16, s, 128)), dtype) for _ in range(3))

    def attention(impl, causal):
        if impl in ("cudnn", "pallas_cudnn"):  # as attention(impl="auto") calls them
            return lambda q, k, v: _flash(q, k, v, causal, q.shape[-1] ** -0.5, None, impl)
        if impl == "triton":  # what the Pallas kernels run where the Mosaic kernels do not
            return lambda q, k, v: _flash(q, k, v, causal, q.shape[-1] ** -0.5,
                                          default_config(q.shape[-1]), "pallas")
        return lambda q, k, v: kernels.attention(q, k, v, is_causal=causal, impl=impl)

    def keyed(impl, causal, mask, dropout, kernel):  # a key padding mask, dropout 0.1 or both:
        # the Pallas kernels (the Mosaic ones on Hopper; "triton": the Triton kernels, given a
        # tile config)
        config = default_config(128, masked=mask) if kernel == "triton" else None
        return lambda q, k, v: kernels.attention(
            q, k, v, padding_mask(q.shape[0], q.shape[2]) if mask else None, is_causal=causal,
            dropout_p=0.1 if dropout else 0.0, key=jax.random.key(0) if dropout else None,
            impl=impl, config=config)

    row_keys, plane_keys = (512, 4096, 32768), (49, 196, 784, 3136, 12544)
    attention_cases = {}
    if dtype == jnp.bfloat16:  # bf16 only: cuDNN's and the peers'
        for causal in (True, False):
            for (mask, dropout), kernel in itertools.product(
                    ((True, False), (False, True), (True, True)), ("pallas", "triton")):
                op = ("triton_" if kernel == "triton" else "") + "attention" + (
                    "_causal" if causal else "") + ("_masked" if mask else "") + (
                    "_dropout" if dropout else "")
                fn = functools.partial(keyed, causal=causal, mask=mask, dropout=dropout,
                                       kernel=kernel)
                attention_cases[op] = ((256, 1024, 4096), heads, fn, "step")
                attention_cases[op + "_fwd"] = ((256, 1024, 4096), heads, fn, False)
        for causal in (True, False):
            for kernel in ("pallas", "cudnn", "pallas_cudnn", "triton"):
                # the other kernels' entries: their "pallas" column is theirs (the table's
                # [key, kernel ms, xla ms]); the "_fwd" entries time the forward alone, the
                # others a training step alone ("step"), which needs dq, dk and dv (with dq
                # alone the Pallas dk/dv kernel is dead code, while cuDNN's backward is one call
                # that computes all three): attention(impl="auto") chooses by each apart. The
                # Pallas forward with cuDNN's backward is a training choice only; the Triton
                # kernels' entries stand for the Pallas kernels where the Mosaic ones (on
                # Hopper, the "pallas" entries) do not take a call.
                def fn(impl, kernel=kernel, causal=causal):
                    return attention(kernel if impl == "pallas" else impl, causal)

                op = ("" if kernel == "pallas" else kernel + "_") + "attention" + (
                    "_causal" if causal else "")
                attention_cases[op] = ((256, 1024, 4096), heads, fn, "step")
                if kernel != "pallas_cudnn":
                    attention_cases[op + "_fwd"] = ((256, 1024, 4096), heads, fn, False)
    return {
        **attention_cases,
        "matmul": ((1024, 4096, 8192), square, lambda impl: functools.partial(
            kernels.matmul, impl=impl), "all"),
        "matmul_bias_act": ((1024, 4096, 8192), square_and_bias, lambda impl: functools.partial(
            kernels.matmul_bias_act, act="gelu", impl=impl), "all"),
        "softmax": (row_keys, rows, lambda impl: functools.partial(
            kernels.softmax, dim=-1, impl=impl), True),
        "log_softmax": (row_keys, rows, lambda impl: functools.partial(
            kernels.log_softmax, dim=-1, impl=impl), True),
        "layer_norm": (row_keys, rows, affine(
            lambda x, w, b, impl: kernels.layer_norm(x, 1, w, b, impl=impl)), True),
        "rms_norm": (row_keys, rows, affine(
            lambda x, w, b, impl: kernels.rms_norm(x, 1, w, impl=impl)), True),
        "add_layer_norm": (row_keys, rows, affine(
            lambda x, w, b, impl: kernels.add_layer_norm(x, x * 0.5, w, b, impl=impl)[0]), True),
        "sum": (row_keys, rows, lambda impl: functools.partial(reductions.sum, impl=impl), False),
        "amax": (row_keys, rows, lambda impl: functools.partial(reductions.amax, impl=impl),
                 False),
        "var": (row_keys, rows, lambda impl: functools.partial(reductions.var, impl=impl), False),
        "bias_act": (row_keys, rows, lambda impl: lambda x: kernels.bias_act(
            x, None, "gelu", impl=impl), True),
        "cross_entropy": ((1024, 8192, 32768, 131072), logits, lambda impl: functools.partial(
            kernels.cross_entropy, impl=impl), True),
        "batch_norm": (plane_keys, planes, lambda impl: lambda x: kernels.batch_norm(
            x, impl=impl)[0], True),
        "max_pool2d": (plane_keys, planes, lambda impl: lambda x: kernels.max_pool(
            x, (3, 3), (2, 2), (1, 1), (1, 1), impl=impl), True),
        "avg_pool2d": (plane_keys, planes, lambda impl: lambda x: kernels.avg_pool(
            x, (3, 3), (2, 2), (1, 1), impl=impl), True),
    }


def _fwd_and_train_times(fn_a: Callable, fn_b: Callable, args, grad: bool | str) -> list:
    """[(a_ms, b_ms)] forward, and forward+backward with a random cotangent if ``grad``: the
    gradient of the first argument, or of every argument for ``grad="all"``; ``grad="step"``:
    only the forward+backward of every argument (a training step, whose forward alone the op's
    ``_fwd`` entry times)."""
    pairs = []
    if grad != "step":
        pairs.append((time_jax(fn_a, *args, iters=20, reps=5),
                      time_jax(fn_b, *args, iters=20, reps=5)))
    if grad:  # a random cotangent: ones would let XLA simplify the gradient away
        shape = jax.eval_shape(fn_a, *args)
        cot = jnp.asarray(np.random.default_rng().standard_normal(shape.shape), shape.dtype)

        def fb(f):
            def run(cotangent, x, *rest):
                if grad in ("all", "step"):
                    return jax.vjp(f, x, *rest)[1](cotangent)
                return jax.vjp(lambda v: f(v, *rest), x)[1](cotangent)[0]

            return run

        pairs.append((time_jax(fb(fn_a), cot, *args, iters=20, reps=5),
                      time_jax(fb(fn_b), cot, *args, iters=20, reps=5)))
    return pairs


# Run-to-run timing noise on the H100 reached ~10% for sub-0.1 ms ops: Pallas must win by more.
MARGIN = 0.15
DISPATCH_TABLE = Path(_dispatch.__file__).with_name("dispatch_table.json")


def per_device_tables(tables: dict | None) -> dict:
    """A dispatch file as ``{"margin": m, "devices": {device_kind: {"jax", "date", "ops"}}}``;
    a missing file is empty, and a file of the older one-GPU format (``{"device": kind, "margin",
    "jax", "date", "ops"}``) becomes that GPU's entry."""
    if not tables:
        return {"margin": MARGIN, "devices": {}}
    if "devices" in tables:
        return tables
    entry = dict(tables)
    kind, margin = entry.pop("device"), entry.pop("margin", MARGIN)
    return {"margin": margin, "devices": {kind: entry}}


def merge_device_table(tables: dict | None, kind: str, entry: dict, keep_unswept: bool = False,
                       per_dtype: bool = False) -> dict:
    """The dispatch file ``tables`` with GPU ``kind``'s entry replaced by ``entry``; every other
    GPU's entry is kept as it was.

    ``keep_unswept``: keep the ops of ``kind``'s old entry that ``entry`` lacks (``--sweep-ops``);
    ``per_dtype`` also keeps the dtypes of an op that ``entry`` lacks (a sweep in progress, saved
    after each op and dtype, so an interrupted sweep loses nothing it has not re-measured).
    """
    devices = dict(per_device_tables(tables)["devices"])
    old = devices.get(kind)
    if keep_unswept and old is not None:
        ops = dict(old.get("ops", {}))
        for op, by_dtype in entry["ops"].items():
            ops[op] = {**ops.get(op, {}), **by_dtype} if per_dtype else by_dtype
        kept = {k: v for k, v in old.items() if k != "note"}  # a note told of the old sweep
        entry = {**kept, **entry, "ops": ops}
    devices[kind] = entry
    return {"margin": MARGIN, "devices": dict(sorted(devices.items()))}


def _write_json(path: str, data: dict) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


def sweep(path: str, ops: list[str] | None = None) -> None:
    """Measure Pallas vs XLA over sizes and write this GPU's entry of the dispatch table that
    ``impl="auto"`` reads (keyed by JAX's ``device_kind``; other GPUs' entries are kept).

    Each entry keeps the worse of the forward and forward+backward comparisons, so "auto" picks
    Pallas only where it is faster both for inference and for training; attention's entries
    time the forward (``_fwd``) and the training step apart, and its "auto" chooses for each
    (``attention.inference_or_training``). The entry records this GPU's compute capability, for
    models of the same one that have no entry of their own. Without ``ops`` this GPU's entry is
    replaced whole; with ``ops``, only those ops of it. The file is rewritten after every op and
    dtype, so an interrupted sweep keeps what it measured.
    """
    kind = jax.devices()[0].device_kind
    cases = {dtype: _public_cases(dtype) for dtype in (jnp.bfloat16, jnp.float32)}
    known = {op for by_op in cases.values() for op in by_op}
    if ops and set(ops) - known:
        raise SystemExit(f"--sweep-ops: unknown {sorted(set(ops) - known)}; known: "
                         f"{', '.join(sorted(known))}")
    try:
        with open(path) as f:
            tables = json.load(f)
    except FileNotFoundError:
        tables = None
    others = sorted(set(per_device_tables(tables)["devices"]) - {kind})
    print(f"sweeping {', '.join(ops) if ops else 'every op'} on {kind!r} into {path} (other GPUs "
          f"kept: {', '.join(others) or 'none'})", flush=True)
    entry = {"jax": jax.__version__, "date": str(datetime.date.today()),
             "compute_capability": _dispatch.compute_capability(), "ops": {}}
    for dtype, by_op in cases.items():
        for op, (keys, make, fn, grad) in by_op.items():
            if ops and op not in ops:
                continue
            for key in keys:
                pairs = _fwd_and_train_times(jax.jit(fn("pallas")), jax.jit(fn("xla")),
                                             make(key), grad)
                worst = min(pairs, key=lambda p: p[1] / p[0])
                row = [key, round(worst[0], 5), round(worst[1], 5)]
                entry["ops"].setdefault(op, {}).setdefault(jnp.dtype(dtype).name, []).append(row)
                print(op, jnp.dtype(dtype).name, row, f"{worst[1] / worst[0]:.2f}x", flush=True)
            _write_json(path, merge_device_table(tables, kind, entry, keep_unswept=True,
                                                 per_dtype=True))
    _write_json(path, merge_device_table(tables, kind, entry, keep_unswept=bool(ops)))
    print(f"wrote {path}: {kind!r} entry, {len(entry['ops'])} ops measured", flush=True)


def merge_sweeps(path: str, sweeps: list[str]) -> None:
    """Merge the GPU entries of ``sweeps`` (files written by ``--sweep``, e.g. partial sweeps of
    a few ops each, made in separate runs) into the dispatch table ``path``, op by op: an op in a
    sweep replaces that op of that GPU's entry; every other op and GPU is kept."""
    with open(path) as f:
        tables = json.load(f)
    for sweep_path in sweeps:
        with open(sweep_path) as f:
            for kind, entry in per_device_tables(json.load(f))["devices"].items():
                tables = merge_device_table(tables, kind, entry, keep_unswept=True)
                print(f"{path}: {kind!r} <- {', '.join(entry['ops'])} from {sweep_path}")
    _write_json(path, tables)


def dispatch_table_note() -> str:
    """Which GPU's entry of the shipped dispatch table ``impl="auto"`` reads on this device."""
    kind = jax.devices()[0].device_kind
    path = getattr(_dispatch, "_TABLE_PATH", DISPATCH_TABLE)
    try:
        tables = per_device_tables(json.loads(Path(path).read_text()))
    except (OSError, ValueError) as err:
        return f"dispatch table {path}: unreadable ({type(err).__name__}): auto has no measurements"
    entry = tables["devices"].get(kind)
    stand_ins = _dispatch.stand_ins(tables)
    proxies = (f"; for ops it lacks, {', '.join(stand_ins)} (compute capability "
               f"{_dispatch.compute_capability()})" if stand_ins else "")
    if entry is None:
        return (f"dispatch table {path}: no entry for {kind!r} (entries: "
                f"{', '.join(tables['devices']) or 'none'}){proxies or ': auto is XLA here'}")
    return (f"dispatch table {path}: entry for {kind!r} (swept {entry.get('date', '?')}, jax "
            f"{entry.get('jax', '?')}, {len(entry.get('ops', {}))} ops; margin "
            f"{tables['margin']}){proxies}")


def check_auto(report: list[str]) -> None:
    """Time ``impl="auto"`` against ``impl="xla"`` on every shape of the sweep (fresh timings)."""
    note = dispatch_table_note()
    print(note, flush=True)
    report += ["", "## impl=\"auto\" vs impl=\"xla\" on the dispatch table's shapes "
               "(worse of forward and forward+backward)", "", note, "",
               "| op | dtype | size key | auto picks | auto ms | xla ms | xla / auto |",
               "|---|---|---:|---|---:|---:|---:|"]
    worst_ratio = float("inf")
    for dtype in (jnp.bfloat16, jnp.float32):
        for op, (keys, make, fn, grad) in _public_cases(dtype).items():
            for key in keys:
                picks = _dispatch.measured_faster(op, dtype, key)
                pairs = _fwd_and_train_times(jax.jit(fn("auto")), jax.jit(fn("xla")),
                                             make(key), grad)
                auto_ms, xla_ms = min(pairs, key=lambda p: p[1] / p[0])
                worst_ratio = min(worst_ratio, xla_ms / auto_ms)
                report.append(f"| {op} | {jnp.dtype(dtype).name} | {key} | "
                              f"{'pallas' if picks else 'xla'} | {auto_ms:.4f} | {xla_ms:.4f} | "
                              f"{xla_ms / auto_ms:.2f}x |")
                print(report[-1], flush=True)
    report.append(f"\nworst xla / auto: {worst_ratio:.2f}x (1.00x = same program; below 1 "
                  f"within timing noise where auto picked xla)")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=None, help="write the markdown table here")
    parser.add_argument("--rows", type=int, default=16384)
    parser.add_argument("--cols", type=int, default=4096)
    parser.add_argument("--quick", action="store_true", help="small shapes (CPU smoke run)")
    parser.add_argument("--tune", action="store_true", help="sweep warps per kernel first")
    parser.add_argument("--only", default="rows,ce,pool,matmul,attention",
                        help="sections to run, from rows,ce,pool,matmul,attention,masked,"
                             "dropout,auto,tokamax (masked: attention with a padding mask; "
                             "dropout: causal attention with dropout 0.1; "
                             "auto: impl='auto' vs 'xla' on the dispatch table's shapes; "
                             "tokamax: only the ops tokamax has, rows layer_norm / rms_norm, "
                             "matmul and attention, with every column); tokamax's columns are "
                             "in every section that has its op")
    parser.add_argument("--tiles", action="store_true",
                        help="also time a few Pallas tile configs for matmul and attention")
    parser.add_argument("--sweep", default=None,
                        help="write this GPU's entry of the dispatch table to this file (other "
                             "GPUs' entries kept), e.g. torsh_fn/kernels/dispatch_table.json")
    parser.add_argument("--sweep-ops", default=None,
                        help="with --sweep: only these ops (comma-separated) of this GPU's entry")
    parser.add_argument("--merge", default=None,
                        help="merge these --sweep outputs (comma-separated files) into the "
                             "dispatch table (--sweep FILE, default the shipped one) op by op, "
                             "and exit")
    parser.add_argument("--tokamax-autotune", action="store_true",
                        help="let tokamax autotune its kernels' configs where its shipped cache "
                             "has none for this GPU (it has H100 and B200 caches; slow) instead "
                             "of its heuristics")
    args = parser.parse_args(argv)
    if args.merge:
        merge_sweeps(args.sweep or str(DISPATCH_TABLE), args.merge.split(","))
        return
    if args.tokamax_autotune:
        TOKAMAX_FLAGS.append("--tokamax_autotuning_cache_miss_fallback=autotune")
    sections = set(args.only.split(","))
    unknown = sections - {"rows", "ce", "pool", "matmul", "attention", "masked", "dropout",
                          "auto", "tokamax"}
    if unknown:
        parser.error(f"--only: unknown sections {sorted(unknown)}")
    dev = jax.devices()[0]
    report = [
        f"# Kernel benchmark — {datetime.date.today()}",
        "",
        f"device: {dev.device_kind} ({jax.default_backend()}); jax {jax.__version__}; "
        f"torch {torch.__version__ if torch else '-'}; python {sys.version.split()[0]}",
    ]
    if args.quick:
        args.rows, args.cols = 64, 257
    copy_tbs = copy_bandwidth() if not args.quick else 1.0
    report.append(f"measured copy bandwidth (x + 1, 1 GiB f32): {copy_tbs:.2f} TB/s")
    print("\n".join(report), flush=True)
    if args.tune:
        tune(report)
    if args.sweep:
        sweep(args.sweep, args.sweep_ops.split(",") if args.sweep_ops else None)
        return
    report.append(tokamax_summary())
    print(report[-1], flush=True)
    if "rows" in sections:
        bench_rows(args.rows, args.cols, [jnp.bfloat16, jnp.float32], copy_tbs, report)
    elif "tokamax" in sections:
        bench_rows(args.rows, args.cols, [jnp.bfloat16, jnp.float32], copy_tbs, report,
                   ops=tuple(op for op in TOKAMAX_OPS if op in GRAD_OPS))
    if "tokamax" in sections:
        sections |= {"matmul", "attention"}
    if "ce" in sections and not args.quick:
        bench_cross_entropy(8192, 32768, copy_tbs, report)
    if "pool" in sections and not args.quick:
        bench_pool_and_batch_norm(report)
    mm_tiles, attn_tiles = tile_configs() if args.tiles else ((), ())
    if "matmul" in sections:
        bench_matmul(256 if args.quick else 8192, report, mm_tiles)
    if "attention" in sections:
        shape = (1, 64, 2, 64) if args.quick else (4, 4096, 16, 128)
        for causal in (True, False):
            bench_attention(*shape, report, attn_tiles, causal=causal)
    if "masked" in sections:
        for seq, causal in ((64, False), (64, True)) if args.quick else (
                (1024, False), (4096, False), (4096, True)):
            bench_masked_attention(4, 2 if args.quick else 16, seq, 64 if args.quick else 128,
                                   report, causal, attn_tiles)
    if "dropout" in sections:
        for seq, causal in ((64, True),) if args.quick else ((1024, True), (4096, True)):
            bench_masked_attention(4, 2 if args.quick else 16, seq, 64 if args.quick else 128,
                                   report, causal, attn_tiles, dropout_p=0.1)
    if "auto" in sections:
        check_auto(report)
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(report) + "\n")


if __name__ == "__main__":
    main()
