"""Adam's update on the CPU by parameter shape: torsh_fn's rule vs optax vs PyTorch.

    PYTHONPATH=$PWD python benchmarks/update_shapes.py [--iters 20] [--rounds 5] [--quick]

XLA's CPU loop fusions vectorize along an array's innermost dimension, so an elementwise update
of a 3x3 convolution weight (innermost dimension 3) runs as scalar code, while the same numbers
as one flat vector run in SIMD. This prints, per shape, the milliseconds of one jitted Adam
update (donated state; ``torsh_fn.optim.adam``, ``optax.adam``) and of ``torch.optim.Adam.step``
(its default foreach path), then the same for ResNet-18's whole parameter set.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import torsh_fn.optim as optim
from torsh_fn import models

SHAPES = [(512, 512, 3, 3), (2359296,), (512, 4608), (256, 128, 3, 3), (64, 3, 7, 7)]
QUICK_SHAPES = [(16, 8, 3, 3), (1152,)]  # --quick: a smoke run, no ResNet-18


def _median_ms(step, rounds: int, iters: int) -> float:
    step()
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(iters):
            out = step()
        jax.block_until_ready(out)
        samples.append((time.perf_counter() - start) / iters * 1e3)
    return statistics.median(samples)


def jax_update_ms(tx: optax.GradientTransformation, params: dict, rounds: int,
                  iters: int) -> float:
    grads = jax.tree.map(lambda p: p * 0.5 + 0.01, params)

    @jax.jit
    def update(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    update = jax.jit(update, donate_argnums=(0, 1))
    carry = [jax.tree.map(jnp.copy, params), tx.init(params)]

    def step():
        carry[:] = update(carry[0], carry[1], grads)
        return carry[0]

    return _median_ms(step, rounds, iters)


def torch_update_ms(arrays: list[np.ndarray], rounds: int, iters: int) -> float:
    import torch

    params = [torch.nn.Parameter(torch.from_numpy(a.copy())) for a in arrays]
    for p in params:
        p.grad = p.detach() * 0.5 + 0.01
    opt = torch.optim.Adam(params, lr=1e-3)
    with torch.no_grad():
        return _median_ms(lambda: opt.step() or jnp.zeros(()), rounds, iters)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="two small shapes (a smoke run)")
    args = parser.parse_args()
    try:
        import torch
        torch.set_num_threads(os.cpu_count() or 1)
        torch_version = torch.__version__
    except ImportError:
        torch_version = None
    print(f"{datetime.date.today()}, {platform.machine()}, {os.cpu_count()} cores, jax "
          f"{jax.__version__}, torch {torch_version}; ms per update, median of {args.rounds} "
          f"rounds of {args.iters}\n")
    print("| parameters | torsh_fn.optim.adam | optax.adam | torch.optim.Adam | ns per number "
          "(torsh_fn) |")
    print("| --- | --- | --- | --- | --- |")
    rng = np.random.default_rng(0)
    cases = [(str(s), {"w": rng.standard_normal(s, np.float32)})
             for s in (QUICK_SHAPES if args.quick else SHAPES)]
    if not args.quick:
        net = models.get("resnet18", num_classes=10)
        cases.append(("ResNet-18 (all parameters)",
                      {name: np.asarray(p.data) for name, p in net.named_parameters()}))
    for label, arrays in cases:
        params = {k: jnp.asarray(v) for k, v in arrays.items()}
        ours = jax_update_ms(optim.adam(1e-3), params, args.rounds, args.iters)
        theirs = jax_update_ms(optax.adam(1e-3), params, args.rounds, args.iters)
        torch_ms = (torch_update_ms(list(arrays.values()), args.rounds, args.iters)
                    if torch_version else float("nan"))
        count = sum(v.size for v in arrays.values())
        print(f"| {label} | {ours:.3f} | {theirs:.3f} | {torch_ms:.3f} | "
              f"{ours * 1e6 / count:.2f} |", flush=True)


if __name__ == "__main__":
    main()
