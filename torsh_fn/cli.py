"""The ``torsh-fn`` command (also ``python -m torsh_fn``).

    torsh-fn train [--model seed_cnn] [--dataset digits] [--epochs 15] [--out runs/digits] ...
    torsh-fn info      versions, devices, kernel dispatch table
    torsh-fn bench     a short table of timings against PyTorch (when installed)

``train`` shows a progress bar (step, loss, throughput, ETA), prints the validation accuracy of
each epoch, writes ``checkpoint_epoch<e>.safetensors`` per epoch, and at the end
``model.safetensors`` (the weights), ``metrics.json`` and ``metrics.png`` (loss and accuracy
curves) into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["main"]

DATASETS = ("digits", "mnist-dir", "cifar10-dir", "synthetic")
CLASSIFIERS = ("mlp", "lenet5", "seed_cnn", "resnet18", "resnet34", "resnet50", "vgg11",
               "vit_tiny")
OPTIMIZERS = ("adamw", "adam", "sgd")
_KERNEL_OPS = ("softmax", "log_softmax", "layer_norm", "rms_norm", "cross_entropy", "batch_norm",
               "max_pool", "avg_pool", "attention")
_MIN_SIDE = {"lenet5": 28, "vgg11": 32}  # images are resized up to this side for the model


def _split(x: np.ndarray, y: np.ndarray, seed: int, val_fraction: float) -> tuple[Any, ...]:
    order = np.random.default_rng(seed).permutation(len(x))
    cut = len(x) - round(val_fraction * len(x))
    return (x[order[:cut]], y[order[:cut]]), (x[order[cut:]], y[order[cut:]])


def _images(ds: Any) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(ds.data, np.float32) / 255.0
    x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x), np.asarray(ds.targets, np.int64)


def _synthetic(seed: int, n: int = 2000, classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Noisy copies of one random 1x8x8 pattern per class: learnable in a few epochs."""
    rng = np.random.default_rng(seed)
    patterns = rng.random((classes, 1, 8, 8), np.float32)
    y = rng.integers(0, classes, n)
    return patterns[y] + 0.3 * rng.standard_normal((n, 1, 8, 8), np.float32), y.astype(np.int64)


def load_dataset(name: str, root: str | None, seed: int,
                 val_fraction: float = 0.2) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """``(x_train, y_train), (x_val, y_val)``: float32 ``(N, C, H, W)`` images, int64 labels.

    ``digits`` and ``synthetic`` are split ``1 - val_fraction`` / ``val_fraction`` by ``seed``;
    ``mnist-dir`` and ``cifar10-dir`` read ``root`` and validate on their test sets.
    """
    from . import data

    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid datasets: {list(DATASETS)}")
    if name in ("mnist-dir", "cifar10-dir"):
        if root is None:
            raise ValueError(f"dataset {name!r} needs --data-root, the folder of its files")
        kind = data.MNIST if name == "mnist-dir" else data.CIFAR10
        return _images(kind(root, train=True)), _images(kind(root, train=False))
    if name == "digits":
        ds = data.digits()
        x, y = ds.data[:, None].astype(np.float32), np.asarray(ds.targets, np.int64)
    else:
        x, y = _synthetic(seed)
    return _split(x, y, seed, val_fraction)


def resize_images(x: np.ndarray, side: int) -> np.ndarray:
    """Images ``(N, C, H, W)`` resized (bilinear) up to ``side x side``; larger ones unchanged."""
    import jax

    if x.shape[-1] >= side:
        return x
    return np.asarray(jax.image.resize(x, (*x.shape[:2], side, side), "bilinear"))


def build_model(name: str, shape: tuple[int, ...], num_classes: int) -> Any:
    """The zoo classifier ``name`` sized for images of ``shape`` ``(C, H, W)``."""
    from . import models

    if name not in CLASSIFIERS:
        raise ValueError(f"unknown model {name!r} for train; valid models: {list(CLASSIFIERS)}")
    c, h, _ = shape
    if name == "mlp":
        return models.get(name, in_features=int(np.prod(shape)), num_classes=num_classes)
    if name == "vit_tiny":
        return models.get(name, image_size=h, patch_size=h // 8 if h % 8 == 0 else 1,
                          in_channels=c, num_classes=num_classes)
    return models.get(name, in_channels=c, num_classes=num_classes)


def _optimizer(name: str, params: Any, lr: float, weight_decay: float) -> Any:
    from . import optim

    if name == "adamw":
        return optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "adam":
        return optim.Adam(params, lr=lr, weight_decay=weight_decay)
    return optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)


