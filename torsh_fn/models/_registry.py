"""``list_models()`` and ``get(name, **kw)``: the zoo by name, with the shipped weights."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import nn
from ..serialization import load
from .gpt import gpt
from .lenet import lenet5, seed_cnn
from .mlp import mlp
from .resnet import resnet18, resnet34, resnet50
from .vgg import vgg11
from .vit import vit_tiny

__all__ = ["get", "list_models", "pretrained_path"]

_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "mlp": mlp, "lenet5": lenet5, "seed_cnn": seed_cnn, "resnet18": resnet18,
    "resnet34": resnet34, "resnet50": resnet50, "vgg11": vgg11, "vit_tiny": vit_tiny, "gpt": gpt,
}
_WEIGHTS = Path(__file__).parent / "weights"
_PRETRAINED = {"lenet5": "lenet5_digits.safetensors", "seed_cnn": "seed_cnn_digits.safetensors"}


def list_models() -> list[str]:
    """The names :func:`get` accepts, sorted.

    Example:
        >>> "resnet18" in list_models()
        True
    """
    return sorted(_BUILDERS)


def pretrained_path(name: str) -> Path:
    """The shipped weights of ``name`` (trained on the 8x8 digits; see
    ``scripts/train_shipped_weights.py``)."""
    if name not in _PRETRAINED:
        raise ValueError(f"models: no shipped weights for {name!r}; models with weights: "
                         f"{sorted(_PRETRAINED)}. torsh_fn downloads nothing: load a checkpoint "
                         f"with model.load_state_dict(torsh_fn.load(path))")
    return _WEIGHTS / _PRETRAINED[name]


def get(name: str, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """Build the zoo model ``name`` with ``kwargs`` passed to its constructor.

    Args:
        name: one of :func:`list_models`.
        pretrained: load the shipped digits weights (``lenet5``, ``seed_cnn``); the model is
            then built with its default sizes and any ``kwargs`` must agree with them.

    Example:
        >>> model = get("seed_cnn", pretrained=True).eval()
        >>> model(jnp.zeros((1, 1, 8, 8))).shape
        (1, 10)
    """
    if name not in _BUILDERS:
        raise ValueError(f"models: unknown model {name!r}; valid names: {list_models()}")
    path = pretrained_path(name) if pretrained else None
    model = _BUILDERS[name](**kwargs)
    if path is not None:
        model.load_state_dict(load(path))
    return model
