"""Train an MLP on the 8x8 digits with the PyTorch face: nn.Module, optim, DataLoader.

The loop reads like PyTorch's; the step (forward, backward, optimizer update) is compiled into one
XLA program by ``torsh_fn.jit``, which takes the model and optimizer as arguments and writes their
new state back. ``torsh_fn.backward(closure)`` stands where PyTorch has ``loss.backward()``.

    python examples/neural_network_training.py --epochs 20
    python examples/neural_network_training.py --epochs 5 --hidden 64 --lr 3e-3
"""

from __future__ import annotations

import argparse

import numpy as np

import torsh_fn
from torsh_fn import nn, optim
from torsh_fn.data import DataLoader, TensorDataset, digits
from torsh_fn.nn import functional as F


class MLP(nn.Module):
    def __init__(self, hidden: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(),
                                 nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 10))

    def forward(self, x):
        return self.net(x)


@torsh_fn.jit
def train_step(model, optimizer, x, y):
    optimizer.zero_grad()
    loss = torsh_fn.backward(lambda: F.cross_entropy(model(x), y))  # loss.backward() in PyTorch
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


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=positive_int, default=20)
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument("--hidden", type=positive_int, default=256, help="hidden layer width")
    parser.add_argument("--lr", type=positive_float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torsh_fn.manual_seed(args.seed)
    ds = digits()
    order = np.random.default_rng(args.seed).permutation(len(ds.data))
    x, y = ds.data[order].astype(np.float32), np.asarray(ds.targets)[order]
    cut = int(0.8 * len(x))
    if args.batch_size > cut:
        parser.error(f"--batch-size must be at most the {cut} training samples, "
                     f"got {args.batch_size}")
    loader = DataLoader(TensorDataset(x[:cut], y[:cut]), batch_size=args.batch_size,
                        shuffle=True, drop_last=True,
                        generator=torsh_fn.Generator().manual_seed(args.seed))
    model = MLP(args.hidden)
    optimizer = optim.Adam(model.parameters(), lr=args.lr)
    scheduler = optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    for epoch in range(1, args.epochs + 1):
        model.train()
        losses = [float(train_step(model, optimizer, xb, yb)) for xb, yb in loader]
        scheduler.step()
        model.eval()
        acc = float(accuracy(model, x[cut:], y[cut:]))
        print(f"epoch {epoch}: loss {np.mean(losses):.4f}, validation accuracy {acc:.2%}")
    print(f"validation accuracy: {acc:.4f}")
    return acc


if __name__ == "__main__":
    main()
