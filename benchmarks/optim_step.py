"""Training-step benchmark: the PyTorch face under ``torsh_fn.jit`` vs hand-written jax.jit+optax.

    PYTHONPATH=$PWD python benchmarks/optim_step.py [--iters 200] [--rounds 5]

The work (issue 5): one step (forward, backward, Adam) of an MLP 784-512-512-10 with ReLU at
batch 256, cross-entropy loss, float32, on the CPU. Both sides start from the same weights and
data and donate their state. Reported: the median step time of each side over ``rounds``
interleaved rounds of ``iters`` steps (interleaving spreads any load from other processes over
both), their ratio, and XLA's temporary memory of each compiled step
(``compiled.memory_analysis().temp_size_in_bytes``). Targets: ratio <= 1.05 for both.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import itertools
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import torsh_fn
import torsh_fn.nn as nn
import torsh_fn.nn.functional as F
import torsh_fn.optim as optim
from torsh_fn._backward import backward
from torsh_fn._jit import jit as stateful_jit

BATCH, SIZES, LR = 256, (784, 512, 512, 10), 1e-3


def shim_setup(rng: np.random.Generator):
    """The PyTorch face: Sequential of Linear/ReLU, optim.Adam, a step under torsh_fn.jit."""
    layers = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(SIZES)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(SIZES) - 2:
            layers.append(nn.ReLU())
    model = nn.Sequential(*layers)
    opt = optim.Adam(model.parameters(), lr=LR)

    @stateful_jit
    def step(model, opt, x, y):
        opt.zero_grad()
        loss = backward(lambda: F.cross_entropy(model(x), y))
        opt.step()
        return loss

    return model, opt, step


def reference_setup(model):
    """Hand-written: a dict of arrays, the same forward, optax.adam, jax.jit with donation."""
    params = {name: jnp.array(p.data) for name, p in model.named_parameters()}
    tx = optax.adam(LR)

    def loss_fn(params, x, y):
        h = x
        names = sorted({n.split(".")[0] for n in params}, key=int)
        for k, name in enumerate(names):
            h = h @ params[f"{name}.weight"].T + params[f"{name}.bias"]
            if k < len(names) - 1:
                h = jax.nn.relu(h)
        return optax.softmax_cross_entropy_with_integer_labels(h, y).mean()

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def step(params, opt_state, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return params, tx.init(params), step


def shim_temp_bytes(step, *args) -> int:
    """Temporary memory of the program torsh_fn.jit runs for ``step(*args)``: the jax.jit it
    built (the last cache entry: the first call compiled one without .grad arrays) is wrapped
    for one call to see its arguments, then lowered on their shapes."""
    entry = list(step._cache.values())[-1]
    original, seen = entry.compiled, []
    entry.compiled = lambda *a: seen.append(a) or original(*a)
    try:
        step(*args)
    finally:
        entry.compiled = original
    shapes = jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype) if isinstance(a, jax.Array) else a,
        seen[0])
    return original.lower(*shapes).compile().memory_analysis().temp_size_in_bytes


def timed(fn, iters: int) -> float:
    start = time.perf_counter()
    for _ in range(iters):
        out = fn()
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / iters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    torsh_fn.manual_seed(0)
    x = jnp.asarray(rng.standard_normal((BATCH, SIZES[0]), np.float32))
    y = jnp.asarray(rng.integers(0, SIZES[-1], BATCH))
    torsh_fn.manual_seed(0)
    shims = {"torsh_fn.jit(nn + optim.Adam)": shim_setup(rng)}
    params, opt_state, ref_step = reference_setup(next(iter(shims.values()))[0])
    ref_state = [params, opt_state]

    def run_ref():
        ref_state[0], ref_state[1], loss = ref_step(ref_state[0], ref_state[1], x, y)
        return loss

    runs = {"jax.jit + optax.adam (hand-written)": run_ref}
    runs.update({label: functools.partial(step, model, opt, x, y)
                 for label, (model, opt, step) in shims.items()})
    first = {label: float(run()) for label, run in runs.items()}
    ref_first = first["jax.jit + optax.adam (hand-written)"]
    for label, loss in first.items():
        if abs(loss - ref_first) > 1e-5 * abs(ref_first):
            raise SystemExit(f"first losses differ: {label} {loss}, reference {ref_first}")
    for _ in range(20):
        for run in runs.values():
            run()
    times = {label: [] for label in runs}
    for _ in range(args.rounds):
        for label, run in runs.items():
            times[label].append(timed(run, args.iters))

    temps = {"jax.jit + optax.adam (hand-written)": ref_step.lower(
        *ref_state, x, y).compile().memory_analysis().temp_size_in_bytes}
    temps.update({label: shim_temp_bytes(step, model, opt, x, y)
                  for label, (model, opt, step) in shims.items()})
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# optim_step  {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC  "
          f"{platform.machine()}, {len(os.sched_getaffinity(0))} of {os.cpu_count()} CPUs, load "
          f"average {load:.1f}; "
          f"jax {jax.__version__}, optax {optax.__version__}")
    print(f"MLP {'-'.join(map(str, SIZES))}, batch {BATCH}, Adam, float32, {jax.devices()[0]}; "
          f"{args.rounds} interleaved rounds x {args.iters} steps")
    print()
    print("| step | median ms | best ms | median vs ref | best vs ref | XLA temp MiB "
          "| temp vs ref |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    ref_label = "jax.jit + optax.adam (hand-written)"
    ref_med, ref_best = statistics.median(times[ref_label]), min(times[ref_label])
    for label in runs:
        med, best = statistics.median(times[label]), min(times[label])
        print(f"| {label} | {med * 1e3:.2f} | {best * 1e3:.2f} | {med / ref_med:.3f}x | "
              f"{best / ref_best:.3f}x | {temps[label] / 2**20:.2f} | "
              f"{temps[label] / temps[ref_label]:.3f}x |")
    print()
    for label in runs:
        print(f"rounds, {label} (ms): " + ", ".join(f"{t * 1e3:.2f}" for t in times[label]))


if __name__ == "__main__":
    main()
