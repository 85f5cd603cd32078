"""VGG-11 with torchvision's structure and key names (``features.<i>``, ``classifier.<i>``)."""

from __future__ import annotations

import jax

from .. import nn
from ._layers import Dropout

__all__ = ["VGG", "vgg11"]

_VGG11 = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


class VGG(nn.Module):
    """torchvision's VGG without BatchNorm: 3x3 conv-ReLU stacks and max pools, adaptive average
    pooling to 7x7, a three-layer classifier with dropout.

    Args:
        cfg: channels per conv, ``"M"`` for a 2x2 max pool.
        num_classes: size of the output.
        in_channels: image channels.
        hidden: width of the two hidden linear layers (torchvision: 4096).
        dropout: dropout probability in the classifier.

    Shapes: ``(N, in_channels, H, W)`` with ``H, W >= 32`` -> ``(N, num_classes)``.

    Example:
        >>> vgg11(num_classes=10, hidden=64)(jnp.ones((1, 3, 32, 32))).shape
        (1, 10)
    """

    def __init__(self, cfg: tuple[int | str, ...] = _VGG11, num_classes: int = 1000,
                 in_channels: int = 3, hidden: int = 4096, dropout: float = 0.5) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(in_channels, int(v), 3, padding=1), nn.ReLU()]
                in_channels = int(v)
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(in_channels * 49, hidden), nn.ReLU(), Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(), Dropout(dropout), nn.Linear(hidden, num_classes))

    def forward(self, x: jax.Array) -> jax.Array:
        x = self.avgpool(self.features(x))
        return self.classifier(x.reshape(x.shape[0], -1))


def vgg11(**kwargs) -> VGG:
    """VGG-11 (torchvision's ``vgg11``); ``kwargs`` go to :class:`VGG`."""
    return VGG(_VGG11, **kwargs)
