"""Offline datasets: IDX (MNIST) and CIFAR-10 binaries written here, image folders, digits."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from torsh_fn.data import (
    CIFAR10,
    MNIST,
    DataLoader,
    FakeData,
    FashionMNIST,
    ImageFolder,
    digits,
    transforms,
)
from torsh_fn.data._datasets import read_idx


def write_idx(path, array, compress=False):
    codes = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D,
             np.float64: 0x0E}
    header = bytes([0, 0, codes[array.dtype.type], array.ndim])
    header += struct.pack(f">{array.ndim}i", *array.shape)
    raw = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    with (gzip.open if compress else open)(path, "wb") as f:
        f.write(raw)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32, np.float64])
def test_read_idx_round_trips(tmp_path, rng, dtype):
    array = (rng.standard_normal((3, 4, 5)) * 50).astype(dtype)
    write_idx(tmp_path / "a", array)
    write_idx(tmp_path / "a.gz", array, compress=True)
    np.testing.assert_array_equal(read_idx(tmp_path / "a"), array)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.gz"), array)


def test_read_idx_rejects_other_files(tmp_path):
    (tmp_path / "x").write_bytes(b"\x80\x04junk")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "x")
    write_idx(tmp_path / "y", np.zeros((4, 4), np.uint8))
    (tmp_path / "y").write_bytes((tmp_path / "y").read_bytes()[:-3])
    with pytest.raises(ValueError, match="IDX file truncated"):
        read_idx(tmp_path / "y")


def _write_mnist(folder, n=5, compress=False, rng=None):
    folder.mkdir(parents=True, exist_ok=True)
    images = (rng or np.random.default_rng(0)).integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = np.arange(n, dtype=np.uint8) % 10
    suffix = ".gz" if compress else ""
    for prefix in ("train", "t10k"):
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images, compress)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels, compress)
    return images, labels


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_reads_idx_files_in_torchvision_layout(tmp_path, rng, compress):
    images, _labels = _write_mnist(tmp_path / "MNIST" / "raw", compress=compress, rng=rng)
    ds = MNIST(tmp_path, train=False, transform=transforms.ToTensor())
    assert len(ds) == 5 and ds.classes[3] == "3 - three"
    img, target = ds[3]
    assert img.shape == (1, 28, 28) and target == 3 and isinstance(target, int)
    np.testing.assert_allclose(img[0], images[3] / 255, rtol=1e-6)
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch[0].shape == (4, 1, 28, 28) and batch[1].dtype == np.int64


def test_fashion_mnist_reads_its_own_folder(tmp_path):
    _write_mnist(tmp_path / "FashionMNIST" / "raw")
    ds = FashionMNIST(tmp_path)
    assert ds.classes[9] == "Ankle boot" and ds[0][0].shape == (28, 28)


def test_missing_files_say_which_files_and_where(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"MNIST: expected the files "
                                                r"\['train-images-idx3-ubyte', 'train-labels"):
        MNIST(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"CIFAR10: expected the files \['test_batch.bin"
                                                r"'\].*cifar-10-batches-bin"):
        CIFAR10(tmp_path, train=False)


def test_cifar10_reads_binary_records(tmp_path, rng):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    chw = rng.integers(0, 256, (3, 3, 32, 32), dtype=np.uint8)
    labels = np.array([7, 0, 9], np.uint8)
    records = np.concatenate([labels[:, None], chw.reshape(3, -1)], axis=1)
    (folder / "test_batch.bin").write_bytes(records.tobytes())
    ds = CIFAR10(tmp_path, train=False)
    img, target = ds[2]
    assert len(ds) == 3 and target == 9 and ds.classes[target] == "truck"
    np.testing.assert_array_equal(img, chw[2].transpose(1, 2, 0))
    (folder / "test_batch.bin").write_bytes(records.tobytes()[:-1])
    with pytest.raises(ValueError, match="expected a whole number of 3073-byte records"):
        CIFAR10(folder, train=False)


def test_image_folder_reads_pngs_with_pillow(tmp_path, rng):
    from PIL import Image

    pictures = {}
    for cls in ("cat", "dog"):
        (tmp_path / cls / "sub").mkdir(parents=True)
        for i in range(2):
            arr = rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)
            path = tmp_path / cls / ("sub" if i else "") / f"{i}.png"
            Image.fromarray(arr).save(path)
            pictures[str(path)] = arr
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    ds = ImageFolder(tmp_path, transform=transforms.ToTensor())
    assert ds.classes == ["cat", "dog"] and ds.targets == [0, 0, 1, 1]
    for (path, target), (img, t) in zip(ds.samples, ds):
        assert t == target
        np.testing.assert_allclose(img, pictures[path].transpose(2, 0, 1) / 255, rtol=1e-6)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"class folder 'empty' .* has no valid files"):
        ImageFolder(tmp_path)
    with pytest.raises(FileNotFoundError, match="ImageFolder: root: expected a folder"):
        ImageFolder(tmp_path / "nowhere")


def test_digits_from_scikit_learn():
    ds = digits()
    img, target = ds[0]
    assert len(ds) == 1797 and img.shape == (8, 8) and img.dtype == np.float32
    assert target == 0 and 0 <= img.min() and img.max() <= 1


def test_digits_without_scikit_learn_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"pip install torsh-fn\[train\]"):
        digits()


def test_fake_data_is_fixed_by_index_and_offset():
    a, b = FakeData(4, (3, 5, 6), num_classes=3), FakeData(4, (3, 5, 6), random_offset=1)
    img, target = a[2]
    assert img.shape == (5, 6, 3) and img.dtype == np.uint8 and 0 <= target < 3
    np.testing.assert_array_equal(a[2][0], img)
    assert not np.array_equal(b[2][0], img)
    with pytest.raises(IndexError, match="FakeData: index: expected 0 <= index < 4, got 4"):
        a[4]
