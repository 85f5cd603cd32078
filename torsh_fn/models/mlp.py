"""A multilayer perceptron classifier: flatten, Linear + ReLU (+ Dropout) blocks, Linear."""

from __future__ import annotations

from collections.abc import Sequence

import jax

from .. import nn
from ._layers import Dropout

__all__ = ["MLP", "mlp"]


class MLP(nn.Module):
    """``Flatten -> [Linear -> ReLU -> Dropout] * len(hidden) -> Linear``.

    Args:
        in_features: size of a flattened input (64 for the 8x8 digits, 784 for MNIST).
        hidden: widths of the hidden layers.
        num_classes: size of the output.
        dropout: dropout probability after each hidden layer (0 leaves it out).

    Shapes: input ``(N, *)`` with ``in_features`` elements per sample -> ``(N, num_classes)``.
    Keys: ``net.<i>.weight``/``net.<i>.bias`` as in ``nn.Sequential``.

    Example:
        >>> MLP(64, (32,), 10)(jnp.ones((2, 8, 8))).shape
        (2, 10)
    """

    def __init__(self, in_features: int = 64, hidden: Sequence[int] = (256, 128),
                 num_classes: int = 10, dropout: float = 0.0) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        for width in hidden:
            layers += [nn.Linear(in_features, width), nn.ReLU()]
            layers += [Dropout(dropout)] if dropout else []
            in_features = width
        self.net = nn.Sequential(*layers, nn.Linear(in_features, num_classes))

    def forward(self, x: jax.Array) -> jax.Array:
        return self.net(x)


def mlp(**kwargs) -> MLP:
    """:class:`MLP` with its defaults (64 inputs, hidden (256, 128), 10 classes)."""
    return MLP(**kwargs)
