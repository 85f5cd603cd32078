"""Train a small AlexNet-style CNN on the 8x8 digits with the PyTorch face.

The network is conv-BatchNorm-ReLU blocks with max pooling, adaptive average pooling (so any image
side works) and a Dropout-regularised classifier, written exactly as in PyTorch. The training step
(forward, backward, AdamW update, BatchNorm running statistics, the Dropout random state) is one
XLA program compiled by ``torsh_fn.jit``; ``model.train()``/``model.eval()`` switch BatchNorm and
Dropout as in PyTorch (and select a separately compiled program). With ``--out DIR`` the weights
are saved as safetensors, loaded into a fresh model, and evaluated again.

    python examples/cnn_training.py --epochs 8
    python examples/cnn_training.py --epochs 2 --width 16 --out runs/cnn
"""

from __future__ import annotations

import argparse
import os

import numpy as np

import torsh_fn
from torsh_fn import nn, optim
from torsh_fn.data import DataLoader, TensorDataset, digits
from torsh_fn.nn import functional as F


class CNN(nn.Module):
    """(N, C, H, W) images -> (N, classes) logits, for any H, W >= 2."""

    def __init__(self, in_channels: int = 1, classes: int = 10, width: int = 32,
                 dropout: float = 0.25) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU())
        self.avgpool = nn.AdaptiveAvgPool2d(2)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(2 * width * 4, 4 * width), nn.ReLU(),
            nn.Dropout(dropout), nn.Linear(4 * width, classes))

    def forward(self, x):
        return self.classifier(self.avgpool(self.features(x)))


@torsh_fn.jit
def train_step(model, optimizer, x, y):
    optimizer.zero_grad()
    loss = torsh_fn.backward(lambda: F.cross_entropy(model(x), y))
    optimizer.step()
    return loss


@torsh_fn.jit
def accuracy(model, x, y):
    return (model(x).argmax(-1) == y).mean()


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def probability(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=positive_int, default=8)
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument("--width", type=positive_int, default=32, help="channels of conv 1")
    parser.add_argument("--dropout", type=probability, default=0.25)
    parser.add_argument("--lr", type=positive_float, default=3e-3, help="peak learning rate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="save the weights to DIR/cnn.safetensors")
    args = parser.parse_args(argv)

    torsh_fn.manual_seed(args.seed)
    ds = digits()
    order = np.random.default_rng(args.seed).permutation(len(ds.data))
    x = ds.data[order][:, None].astype(np.float32)  # (N, 1, 8, 8)
    y = np.asarray(ds.targets)[order]
    cut = int(0.8 * len(x))
    if args.batch_size > cut:
        parser.error(f"--batch-size must be at most the {cut} training samples, "
                     f"got {args.batch_size}")
    loader = DataLoader(TensorDataset(x[:cut], y[:cut]), batch_size=args.batch_size,
                        shuffle=True, drop_last=True,
                        generator=torsh_fn.Generator().manual_seed(args.seed))

    model = CNN(width=args.width, dropout=args.dropout)
    print(model)
    print(f"{sum(p.numel() for p in model.parameters()):,} parameters")
    optimizer = optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    scheduler = optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, epochs=args.epochs,
                                              steps_per_epoch=len(loader))
    for epoch in range(1, args.epochs + 1):
        model.train()
        losses = []
        for xb, yb in loader:
            losses.append(float(train_step(model, optimizer, xb, yb)))
            scheduler.step()  # outside the jitted step: the lr goes in as a number, no recompile
        model.eval()
        acc = float(accuracy(model, x[cut:], y[cut:]))
        print(f"epoch {epoch}: loss {np.mean(losses):.4f}, validation accuracy {acc:.2%}")
    print(f"validation accuracy: {acc:.4f}")

    if args.out:
        os.makedirs(args.out, exist_ok=True)
        path = os.path.join(args.out, "cnn.safetensors")
        torsh_fn.save(model.state_dict(), path)
        restored = CNN(width=args.width, dropout=args.dropout)
        restored.load_state_dict(torsh_fn.load(path))
        restored.eval()
        print(f"saved {path}; reloaded validation accuracy: "
              f"{float(accuracy(restored, x[cut:], y[cut:])):.4f}")
    return acc


if __name__ == "__main__":
    main()
