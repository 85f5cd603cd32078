"""The Mosaic GPU attention forward's schedules and slot counts against cuDNN and PyTorch, in
interleaved rounds: how ``MosaicAttentionConfig``'s defaults were chosen. With ``--training``,
the training steps (forward and backward) that ``attention(impl="auto")`` chooses among, the
same way: how its H200 table entries compare with PyTorch's step. With ``--backward``, the
backward alone: the Mosaic GPU kernel and cuDNN's, from the Mosaic forward's output and
logsumexp, and PyTorch's (its autograd graph kept between rounds), each with the work around
its kernel (delta, dQ's float32 sum and its conversion).

    PYTHONPATH=$PWD python3 benchmarks/attention_schedules.py [--rounds 15] [--training|--backward]

On an H200 one implementation's rounds of a few milliseconds spread by 10-20% (PyTorch's causal
forward: 457-574 TFLOP/s in one run), more than the schedules differ, and
``benchmarks/kernels.py`` times each implementation in its own block of rounds. Here every
round times every implementation once (back-to-back calls for about 20 ms, ``conv.time_calls``),
one after the other, and each is reported as PyTorch's time over its own in that round (above
1: faster than PyTorch), the median over the rounds, beside its median TFLOP/s and their range.
Shape: B4 S4096 H16 D128 bf16, causal and not (the issue's); errors are against the float32
reference (for training and the backward, the largest of the three gradients'). Training FLOPs
count 3.5 times the forward's, the backward's 2.5 times.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.conv import time_calls
from torsh_fn.kernels._cudnn_attention import cudnn_attention, cudnn_attention_bwd
from torsh_fn.kernels._mosaic_attention import MosaicAttentionConfig, mosaic_attention
from torsh_fn.kernels._mosaic_attention_bwd import mosaic_attention_bwd
from torsh_fn.kernels.attention import _flash, attention, attention_reference

B, H, S, D = 4, 16, 4096, 128
# pingpong runs a persistent grid at this shape, whose output buffer leaves room for two slots
CONFIGS = {"pingpong, 2 slots": MosaicAttentionConfig(stages=2, schedule="pingpong"),
           "overlap, 2 slots": MosaicAttentionConfig(stages=2, schedule="overlap"),
           "overlap, 3 slots": MosaicAttentionConfig(stages=3, schedule="overlap")}


def _max_rel_err(got, want) -> float:
    """The largest elementwise error over the largest magnitude of ``want``."""
    got, want = got.astype(jnp.float32), want.astype(jnp.float32)
    return float(jnp.max(jnp.abs(got - want)) / jnp.max(jnp.abs(want)))


def _on_torch(*xs: jax.Array) -> list[torch.Tensor]:
    """The arrays as bfloat16 PyTorch tensors on the GPU."""
    return [torch.from_numpy(np.asarray(x.astype(jnp.float32))).to("cuda", torch.bfloat16)
            for x in xs]


def _reference_grads(q, k, v, d_out, causal: bool) -> tuple[jax.Array, ...]:
    """The float32 reference's (dq, dk, dv) for the cotangent ``d_out``, in q, k and v's dtype."""
    _, vjp = jax.vjp(lambda q, k, v: attention_reference(
        q.astype(jnp.float32), k.astype(jnp.float32), v.astype(jnp.float32),
        is_causal=causal), q, k, v)
    return vjp(d_out.astype(jnp.float32))


def cases(q, k, v, causal: bool) -> dict[str, tuple[Callable[[], float], float]]:
    """name -> (a round's timer, relative error against the float32 reference)."""
    expected = jax.jit(lambda q, k, v: attention_reference(
        q.astype(jnp.float32), k.astype(jnp.float32), v.astype(jnp.float32),
        is_causal=causal))(q, k, v)
    fns = {name: jax.jit(lambda q, k, v, config=config: mosaic_attention(
        q, k, v, scale=D ** -0.5, is_causal=causal, config=config))
        for name, config in CONFIGS.items()}
    fns["cuDNN (BHSD, as auto calls it)"] = jax.jit(
        lambda q, k, v: cudnn_attention(q, k, v, scale=D ** -0.5, is_causal=causal))
    out = {}
    for name, fn in fns.items():
        out[name] = (time_calls(lambda fn=fn: fn(q, k, v), jax.block_until_ready),
                     _max_rel_err(fn(q, k, v), expected))
    tq, tk, tv = _on_torch(q, k, v)
    out["PyTorch SDPA"] = (time_calls(lambda: F.scaled_dot_product_attention(tq, tk, tv,
                                                                              is_causal=causal),
                                      lambda _: torch.cuda.synchronize()), float("nan"))
    return out


def training_cases(q, k, v, d_out, causal: bool
                   ) -> dict[str, tuple[Callable[[], float], float]]:
    """name -> (a round's timer of a training step's forward and backward, the gradients'
    largest relative error against the float32 reference's)."""
    def step(fn):
        return jax.jit(lambda q, k, v, d_out: jax.vjp(fn, q, k, v)[1](d_out))

    expected = _reference_grads(q, k, v, d_out, causal)
    fns = {label: step(lambda q, k, v, kernels=kernels: _flash(q, k, v, causal, D ** -0.5, None,
                                                                kernels))
           for label, kernels in (("Pallas (Mosaic GPU forward and backward)", "pallas"),
                                  ("cuDNN (BHSD, as auto calls it)", "cudnn"),
                                  ("Pallas forward, cuDNN backward", "pallas_cudnn"))}
    fns["auto"] = step(lambda q, k, v: attention(q, k, v, is_causal=causal))
    out = {}
    for name, fn in fns.items():
        err = max(map(_max_rel_err, fn(q, k, v, d_out), expected))
        out[name] = (time_calls(lambda fn=fn: fn(q, k, v, d_out), jax.block_until_ready), err)
    tq, tk, tv, tg = _on_torch(q, k, v, d_out)
    tq, tk, tv = (x.requires_grad_(True) for x in (tq, tk, tv))

    def torch_step():
        return torch.autograd.grad(F.scaled_dot_product_attention(tq, tk, tv, is_causal=causal),
                                   (tq, tk, tv), tg)

    out["PyTorch SDPA"] = (time_calls(torch_step, lambda _: torch.cuda.synchronize()),
                           float("nan"))
    return out


def backward_cases(q, k, v, d_out, causal: bool
                   ) -> dict[str, tuple[Callable[[], float], float]]:
    """name -> (a round's timer of the backward alone, the gradients' largest relative error
    against the float32 reference's)."""
    expected = _reference_grads(q, k, v, d_out, causal)
    out, lse = mosaic_attention(q, k, v, scale=D ** -0.5, is_causal=causal, with_lse=True)
    fns = {name: jax.jit(lambda q, k, v, out, lse, d_out, bwd=bwd: bwd(
        q, k, v, out, lse, d_out, scale=D ** -0.5, is_causal=causal))
        for name, bwd in (("Pallas (Mosaic GPU backward)", mosaic_attention_bwd),
                          ("cuDNN backward (from the Mosaic forward)", cudnn_attention_bwd))}
    args = (q, k, v, out, lse, d_out)
    result = {}
    for name, fn in fns.items():
        err = max(map(_max_rel_err, fn(*args), expected))
        result[name] = (time_calls(lambda fn=fn: fn(*args), jax.block_until_ready), err)
    tq, tk, tv, tg = _on_torch(q, k, v, d_out)
    tq, tk, tv = (x.requires_grad_(True) for x in (tq, tk, tv))
    t_out = F.scaled_dot_product_attention(tq, tk, tv, is_causal=causal)
    result["PyTorch SDPA"] = (
        time_calls(lambda: torch.autograd.grad(t_out, (tq, tk, tv), tg, retain_graph=True),
                   lambda _: torch.cuda.synchronize()), float("nan"))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    step = parser.add_mutually_exclusive_group()
    step.add_argument("--training", action="store_true",
                      help="time training steps (forward and backward) instead of forwards")
    step.add_argument("--backward", action="store_true",
                      help="time the backward alone instead of forwards")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    q, k, v, d_out = (jnp.asarray(rng.standard_normal((B, H, S, D)), jnp.bfloat16)
                      for _ in range(4))
    print(f"{jax.devices()[0].device_kind}; jax {jax.__version__}; torch {torch.__version__}; "
          f"{args.rounds} rounds of about 20 ms per implementation")
    kind, per_forward = (("training step", 3.5) if args.training else
                         ("backward", 2.5) if args.backward else ("forward", 1.0))
    for causal in (True, False):
        flops = 4.0 * B * H * S * S * D / (2 if causal else 1) * per_forward
        timed = (training_cases(q, k, v, d_out, causal) if args.training else
                 backward_cases(q, k, v, d_out, causal) if args.backward else
                 cases(q, k, v, causal))
        times = {name: [] for name in timed}
        for _ in range(args.rounds):
            for name, (one_round, _) in timed.items():
                times[name].append(one_round())
        print(f"\n{'causal ' if causal else ''}attention B{B} S{S} H{H} D{D} bf16, "
              f"{kind}\n")
        print("| impl | speed vs PyTorch (median of rounds) | TFLOP/s median | range | rel err |")
        print("| --- | --- | --- | --- | --- |")
        for name, (_, err) in timed.items():
            ms = times[name]
            ratio = statistics.median(t / m for t, m in zip(times["PyTorch SDPA"], ms))
            print(f"| {name} | {ratio:.3f}x | {flops / statistics.median(ms) / 1e9:.0f} | "
                  f"{flops / max(ms) / 1e9:.0f}-{flops / min(ms) / 1e9:.0f} | {err:.1e} |")


if __name__ == "__main__":
    main()
