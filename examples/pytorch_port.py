"""A PyTorch training script and its torsh_fn port, side by side, trained in lockstep.

``pytorch_version`` is a plain PyTorch program: a small CNN with BatchNorm, SGD with momentum, the
usual ``zero_grad / backward / step`` loop. ``torsh_fn_version`` is the same program ported: the
class body is unchanged but for its imports and ``torch.flatten``, ``loss.backward()`` becomes
``torsh_fn.backward(closure)``, and ``@torsh_fn.jit`` compiles the step into one XLA program.
The port starts from the PyTorch model's initial weights (``load_state_dict`` takes the torch
``state_dict`` as it is), both train on the same digit batches, and the script prints the two
losses step by step, then compares the final weights, BatchNorm statistics and eval-mode outputs.
It exits with status 1 if they differ by more than ``--tolerance``. Without PyTorch installed the
torsh_fn half runs alone from its own initialisation.

    python examples/pytorch_port.py
    python examples/pytorch_port.py --steps 50 --lr 0.05
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from torsh_fn.data import digits


def pytorch_version(batches, val_x, lr: float, seed: int):
    """The original: returns (losses, the initial state_dict, the final model, eval logits)."""
    import torch
    from torch import nn, optim

    class Net(nn.Module):
        def __init__(self, classes=10):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU())
            self.head = nn.Linear(32 * 4 * 4, classes)

        def forward(self, x):
            return self.head(torch.flatten(self.features(x), 1))

    def train_step(model, optimizer, x, y):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        return loss

    torch.manual_seed(seed)
    model = Net()
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    model.train()
    losses = [train_step(model, optimizer, torch.from_numpy(x), torch.from_numpy(y)).item()
              for x, y in batches]
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(val_x)).numpy()
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    return losses, initial, state, logits


def torsh_fn_version(batches, val_x, lr: float, seed: int, initial=None):
    """The port: returns (losses, the final state_dict, eval logits)."""
    import torsh_fn  # was: import torch
    from torsh_fn import nn, optim  # was: from torch import nn, optim

    class Net(nn.Module):
        def __init__(self, classes=10):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU())
            self.head = nn.Linear(32 * 4 * 4, classes)

        def forward(self, x):
            return self.head(torsh_fn.flatten(self.features(x), 1))  # was: torch.flatten

    @torsh_fn.jit  # new: forward, backward and update in one XLA program
    def train_step(model, optimizer, x, y):
        optimizer.zero_grad()
        loss = torsh_fn.backward(lambda: nn.functional.cross_entropy(model(x), y))
        optimizer.step()  # was: loss = ...; loss.backward()
        return loss

    torsh_fn.manual_seed(seed)
    model = Net()
    if initial is not None:
        model.load_state_dict(initial)  # the torch state_dict, torch tensors as they are
    optimizer = optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    model.train()
    losses = [float(train_step(model, optimizer, x, y)) for x, y in batches]  # was: .item()
    model.eval()
    logits = np.asarray(model(val_x))  # no torch.no_grad() needed
    state = {k: np.asarray(v) for k, v in model.state_dict().items()}
    return losses, state, logits


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


def main(argv: list[str] | None = None) -> bool:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=positive_int, default=20)
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument("--lr", type=positive_float, default=0.02)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tolerance", type=positive_float, default=1e-4,
                        help="largest relative difference accepted between the two runs")
    args = parser.parse_args(argv)

    ds = digits()
    x = ds.data[:, None].astype(np.float32)  # (N, 1, 8, 8)
    y = np.asarray(ds.targets, np.int64)
    if args.steps * args.batch_size > len(x) - 200:
        parser.error(f"--steps x --batch-size must be at most {len(x) - 200} (the digits but "
                     f"200 held out), got {args.steps} x {args.batch_size}")
    order = np.random.default_rng(args.seed).permutation(len(x))
    x, y = x[order], y[order]
    batches = [(x[i:i + args.batch_size], y[i:i + args.batch_size])
               for i in range(0, args.steps * args.batch_size, args.batch_size)]
    val_x = x[-200:]

    try:
        import torch  # noqa: F401
    except ImportError:
        print("PyTorch is not installed: skipping the PyTorch half (pip install torch)")
        losses, _, _ = torsh_fn_version(batches, val_x, args.lr, args.seed)
        for step, loss in enumerate(losses, 1):
            print(f"step {step:3d}: torsh_fn {loss:.6f}")
        return True

    theirs, initial, torch_state, torch_logits = pytorch_version(batches, val_x, args.lr,
                                                                 args.seed)
    ours, state, logits = torsh_fn_version(batches, val_x, args.lr, args.seed, initial)
    print(f"{'step':>4}  {'PyTorch':>10}  {'torsh_fn':>10}  {'|diff|':>9}")
    for step, (a, b) in enumerate(zip(theirs, ours), 1):
        print(f"{step:4d}  {a:10.6f}  {b:10.6f}  {abs(a - b):9.2e}")

    def rel(a, b):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        return float(np.abs(a - b).max() / max(1.0, np.abs(b).max()))

    loss_diff = rel(ours, theirs)
    weight_diff = max(rel(state[k], torch_state[k]) for k in torch_state)
    logit_diff = rel(logits, torch_logits)
    ok = max(loss_diff, weight_diff, logit_diff) <= args.tolerance
    print(f"largest relative difference: losses {loss_diff:.1e}, weights and BatchNorm "
          f"statistics {weight_diff:.1e}, eval logits {logit_diff:.1e} "
          f"(tolerance {args.tolerance:.0e})")
    print("losses match" if ok else "MISMATCH: the port does not follow PyTorch")
    return ok


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
