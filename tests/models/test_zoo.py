"""The model zoo against the same networks written in PyTorch (tests/models/_torch_zoo.py):
same state_dict keys in the same order and shapes, and after loading the torch weights
unchanged, the same outputs."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import torch

from tests.models import _torch_zoo as tz
from tests.oracle import assert_close, to_numpy
from torsh_fn import jit, models
from torsh_fn.training import CheckpointMismatchError, load_model_state

_forward = jit(lambda model, x: model(x))

# name, zoo kwargs, torch constructor, input shape
CASES = {
    "mlp": ({}, tz.mlp, (3, 8, 8)),
    "lenet5": ({}, tz.LeNet5, (3, 1, 28, 28)),
    "seed_cnn": ({}, tz.SeedCNN, (3, 1, 8, 8)),
    "resnet18": ({"num_classes": 10}, lambda: tz.ResNet(*tz.RESNETS["resnet18"], 10),
                 (2, 3, 32, 32)),
    "resnet34": ({"num_classes": 10}, lambda: tz.ResNet(*tz.RESNETS["resnet34"], 10),
                 (2, 3, 32, 32)),
    "resnet50": ({"num_classes": 10}, lambda: tz.ResNet(*tz.RESNETS["resnet50"], 10),
                 (2, 3, 32, 32)),
    "vgg11": ({"num_classes": 10, "hidden": 32}, lambda: tz.VGG11(10, 32), (2, 3, 32, 32)),
    "vit_tiny": ({"image_size": 32, "patch_size": 8, "num_classes": 10, "num_layers": 2},
                 lambda: tz.VisionTransformer(32, 8, 2, 3, 192, 768, 10), (2, 3, 32, 32)),
}
GPT_SIZES = {"vocab_size": 50, "block_size": 16, "n_layer": 2, "n_head": 2, "n_embd": 16}


def _torch_model(build):
    torch.manual_seed(0)
    model = build()
    for m in model.modules():  # non-trivial BatchNorm statistics, so eval mode is tested
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    return model.eval()


def _same_layout(ours, theirs):
    ours_sd, theirs_sd = ours.state_dict(), theirs.state_dict()
    assert list(ours_sd) == list(theirs_sd)
    assert {k: tuple(v.shape) for k, v in ours_sd.items()} == {
        k: tuple(v.shape) for k, v in theirs_sd.items()}


@pytest.mark.parametrize("name", sorted(CASES))
def test_zoo_model_matches_torch(name, rng):
    kwargs, build, shape = CASES[name]
    theirs = _torch_model(build)
    ours = models.get(name, **kwargs)
    _same_layout(ours, theirs)
    ours.load_state_dict(theirs.state_dict())  # torch tensors load unchanged
    ours.eval()
    x = rng.standard_normal(shape, np.float32)
    with torch.no_grad():
        expected = theirs(torch.from_numpy(x)).numpy()
    assert_close(_forward(ours, x), expected, rtol=2e-4, atol=2e-4)


def test_seed_cnn_training_mode_batch_statistics(rng):
    """In training mode BatchNorm uses the batch's statistics and updates the running ones."""
    theirs = _torch_model(lambda: tz.SeedCNN(dropout=0.0)).train()
    ours = models.get("seed_cnn", dropout=0.0)
    ours.load_state_dict(theirs.state_dict())
    x = rng.standard_normal((8, 1, 8, 8), np.float32)
    expected = theirs(torch.from_numpy(x)).detach().numpy()
    assert_close(_forward(ours, x), expected, rtol=2e-4, atol=2e-4)
    for key, value in theirs.state_dict().items():
        assert_close(ours.state_dict()[key], to_numpy(value), rtol=1e-4, atol=1e-5)


def test_gpt_matches_hugging_face_layout_and_logits(rng):
    theirs = _torch_model(lambda: tz.GPT2LMHeadModel(**GPT_SIZES))
    ours = models.get("gpt", **GPT_SIZES)
    _same_layout(ours, theirs)
    assert "lm_head.weight" in ours.state_dict()
    assert ours.lm_head.weight is ours.transformer.wte.weight  # tied, as GPT-2
    ours.load_state_dict(theirs.state_dict())
    idx = rng.integers(0, 50, (2, 11))
    with torch.no_grad():
        expected = theirs(torch.from_numpy(idx)).numpy()
    assert_close(_forward(ours, idx), expected, rtol=2e-4, atol=2e-4)


def test_gpt_generate_greedy_matches_torch_and_samples_within_top_k(rng):
    theirs = _torch_model(lambda: tz.GPT2LMHeadModel(**GPT_SIZES))
    ours = models.get("gpt", **GPT_SIZES)
    ours.load_state_dict(theirs.state_dict())
    ours.eval()
    idx = torch.from_numpy(rng.integers(0, 50, (1, 3)))
    with torch.no_grad():
        for _ in range(4):
            idx = torch.cat([idx, theirs(idx)[:, -1].argmax(-1, keepdim=True)], 1)
    greedy = ours.generate(jnp.asarray(idx[:, :3].numpy()), 4, temperature=0)
    np.testing.assert_array_equal(np.asarray(greedy), idx.numpy())
    sampled = ours.generate(jnp.zeros((2, 1), jnp.int32), 20, top_k=1)  # top-1 is greedy
    np.testing.assert_array_equal(np.asarray(sampled),
                                  np.asarray(ours.generate(jnp.zeros((2, 1), jnp.int32), 20,
                                                           temperature=0)))
    with pytest.raises(ValueError, match="longer than block_size=16"):
        ours(jnp.zeros((1, 17), jnp.int32))


def test_list_models_and_unknown_name():
    assert models.list_models() == ["gpt", "lenet5", "mlp", "resnet18", "resnet34", "resnet50",
                                    "seed_cnn", "vgg11", "vit_tiny"]
    with pytest.raises(ValueError, match=r"unknown model 'resnet19'; valid names: \['gpt', "):
        models.get("resnet19")
    with pytest.raises(ValueError, match=r"no shipped weights for 'vgg11'; models with weights: "
                                         r"\['lenet5', 'seed_cnn'\]"):
        models.get("vgg11", pretrained=True)


def test_checkpoint_of_another_model_names_the_differing_keys():
    small = models.get("mlp", hidden=(8,))
    deeper = models.get("mlp", hidden=(8, 8)).state_dict()
    with pytest.raises(CheckpointMismatchError,
                       match=r"'deep.safetensors' holds another model than MLP: unexpected keys "
                             r"\['net.5.bias', 'net.5.weight'\]; shape of net.3.bias: checkpoint "
                             r"\(8,\), model \(10,\); shape of net.3.weight: "
                             r"checkpoint \(8, 8\), model \(10, 8\)"):
        load_model_state(small, deeper, "checkpoint 'deep.safetensors'")
    with pytest.raises(CheckpointMismatchError, match=r"missing keys \['net.1.bias', "):
        load_model_state(small, {})
