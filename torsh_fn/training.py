"""Training in practice: checkpoints that resume exactly, and a classifier training loop.

A training checkpoint (:func:`save_checkpoint`) is one ``torsh_fn.save`` file holding the model's
and optimizer's ``state_dict``, the scheduler's, the global generator's state
(``torsh_fn.get_rng_state``), the epoch and step, and any JSON-able ``extra`` (a run's config and
history). :func:`load_checkpoint` puts it all back, so a run resumed from the checkpoint of epoch
``k`` ends with the same weights as one that never stopped: batches are shuffled by a generator
seeded from ``(seed, epoch)``, and dropout draws from the restored global generator.

:func:`fit` trains a classifier with a live progress bar (step, loss, throughput, ETA), validates
after each epoch and writes a checkpoint per epoch.

Example:
    >>> model = torsh_fn.models.get("seed_cnn")
    >>> opt = torsh_fn.optim.AdamW(model.parameters(), lr=3e-3)
    >>> history = fit(model, opt, (x_train, y_train), (x_val, y_val), epochs=5, out="run")
    >>> state = load_checkpoint("run/checkpoint_epoch5.safetensors", model, opt)
    >>> state["epoch"], state["step"]
    (5, 110)
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import random as _random
from ._backward import backward
from ._jit import jit
from .data import DataLoader, TensorDataset
from .nn import Module
from .nn import functional as F
from .serialization import load, save

__all__ = ["CheckpointMismatchError", "evaluate", "fit", "load_checkpoint", "load_model_state",
           "save_checkpoint", "train_step"]

_FORMAT = "torsh_fn.training/1"
_SHOWN = 8  # keys listed in a mismatch message


class CheckpointMismatchError(ValueError):
    """A checkpoint's model state does not fit the model it is loaded into."""


def save_checkpoint(path: str | os.PathLike, model: Module, optimizer: Any = None,
                    scheduler: Any = None, *, epoch: int = 0, step: int = 0,
                    extra: Mapping[str, Any] | None = None) -> None:
    """Write ``model``, ``optimizer``, ``scheduler``, the global RNG state, ``epoch``, ``step``
    and ``extra`` (JSON-able values and arrays) to ``path`` (a safetensors file, atomically)."""
    save({"format": _FORMAT, "model": model.state_dict(),
          "optimizer": None if optimizer is None else optimizer.state_dict(),
          "scheduler": None if scheduler is None else scheduler.state_dict(),
          "rng_state": _random.get_rng_state(), "epoch": epoch, "step": step,
          "extra": dict(extra or {})}, path)


def _listed(keys: set[str]) -> str:
    shown = sorted(keys)[:_SHOWN]
    return str(shown)[:-1] + (f", ... ({len(keys)} in all)]" if len(keys) > _SHOWN else "]")


def load_model_state(model: Module, state: Mapping[str, Any], where: str = "the state") -> None:
    """``model.load_state_dict(state)``, raising :class:`CheckpointMismatchError` that names the
    keys (and shapes) that differ when ``state`` is another model's."""
    expected = model.state_dict()
    missing, unexpected = set(expected) - set(state), set(state) - set(expected)
    shapes = {k: (tuple(np.shape(state[k])), tuple(np.shape(expected[k])))
              for k in set(expected) & set(state)
              if tuple(np.shape(state[k])) != tuple(np.shape(expected[k]))}
    if missing or unexpected or shapes:
        parts = [f"missing keys {_listed(missing)}"] if missing else []
        parts += [f"unexpected keys {_listed(unexpected)}"] if unexpected else []
        parts += [f"shape of {k}: checkpoint {a}, model {b}" for k, (a, b)
                  in sorted(shapes.items())[:_SHOWN]]
        raise CheckpointMismatchError(
            f"{where} holds another model than {type(model).__name__}: " + "; ".join(parts))
    model.load_state_dict(state)


def load_checkpoint(path: str | os.PathLike, model: Module, optimizer: Any = None,
                    scheduler: Any = None, *, restore_rng: bool = True) -> dict[str, Any]:
    """Load a :func:`save_checkpoint` file into the given objects and the global generator.

    Returns: ``{"epoch": int, "step": int, "extra": dict}``.

    Raises:
        CheckpointMismatchError: the checkpoint is of another model (names the differing keys).
        ValueError: the file is not a training checkpoint.
    """
    state = load(path)
    if not isinstance(state, dict) or state.get("format") != _FORMAT:
        raise ValueError(f"load_checkpoint: {os.fspath(path)!r} is not a training checkpoint "
                         f"(written by torsh_fn.training.save_checkpoint); for a bare "
                         f"state_dict use model.load_state_dict(torsh_fn.load(path))")
    load_model_state(model, state["model"], f"checkpoint {os.fspath(path)!r}")
    if optimizer is not None and state["optimizer"] is not None:
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state["scheduler"] is not None:
        scheduler.load_state_dict(state["scheduler"])
    if restore_rng:
        _random.set_rng_state(state["rng_state"])
    return {"epoch": int(state["epoch"]), "step": int(state["step"]), "extra": state["extra"]}


