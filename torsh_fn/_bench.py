"""The timings behind ``torsh-fn bench``: a quick health check of this machine, not a benchmark
suite (that is ``benchmarks/`` in the repository).

Each row times one piece of work in torsh_fn (XLA) and, when it is installed, in PyTorch on the
CPU, as the median of ``repeats`` runs after a warm-up.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["run", "table"]


def _median_ms(fn: Callable[[], Any], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def _jax_cases(size: int) -> dict[str, Callable[[], Any]]:
    from . import nn, optim
    from .training import train_step

    a = jax.random.normal(jax.random.PRNGKey(0), (size, size))
    v = jax.random.normal(jax.random.PRNGKey(1), (size * 1024,))
    add, gelu = jax.jit(lambda x: x + 1), jax.jit(jax.nn.gelu)
    matmul = jax.jit(jnp.matmul)
    model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 10))
    opt = optim.Adam(model.parameters(), lr=1e-3)
    x, y = np.ones((256, 784), np.float32), np.zeros(256, np.int64)
    return {"matmul": lambda: matmul(a, a).block_until_ready(),
            "x + 1": lambda: add(v).block_until_ready(),
            "gelu": lambda: gelu(v).block_until_ready(),
            "MLP train step": lambda: train_step(model, opt, x, y).block_until_ready()}


def _torch_cases(size: int) -> dict[str, Callable[[], Any]]:
    import torch

    a, v = torch.randn(size, size), torch.randn(size * 1024)
    model = torch.nn.Sequential(torch.nn.Linear(784, 512), torch.nn.ReLU(),
                                torch.nn.Linear(512, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = torch.ones(256, 784), torch.zeros(256, dtype=torch.long)

    def step() -> None:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    return {"matmul": lambda: a @ a, "x + 1": lambda: v + 1,
            "gelu": lambda: torch.nn.functional.gelu(v), "MLP train step": step}


def run(size: int = 1024, repeats: int = 10) -> list[dict[str, Any]]:
    """Rows ``{"work", "torsh_fn_ms", "torch_ms", "unit_of_work"}``; ``torch_ms`` is ``None``
    without PyTorch. ``size`` is the matrix side and the vector length in Ki elements."""
    ours = _jax_cases(size)
    try:
        theirs = _torch_cases(size)
    except ImportError:
        theirs = {}
    work = {"matmul": 2 * size**3 / 1e9, "x + 1": size * 1024 * 8 / 1e9,
            "gelu": size * 1024 * 8 / 1e9, "MLP train step": None}
    units = {"matmul": "GFLOP/s", "x + 1": "GB/s", "gelu": "GB/s", "MLP train step": ""}
    return [{"work": name, "torsh_fn_ms": _median_ms(fn, repeats),
             "torch_ms": _median_ms(theirs[name], repeats) if name in theirs else None,
             "amount": work[name], "unit": units[name]} for name, fn in ours.items()]


def table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table: time per call, the rate where one applies, PyTorch / torsh_fn."""
    lines = [f"{'work':<16}{'torsh_fn':>12}{'PyTorch':>12}{'rate':>18}{'torch/ours':>12}"]
    for r in rows:
        torch_ms = "-" if r["torch_ms"] is None else f"{r['torch_ms']:.3f} ms"
        rate = (f"{r['amount'] / (r['torsh_fn_ms'] / 1e3):.1f} {r['unit']}"
                if r["amount"] else "")
        ratio = "-" if r["torch_ms"] is None else f"{r['torch_ms'] / r['torsh_fn_ms']:.2f}x"
        lines.append(f"{r['work']:<16}{r['torsh_fn_ms']:>9.3f} ms{torch_ms:>12}{rate:>18}"
                     f"{ratio:>12}")
    return "\n".join(lines)
