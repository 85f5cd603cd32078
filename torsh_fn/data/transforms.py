"""Image transforms as small numpy callables, after ``torchvision.transforms``.

Images follow torchvision's two conventions: before :class:`ToTensor` an image is a numpy
``uint8`` array of shape ``(H, W, C)`` or ``(H, W)`` (what a PIL image holds); after it, a
floating array of shape ``(..., C, H, W)``. Geometric transforms accept both: a ``uint8`` array
with three dimensions is read as ``(H, W, C)``, anything else as ``(..., H, W)``.

Random transforms draw from ``generator`` (a ``numpy.random.Generator``) when given; by default
they draw from the stream of the batch being loaded by the DataLoader (fixed by the epoch's seed
and the batch's position, so batches do not depend on ``num_workers``), and outside a DataLoader
from a stream seeded by the global generator (``torsh_fn.manual_seed``).

Example:
    >>> train = Compose([RandomCrop(32, padding=4), RandomHorizontalFlip(), ToTensor(),
    ...                  Normalize((0.49, 0.48, 0.45), (0.25, 0.24, 0.26))])
    >>> train(np.zeros((32, 32, 3), np.uint8)).shape
    (3, 32, 32)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ._rng import batch_rng

__all__ = [
    "Compose", "ToTensor", "Normalize", "Resize", "CenterCrop", "RandomCrop",
    "RandomHorizontalFlip", "Lambda",
]

_PAD_MODES = ("constant", "edge", "reflect", "symmetric")
_INTERPOLATIONS = ("bilinear", "nearest")


def _hw_axes(img: np.ndarray) -> tuple[int, int]:
    if img.dtype == np.uint8 and img.ndim == 3:
        return 0, 1
    if img.ndim < 2:
        raise ValueError(f"expected an image with at least 2 dimensions, got shape {img.shape}")
    return img.ndim - 2, img.ndim - 1


def _pair(owner: str, name: str, size: int | Sequence[int]) -> tuple[int, int]:
    pair = (size, size) if isinstance(size, int | np.integer) else tuple(size)
    if len(pair) != 2 or not all(isinstance(s, int | np.integer) and s > 0 for s in pair):
        raise ValueError(f"{owner}: {name}: expected a positive int or (height, width), "
                         f"got {size!r}")
    return int(pair[0]), int(pair[1])


def _rng(generator: np.random.Generator | None) -> np.random.Generator:
    return batch_rng() if generator is None else generator


def _pad(img: np.ndarray, left: int, top: int, right: int, bottom: int, mode: str,
         fill: float) -> np.ndarray:
    widths = [(0, 0)] * img.ndim
    h_ax, w_ax = _hw_axes(img)
    widths[h_ax], widths[w_ax] = (top, bottom), (left, right)
    if mode == "constant":
        return np.pad(img, widths, mode="constant", constant_values=fill)
    return np.pad(img, widths, mode=mode)


def _crop(img: np.ndarray, top: int, left: int, height: int, width: int) -> np.ndarray:
    index = [slice(None)] * img.ndim
    h_ax, w_ax = _hw_axes(img)
    index[h_ax], index[w_ax] = slice(top, top + height), slice(left, left + width)
    return img[tuple(index)]


class Compose:
    """Apply ``transforms`` one after another.

    Example:
        >>> Compose([ToTensor(), Lambda(lambda x: x * 2)])(np.ones((2, 2), np.uint8)).max()
        np.float32(0.007843138)
    """

    def __init__(self, transforms: Sequence[Callable[[Any], Any]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, img: Any) -> Any:
        for t in self.transforms:
            img = t(img)
        return img

    def __repr__(self) -> str:
        return "Compose(" + ", ".join(repr(t) for t in self.transforms) + ")"


class ToTensor:
    """``(H, W, C)`` or ``(H, W)`` array -> ``(C, H, W)``; ``uint8`` is scaled to float32 in
    [0, 1], other dtypes are kept (as torchvision's ``ToTensor``).

    Example:
        >>> ToTensor()(np.full((4, 5, 3), 255, np.uint8)).shape
        (3, 4, 5)
    """

    def __call__(self, pic: Any) -> np.ndarray:
        arr = np.asarray(pic)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        if arr.ndim != 3:
            raise ValueError(f"ToTensor: pic: expected an (H, W) or (H, W, C) array, "
                             f"got shape {arr.shape}")
        chw = np.ascontiguousarray(arr.transpose(2, 0, 1))
        if chw.dtype == np.uint8:
            return chw.astype(np.float32) / np.float32(255)
        return chw


class Normalize:
    """``(x - mean[c]) / std[c]`` for each channel ``c`` of a floating ``(..., C, H, W)`` array.

    Example:
        >>> Normalize([0.5], [0.5])(np.ones((1, 2, 2), np.float32)).max()
        np.float32(1.0)
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], inplace: bool = False) -> None:
        self.mean = np.asarray(mean, dtype=np.float64)
        self.std = np.asarray(std, dtype=np.float64)
        if (self.std == 0).any():
            raise ValueError(f"Normalize: std: expected non-zero values, got {list(std)}")
        self.inplace = inplace  # accepted for PyTorch code; the result is always a new array

    def __call__(self, tensor: np.ndarray) -> np.ndarray:
        if not np.issubdtype(tensor.dtype, np.floating):
            raise TypeError(f"Normalize: tensor: expected a floating array (apply ToTensor "
                            f"first), got {tensor.dtype}")
        if tensor.ndim < 3:
            raise ValueError(f"Normalize: tensor: expected shape (..., C, H, W), "
                             f"got {tensor.shape}")
        mean = self.mean.astype(tensor.dtype).reshape(-1, 1, 1)
        std = self.std.astype(tensor.dtype).reshape(-1, 1, 1)
        return (tensor - mean) / std

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean.tolist()}, std={self.std.tolist()})"


