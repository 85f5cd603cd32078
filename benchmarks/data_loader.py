"""DataLoader benchmark: worker speed-up on a Python-heavy dataset, and device prefetch in a
training loop, in one run on this machine.

    PYTHONPATH=$PWD python benchmarks/data_loader.py            # both tables (about a minute)
    PYTHONPATH=$PWD python benchmarks/data_loader.py --only prefetch --hidden 8192   # on a GPU
    PYTHONPATH=$PWD python benchmarks/data_loader.py --only prefetch --model cnn --width 256

1. Throughput of a dataset whose ``__getitem__`` is ~1 ms of pure-Python work, batch 32, with 0
   and 2 workers (persistent; the first epoch, which starts the workers, is timed apart), beside
   PyTorch's DataLoader on the same dataset.
2. Milliseconds per training step (jitted, Adam; ``--model mlp``: 784-512-512-10 MLP, batch 256;
   ``--model cnn``: four 3x3 convolutions on 3x32x32 images) when the batches are already on the
   device, when they come from a DataLoader through ``prefetch_to_device`` (loading in a
   background thread, and in the calling thread), and when they come from a DataLoader with a
   synchronous ``jax.device_put`` in the loop. The loop never waits for the device (JAX's
   asynchronous dispatch), so the host's work per step is hidden only while it is shorter than
   the device's.
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

from torsh_fn.data import DataLoader, Dataset, TensorDataset, prefetch_to_device


def busy(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


class Busy(Dataset):
    """``__getitem__`` costs ``loops`` iterations of a Python loop (calibrated to ~1 ms)."""

    def __init__(self, n: int, loops: int) -> None:
        self.n = n
        self.loops = loops

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return np.full(16, busy(self.loops), np.float32), i


def calibrate(ms: float) -> int:
    loops = 10_000
    start = time.perf_counter()
    busy(loops)
    per_loop = (time.perf_counter() - start) / loops
    return max(1, int(ms / 1e3 / per_loop))


def ceiling(loops: int, items: int) -> float:
    """How much faster 2 processes do ``items`` busy items than 1 does, right now: the most
    any 2-worker loader could gain on this machine under its current load."""
    import multiprocessing

    start = time.perf_counter()
    for _ in range(items):
        busy(loops)
    serial = time.perf_counter() - start
    with multiprocessing.get_context("forkserver").Pool(2) as pool:
        pool.map(busy, [1] * 2)  # start the processes before timing
        start = time.perf_counter()
        pool.map(busy, [loops] * items, chunksize=items // 8)
        return serial / (time.perf_counter() - start)


def epoch_seconds(loader, epochs: int) -> tuple[float, float]:
    """(first epoch, median of the next ``epochs``) in seconds."""
    times = []
    for _ in range(epochs + 1):
        start = time.perf_counter()
        for _ in loader:
            pass
        times.append(time.perf_counter() - start)
    return times[0], statistics.median(times[1:])


def worker_table(args: argparse.Namespace) -> list[str]:
    loops = calibrate(args.work_ms)
    ds = Busy(args.samples, loops)
    start = time.perf_counter()
    for i in range(200):
        ds[i]
    item_ms = (time.perf_counter() - start) / 200 * 1e3
    rows = [f"`__getitem__` measured at {item_ms:.2f} ms; {args.samples} samples, batch 32. "
            f"Ceiling now (2 bare processes vs 1 on the same work): "
            f"{ceiling(loops, args.samples // 2):.2f}x.", "",
            "| loader | workers | first epoch s | steady epoch s | samples/s | vs 0 workers |",
            "| --- | --- | --- | --- | --- | --- |"]
    loaders = []
    try:  # first, before JAX starts its threads: PyTorch's workers fork
        import torch.utils.data

        loaders += [("PyTorch", w, torch.utils.data.DataLoader(
            ds, batch_size=32, num_workers=w, persistent_workers=w > 0)) for w in (0, 2)]
    except ImportError:
        pass
    loaders += [("torsh_fn", w, DataLoader(ds, batch_size=32, num_workers=w,
                                           persistent_workers=w > 0)) for w in (0, 2)]
    base = {}
    for name, w, loader in loaders:
        first, steady = epoch_seconds(loader, args.epochs)
        base.setdefault(name, steady)
        rows.append(f"| {name} | {w} | {first:.2f} | {steady:.2f} | {args.samples / steady:.0f} "
                    f"| {base[name] / steady:.2f}x |")
    return rows


def adam_step(loss, params):
    """(jitted step(params, state, x, y) -> (params, state) by Adam on ``loss``, params, state)."""
    opt = optax.adam(1e-3)

    @jax.jit
    def step(params, state, x, y):
        grads = jax.grad(loss)(params, x, y)
        updates, state = opt.update(grads, state)
        return optax.apply_updates(params, updates), state

    return step, params, opt.init(params)


def mlp_step(hidden: int):
    sizes = [784, hidden, hidden, 10]
    keys = jax.random.split(jax.random.key(0), len(sizes))
    params = [(jax.random.normal(k, (a, b)) * (2 / a) ** 0.5, jnp.zeros(b))
              for k, a, b in zip(keys, sizes[:-1], sizes[1:])]
    def loss(params, x, y):
        for w, b in params[:-1]:
            x = jax.nn.relu(x @ w + b)
        w, b = params[-1]
        return optax.softmax_cross_entropy_with_integer_labels(x @ w + b, y).mean()

    return adam_step(loss, params)


def cnn_step(width: int):
    """A training step of a 4-conv network on 3x32x32 images (NCHW): 3x3 convolutions to
    ``width``, 2, 4 and 8 x ``width`` channels (stride 2 after the first), ReLU, global average
    pool, a linear layer to 10 classes; Adam."""
    channels = [3, width, 2 * width, 4 * width, 8 * width]
    keys = jax.random.split(jax.random.key(0), len(channels))
    params = [(jax.random.normal(k, (b, a, 3, 3)) * (2 / (9 * a)) ** 0.5, jnp.zeros(b))
              for k, a, b in zip(keys, channels[:-1], channels[1:])]
    params.append((jax.random.normal(keys[-1], (channels[-1], 10)) * channels[-1] ** -0.5,
                   jnp.zeros(10)))
    def loss(params, x, y):
        for i, (w, b) in enumerate(params[:-1]):
            stride = (1, 1) if i == 0 else (2, 2)
            x = jax.lax.conv_general_dilated(x, w, stride, "SAME",
                                             dimension_numbers=("NCHW", "OIHW", "NCHW"))
            x = jax.nn.relu(x + b[:, None, None])
        w, b = params[-1]
        return optax.softmax_cross_entropy_with_integer_labels(x.mean((2, 3)) @ w + b, y).mean()

    return adam_step(loss, params)


STEPS = {"mlp": (mlp_step, (784,)), "cnn": (cnn_step, (3, 32, 32))}  # builder, sample shape


def step_ms(step, params, state, batches, steps: int) -> float:
    params, state = step(params, state, *next(iter(batches())))  # compile
    jax.block_until_ready(params)
    done = 0
    start = time.perf_counter()
    while done < steps:
        for x, y in batches():
            params, state = step(params, state, x, y)
            done += 1
            if done == steps:
                break
    jax.block_until_ready(params)
    return (time.perf_counter() - start) / steps * 1e3


def prefetch_table(args: argparse.Namespace) -> list[str]:
    build, sample_shape = STEPS[args.model]
    size = args.width if args.model == "cnn" else args.hidden
    rng = np.random.default_rng(0)
    n = args.batch * 40
    x = rng.standard_normal((n, *sample_shape), dtype=np.float32)
    y = rng.integers(0, 10, n)
    loader = DataLoader(TensorDataset(x, y), batch_size=args.batch, shuffle=True, drop_last=True,
                        num_workers=args.loader_workers, persistent_workers=args.loader_workers > 0)
    resident = [jax.device_put(b) for b in loader]
    variants = {
        "data already on the device": lambda: resident,
        "DataLoader + prefetch_to_device (background thread)": lambda: prefetch_to_device(
            loader, size=2, thread=True),
        "DataLoader + prefetch_to_device (calling thread)": lambda: prefetch_to_device(
            loader, size=2, thread=False),
        "DataLoader + device_put in the loop": lambda: (jax.device_put(b) for b in loader),
    }
    step, params, state = build(size)
    samples: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(args.reps):  # interleaved, so that load from elsewhere hits all alike
        for name, batches in variants.items():
            samples[name].append(step_ms(step, params, state, batches, args.steps))
    base = statistics.median(samples["data already on the device"])
    start = time.perf_counter()
    for _ in loader:
        pass
    host_ms = (time.perf_counter() - start) / len(loader) * 1e3
    model = (f"MLP 784-{size}-{size}-10" if args.model == "mlp" else
             f"CNN 3x32x32, {size}-{2 * size}-{4 * size}-{8 * size} channels")
    batch_mb = x[:args.batch].nbytes / 2**20
    rows = [f"{model}, Adam, float32, batch {args.batch} ({batch_mb:.1f} MiB of inputs), "
            f"{args.steps} steps x {args.reps} reps (median). The DataLoader "
            f"({args.loader_workers} workers) alone (shuffled gather, no step, no copy): "
            f"{host_ms:.2f} ms per batch.", "",
            "| batches from | ms / step | vs on device |", "| --- | --- | --- |"]
    for name, times in samples.items():
        ms = statistics.median(times)
        rows.append(f"| {name} | {ms:.2f} | {ms / base:.3f}x |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=1024)
    parser.add_argument("--work-ms", type=float, default=1.0)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--model", choices=sorted(STEPS), default="mlp",
                        help="the training step of the prefetch table")
    parser.add_argument("--hidden", type=int, default=512, help="MLP width of the step")
    parser.add_argument("--width", type=int, default=64, help="CNN's first channel count")
    parser.add_argument("--batch", type=int, default=256, help="batch of the prefetch table")
    parser.add_argument("--loader-workers", type=int, default=0, help="loader workers")
    parser.add_argument("--only", choices=["workers", "prefetch"], help="run one table")
    args = parser.parse_args()
    print(f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, jax {jax.__version__}\n")
    if args.only != "prefetch":
        print("\n".join(worker_table(args)), "\n")
    if args.only != "workers":
        print("\n".join(prefetch_table(args)))
    print(f"\nJAX device: {jax.devices()[0]}; load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
