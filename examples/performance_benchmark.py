"""Time matmul, element-wise ops and activations in torsh_fn and, when it is installed, PyTorch.

Each row runs the same work on the same inputs in both libraries: torsh_fn's op under ``jax.jit``
(blocked on with ``block_until_ready``, since JAX dispatches asynchronously) and PyTorch's eager
op. Every timing is the median of ``--repeats`` calls after ``--warmup`` calls (the first of which
compiles). Rates are GFLOP/s for matmul and GB/s of memory traffic (bytes read + written) for the
rest; ``torch/ours`` above 1 means torsh_fn is faster. The ``same`` column checks that the two
results agree, so the table never compares different work.

    python examples/performance_benchmark.py
    python examples/performance_benchmark.py --sizes 512,2048 --elements 16777216 --repeats 20
    python examples/performance_benchmark.py --no-torch
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import torsh_fn
from torsh_fn.nn import functional as F

ACTIVATIONS = ("relu", "gelu", "sigmoid", "tanh", "silu", "softmax")
ELEMENTWISE = {"x + 1": (1, lambda a: a + 1), "a + b": (2, lambda a, b: a + b),
               "a * b": (2, lambda a, b: a * b), "exp": (1, None)}


def median_seconds(fn: Callable[[], Any], warmup: int, repeats: int) -> float:
    """The median wall time of ``fn()``; ``fn`` must wait for its result."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def cases(sizes: list[int], elements: int, dtype: str) -> list[dict[str, Any]]:
    """The work to time: name, size, inputs (numpy), amount and unit, the two implementations."""
    rng = np.random.default_rng(0)
    itemsize = jnp.dtype(dtype).itemsize
    rows = []
    for n in sizes:
        a, b = rng.standard_normal((2, n, n), np.float32)
        rows.append({"work": "matmul", "size": f"{n}x{n}", "inputs": (a, b), "amount": 2 * n**3,
                     "unit": "GFLOP/s", "ours": jnp.matmul, "theirs": "matmul"})
    a, b = rng.standard_normal((2, elements), np.float32)
    for name, (arity, fn) in ELEMENTWISE.items():
        rows.append({"work": name, "size": f"{elements:,}", "inputs": (a, b)[:arity],
                     "amount": (arity + 1) * elements * itemsize, "unit": "GB/s",
                     "ours": fn or jnp.exp, "theirs": fn or "exp"})
    rows_2d = a.reshape(-1, 1024) if elements % 1024 == 0 else a[None]
    for name in ACTIVATIONS:
        x = rows_2d if name == "softmax" else a
        ours = (lambda x: F.softmax(x, dim=-1)) if name == "softmax" else getattr(F, name)
        size = f"{elements:,}" if x.ndim == 1 else "x".join(map(str, x.shape))
        rows.append({"work": name, "size": size, "inputs": (x,),
                     "amount": 2 * elements * itemsize, "unit": "GB/s", "ours": ours,
                     "theirs": name})
    return rows


def torsh_fn_runner(row: dict[str, Any], dtype: str) -> tuple[Callable[[], Any], np.ndarray]:
    inputs = [jnp.asarray(x, dtype) for x in row["inputs"]]
    fn = jax.jit(row["ours"])
    return (lambda: fn(*inputs).block_until_ready()), np.asarray(fn(*inputs), np.float32)


def torch_runner(row: dict[str, Any], dtype: str) -> tuple[Callable[[], Any], np.ndarray]:
    import torch

    inputs = [torch.from_numpy(x).to(getattr(torch, dtype)) for x in row["inputs"]]
    op = row["theirs"]
    if callable(op):
        fn = op
    elif op == "softmax":
        fn = lambda x: torch.softmax(x, dim=-1)
    elif op in ("matmul", "exp", "sigmoid", "tanh", "relu"):
        fn = getattr(torch, op)
    else:
        fn = getattr(torch.nn.functional, op)
    return (lambda: fn(*inputs)), fn(*inputs).float().numpy()


def agree(ours: np.ndarray, theirs: np.ndarray, dtype: str) -> bool:
    tol = 1e-4 if dtype == "float32" else 2e-2
    scale = max(1.0, float(np.abs(theirs).max()))
    return bool(np.allclose(ours, theirs, rtol=tol, atol=tol * scale))


def run(sizes: list[int], elements: int, dtype: str, warmup: int, repeats: int,
        use_torch: bool) -> list[dict[str, Any]]:
    results = []
    for row in cases(sizes, elements, dtype):
        fn, ours = torsh_fn_runner(row, dtype)
        result = {"work": row["work"], "size": row["size"], "unit": row["unit"],
                  "amount": row["amount"], "ours": median_seconds(fn, warmup, repeats),
                  "theirs": None, "same": None}
        if use_torch:
            fn, theirs = torch_runner(row, dtype)
            result["theirs"] = median_seconds(fn, warmup, repeats)
            result["same"] = agree(ours, theirs, dtype)
        results.append(result)
    return results


def rate(amount: float, seconds: float, unit: str) -> str:
    return f"{amount / seconds / 1e9:.1f} {unit}"


def table(results: list[dict[str, Any]]) -> str:
    header = ("work", "size", "torsh_fn", "PyTorch", "torsh_fn rate", "PyTorch rate",
              "torch/ours", "same")
    lines = []
    for r in results:
        theirs = r["theirs"]
        lines.append((
            r["work"], r["size"], f"{1e3 * r['ours']:.3f} ms",
            "-" if theirs is None else f"{1e3 * theirs:.3f} ms",
            rate(r["amount"], r["ours"], r["unit"]),
            "-" if theirs is None else rate(r["amount"], theirs, r["unit"]),
            "-" if theirs is None else f"{theirs / r['ours']:.2f}x",
            "-" if r["same"] is None else ("yes" if r["same"] else "NO")))
    widths = [max(len(str(c)) for c in col) for col in zip(header, *lines)]
    fmt = lambda cells: "| " + " | ".join(f"{c:<{w}}" for c, w in zip(cells, widths)) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([fmt(header), rule, *map(fmt, lines)])


def int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return values


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int_list, default=[256, 512, 1024],
                        help="matmul sides, comma-separated (default 256,512,1024)")
    parser.add_argument("--elements", type=positive_int, default=1 << 22,
                        help="length of the element-wise and activation inputs")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--warmup", type=positive_int, default=2)
    parser.add_argument("--repeats", type=positive_int, default=10)
    parser.add_argument("--no-torch", action="store_true", help="time torsh_fn only")
    parser.add_argument("--torch-threads", type=positive_int, default=None,
                        help="torch.set_num_threads (on a busy machine 1 is often faster)")
    args = parser.parse_args(argv)

    use_torch = not args.no_torch
    if use_torch:
        try:
            import torch
        except ImportError:
            print("PyTorch is not installed: timing torsh_fn only (pip install torch)")
            use_torch = False
    device = jax.devices()[0]
    print(f"torsh_fn {torsh_fn.__version__}, jax {jax.__version__} on {device.platform} "
          f"({device.device_kind}), python {platform.python_version()}")
    if use_torch:
        if args.torch_threads:
            torch.set_num_threads(args.torch_threads)
        print(f"PyTorch {torch.__version__} on the CPU, {torch.get_num_threads()} threads")
    if hasattr(os, "getloadavg"):
        print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores "
              "(other work on the machine slows both columns)")
    print(f"{args.dtype}, median of {args.repeats} after {args.warmup} warm-up calls\n")
    results = run(args.sizes, args.elements, args.dtype, args.warmup, args.repeats, use_torch)
    print(table(results))
    return results


if __name__ == "__main__":
    main()