def _source_index(out_size: int, in_size: int, mode: str) -> tuple[np.ndarray, ...]:
    scale = in_size / out_size
    dst = np.arange(out_size, dtype=np.float64)
    if mode == "nearest":
        return (np.minimum(np.floor(dst * scale).astype(np.int64), in_size - 1),)
    src = np.maximum((dst + 0.5) * scale - 0.5, 0.0)  # half-pixel centres, align_corners=False
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    return i0, i1, np.clip(src - i0, 0.0, 1.0)


def _resize_axis(x: np.ndarray, axis: int, out_size: int, mode: str) -> np.ndarray:
    index = _source_index(out_size, x.shape[axis], mode)
    if mode == "nearest":
        return np.take(x, index[0], axis=axis)
    i0, i1, frac = index
    shape = [1] * x.ndim
    shape[axis] = out_size
    frac = frac.astype(x.dtype).reshape(shape)
    return np.take(x, i0, axis=axis) * (1 - frac) + np.take(x, i1, axis=axis) * frac


class Resize:
    """Resize to ``size``: ``(height, width)``, or an int for the shorter side (keeping the
    aspect ratio). Bilinear interpolation with half-pixel centres and no antialiasing (as
    ``torch.nn.functional.interpolate(..., align_corners=False)``), or nearest.

    Example:
        >>> Resize(16)(np.zeros((32, 64, 3), np.uint8)).shape
        (16, 32, 3)
    """

    def __init__(self, size: int | Sequence[int], interpolation: str = "bilinear") -> None:
        if interpolation not in _INTERPOLATIONS:
            raise ValueError(f"Resize: interpolation: expected one of {_INTERPOLATIONS}, "
                             f"got {interpolation!r}")
        pair = _pair("Resize", "size", size)
        self.size = int(size) if isinstance(size, int | np.integer) else pair
        self.interpolation = interpolation

    def _out_size(self, h: int, w: int) -> tuple[int, int]:
        if not isinstance(self.size, int | np.integer):
            return self.size
        if w <= h:
            return int(self.size * h / w), int(self.size)
        return int(self.size), int(self.size * w / h)

    def __call__(self, img: np.ndarray) -> np.ndarray:
        h_ax, w_ax = _hw_axes(img)
        out_h, out_w = self._out_size(img.shape[h_ax], img.shape[w_ax])
        x = img if np.issubdtype(img.dtype, np.floating) else img.astype(np.float32)
        x = _resize_axis(_resize_axis(x, h_ax, out_h, self.interpolation), w_ax, out_w,
                         self.interpolation)
        if np.issubdtype(img.dtype, np.integer):
            info = np.iinfo(img.dtype)
            x = np.clip(np.round(x), info.min, info.max)
        return x.astype(img.dtype)


class CenterCrop:
    """The central ``size`` window (padded with zeros where the image is smaller).

    Example:
        >>> CenterCrop(2)(np.arange(16.0).reshape(1, 4, 4))[0]
        array([[ 5.,  6.],
               [ 9., 10.]])
    """

    def __init__(self, size: int | Sequence[int]) -> None:
        self.size = _pair("CenterCrop", "size", size)

    def __call__(self, img: np.ndarray) -> np.ndarray:
        h_ax, w_ax = _hw_axes(img)
        (th, tw), h, w = self.size, img.shape[h_ax], img.shape[w_ax]
        if th > h or tw > w:
            pad_w, pad_h = max(tw - w, 0), max(th - h, 0)
            img = _pad(img, pad_w // 2, pad_h // 2, (pad_w + 1) // 2, (pad_h + 1) // 2,
                       "constant", 0)
            h, w = img.shape[h_ax], img.shape[w_ax]
        return _crop(img, round((h - th) / 2.0), round((w - tw) / 2.0), th, tw)


