"""Transforms: numerics against torch where torch has the op, seeding, layouts, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import torsh_fn
from tests.oracle import assert_close
from torsh_fn.data import transforms as T


def test_to_tensor_scales_uint8_and_moves_channels_first(rng):
    hwc = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    out = T.ToTensor()(hwc)
    assert out.shape == (3, 4, 5) and out.dtype == np.float32
    assert_close(out, torch.from_numpy(hwc).permute(2, 0, 1).float() / 255)
    assert T.ToTensor()(hwc[..., 0]).shape == (1, 4, 5)
    assert T.ToTensor()(hwc.astype(np.float64)).dtype == np.float64  # other dtypes: no scaling
    with pytest.raises(ValueError, match=r"ToTensor: pic: expected an \(H, W\) or \(H, W, C\)"):
        T.ToTensor()(np.zeros(3))


def test_normalize_matches_the_formula(rng):
    x = rng.random((2, 3, 4, 4)).astype(np.float32)
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.6, 0.7)
    expected = (torch.from_numpy(x) - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[
        :, None, None]
    assert_close(T.Normalize(mean, std)(x), expected)
    with pytest.raises(TypeError, match="Normalize: tensor: expected a floating array"):
        T.Normalize(mean, std)(np.zeros((3, 2, 2), np.uint8))
    with pytest.raises(ValueError, match="Normalize: std: expected non-zero values"):
        T.Normalize((0,), (0,))


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
@pytest.mark.parametrize("size", [(5, 7), (16, 3), (9, 9)])
def test_resize_matches_torch_interpolate(rng, mode, size):
    x = rng.standard_normal((2, 3, 9, 6)).astype(np.float32)
    kwargs = {"align_corners": False} if mode == "bilinear" else {}
    expected = F.interpolate(torch.from_numpy(x), size=size, mode=mode, **kwargs)
    assert_close(T.Resize(size, interpolation=mode)(x), expected, rtol=1e-5, atol=1e-5)


def test_resize_int_keeps_aspect_and_uint8_layout():
    img = np.full((20, 40, 3), 200, np.uint8)
    out = T.Resize(10)(img)
    assert out.shape == (10, 20, 3) and out.dtype == np.uint8 and (out == 200).all()
    assert T.Resize(10)(np.zeros((1, 40, 20), np.float32)).shape == (1, 20, 10)
    with pytest.raises(ValueError, match="Resize: interpolation: expected one of"):
        T.Resize(3, interpolation="cubic")


def test_center_crop_like_torchvision():
    x = np.arange(36.0).reshape(1, 6, 6)
    np.testing.assert_array_equal(T.CenterCrop((2, 4))(x), x[:, 2:4, 1:5])
    padded = T.CenterCrop(8)(np.ones((1, 6, 6)))
    assert padded.shape == (1, 8, 8) and padded.sum() == 36 and padded[0, 0, 0] == 0
    with pytest.raises(ValueError, match="CenterCrop: size: expected a positive int"):
        T.CenterCrop(0)


def test_random_crop_takes_a_window_of_the_padded_image(rng):
    img = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    padded = np.pad(img, ((2, 2), (2, 2), (0, 0)))
    crop = T.RandomCrop(8, padding=2, generator=np.random.default_rng(0))
    seen = set()
    for _ in range(30):
        out = crop(img)
        hits = [(i, j) for i in range(5) for j in range(5)
                if np.array_equal(padded[i:i + 8, j:j + 8], out)]
        assert hits
        seen.add(hits[0])
    assert len(seen) > 5
    reflect = T.RandomCrop(4, padding=(1, 2), padding_mode="reflect", pad_if_needed=True)
    assert reflect(np.zeros((2, 1, 1), np.float32)).shape == (2, 4, 4)
    with pytest.raises(ValueError, match="RandomCrop: padding: expected a non-negative int"):
        T.RandomCrop(4, padding=(1, 2, 3))
    with pytest.raises(ValueError, match=r"RandomCrop: expected an image of at least \(9, 9\)"):
        T.RandomCrop(9)(img)


def test_random_flip_probability_and_generator():
    img = np.arange(6.0).reshape(1, 2, 3)
    np.testing.assert_array_equal(T.RandomHorizontalFlip(1.0)(img), img[..., ::-1])
    np.testing.assert_array_equal(T.RandomHorizontalFlip(0.0)(img), img)

    def flips(seed):
        flip = T.RandomHorizontalFlip(generator=np.random.default_rng(seed))
        return [bool(flip(img)[0, 0, 0] == 2) for _ in range(40)]

    assert flips(1) == flips(1) and 10 < sum(flips(1)) < 30
    with pytest.raises(ValueError, match=r"RandomHorizontalFlip: p: expected a probability"):
        T.RandomHorizontalFlip(2)


def test_random_transforms_outside_a_loader_follow_manual_seed():
    pipeline = T.Compose([T.RandomCrop(4, padding=2), T.RandomHorizontalFlip()])
    img = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)

    def run():
        return [pipeline(img) for _ in range(6)]

    torsh_fn.manual_seed(0)
    first = run()
    torsh_fn.manual_seed(0)
    assert all(np.array_equal(a, b) for a, b in zip(first, run()))
    assert any(not np.array_equal(first[0], x) for x in first[1:])


def test_compose_and_lambda():
    pipeline = T.Compose([T.ToTensor(), T.Lambda(lambda x: x * 255)])
    assert pipeline(np.full((2, 2), 3, np.uint8)).tolist() == [[[3.0, 3.0], [3.0, 3.0]]]
    assert "ToTensor" in repr(pipeline)
    with pytest.raises(TypeError, match="Lambda: lambd: expected a callable"):
        T.Lambda(3)