def plot_history(history: list[dict[str, Any]], path: Path) -> None:
    """Loss (train and validation) and validation accuracy by epoch, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    left.plot(epochs, [h["train_loss"] for h in history], "o-", label="train")
    left.plot(epochs, [h["val_loss"] for h in history], "o-", label="validation")
    left.set(xlabel="epoch", ylabel="cross-entropy", title="loss", yscale="log")
    left.legend()
    right.plot(epochs, [100 * h["val_accuracy"] for h in history], "o-", color="C2")
    right.set(xlabel="epoch", ylabel="%", title="validation accuracy")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def train(args: argparse.Namespace) -> dict[str, Any]:
    """The ``train`` command; returns what it writes to ``metrics.json``."""
    import torsh_fn

    from . import optim, training

    started = time.perf_counter()
    if args.optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {args.optimizer!r}; valid: {list(OPTIMIZERS)}")
    if args.model not in CLASSIFIERS:
        raise ValueError(f"unknown model {args.model!r} for train; valid models: "
                         f"{list(CLASSIFIERS)}")
    train_data, val_data = load_dataset(args.dataset, args.data_root, args.seed)
    side = _MIN_SIDE.get(args.model, 0)
    train_data, val_data = ((resize_images(x, side), y) for x, y in (train_data, val_data))
    num_classes = int(max(train_data[1].max(), val_data[1].max())) + 1
    torsh_fn.manual_seed(args.seed)
    model = build_model(args.model, train_data[0].shape[1:], num_classes)
    optimizer = _optimizer(args.optimizer, model.parameters(), args.lr, args.weight_decay)
    scheduler = optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    config = {k: v for k, v in vars(args).items() if k != "func"}
    print(f"torsh-fn train: {args.model} on {args.dataset} ({len(train_data[0])} train, "
          f"{len(val_data[0])} validation, {num_classes} classes), {args.epochs} epochs -> {out}")
    history = training.fit(model, optimizer, train_data, val_data, epochs=args.epochs,
                           batch_size=args.batch_size, scheduler=scheduler, seed=args.seed,
                           out=out, resume=args.resume, extra={"config": config},
                           progress=not args.no_progress)
    torsh_fn.save(model.state_dict(), out / "model.safetensors")
    metrics = {"model": args.model, "dataset": args.dataset, "config": config,
               "history": history, "final": history[-1] if history else None,
               "seconds": time.perf_counter() - started}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    if history:
        plot_history(history, out / "metrics.png")
        print(f"done in {metrics['seconds']:.1f} s: validation accuracy "
              f"{history[-1]['val_accuracy']:.2%}; wrote {out}/metrics.json, metrics.png, "
              f"model.safetensors and one checkpoint per epoch")
    return metrics


def info(args: argparse.Namespace) -> dict[str, Any]:
    """The ``info`` command: versions, devices, the kernel dispatch table."""
    import jax

    import torsh_fn

    from . import kernels
    from .kernels import _dispatch

    versions = {"torsh_fn": torsh_fn.__version__, "python": platform.python_version()}
    for name in ("jax", "jaxlib", "numpy", "optax", "torch"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            versions[name] = "not installed"
    devices = [f"{d.platform}:{d.id} {d.device_kind}" for d in jax.devices()]
    forced = kernels.get_default_impl()
    table = {op: {dtype: forced if forced != "auto" else
                  ("pallas" if _dispatch.measured_faster(op, dtype, 4096) else "xla")
                  for dtype in ("float32", "bfloat16")} for op in _KERNEL_OPS}
    for name, version in versions.items():
        print(f"{name:<10} {version}")
    print(f"{'devices':<10} {', '.join(devices)}")
    print(f"kernel dispatch on {jax.default_backend()} (impl='auto' at size 4096; "
          f"default impl {forced!r}):")
    print(f"  {'op':<14} {'float32':<8} bfloat16")
    for op, row in table.items():
        print(f"  {op:<14} {row['float32']:<8} {row['bfloat16']}")
    return {"versions": versions, "devices": devices, "dispatch": table}


def bench(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The ``bench`` command: matmul, element-wise and a training step, vs PyTorch."""
    from . import _bench

    rows = _bench.run(size=args.size, repeats=args.repeats)
    print(_bench.table(rows))
    return rows


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="torsh-fn", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a zoo classifier with progress, checkpoints, metrics")
    t.add_argument("--model", default="seed_cnn", help=f"one of {', '.join(CLASSIFIERS)}")
    t.add_argument("--dataset", default="digits", help=f"one of {', '.join(DATASETS)}")
    t.add_argument("--data-root", default=None, help="folder of mnist-dir/cifar10-dir files")
    t.add_argument("--epochs", type=int, default=15)
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--lr", type=float, default=3e-3)
    t.add_argument("--weight-decay", type=float, default=1e-4)
    t.add_argument("--optimizer", default="adamw", help=f"one of {', '.join(OPTIMIZERS)}")
    t.add_argument("--out", default="runs/train")
    t.add_argument("--resume", default=None, help="a checkpoint_epoch<e>.safetensors to continue")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.set_defaults(func=train)
    i = sub.add_parser("info", help="versions, devices, kernel dispatch table")
    i.set_defaults(func=info)
    b = sub.add_parser("bench", help="a short benchmark table against PyTorch")
    b.add_argument("--size", type=int, default=1024, help="matrix side / vector length in Ki")
    b.add_argument("--repeats", type=int, default=10)
    b.set_defaults(func=bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``torsh-fn`` with ``argv`` (default ``sys.argv[1:]``); bad input exits with status 2
    and a one-line message."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError, ImportError) as err:
        parser.exit(2, f"torsh-fn {args.command}: error: {err}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
