"""LeNet-5 and the seed's CNN (LeNet/AlexNet style, with BatchNorm, Dropout, adaptive pooling)."""

from __future__ import annotations

from collections.abc import Sequence

import jax

from .. import nn
from ._layers import BatchNorm2d, Dropout

__all__ = ["LeNet5", "SeedCNN", "lenet5", "seed_cnn"]


class LeNet5(nn.Module):
    """LeNet-5 for 28x28 images (ReLU and max pooling, ``padding=2`` on the first conv).

    Args:
        in_channels: image channels.
        num_classes: size of the output.

    Shapes: ``(N, in_channels, 28, 28)`` -> ``(N, num_classes)``.
    Keys: ``features.{0,3}`` (convs), ``classifier.{1,3,5}`` (linears).

    Example:
        >>> LeNet5()(jnp.ones((2, 1, 28, 28))).shape
        (2, 10)
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
            nn.Linear(84, num_classes))

    def forward(self, x: jax.Array) -> jax.Array:
        return self.classifier(self.features(x))


def _conv_bn(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), BatchNorm2d(cout), nn.ReLU()]


class SeedCNN(nn.Module):
    """The seed's CNN: three conv-BatchNorm-ReLU blocks (max pooling after the second), adaptive
    average pooling to ``pool x pool``, and a dropout-regularised two-layer classifier.

    Args:
        in_channels: image channels.
        num_classes: size of the output.
        widths: channels of the three conv blocks.
        pool: output side of the adaptive pooling (any input of side >= 2 works).
        hidden: width of the hidden linear layer.
        dropout: dropout probability before each linear layer.

    Shapes: ``(N, in_channels, H, W)`` -> ``(N, num_classes)``.

    Example:
        >>> SeedCNN()(jnp.ones((2, 1, 8, 8))).shape
        (2, 10)
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10,
                 widths: Sequence[int] = (32, 64, 64), pool: int = 2, hidden: int = 128,
                 dropout: float = 0.25) -> None:
        super().__init__()
        w1, w2, w3 = widths
        self.features = nn.Sequential(*_conv_bn(in_channels, w1), *_conv_bn(w1, w2),
                                      nn.MaxPool2d(2), *_conv_bn(w2, w3))
        self.avgpool = nn.AdaptiveAvgPool2d(pool)
        self.classifier = nn.Sequential(
            nn.Flatten(), Dropout(dropout), nn.Linear(w3 * pool * pool, hidden), nn.ReLU(),
            Dropout(dropout), nn.Linear(hidden, num_classes))

    def forward(self, x: jax.Array) -> jax.Array:
        return self.classifier(self.avgpool(self.features(x)))


def lenet5(**kwargs) -> LeNet5:
    """:class:`LeNet5` (1 channel, 10 classes by default)."""
    return LeNet5(**kwargs)


def seed_cnn(**kwargs) -> SeedCNN:
    """:class:`SeedCNN` (1 channel, 10 classes by default)."""
    return SeedCNN(**kwargs)
