"""The Mosaic GPU row softmax (a candidate backend, not yet dispatched): correctness on the GPU,
then Mosaic vs Triton (torsh_fn's ``impl="pallas"``) vs XLA timings and a few block configs.

    PYTHONPATH=$PWD timeout 160 python3 benchmarks/mosaic_softmax.py        # on the GPU
    PYTHONPATH=$PWD python3 benchmarks/mosaic_softmax.py --cpu              # smoke test, interpret

Every part is wrapped so one failure prints its type and message and the rest still runs; parts
are skipped once the internal budget (BUDGET_S) is spent. Output is flushed line by line.
"""

import statistics
import sys
import time
import traceback
import warnings

import jax
import jax.numpy as jnp

from torsh_fn.kernels import softmax
from torsh_fn.kernels._mosaic_softmax import MosaicSoftmaxConfig as Config
from torsh_fn.kernels._mosaic_softmax import softmax_mosaic

warnings.filterwarnings("ignore", category=DeprecationWarning)
CPU = "--cpu" in sys.argv
BUDGET_S = 150.0
START = time.monotonic()
INTERPRET = CPU
BIG = (64, 512) if CPU else (16384, 4096)
ODD = [(33, 384), (6, 8192)] if CPU else [(1000, 4096), (1001, 384), (7, 8192)]
REPS, CALLS = (2, 2) if CPU else (5, 20)


def log(*a):
    print(f"[{time.monotonic() - START:5.1f}s]", *a, flush=True)


def left() -> float:
    return BUDGET_S - (time.monotonic() - START)


def guarded(label, fn, need_s=3.0):
    if left() < need_s:
        log(f"SKIP {label}: budget spent ({left():.1f}s left)")
        return None
    try:
        return fn()
    except Exception as e:  # report and go on
        msg = str(e).replace("\n", " | ")
        log(f"FAIL {label}: {type(e).__name__}: {msg[:900]}")
        tb = traceback.extract_tb(e.__traceback__)
        if tb:
            f = tb[-1]
            log(f"     at {f.filename}:{f.lineno} in {f.name}")
        return None


def data(shape, dtype):
    return (3.0 * jax.random.normal(jax.random.key(0), shape, jnp.float32)).astype(dtype)


DEFAULT = Config()


def mosaic_fn(config=DEFAULT):
    return jax.jit(lambda x: softmax_mosaic(x, interpret=INTERPRET, config=config))


def check(shape, dtype, config=DEFAULT):
    x = data(shape, dtype)
    y = mosaic_fn(config)(x).astype(jnp.float32)
    ref = jax.nn.softmax(x.astype(jnp.float32), axis=-1)
    abs_err = float(jnp.max(jnp.abs(y - ref)))
    rel = float(jnp.max(jnp.abs(y - ref) / jnp.maximum(jnp.abs(ref), 1e-30)))
    rel_big = float(jnp.max(jnp.where(ref > 1e-6, jnp.abs(y - ref) / ref, 0.0)))
    sums = float(jnp.max(jnp.abs(y.sum(-1) - 1.0)))
    log(
        f"check {shape} {jnp.dtype(dtype).name} {config}: max abs err {abs_err:.3g}, max rel err"
        f" {rel:.3g} (ref>1e-6: {rel_big:.3g}), max |row sum - 1| {sums:.3g}"
    )


def timeit(label, fn, x):
    t0 = time.monotonic()
    y = jax.block_until_ready(fn(x))  # compile + first run
    compile_s = time.monotonic() - t0
    ref = jax.nn.softmax(x.astype(jnp.float32), axis=-1)
    err = float(jnp.max(jnp.abs(y.astype(jnp.float32) - ref)))
    times = []
    for _ in range(REPS):
        t = time.perf_counter()
        for _ in range(CALLS):
            y = fn(x)
        jax.block_until_ready(y)
        times.append((time.perf_counter() - t) / CALLS)
    ms = statistics.median(times) * 1e3
    tbs = 2 * x.size * x.dtype.itemsize / (ms * 1e-3) / 1e12
    log(
        f"time {label:48s} {ms:8.4f} ms  {tbs:6.3f} TB/s"
        f"  (compile+1st {compile_s:.1f}s, max abs err {err:.2g})"
    )
    return ms


def main():
    dev = jax.devices()[0]
    log(f"jax {jax.__version__}, {dev.platform} {getattr(dev, 'device_kind', '')}, cpu={CPU}")
    # (a) correctness
    for shape in (BIG, *ODD):
        for dtype in (jnp.bfloat16, jnp.float32):
            guarded(f"check {shape} {jnp.dtype(dtype).name}", lambda s=shape, d=dtype: check(s, d))
    # (b) timings: the three implementations first, then Mosaic variants while budget lasts
    triton = jax.jit(lambda x: softmax(x, dim=-1, impl="pallas"))
    xla = jax.jit(lambda x: softmax(x, dim=-1, impl="xla"))
    variants = [
        Config(block_rows=b, stages=s, ctas_per_sm=c, approx_math=a)
        for a in (True, False)
        for b, s, c in ((2, 2, 2), (1, 4, 2), (1, 2, 4), (1, 3, 3), (2, 2, 3), (4, 2, 2))
    ] + [Config(warpgroup_semantics=True, approx_math=True)]
    inputs = {}
    for dtype in (jnp.bfloat16, jnp.float32):
        name = jnp.dtype(dtype).name
        x = guarded(f"data {name}", lambda d=dtype: jax.block_until_ready(data(BIG, d)))
        if x is None:
            continue
        inputs[name] = x
        log(f"--- {BIG} {name}: read+write {2 * x.size * x.dtype.itemsize / 2**20:.0f} MiB")
        guarded(f"mosaic {name}", lambda x=x: timeit(f"mosaic {Config()}", mosaic_fn(), x), 8)
        guarded(f"triton {name}", lambda x=x: timeit("triton (impl=pallas)", triton, x), 8)
        guarded(f"xla {name}", lambda x=x: timeit("xla (impl=xla)", xla, x), 5)
    for config in variants:
        for name, x in inputs.items():
            guarded(
                f"mosaic {name} {config}",
                lambda c=config, x=x, n=name: timeit(f"mosaic {n} {c}", mosaic_fn(c), x),
                8,
            )
    log("done")


if __name__ == "__main__":
    main()
