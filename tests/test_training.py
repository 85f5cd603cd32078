"""torsh_fn.training: a checkpoint holds model, optimizer, scheduler, global RNG, epoch, step;
a run resumed from it ends with the same weights as one that never stopped (dropout included)."""

from __future__ import annotations

import numpy as np
import pytest

import torsh_fn
from torsh_fn import models, optim
from torsh_fn.training import fit, load_checkpoint, save_checkpoint

_DATA = np.random.default_rng(0)


def _data(n):
    x = _DATA.standard_normal((n, 1, 4, 4)).astype(np.float32)
    return x, (x.sum((1, 2, 3)) > 0).astype(np.int64)


TRAIN, VAL = _data(96), _data(32)


def _run(out, epochs, resume=None):
    torsh_fn.manual_seed(1)
    model = models.get("mlp", in_features=16, hidden=(16,), num_classes=2, dropout=0.3)
    opt = optim.AdamW(model.parameters(), lr=1e-2)
    sched = optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    history = fit(model, opt, TRAIN, VAL, epochs=epochs, batch_size=16, scheduler=sched,
                  seed=3, out=out, resume=resume, progress=False)
    return model, opt, sched, history


def test_resume_ends_with_the_same_weights_as_an_uninterrupted_run(tmp_path):
    model, _, sched, history = _run(tmp_path / "a", epochs=3)
    torsh_fn.manual_seed(123)  # the checkpoint's RNG state, not this, must drive dropout
    resumed, _, sched2, history2 = _run(tmp_path / "b", epochs=3,
                                        resume=tmp_path / "a" / "checkpoint_epoch1.safetensors")
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(np.asarray(resumed.state_dict()[key]), np.asarray(value))
    assert sched2.get_last_lr() == sched.get_last_lr() == [1e-2 / 8]
    assert [h["step"] for h in history2] == [h["step"] for h in history] == [6, 12, 18]
    assert history2[0] == history[0]
    assert [h["val_accuracy"] for h in history2] == [h["val_accuracy"] for h in history]


def test_checkpoint_round_trip_restores_every_piece(tmp_path):
    model, opt, sched, _ = _run(None, epochs=1)
    state_before = torsh_fn.get_rng_state()
    save_checkpoint(tmp_path / "c.safetensors", model, opt, sched, epoch=1, step=6,
                    extra={"note": "x"})
    torsh_fn.manual_seed(5)
    fresh = models.get("mlp", in_features=16, hidden=(16,), num_classes=2, dropout=0.3)
    fresh_opt = optim.AdamW(fresh.parameters(), lr=1.0)
    fresh_sched = optim.lr_scheduler.StepLR(fresh_opt, step_size=1, gamma=0.5)
    got = load_checkpoint(tmp_path / "c.safetensors", fresh, fresh_opt, fresh_sched)
    assert got == {"epoch": 1, "step": 6, "extra": {"note": "x"}}
    np.testing.assert_array_equal(np.asarray(torsh_fn.get_rng_state()), np.asarray(state_before))
    assert fresh_opt.param_groups[0]["lr"] == opt.param_groups[0]["lr"] == 5e-3
    assert fresh_sched.last_epoch == sched.last_epoch == 1
    for (k, a), b in zip(opt.state_dict()["state"].items(),
                         fresh_opt.state_dict()["state"].values()):
        for name in a:
            np.testing.assert_array_equal(np.asarray(b[name]), np.asarray(a[name]), err_msg=k)


def test_a_bare_state_dict_is_not_a_training_checkpoint(tmp_path):
    model = models.get("mlp", in_features=16, hidden=(4,), num_classes=2)
    torsh_fn.save(model.state_dict(), tmp_path / "w.safetensors")
    with pytest.raises(ValueError, match="is not a training checkpoint .* use "
                                         r"model.load_state_dict\(torsh_fn.load\(path\)\)"):
        load_checkpoint(tmp_path / "w.safetensors", model)


def test_batch_larger_than_the_data_is_refused():
    model = models.get("mlp", in_features=16, hidden=(4,), num_classes=2)
    opt = optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="batch_size=200 is larger than the 96 training"):
        fit(model, opt, TRAIN, VAL, epochs=1, batch_size=200, progress=False)
