"""Convolution and pooling benchmark: torsh_fn's ``impl="auto"`` against XLA and PyTorch.

    PYTHONPATH=$PWD python benchmarks/conv.py                  # every CPU shape (GPU ones on a GPU)
    PYTHONPATH=$PWD python benchmarks/conv.py --only cnn,r18   # shapes whose name has these
    PYTHONPATH=$PWD python benchmarks/conv.py --reps 9 --markdown results.md

For each shape: milliseconds of the forward and of forward + backward (the output and the
gradients of the input and the weight; of the input for pooling) for torsh_fn's ``conv`` /
``max_pool`` / ``avg_pool`` with ``impl="auto"``, XLA's NCHW convolution (``impl="xla"``;
``reduce_window`` for pooling), XLA in NHWC between transposes, XLA on data already in NHWC
("native": no transposes at all; the issue's target is auto at >= 95% of its speed), and PyTorch
(NCHW, and channels_last on a GPU). Each cell is the median over ``--reps`` rounds, interleaved
among the JAX ways and then among PyTorch's (each round the mean of enough back-to-back calls to
take about 20 ms, after warm-up, ``block_until_ready`` at the end); ``min`` is the fastest round,
to read the noise by. Ratios: XLA's NCHW time and PyTorch's over auto's (above 1: auto faster).

Shapes named ``epilogue`` time a convolution with a bias and an activation:
``conv_bias_act`` for auto and XLA, the bias and activation written after the convolution for
the NHWC ways, ``conv2d(x, w, b)`` then the activation for PyTorch (``--only epilogue``).

Shapes: the CNN of issue 10 (1->32 and 32->64 channels, 3x3, batch 128 at 28x28 and 14x14, its
two 2x2 max pools), the zoo's seed_cnn at its native 8x8 (batch 64), ResNet-18's convolutions and
stem max pool at 32x32 (batch 64), and on a GPU the 3x3 N64 C256 56x56 bfloat16 convolution, alone
and as a stack of four with ReLU between (where a network's layout changes cancel out).
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as TF

from torsh_fn._xla_options import cpu_compiler_options
from torsh_fn.kernels import _conv_lowering
from torsh_fn.kernels.conv import conv, conv_bias_act
from torsh_fn.kernels.pooling import avg_pool, max_pool

ON_GPU = jax.default_backend() == "gpu"
TORCH_DEVICE = "cuda" if ON_GPU and torch.cuda.is_available() else "cpu"


def _jit(fn: Callable) -> Callable:
    """``jax.jit`` with the compile options ``torsh_fn.jit`` uses (YNNPACK for products only, on
    the CPU), which ``prefers_patches`` was measured under."""
    return jax.jit(fn, compiler_options=cpu_compiler_options() or None)


@dataclass(frozen=True)
class Conv:
    name: str
    n: int
    c_in: int
    size: int
    c_out: int
    k: int
    stride: int = 1
    pad: int = 1
    dtype: str = "float32"
    depth: int = 1  # a stack of this many such convolutions (one weight), ReLU between
    act: str | None = None  # with a bias and this activation after the (single) convolution


@dataclass(frozen=True)
class Pool:
    name: str
    kind: str
    n: int
    c: int
    size: int
    k: int
    stride: int
    pad: int = 0


CPU_SHAPES = [
    Conv("cnn.conv1", 128, 1, 28, 32, 3), Conv("cnn.conv2", 128, 32, 14, 64, 3),
    Pool("cnn.pool1", "max", 128, 32, 28, 2, 2), Pool("cnn.pool2", "max", 128, 64, 14, 2, 2),
    Conv("seed8.conv1", 64, 1, 8, 32, 3), Conv("seed8.conv2", 64, 32, 8, 64, 3),
    Pool("seed8.pool", "max", 64, 64, 8, 2, 2), Conv("seed8.conv3", 64, 64, 4, 64, 3),
    Conv("r18.stem", 64, 3, 32, 64, 7, 2, 3), Pool("r18.maxpool", "max", 64, 64, 16, 3, 2, 1),
    Conv("r18.layer1", 64, 64, 8, 64, 3), Conv("r18.layer2.down", 64, 64, 8, 128, 3, 2),
    Conv("r18.layer2.1x1", 64, 64, 8, 128, 1, 2, 0), Conv("r18.layer2", 64, 128, 4, 128, 3),
    Conv("r18.layer3.down", 64, 128, 4, 256, 3, 2), Conv("r18.layer3", 64, 256, 2, 256, 3),
    Conv("r18.layer4.down", 64, 256, 2, 512, 3, 2), Conv("r18.layer4", 64, 512, 1, 512, 3),
    Pool("avg2x2", "avg", 128, 32, 28, 2, 2),
]
CPU_SHAPES += [Conv("cnn.conv2.epilogue.relu", 128, 32, 14, 64, 3, act="relu"),
               Conv("r18.layer1.epilogue.gelu", 64, 64, 8, 64, 3, act="gelu")]
GPU_SHAPES = [Conv("gpu.3x3.c256", 64, 256, 56, 256, 3, dtype="bfloat16"),
              Conv("gpu.3x3.c256.x4", 64, 256, 56, 256, 3, dtype="bfloat16", depth=4),
              Conv("gpu.3x3.c256.epilogue.relu", 64, 256, 56, 256, 3, dtype="bfloat16",
                   act="relu"),
              Conv("gpu.3x3.c256.epilogue.gelu", 64, 256, 56, 256, 3, dtype="bfloat16",
                   act="gelu")]
JAX_ACTS = {"relu": jax.nn.relu, "gelu": lambda z: jax.nn.gelu(z, approximate=False)}
TORCH_ACTS = {"relu": TF.relu, "gelu": TF.gelu}


def stacked(conv_fn: Callable, depth: int) -> Callable:
    """``depth`` applications of ``conv_fn(x, w)`` with ReLU between (one conv if depth is 1)."""
    def run(x, w):
        for i in range(depth):
            x = conv_fn(x if i == 0 else jax.nn.relu(x), w)
        return x

    return run


def time_calls(fn: Callable[[], object], sync: Callable[[object], object]) -> Callable[[], float]:
    """A timer: each call returns ms per call of ``fn`` over a batch sized to about 20 ms."""
    sync(fn())
    start = time.perf_counter()
    sync(fn())
    iters = max(1, min(200, int(0.02 / max(time.perf_counter() - start, 1e-6))))

    def one_round() -> float:
        start = time.perf_counter()
        for _ in range(iters):
            out = fn()
        sync(out)
        return (time.perf_counter() - start) / iters * 1e3

    return one_round


def _jax_cases(shape, x, w, b, cot) -> dict[str, tuple[Callable, Callable]]:
    """name -> (forward, forward + backward), jitted, over fixed arrays."""
    if isinstance(shape, Conv):
        geometry = ((shape.stride,) * 2, [(shape.pad, shape.pad)] * 2, (1, 1))
        if shape.act:
            act = JAX_ACTS[shape.act]
            fns = {"auto": lambda x, w: conv_bias_act(x, w, b, *geometry, act=shape.act),
                   "xla": lambda x, w: conv_bias_act(x, w, b, *geometry, act=shape.act,
                                                     impl="xla"),
                   "xla nhwc": lambda x, w: act(_conv_lowering.conv_channels_last(
                       x, w, *geometry) + b[:, None, None])}
        else:
            fns = {"auto": lambda x, w: conv(x, w, *geometry),
                   "xla": lambda x, w: conv(x, w, *geometry, impl="xla"),
                   "xla nhwc": lambda x, w: _conv_lowering.conv_channels_last(x, w, *geometry)}
        fns = {name: stacked(fn, shape.depth) for name, fn in fns.items()}
        args = (x, w)
    else:
        pool = max_pool if shape.kind == "max" else avg_pool
        extra = ((1, 1),) if shape.kind == "max" else ()
        geometry = ((shape.k,) * 2, (shape.stride,) * 2, (shape.pad,) * 2, *extra)
        fns = {"auto": lambda x: pool(x, *geometry), "xla": lambda x: pool(x, *geometry,
                                                                           impl="xla")}
        args = (x,)
    cases = {}
    for name, fn in fns.items():
        def backward(*a, fn=fn):  # the output too: a linear op's gradient needs no forward
            out, pull = jax.vjp(lambda *d: fn(*d), *a)
            return out, pull(cot)

        forward, backward = _jit(fn), _jit(backward)
        cases[name] = (lambda f=forward: f(*args), lambda f=backward: f(*args))
    if isinstance(shape, Conv):  # the data already channels-last: no transposes at all
        nhwc_args = (x.transpose(0, 2, 3, 1), w.transpose(2, 3, 1, 0))
        nhwc_cot = cot.transpose(0, 2, 3, 1)

        def native(x, w):
            strides, padding, dilation = geometry
            y = jax.lax.conv_general_dilated(x, w, strides, padding, rhs_dilation=dilation,
                                             dimension_numbers=("NHWC", "HWIO", "NHWC"))
            return JAX_ACTS[shape.act](y + b) if shape.act else y

        native = stacked(native, shape.depth)

        def native_backward(*a):
            out, pull = jax.vjp(native, *a)
            return out, pull(nhwc_cot)

        forward, backward = _jit(native), _jit(native_backward)
        cases["xla native nhwc"] = (lambda: forward(*nhwc_args), lambda: backward(*nhwc_args))
    return cases


def _torch_cases(shape, x, w, b, cot) -> dict[str, tuple[Callable, Callable]]:
    layouts = {"torch": torch.contiguous_format}
    if TORCH_DEVICE == "cuda":
        layouts["torch cl"] = torch.channels_last
    cases = {}
    for name, layout in layouts.items():
        tx = x.to(memory_format=layout).requires_grad_(True)
        tw = None if w is None else w.to(memory_format=layout).requires_grad_(True)
        if isinstance(shape, Conv):
            def op(tx=tx, tw=tw):
                if shape.act:
                    return TORCH_ACTS[shape.act](TF.conv2d(tx, tw, b, stride=shape.stride,
                                                           padding=shape.pad))
                out = tx
                for i in range(shape.depth):
                    out = TF.conv2d(out if i == 0 else TF.relu(out), tw, stride=shape.stride,
                                    padding=shape.pad)
                return out
        else:
            pool = TF.max_pool2d if shape.kind == "max" else TF.avg_pool2d

            def op(tx=tx, pool=pool):
                return pool(tx, shape.k, shape.stride, shape.pad)

        def forward(op=op):
            with torch.no_grad():
                return op()

        def backward(op=op, tx=tx, tw=tw):
            inputs = [tx] if tw is None else [tx, tw]
            out = op()
            return out, torch.autograd.grad(out, inputs, cot)

        cases[name] = (forward, backward)
    return cases


def _torch_sync(out) -> None:
    if TORCH_DEVICE == "cuda":
        torch.cuda.synchronize()


def measure(shape, reps: int) -> dict[str, dict[str, tuple[float, float]]]:
    """{pass: {implementation: (median ms, min ms)}} for one shape."""
    rng = np.random.default_rng(0)
    dtype = getattr(shape, "dtype", "float32")
    if isinstance(shape, Conv):
        x_shape = (shape.n, shape.c_in, shape.size, shape.size)
        w_np = rng.standard_normal((shape.c_out, shape.c_in, shape.k, shape.k)) / shape.k
        out = (shape.size + 2 * shape.pad - shape.k) // shape.stride + 1
        y_shape = (shape.n, shape.c_out, out, out)
    else:
        x_shape = (shape.n, shape.c, shape.size, shape.size)
        w_np = None
        out = (shape.size + 2 * shape.pad - shape.k) // shape.stride + 1
        y_shape = (shape.n, shape.c, out, out)
    x_np, cot_np = rng.standard_normal(x_shape), rng.standard_normal(y_shape)
    b_np = rng.standard_normal(y_shape[1])
    jdt, tdt = jnp.dtype(dtype), getattr(torch, dtype)
    x, cot, b = jnp.asarray(x_np, jdt), jnp.asarray(cot_np, jdt), jnp.asarray(b_np, jdt)
    w = None if w_np is None else jnp.asarray(w_np, jdt)
    timers = {}
    for name, (fwd, bwd) in _jax_cases(shape, x, w, b, cot).items():
        timers[name] = (time_calls(fwd, jax.block_until_ready),
                        time_calls(bwd, jax.block_until_ready))

    def to_torch(a):
        return torch.tensor(a, dtype=tdt, device=TORCH_DEVICE)

    tw = None if w_np is None else to_torch(w_np)
    torch_cases = _torch_cases(shape, to_torch(x_np), tw, to_torch(b_np), to_torch(cot_np))
    for name, (fwd, bwd) in torch_cases.items():
        timers[name] = (time_calls(fwd, _torch_sync), time_calls(bwd, _torch_sync))
    samples = {name: ([], []) for name in timers}
    for framework in ("jax", "torch"):  # apart: XLA's idle threads spin and slow PyTorch down
        time.sleep(0.2)
        for _ in range(reps):  # interleaved, so that load from elsewhere spreads over all
            for name, (fwd, bwd) in timers.items():
                if name.startswith("torch") == (framework == "torch"):
                    samples[name][0].append(fwd())
                    samples[name][1].append(bwd())
    return {p: {name: (statistics.median(s[i]), min(s[i])) for name, s in samples.items()}
            for i, p in enumerate(("fwd", "fwd+bwd"))}


def describe(shape) -> str:
    if isinstance(shape, Conv):
        stack = f"{shape.depth} x " if shape.depth > 1 else ""
        epilogue = f" + bias + {shape.act}" if shape.act else ""
        return (f"{stack}conv {shape.c_in}->{shape.c_out} k{shape.k} s{shape.stride} "
                f"p{shape.pad}{epilogue}, {shape.n}x{shape.c_in}x{shape.size}x{shape.size} "
                f"{shape.dtype}")
    return (f"{shape.kind}_pool k{shape.k} s{shape.stride} p{shape.pad}, "
            f"{shape.n}x{shape.c}x{shape.size}x{shape.size} float32")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated parts of shape names")
    parser.add_argument("--reps", type=int, default=7, help="interleaved timed rounds")
    parser.add_argument("--markdown", help="also write the table to this file")
    args = parser.parse_args()
    shapes = CPU_SHAPES + (GPU_SHAPES if ON_GPU else [])
    if args.only:
        shapes = [s for s in shapes if any(part in s.name for part in args.only.split(","))]
    head = (f"{datetime.date.today()}, {platform.processor() or platform.machine()}, "
            f"{jax.devices()[0].device_kind}, jax {jax.__version__}, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), {args.reps} rounds")
    lines = [head, "", "ms: median (min) of the rounds; ratios: that time over auto's median", "",
             "| shape | what | pass | auto | xla nchw | xla nhwc | xla native nhwc | torch "
             "| torch cl | xla/auto | native nhwc/auto | torch/auto |", "|" + " --- |" * 12]
    print("\n".join(lines), flush=True)
    for shape in shapes:
        for p, row in measure(shape, args.reps).items():
            def cell(name, row=row):
                return f"{row[name][0]:.2f} ({row[name][1]:.2f})" if name in row else "-"
            auto = row["auto"][0]
            native = (f"{row['xla native nhwc'][0] / auto:.2f}x" if "xla native nhwc" in row
                      else "-")
            line = (f"| {shape.name} | {describe(shape)} | {p} | {cell('auto')} | {cell('xla')} "
                    f"| {cell('xla nhwc')} | {cell('xla native nhwc')} | {cell('torch')} "
                    f"| {cell('torch cl')} | {row['xla'][0] / auto:.2f}x | {native} "
                    f"| {row['torch'][0] / auto:.2f}x |")
            lines.append(line)
            print(line, flush=True)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
