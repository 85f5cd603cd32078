"""ResNet-18/34/50 with torchvision's structure and key names (a torchvision state_dict loads
unchanged; ``in_channels`` only changes the shape of ``conv1.weight``)."""

from __future__ import annotations

import jax

from .. import nn
from ._layers import BatchNorm2d

__all__ = ["BasicBlock", "Bottleneck", "ResNet", "resnet18", "resnet34", "resnet50"]


def _conv(cin: int, cout: int, k: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False)


def _downsample(cin: int, cout: int, stride: int) -> nn.Sequential | None:
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(_conv(cin, cout, 1, stride), BatchNorm2d(cout))


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers and a shortcut (ResNet-18/34)."""

    expansion = 1

    def __init__(self, cin: int, width: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1, self.bn1 = _conv(cin, width, 3, stride), BatchNorm2d(width)
        self.relu = nn.ReLU()
        self.conv2, self.bn2 = _conv(width, width, 3), BatchNorm2d(width)
        self.downsample = _downsample(cin, width, stride)

    def forward(self, x: jax.Array) -> jax.Array:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class Bottleneck(nn.Module):
    """1x1, 3x3 (strided, as torchvision's V1.5), 1x1 conv-BN layers and a shortcut (ResNet-50)."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1) -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1, self.bn1 = _conv(cin, width, 1), BatchNorm2d(width)
        self.conv2, self.bn2 = _conv(width, width, 3, stride), BatchNorm2d(width)
        self.conv3, self.bn3 = _conv(width, cout, 1), BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.downsample = _downsample(cin, cout, stride)

    def forward(self, x: jax.Array) -> jax.Array:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class ResNet(nn.Module):
    """torchvision's ResNet: stem (7x7/2 conv, BN, ReLU, 3x3/2 max pool), four stages, global
    average pooling, ``fc``.

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        layers: blocks per stage, e.g. ``(2, 2, 2, 2)`` for ResNet-18.
        num_classes: size of the output.
        in_channels: image channels.

    Shapes: ``(N, in_channels, H, W)`` -> ``(N, num_classes)``.

    Example:
        >>> resnet18(num_classes=10)(jnp.ones((1, 3, 32, 32))).shape
        (1, 10)
    """

    def __init__(self, block: type[BasicBlock | Bottleneck], layers: tuple[int, ...],
                 num_classes: int = 1000, in_channels: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1, self.relu = BatchNorm2d(64), nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        cin = 64
        for i, (count, width) in enumerate(zip(layers, (64, 128, 256, 512))):
            blocks = []
            for j in range(count):
                blocks.append(block(cin, width, 2 if i > 0 and j == 0 else 1))
                cin = width * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: jax.Array) -> jax.Array:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).reshape(x.shape[0], -1))


def resnet18(**kwargs) -> ResNet:
    """ResNet-18 (torchvision's ``resnet18``); ``kwargs`` go to :class:`ResNet`."""
    return ResNet(BasicBlock, (2, 2, 2, 2), **kwargs)


def resnet34(**kwargs) -> ResNet:
    """ResNet-34 (torchvision's ``resnet34``)."""
    return ResNet(BasicBlock, (3, 4, 6, 3), **kwargs)


def resnet50(**kwargs) -> ResNet:
    """ResNet-50 (torchvision's ``resnet50``)."""
    return ResNet(Bottleneck, (3, 4, 6, 3), **kwargs)
