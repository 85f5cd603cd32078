"""The ``torsh-fn`` command: the README's main job (digits, >= 97%), exact resume, info, bench,
and bad input answered with one line naming the valid choices."""

from __future__ import annotations

import json
import subprocess
import sys

import jax
import numpy as np
import pytest

import torsh_fn
from torsh_fn.cli import main


def _weights(path):
    return {k: np.asarray(v) for k, v in torsh_fn.load(path).items()}


def test_main_job_trains_digits_to_97_percent_and_resumes_exactly(tmp_path, capsys):
    """``torsh-fn train`` with its defaults is the README's first command. Resumed, it ends
    with the same weights: bit for bit on the CPU; on a GPU, to float32 rounding (XLA's GPU
    reductions do not add in the same order every run: 7 of a layer's 288 weights differed by up
    to 1.5e-8 on an H200)."""
    run, resumed = tmp_path / "run", tmp_path / "resumed"
    assert main(["train", "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert "epoch 15/15: train loss" in out and "validation accuracy" in out
    metrics = json.loads((run / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == list(range(1, 16))
    assert metrics["final"]["val_accuracy"] >= 0.97
    assert (run / "metrics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert all((run / f"checkpoint_epoch{e}.safetensors").is_file() for e in range(1, 16))

    assert main(["train", "--out", str(resumed), "--no-progress",
                 "--resume", str(run / "checkpoint_epoch13.safetensors")]) == 0
    expected, got = _weights(run / "model.safetensors"), _weights(resumed / "model.safetensors")
    assert list(got) == list(expected)
    exact = jax.default_backend() == "cpu"
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=0 if exact else 1e-6,
                                   atol=0 if exact else 1e-7, err_msg=key)
    history = json.loads((resumed / "metrics.json").read_text())["history"]
    assert history == metrics["history"][:13] + history[13:] and len(history) == 15


@pytest.mark.parametrize("args, message", [
    (["--model", "resnet19"], r"unknown model 'resnet19' for train; valid models: \['mlp', "),
    (["--model", "gpt"], r"unknown model 'gpt' for train; valid models: "),
    (["--dataset", "imagenet"], r"unknown dataset 'imagenet'; valid datasets: \['digits', "
                                r"'mnist-dir', 'cifar10-dir', 'synthetic'\]"),
    (["--optimizer", "lion"], r"unknown optimizer 'lion'; valid: \['adamw', 'adam', 'sgd'\]"),
    (["--dataset", "mnist-dir"], r"dataset 'mnist-dir' needs --data-root"),
    (["--dataset", "mnist-dir", "--data-root", "{tmp}"],
     r"MNIST: expected the files \['train-images-idx3-ubyte', 'train-labels-idx1-ubyte'\] "
     r"\(optionally .gz\) in one of"),
    (["--dataset", "cifar10-dir", "--data-root", "{tmp}"],
     r"CIFAR10: expected the files \['data_batch_1.bin', "),
])
def test_bad_input_exits_2_naming_the_valid_choices(args, message, tmp_path, capsys):
    args = [a.format(tmp=tmp_path) for a in args]
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--out", str(tmp_path / "run"), *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("torsh-fn train: error: ")
    assert __import__("re").search(message, err), err


def test_resume_from_another_models_checkpoint_names_the_keys(tmp_path, capsys):
    assert main(["train", "--model", "mlp", "--dataset", "synthetic", "--epochs", "1",
                 "--out", str(tmp_path / "mlp"), "--no-progress"]) == 0
    with pytest.raises(SystemExit):
        main(["train", "--model", "lenet5", "--out", str(tmp_path / "lenet"), "--no-progress",
              "--resume", str(tmp_path / "mlp" / "checkpoint_epoch1.safetensors")])
    assert "holds another model than LeNet5: missing keys ['classifier.1.bias'" in (
        capsys.readouterr().err)


def test_info_lists_versions_devices_and_dispatch(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"torsh_fn   {torsh_fn.__version__}" in out and "jax " in out
    assert "devices    cpu:0" in out or "gpu:0" in out
    assert "  softmax        " in out


def test_bench_prints_a_table(capsys):
    assert main(["bench", "--size", "64", "--repeats", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["work", "torsh_fn", "PyTorch", "rate", "torch/ours"]
    assert [line.split()[0] for line in out[1:]] == ["matmul", "x", "gelu", "MLP"]


def test_python_dash_m_runs_the_command():
    done = subprocess.run([sys.executable, "-m", "torsh_fn", "--help"], capture_output=True,
                          text=True, check=True)
    assert "{train,info,bench}" in done.stdout
