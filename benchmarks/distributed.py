"""Data-parallel and fully sharded training on 1 and N devices: throughput, scaling, parity.

The work (issue 12): a PyTorch-face training step (forward, backward, optimizer) of a zoo model,
compiled by ``torsh_fn.jit``, run on one device without any wrapper, then on N devices under
``torsh_fn.distributed.DistributedDataParallel`` and ``FullyShardedDataParallel`` with the same
batch per device (weak scaling). Scaling efficiency = throughput on N / (N x throughput on 1).
DP's BatchNorm computes statistics over the global batch (SyncBatchNorm: equal to one device,
an all-reduce per statistic); mode ``dp_local`` computes them per device, as PyTorch's DDP does
(``DistributedDataParallel(..., sync_batchnorm=False)``).

- ``resnet50``: 224 x 224 images, 1000 classes, bfloat16 parameters and activations, SGD with
  momentum 0.9 and weight decay 1e-4.
- ``gpt``: the zoo's GPT-2 small (124M parameters), 1024 tokens, bfloat16, AdamW.
- ``mlp`` (tiny; for a quick run on simulated CPU devices).

The batch is made once and placed on the devices (``shard_batch``): the numbers are the step's
compute and communication, not input loading. Each configuration is warmed up (compilation), then
timed in rounds of ``--steps`` steps with the clock read after ``block_until_ready`` on the loss
and the parameters; the table shows the median round (and the best).

``--check`` first trains ``seed_cnn`` (8 x 8 digits-shaped inputs) and ``resnet18`` (32 x 32)
in float32 at the highest matmul precision for a few SGD-with-momentum steps on 1 device and
under DP and FSDP on N devices, and prints how far the N-device update is from the 1-device one.

Commands (from the repository root):

    PYTHONPATH=$PWD python benchmarks/distributed.py --check        # every GPU; resnet50 and gpt
    PYTHONPATH=$PWD python benchmarks/distributed.py --models --check   # parity only
    XLA_FLAGS=--xla_force_host_platform_device_count=8 JAX_PLATFORMS=cpu PYTHONPATH=$PWD \\
        python benchmarks/distributed.py --models mlp --check --check-models seed_cnn
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

import torsh_fn
import torsh_fn.nn.functional as F
from torsh_fn import distributed as dist
from torsh_fn import models, optim


@dataclass(frozen=True)
class Workload:
    """A model and how to make its batch, its loss and its optimizer."""

    build: Callable[[], torsh_fn.nn.Module]
    batch: Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]]
    loss: Callable[[jax.Array, jax.Array], jax.Array]
    optimizer: Callable[[object], optim.Optimizer]


def _images(side: int, channels: int, classes: int, dtype):
    def batch(rng: np.random.Generator, n: int):
        x = rng.standard_normal((n, channels, side, side), np.float32).astype(dtype)
        return x, rng.integers(0, classes, n).astype(np.int32)
    return batch


def _tokens(vocab: int, length: int):
    def batch(rng: np.random.Generator, n: int):
        idx = rng.integers(0, vocab, (n, length + 1)).astype(np.int32)
        return idx[:, :-1], idx[:, 1:]
    return batch


def _classification(logits, y):
    return F.cross_entropy(logits.astype(jnp.float32), y)


def _language_model(logits, y):
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).astype(jnp.float32),
                           y.reshape(-1))


def _sgd(params):
    return optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=1e-4)


def _adamw(params):
    return optim.AdamW(params, lr=3e-4, weight_decay=0.1)


BF16 = jnp.bfloat16
WORKLOADS = {
    "resnet50": Workload(lambda: models.get("resnet50").to(dtype=BF16), _images(224, 3, 1000, BF16),
                         _classification, _sgd),
    "gpt": Workload(lambda: models.get("gpt").to(dtype=BF16), _tokens(50257, 1024),
                    _language_model, _adamw),
    "mlp": Workload(lambda: models.get("mlp", in_features=64, hidden=(256, 256), num_classes=10),
                    lambda rng, n: (rng.standard_normal((n, 64), np.float32),
                                    rng.integers(0, 10, n).astype(np.int32)),
                    _classification, _sgd),
    # --check models: float32 so that 1 device and N devices can be compared to rounding.
    "seed_cnn": Workload(lambda: models.get("seed_cnn"), _images(8, 1, 10, np.float32),
                         _classification, _sgd),
    "resnet18": Workload(lambda: models.get("resnet18", num_classes=10),
                         _images(32, 3, 10, np.float32), _classification, _sgd),
}


def train_step(model, opt, x, y, loss_fn):
    opt.zero_grad()
    loss = torsh_fn.backward(lambda: loss_fn(model(x), y))
    opt.step()
    return loss


_STEP = torsh_fn.jit(train_step, static_argnums=(4,))


def _setup(work: Workload, mode: str, devices: list, batch: int, seed: int = 0):
    """The model (wrapped for ``mode``), its optimizer and a placed batch."""
    torsh_fn.manual_seed(seed)
    model = work.build()
    x, y = work.batch(np.random.default_rng(seed), batch)
    if mode == "single":
        model = model.to(devices[0])
        x, y = jax.device_put((x, y), devices[0])
    else:
        mesh = dist.make_mesh(data=len(devices), devices=devices)
        wrap = dist.FullyShardedDataParallel if mode == "fsdp" else dist.DistributedDataParallel
        # dp_local: PyTorch DDP's BatchNorm, statistics per device, no all-reduce
        model = wrap(model, mesh=mesh, sync_batchnorm=mode != "dp_local")
        x, y = dist.shard_batch((x, y), mesh)
    return model, work.optimizer(model.parameters()), x, y


def _sync(model, loss):
    jax.block_until_ready((loss, [p.data for p in model.parameters()]))


def _param_bytes_per_device(model) -> int:
    """Bytes of parameters that live on the first device (all of them unless sharded)."""
    total = 0
    for p in model.parameters():
        shard = p.data.addressable_shards[0].data
        total += shard.size * shard.dtype.itemsize
    return total


def _peak_bytes(device) -> int | None:
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    return None if not stats else stats.get("peak_bytes_in_use")


def throughput(name: str, mode: str, devices: list, batch_per_device: int, steps: int,
               rounds: int, warmup: int, profile_dir: str | None = None) -> dict:
    work = WORKLOADS[name]
    batch = batch_per_device * len(devices)
    model, opt, x, y = _setup(work, mode, devices, batch)
    start = time.perf_counter()
    for _ in range(warmup):
        loss = _STEP(model, opt, x, y, work.loss)
    _sync(model, loss)
    warm_s = time.perf_counter() - start
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(steps):
            loss = _STEP(model, opt, x, y, work.loss)
        _sync(model, loss)
        times.append((time.perf_counter() - start) / steps)
    if not np.isfinite(float(loss)):
        raise RuntimeError(f"{name} {mode}: loss is {float(loss)}")
    if profile_dir is not None:  # a few more steps under the profiler, after the timing
        with jax.profiler.trace(f"{profile_dir}/{name}_{mode}", create_perfetto_trace=True):
            for _ in range(3):
                loss = _STEP(model, opt, x, y, work.loss)
            _sync(model, loss)
    median = statistics.median(times)
    return {"model": name, "mode": mode, "n": len(devices), "batch": batch,
            "step_ms": median * 1e3, "best_ms": min(times) * 1e3,
            "throughput": batch / median, "warmup_s": warm_s, "loss": float(loss),
            "param_mib_dev0": _param_bytes_per_device(model) / 2**20,
            "peak_gib_dev0": (_peak_bytes(devices[0]) or 0) / 2**30}


def parity(name: str, devices: list, steps: int = 3, batch_per_device: int = 8) -> dict:
    """How far DP and FSDP on ``devices`` land from 1 device after ``steps`` SGD steps.

    Measured on the update, not the parameters: ``|Δ_N - Δ_1| / |Δ_1|`` over every parameter
    and buffer (Δ = final - initial state, norms over the whole model), so a wrong gradient
    (say, summed instead of averaged) shows as O(1) while rounding shows as ~1e-6. The learning
    rate is small (0.005, momentum 0.9) so that float32 rounding is not amplified by chaotic
    training dynamics into an O(1e-2) difference (lr 0.05 does that for ResNet-18 in 3 steps).
    """
    work = dataclasses.replace(WORKLOADS[name],
                               optimizer=lambda p: optim.SGD(p, lr=0.005, momentum=0.9))
    batch = batch_per_device * len(devices)
    deltas = {}
    with jax.default_matmul_precision("highest"):
        for mode in ("single", "dp", "fsdp"):
            model, opt, x, y = _setup(work, mode, devices if mode != "single" else devices[:1],
                                      batch, seed=1)
            inner = model.module if mode != "single" else model
            initial = _host_state(inner)
            for _ in range(steps):
                _STEP(model, opt, x, y, work.loss)
            deltas[mode] = {k: v - initial[k] for k, v in _host_state(inner).items()}
    ref = deltas["single"]
    norm = np.sqrt(sum(np.sum(d**2) for d in ref.values()))
    out = {"model": name, "n": len(devices)}
    for mode in ("dp", "fsdp"):
        out[mode] = np.sqrt(sum(np.sum((deltas[mode][k] - d) ** 2) for k, d in ref.items())) / norm
    return out


def _host_state(module) -> dict[str, np.ndarray]:
    return {k: np.asarray(jax.device_get(v), np.float64) for k, v in module.state_dict().items()
            if jnp.issubdtype(v.dtype, jnp.floating)}


def _header(devices: list) -> str:
    d = devices[0]
    import optax
    return (f"# distributed benchmark, {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC\n"
            f"devices: {len(devices)} x {d.device_kind} ({d.platform}); host {platform.node()}; "
            f"python {platform.python_version()}; jax {jax.__version__}; optax {optax.__version__}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="*", default=["resnet50", "gpt"],
                        choices=["resnet50", "gpt", "mlp"], help="none: only --check")
    parser.add_argument("--devices", type=int, default=None,
                        help="N (default: every device JAX sees)")
    parser.add_argument("--batch-per-device", type=int, nargs="+", default=None,
                        help="one per model (defaults: resnet50 128, gpt 8, mlp 64)")
    parser.add_argument("--modes", nargs="+", default=["dp", "fsdp"],
                        choices=["dp", "dp_local", "fsdp"],
                        help="dp_local: DP with per-device BatchNorm statistics (PyTorch's DDP)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--check", action="store_true", help="parameter parity first")
    parser.add_argument("--profile", metavar="DIR", default=None,
                        help="trace 3 more steps of each configuration into DIR/<model>_<mode> "
                             "(summarise with benchmarks/trace_summary.py)")
    parser.add_argument("--check-models", nargs="+", default=["seed_cnn", "resnet18"],
                        choices=["seed_cnn", "resnet18"])
    args = parser.parse_args(argv)
    devices = jax.devices()[: args.devices] if args.devices else jax.devices()
    if args.devices and args.devices > len(jax.devices()):
        parser.error(f"--devices {args.devices}: only {len(jax.devices())} devices here")
    defaults = {"resnet50": 128, "gpt": 8, "mlp": 64}
    per_device = args.batch_per_device or [defaults[m] for m in args.models]
    if len(per_device) != len(args.models):
        parser.error("--batch-per-device: give one value per model")
    print(_header(devices), flush=True)

    if args.check:
        print("\nparity with 1 device: |update_N - update_1| / |update_1| after 3 SGD steps "
              "(float32, highest matmul precision):")
        print("| model | N | DP | FSDP |\n| --- | --- | --- | --- |")
        for name in args.check_models:
            r = parity(name, devices)
            print(f"| {name} | {r['n']} | {r['dp']:.2e} | {r['fsdp']:.2e} |", flush=True)

    rows = []
    for name, bpd in zip(args.models, per_device, strict=True):
        single = throughput(name, "single", devices[:1], bpd, args.steps, args.rounds,
                            args.warmup, args.profile)
        rows.append(single)
        print(f"  {name} single: {single['step_ms']:.2f} ms/step", file=sys.stderr, flush=True)
        for mode in args.modes:
            r = throughput(name, mode, devices, bpd, args.steps, args.rounds, args.warmup,
                           args.profile)
            r["efficiency"] = r["throughput"] / (len(devices) * single["throughput"])
            rows.append(r)
            print(f"  {name} {mode}: {r['step_ms']:.2f} ms/step", file=sys.stderr, flush=True)

    if not rows:
        return 0
    print(f"\nthroughput (batch per device {dict(zip(args.models, per_device, strict=True))}; "
          f"median of {args.rounds} rounds of {args.steps} steps):")
    print("| model | mode | N | global batch | ms/step (median) | ms/step (best) | "
          "samples/s | scaling efficiency | param MiB on device 0 | peak GiB device 0 | "
          "compile+warm-up s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        eff = f"{r['efficiency']:.1%}" if "efficiency" in r else "(baseline)"
        print(f"| {r['model']} | {r['mode']} | {r['n']} | {r['batch']} | {r['step_ms']:.2f} | "
              f"{r['best_ms']:.2f} | {r['throughput']:,.0f} | {eff} | "
              f"{r['param_mib_dev0']:.1f} | {r['peak_gib_dev0']:.2f} | {r['warmup_s']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
