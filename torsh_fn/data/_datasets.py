"""Datasets that need no network: scikit-learn's digits, MNIST/FashionMNIST IDX files, CIFAR-10's
binary version and image folders read from local paths, and synthetic images.

Nothing here unpickles a file: IDX and CIFAR-10 binaries are parsed as raw bytes, images are
decoded by Pillow. Images come out as numpy ``uint8`` arrays ``(H, W)`` or ``(H, W, C)`` (what
torchvision's PIL images hold), so :mod:`torsh_fn.data.transforms` apply to them as to
torchvision's; targets are Python ints.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._dataset import Dataset

__all__ = ["digits", "MNIST", "FashionMNIST", "CIFAR10", "ImageFolder", "FakeData"]

Transform = Callable[[Any], Any] | None

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


class _LabelledImages(Dataset[tuple[Any, Any]]):
    """Arrays of images and integer targets in memory, with the torchvision dataset surface."""

    def __init__(self, data: np.ndarray, targets: np.ndarray, classes: Sequence[str],
                 transform: Transform, target_transform: Transform) -> None:
        self.data = data
        self.targets = targets
        self.classes = list(classes)
        self.transform = transform
        self.target_transform = target_transform

    @property
    def class_to_idx(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.classes)}

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        img, target = self.data[index], int(self.targets[index])
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(samples={len(self)}, image shape={self.data.shape[1:]})"


def digits(transform: Transform = None, target_transform: Transform = None) -> Dataset[Any]:
    """scikit-learn's 1,797 handwritten digits: 8x8 float32 images in [0, 1], targets 0-9.

    The data ships inside scikit-learn (``pip install torsh-fn[train]``); nothing is downloaded.

    Example:
        >>> ds = digits()
        >>> ds[0][0].shape, ds[0][1]
        ((8, 8), 0)
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise ImportError("digits() needs scikit-learn, which ships the data: "
                          "pip install torsh-fn[train]") from exc
    bunch = load_digits()
    images = (bunch.images / 16.0).astype(np.float32)
    return _LabelledImages(images, bunch.target.astype(np.int64), [str(d) for d in range(10)],
                           transform, target_transform)


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """The array in an IDX file (MNIST's format), gzip-compressed or not."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file (its first bytes are {raw[:4]!r})")
    ndim = raw[3]
    shape = tuple(int(d) for d in np.frombuffer(raw, ">i4", ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    count = int(np.prod(shape))
    offset = 4 + 4 * ndim
    if len(raw) - offset < count * dtype.itemsize:
        raise ValueError(f"{path}: IDX file truncated: shape {shape} needs "
                         f"{count * dtype.itemsize} bytes of data, found {len(raw) - offset}")
    data = np.frombuffer(raw, dtype, count, offset=offset).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def _find(owner: str, folders: Sequence[Path], names: Sequence[str], how: str) -> list[Path]:
    """The first folder holding every name (each possibly with a .gz suffix)."""
    for folder in folders:
        found = [next((p for p in (folder / n, folder / f"{n}.gz") if p.is_file()), None)
                 for n in names]
        if all(found):
            return found  # type: ignore[return-value]
    raise FileNotFoundError(
        f"{owner}: expected the files {list(names)} (optionally .gz) in one of "
        f"{[str(f) for f in folders]}; none has them all. torsh_fn downloads nothing: {how}")


class MNIST(_LabelledImages):
    """MNIST from its IDX files in a local folder: 28x28 ``uint8`` images, targets 0-9.

    Args:
        root: a folder holding ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
            ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte`` (each optionally ``.gz``),
            directly or in ``root/MNIST/raw`` (torchvision's layout).
        train: the 60,000 training images, else the 10,000 test images.
        transform, target_transform: applied to each image and target.
        download: accepted for torchvision code; nothing is downloaded.

    Example:
        >>> train = MNIST("~/data", train=True, transform=ToTensor())
    """

    classes_names = ("0 - zero", "1 - one", "2 - two", "3 - three", "4 - four", "5 - five",
                     "6 - six", "7 - seven", "8 - eight", "9 - nine")
    source = "http://yann.lecun.com/exdb/mnist/"

    def __init__(self, root: str | os.PathLike[str], train: bool = True,
                 transform: Transform = None, target_transform: Transform = None,
                 download: bool = False) -> None:
        root = Path(root).expanduser()
        prefix = "train" if train else "t10k"
        names = [f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"]
        folders = [root, root / type(self).__name__ / "raw", root / type(self).__name__]
        images, labels = _find(type(self).__name__, folders, names,
                               f"fetch them from {self.source} and place them there")
        data, targets = read_idx(images), read_idx(labels)
        if data.ndim != 3 or targets.shape != data.shape[:1]:
            raise ValueError(f"{type(self).__name__}: expected images (N, H, W) and labels (N,), "
                             f"got {data.shape} from {images} and {targets.shape} from {labels}")
        super().__init__(data, targets.astype(np.int64), self.classes_names, transform,
                         target_transform)
        self.train = train
        self.root = root


class FashionMNIST(MNIST):
    """Fashion-MNIST: MNIST's file format and layout (``root/FashionMNIST/raw``), clothing
    classes."""

    classes_names = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                     "Sneaker", "Bag", "Ankle boot")
    source = "https://github.com/zalandoresearch/fashion-mnist"


class CIFAR10(_LabelledImages):
    """CIFAR-10's binary version from a local folder: 32x32x3 ``uint8`` images, targets 0-9.

    Args:
        root: a folder holding ``data_batch_1.bin`` ... ``data_batch_5.bin`` and
            ``test_batch.bin`` (the ``cifar-10-batches-bin`` folder of
            ``cifar-10-binary.tar.gz``, or its parent).
        train, transform, target_transform, download: as for :class:`MNIST`.

    Example:
        >>> train = CIFAR10("~/data", train=True)
    """

    names = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
             "truck")
    _RECORD = 1 + 3 * 32 * 32

    def __init__(self, root: str | os.PathLike[str], train: bool = True,
                 transform: Transform = None, target_transform: Transform = None,
                 download: bool = False) -> None:
        root = Path(root).expanduser()
        names = ([f"data_batch_{i}.bin" for i in range(1, 6)] if train else ["test_batch.bin"])
        files = _find("CIFAR10", [root, root / "cifar-10-batches-bin"], names,
                      "fetch cifar-10-binary.tar.gz from https://www.cs.toronto.edu/~kriz/cifar"
                      ".html and unpack it there")
        records = [self._records(f) for f in files]
        rows = np.concatenate(records)
        data = rows[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        meta = files[0].parent / "batches.meta.txt"
        classes = meta.read_text().split() if meta.is_file() else self.names
        super().__init__(np.ascontiguousarray(data), rows[:, 0].astype(np.int64), classes,
                         transform, target_transform)
        self.train = train
        self.root = root

    @classmethod
    def _records(cls, path: Path) -> np.ndarray:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = np.frombuffer(f.read(), np.uint8)
        if raw.size % cls._RECORD:
            raise ValueError(f"CIFAR10: {path}: expected a whole number of {cls._RECORD}-byte "
                             f"records, got {raw.size} bytes")
        return raw.reshape(-1, cls._RECORD)


def _pil_loader(path: str) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError as exc:
        raise ImportError("ImageFolder reads images with Pillow: pip install pillow") from exc
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


class ImageFolder(Dataset[tuple[Any, int]]):
    """Images in ``root/<class>/**/<file>``; classes are the sorted sub-folder names.

    Args:
        root: the folder of class folders.
        transform, target_transform: applied to each image and target.
        loader: ``path -> image``; by default Pillow, giving an ``(H, W, 3)`` ``uint8`` array.
        is_valid_file: ``path -> bool``; by default the name ends in one of ``IMG_EXTENSIONS``.
        allow_empty: allow class folders without images.

    Example:
        >>> ds = ImageFolder("photos/train", transform=Compose([Resize(64), ToTensor()]))
        >>> ds.classes, ds.samples[0]
        (['cat', 'dog'], ('photos/train/cat/1.png', 0))
    """

    def __init__(self, root: str | os.PathLike[str], transform: Transform = None,
                 target_transform: Transform = None,
                 loader: Callable[[str], Any] | None = None,
                 is_valid_file: Callable[[str], bool] | None = None,
                 allow_empty: bool = False) -> None:
        self.root = str(Path(root).expanduser())
        if not os.path.isdir(self.root):
            raise FileNotFoundError(f"ImageFolder: root: expected a folder of class folders, "
                                    f"{self.root!r} is not a folder")
        self.classes = sorted(e.name for e in os.scandir(self.root) if e.is_dir())
        if not self.classes:
            raise FileNotFoundError(f"ImageFolder: expected class folders in {self.root!r}, "
                                    f"found none")
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        valid = is_valid_file or (lambda p: p.lower().endswith(IMG_EXTENSIONS))
        self.samples = self._scan(valid, allow_empty)
        self.targets = [t for _, t in self.samples]
        self.imgs = self.samples
        self.loader = loader or _pil_loader
        self.transform = transform
        self.target_transform = target_transform

    def _scan(self, valid: Callable[[str], bool], allow_empty: bool) -> list[tuple[str, int]]:
        samples = []
        for c in self.classes:
            found = [os.path.join(d, f)
                     for d, _, files in sorted(os.walk(os.path.join(self.root, c),
                                                       followlinks=True))
                     for f in sorted(files) if valid(os.path.join(d, f))]
            if not found and not allow_empty:
                raise FileNotFoundError(f"ImageFolder: class folder {c!r} in {self.root!r} has "
                                        f"no valid files (extensions {IMG_EXTENSIONS})")
            samples += [(p, self.class_to_idx[c]) for p in found]
        return samples

    def __getitem__(self, index: int) -> tuple[Any, int]:
        path, target = self.samples[index]
        img = self.loader(path)
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target

    def __len__(self) -> int:
        return len(self.samples)


class FakeData(Dataset[tuple[Any, int]]):
    """Random images and targets, each fixed by its index: a stand-in for a real dataset.

    Args:
        size: the number of samples.
        image_size: ``(C, H, W)`` as in torchvision; images come out ``(H, W, C)`` ``uint8``.
        num_classes: targets are uniform in ``[0, num_classes)``.
        transform, target_transform: applied to each image and target.
        random_offset: shifts the seeds, giving a different dataset of the same shape.

    Example:
        >>> img, target = FakeData(10, (3, 8, 8))[0]
        >>> img.shape, img.dtype
        ((8, 8, 3), dtype('uint8'))
    """

    def __init__(self, size: int = 1000, image_size: Sequence[int] = (3, 224, 224),
                 num_classes: int = 10, transform: Transform = None,
                 target_transform: Transform = None, random_offset: int = 0) -> None:
        if len(image_size) != 3 or not all(int(s) > 0 for s in image_size):
            raise ValueError(f"FakeData: image_size: expected (C, H, W) of positive ints, "
                             f"got {image_size!r}")
        self.size = size
        self.image_size = tuple(int(s) for s in image_size)
        self.num_classes = num_classes
        self.transform = transform
        self.target_transform = target_transform
        self.random_offset = random_offset

    def __getitem__(self, index: int) -> tuple[Any, int]:
        if not 0 <= index < self.size:
            raise IndexError(f"FakeData: index: expected 0 <= index < {self.size}, got {index}")
        rng = np.random.default_rng([self.random_offset, index])
        c, h, w = self.image_size
        img = rng.integers(0, 256, (h, w, c), dtype=np.uint8)
        target = int(rng.integers(0, self.num_classes))
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target

    def __len__(self) -> int:
        return self.size