class RandomCrop:
    """A ``size`` window at a random place, after optional ``padding``.

    Args:
        size: ``(height, width)`` or an int for a square.
        padding: an int (all sides), ``(left/right, top/bottom)`` or ``(left, top, right,
            bottom)``, as in torchvision.
        pad_if_needed: pad an image smaller than ``size``.
        fill: the value of constant padding.
        padding_mode: 'constant', 'edge', 'reflect' or 'symmetric'.
        generator: a ``numpy.random.Generator``; by default the DataLoader's batch stream.

    Example:
        >>> RandomCrop(32, padding=4)(np.zeros((32, 32, 3), np.uint8)).shape
        (32, 32, 3)
    """

    def __init__(self, size: int | Sequence[int], padding: int | Sequence[int] | None = None,
                 pad_if_needed: bool = False, fill: float = 0, padding_mode: str = "constant",
                 generator: np.random.Generator | None = None) -> None:
        self.size = _pair("RandomCrop", "size", size)
        if padding_mode not in _PAD_MODES:
            raise ValueError(f"RandomCrop: padding_mode: expected one of {_PAD_MODES}, "
                             f"got {padding_mode!r}")
        self.padding = self._ltrb(padding)
        self.pad_if_needed = pad_if_needed
        self.fill = fill
        self.padding_mode = padding_mode
        self.generator = generator

    @staticmethod
    def _ltrb(padding: int | Sequence[int] | None) -> tuple[int, int, int, int]:
        if padding is None:
            return 0, 0, 0, 0
        p = [padding] if isinstance(padding, int | np.integer) else list(padding)
        if len(p) not in (1, 2, 4) or not all(isinstance(v, int | np.integer) and v >= 0
                                               for v in p):
            raise ValueError(f"RandomCrop: padding: expected a non-negative int or a sequence "
                             f"of 2 or 4 of them, got {padding!r}")
        if len(p) == 1:
            return p[0], p[0], p[0], p[0]
        if len(p) == 2:
            return p[0], p[1], p[0], p[1]
        return p[0], p[1], p[2], p[3]

    def __call__(self, img: np.ndarray) -> np.ndarray:
        if any(self.padding):
            img = _pad(img, *self.padding, self.padding_mode, self.fill)
        h_ax, w_ax = _hw_axes(img)
        (th, tw), h, w = self.size, img.shape[h_ax], img.shape[w_ax]
        if self.pad_if_needed and (h < th or w < tw):
            pad_w, pad_h = max(tw - w, 0), max(th - h, 0)
            img = _pad(img, pad_w, pad_h, pad_w, pad_h, self.padding_mode, self.fill)
            h, w = img.shape[h_ax], img.shape[w_ax]
        if h < th or w < tw:
            raise ValueError(f"RandomCrop: expected an image of at least {(th, tw)} after "
                             f"padding, got {(h, w)}")
        rng = _rng(self.generator)
        top, left = int(rng.integers(0, h - th + 1)), int(rng.integers(0, w - tw + 1))
        return _crop(img, top, left, th, tw)


class RandomHorizontalFlip:
    """Mirror the image left-right with probability ``p``.

    Example:
        >>> RandomHorizontalFlip(p=1.0)(np.arange(3.0).reshape(1, 1, 3))
        array([[[2., 1., 0.]]])
    """

    def __init__(self, p: float = 0.5, generator: np.random.Generator | None = None) -> None:
        if not 0 <= p <= 1:
            raise ValueError(f"RandomHorizontalFlip: p: expected a probability in [0, 1], "
                             f"got {p!r}")
        self.p = p
        self.generator = generator

    def __call__(self, img: np.ndarray) -> np.ndarray:
        if _rng(self.generator).random() < self.p:
            return np.flip(img, axis=_hw_axes(img)[1]).copy()
        return img


class Lambda:
    """Apply a function as a transform.

    Example:
        >>> Lambda(lambda x: x + 1)(np.zeros(2))
        array([1., 1.])
    """

    def __init__(self, lambd: Callable[[Any], Any]) -> None:
        if not callable(lambd):
            raise TypeError(f"Lambda: lambd: expected a callable, got {type(lambd).__name__}")
        self.lambd = lambd

    def __call__(self, img: Any) -> Any:
        return self.lambd(img)
