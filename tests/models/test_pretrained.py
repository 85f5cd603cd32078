"""The shipped weights: they load from the package (offline) and classify the held-out digits
(the validation split that ``scripts/train_shipped_weights.py`` leaves out) at >= 97%."""

from __future__ import annotations

import pytest

from torsh_fn import models
from torsh_fn.cli import load_dataset, resize_images
from torsh_fn.training import evaluate


@pytest.mark.parametrize("name, side", [("seed_cnn", 8), ("lenet5", 28)])
def test_shipped_weights_classify_held_out_digits(name, side):
    _, (x, y) = load_dataset("digits", None, seed=0)
    model = models.get(name, pretrained=True).eval()
    assert models.pretrained_path(name).stat().st_size < 1_000_000
    _, accuracy = evaluate(model, (resize_images(x, side), y))
    assert accuracy >= 0.97
