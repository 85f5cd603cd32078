"""Train an MLP on the 8x8 handwritten digits in the functional (JAX) style.

Parameters are a plain pytree, the step is a pure function transformed by ``jax.value_and_grad``
and ``jax.jit``, the optimizer is optax. torsh_fn supplies the seeding and PyTorch-named helpers.
With ``--ensemble K`` the same step is ``jax.vmap``-ed over K independently initialised networks
(stacked parameter pytrees), which train at once on the same batches; their averaged logits vote.

    python examples/functional_training.py --epochs 30
    python examples/functional_training.py --epochs 30 --ensemble 4
"""

from __future__ import annotations

import argparse
import itertools
import math

import jax
import numpy as np
import optax

import torsh_fn as T


def load_digits(seed: int) -> tuple[np.ndarray, ...]:
    """scikit-learn's digits (shipped with it), scaled to [0, 1], split 80/20."""
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError as err:
        raise SystemExit("this example needs scikit-learn: pip install 'torsh-fn[train]'") from err
    x, y = sk_load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    order = np.random.default_rng(seed).permutation(len(x))
    cut = int(0.8 * len(x))
    return x[order[:cut]], y[order[:cut]], x[order[cut:]], y[order[cut:]]


def init_mlp(sizes: list[int], key: jax.Array) -> list[dict[str, jax.Array]]:
    """PyTorch's nn.Linear initialisation: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    params = []
    for fan_in, fan_out in itertools.pairwise(sizes):
        key, kw, kb = jax.random.split(key, 3)
        bound = 1.0 / math.sqrt(fan_in)
        params.append({"weight": T.rand(fan_out, fan_in, key=kw) * 2 * bound - bound,
                       "bias": T.rand(fan_out, key=kb) * 2 * bound - bound})
    return params


def mlp(params: list[dict[str, jax.Array]], x: jax.Array) -> jax.Array:
    for i, layer in enumerate(params):
        x = x @ layer["weight"].T + layer["bias"]
        if i < len(params) - 1:
            x = jax.nn.relu(x)
    return x


def loss_fn(params, x, y):
    logits = mlp(params, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def make_step(opt: optax.GradientTransformation):
    """One training step of one network: a pure function, ready for ``jax.jit`` and ``jax.vmap``."""

    def step(params, opt_state, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step


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
    parser.add_argument("--epochs", type=positive_int, default=30)
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument("--lr", type=positive_float, default=1e-2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ensemble", type=positive_int, default=None, metavar="K",
                        help="train K networks at once with jax.vmap (default: one network)")
    args = parser.parse_args(argv)

    T.manual_seed(args.seed)
    x_train, y_train, x_val, y_val = load_digits(args.seed)
    if args.batch_size > len(x_train):
        parser.error(f"--batch-size must be at most the {len(x_train)} training samples, "
                     f"got {args.batch_size}")
    opt = optax.adamw(args.lr, weight_decay=1e-4)

    single_step = make_step(opt)

    if args.ensemble:
        keys = jax.random.split(jax.random.PRNGKey(args.seed), args.ensemble)
        params = jax.vmap(lambda k: init_mlp([64, 128, 10], k))(keys)  # leaves (K, ...)
        opt_state = jax.vmap(opt.init)(params)
        step = jax.jit(jax.vmap(single_step, in_axes=(0, 0, None, None)))
        predict = jax.vmap(mlp, in_axes=(0, None))  # (K, N, 10)
    else:
        params = init_mlp([64, 128, 10], jax.random.PRNGKey(args.seed))
        opt_state = opt.init(params)
        step, predict = jax.jit(single_step), mlp

    try:
        from tqdm import trange
    except ImportError:
        trange = range
    steps = len(x_train) // args.batch_size
    bar = trange(args.epochs, desc="epochs")
    rng = np.random.default_rng(args.seed)
    for _ in bar:
        order = rng.permutation(len(x_train))
        for i in range(steps):
            idx = order[i * args.batch_size:(i + 1) * args.batch_size]
            params, opt_state, loss = step(params, opt_state, x_train[idx], y_train[idx])
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{float(T.mean(loss)):.4f}")
    logits = predict(params, x_val)
    if args.ensemble:
        members = (T.argmax(logits, 2) == y_val).mean(1)  # (K,)
        print("member validation accuracies: " + " ".join(f"{float(a):.4f}" for a in members))
        logits = T.mean(logits, 0)  # the ensemble's vote: averaged logits
    accuracy = float((T.argmax(logits, 1) == y_val).mean())
    print(f"validation accuracy: {accuracy:.4f}")
    return accuracy


if __name__ == "__main__":
    main()