@jit
def train_step(model: Module, optimizer: Any, x: jax.Array, y: jax.Array) -> jax.Array:
    """One compiled step of cross-entropy training; returns the batch's mean loss.

    ``x`` ``(N, ...)`` inputs, ``y`` ``(N,)`` class indices; ``model`` and ``optimizer`` are
    updated in place (``torsh_fn.jit``).
    """
    optimizer.zero_grad()
    loss = backward(lambda: F.cross_entropy(model(x), y))
    optimizer.step()
    return loss


@jit
def _eval_batch(model: Module, x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    logits = model(x)
    loss = F.cross_entropy(logits, y, reduction="sum")
    return loss, jnp.sum(jnp.argmax(logits, -1) == y)


def evaluate(model: Module, data: tuple[np.ndarray, np.ndarray],
             batch_size: int = 500) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` (in eval mode) on ``(x, y)``."""
    was_training = model.training
    model.eval()
    x, y = data
    total_loss, correct = 0.0, 0
    for i in range(0, len(x), batch_size):
        loss, right = _eval_batch(model, x[i:i + batch_size], y[i:i + batch_size])
        total_loss, correct = total_loss + float(loss), correct + int(right)
    model.train(was_training)
    return total_loss / len(x), correct / len(x)


def _progress(total: int, initial: int, enabled: bool) -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError as exc:
        raise ImportError("the progress bar needs tqdm: pip install 'torsh-fn[train]'") from exc
    return tqdm(total=total, initial=initial, unit="step", disable=not enabled, mininterval=0.25,
                dynamic_ncols=True)


def fit(model: Module, optimizer: Any, train: tuple[np.ndarray, np.ndarray],
        val: tuple[np.ndarray, np.ndarray], *, epochs: int, batch_size: int = 64,
        scheduler: Any = None, seed: int = 0, out: str | os.PathLike | None = None,
        resume: str | os.PathLike | None = None, extra: Mapping[str, Any] | None = None,
        progress: bool = True) -> list[dict[str, Any]]:
    """Train a classifier for ``epochs`` epochs; validate and checkpoint after each.

    Args:
        model, optimizer, scheduler: the objects to train (``scheduler.step()`` once an epoch).
        train, val: ``(x, y)`` numpy arrays, ``x`` ``(N, ...)`` float, ``y`` ``(N,)`` int.
        epochs: the epoch to stop after (counting epochs done before a resume).
        batch_size: training batch size (the last partial batch of an epoch is dropped).
        seed: seeds the shuffling of epoch ``e`` (with ``e``), so a resumed run sees the same
            batches; the global generator (dropout) is the caller's to seed.
        out: folder for ``checkpoint_epoch<e>.safetensors`` (none written when ``None``).
        resume: a checkpoint to continue from (its history is kept).
        extra: JSON-able values stored in each checkpoint (e.g. the run's config).
        progress: show the progress bar (a line per epoch is printed either way).

    Returns: the history, one dict per epoch: ``epoch``, ``step``, ``train_loss``,
    ``val_loss``, ``val_accuracy``, ``seconds``, ``samples_per_second``.
    """
    history: list[dict[str, Any]] = []
    start_epoch, step = 0, 0
    if resume is not None:
        state = load_checkpoint(resume, model, optimizer, scheduler)
        start_epoch, step = state["epoch"], state["step"]
        history = list(state["extra"].get("history", []))
    loader = DataLoader(TensorDataset(*train), batch_size=batch_size, shuffle=True,
                        drop_last=True, generator=_random.Generator())
    per_epoch = len(loader)
    if per_epoch == 0:
        raise ValueError(f"fit: batch_size={batch_size} is larger than the {len(train[0])} "
                         f"training samples")
    bar = _progress(epochs * per_epoch, start_epoch * per_epoch, progress)
    model.train()
    try:
        for epoch in range(start_epoch + 1, epochs + 1):
            bar.set_description(f"epoch {epoch}/{epochs}")
            loader.generator.manual_seed(seed * 100_003 + epoch)
            started, losses = time.perf_counter(), []
            for x, y in loader:
                losses.append(train_step(model, optimizer, x, y))
                step += 1
                bar.update()
                if step % 10 == 0:
                    rate = len(losses) * batch_size / (time.perf_counter() - started)
                    bar.set_postfix(loss=f"{float(losses[-1]):.4f}", samples_s=f"{rate:,.0f}")
            if scheduler is not None:
                scheduler.step()
            seconds = time.perf_counter() - started
            val_loss, val_acc = evaluate(model, val)
            history.append({
                "epoch": epoch, "step": step, "train_loss": float(jnp.mean(jnp.stack(losses))),
                "val_loss": val_loss, "val_accuracy": val_acc, "seconds": seconds,
                "samples_per_second": per_epoch * batch_size / seconds})
            bar.write(f"epoch {epoch}/{epochs}: train loss {history[-1]['train_loss']:.4f}, "
                      f"val loss {val_loss:.4f}, val accuracy {val_acc:.2%}, {seconds:.1f} s")
            if out is not None:
                Path(out).mkdir(parents=True, exist_ok=True)
                save_checkpoint(Path(out) / f"checkpoint_epoch{epoch}.safetensors", model,
                                optimizer, scheduler, epoch=epoch, step=step,
                                extra={**(extra or {}), "history": history})
    finally:
        bar.close()
    return history
