"""Every script in examples/ runs as a user runs it (a subprocess of this interpreter) with small
settings: it trains to an accuracy, its port follows PyTorch, its benchmark prints a table, and a
bad flag value ends it with a one-line message and exit status 2."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
HAS_TORCH = importlib.util.find_spec("torch") is not None
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="PyTorch is the oracle")


def run_example(name: str, *args: str, block_torch: Path | None = None,
                timeout: float = 120) -> subprocess.CompletedProcess:
    """``python examples/<name> args...``; ``block_torch``: a folder that hides torch."""
    path = [str(EXAMPLES.parent), os.environ.get("PYTHONPATH")]  # this checkout's torsh_fn
    if block_torch is not None:
        fake = block_torch / "torch"
        fake.mkdir(exist_ok=True)
        (fake / "__init__.py").write_text("raise ImportError('No module named torch')\n")
        path.insert(0, str(block_torch))
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=os.pathsep.join(filter(None, path)))
    return subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=EXAMPLES.parent)


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def final_accuracy(out: str) -> float:
    return float(re.findall(r"^validation accuracy: ([0-9.]+)$", out, re.M)[-1])


def test_every_example_is_tested():
    tested = {"functional_training.py", "neural_network_training.py", "cnn_training.py",
              "performance_benchmark.py", "pytorch_port.py"}
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.py")))
def test_example_has_a_docstring_with_a_run_line_and_a_main_guard(name):
    source = (EXAMPLES / name).read_text()
    assert source.startswith('"""'), "the docstring says what the example shows"
    assert f"python examples/{name}" in source, "the docstring says how to run it"
    assert 'if __name__ == "__main__":' in source


def test_functional_training_learns_the_digits():
    out = ok(run_example("functional_training.py", "--epochs", "10"))
    assert final_accuracy(out) >= 0.95


def test_functional_training_vmap_ensemble_trains_k_networks():
    out = ok(run_example("functional_training.py", "--epochs", "10", "--ensemble", "3"))
    members = [float(a) for a in re.search(r"member validation accuracies: (.*)", out)[1].split()]
    assert len(members) == 3 and min(members) >= 0.9
    assert final_accuracy(out) >= 0.95


def test_functional_training_vmap_ensemble_equals_its_members_trained_alone():
    """The example's ensemble construction (vmap over stacked parameters and optax states, the
    batch shared) is K independent trainings: each member equals the same network on its own."""
    import jax
    import numpy as np
    import optax

    spec = importlib.util.spec_from_file_location("functional_training",
                                                  EXAMPLES / "functional_training.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    x_train, y_train, _, _ = example.load_digits(0)
    opt = optax.adamw(1e-2, weight_decay=1e-4)
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    stacked = jax.vmap(lambda k: example.init_mlp([64, 32, 10], k))(keys)
    states = jax.vmap(opt.init)(stacked)
    ensemble_step = jax.jit(jax.vmap(example.make_step(opt), in_axes=(0, 0, None, None)))
    alone_step = jax.jit(example.make_step(opt))
    alone = [example.init_mlp([64, 32, 10], k) for k in keys]
    alone_states = [opt.init(p) for p in alone]
    for i in range(3):
        x, y = x_train[32 * i:32 * (i + 1)], y_train[32 * i:32 * (i + 1)]
        stacked, states, losses = ensemble_step(stacked, states, x, y)
        for k in range(3):
            alone[k], alone_states[k], loss = alone_step(alone[k], alone_states[k], x, y)
            np.testing.assert_allclose(losses[k], loss, rtol=1e-5)
    for k in range(3):
        member = jax.tree.map(lambda leaf, k=k: leaf[k], stacked)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                     member, alone[k])


def test_neural_network_training_learns_the_digits():
    out = ok(run_example("neural_network_training.py", "--epochs", "5"))
    losses = [float(v) for v in re.findall(r"^epoch \d+: loss ([0-9.]+)", out, re.M)]
    assert len(losses) == 5 and losses[-1] < losses[0] / 2
    assert final_accuracy(out) >= 0.9


def test_cnn_training_learns_and_its_saved_weights_reload(tmp_path):
    out = ok(run_example("cnn_training.py", "--epochs", "2", "--width", "8", "--lr", "1e-2",
                         "--out", str(tmp_path)))
    for layer in ("BatchNorm2d", "Dropout", "AdaptiveAvgPool2d", "MaxPool2d", "Conv2d"):
        assert layer in out, f"the printed model has a {layer}"
    accuracy = final_accuracy(out)
    assert accuracy >= 0.8
    reloaded = float(re.search(r"reloaded validation accuracy: ([0-9.]+)", out)[1])
    assert reloaded == accuracy
    assert (tmp_path / "cnn.safetensors").is_file()


BENCH_ROWS = ["matmul", "x + 1", "a + b", "a * b", "exp", "relu", "gelu", "sigmoid", "tanh",
              "silu", "softmax"]
BENCH_ARGS = ["--sizes", "64,128", "--elements", "16384", "--warmup", "1", "--repeats", "3"]


def table_rows(out: str) -> list[list[str]]:
    lines = [line for line in out.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


@needs_torch
def test_performance_benchmark_prints_a_table_against_pytorch():
    rows = table_rows(ok(run_example("performance_benchmark.py", *BENCH_ARGS)))
    header, body = rows[0], rows[1:]
    assert header == ["work", "size", "torsh_fn", "PyTorch", "torsh_fn rate", "PyTorch rate",
                      "torch/ours", "same"]
    assert [r[0] for r in body] == ["matmul", *BENCH_ROWS]
    assert [r[1] for r in body[:2]] == ["64x64", "128x128"]
    for row in body:
        assert re.fullmatch(r"[0-9.]+ ms", row[2]) and re.fullmatch(r"[0-9.]+ ms", row[3])
        unit = "GFLOP/s" if row[0] == "matmul" else "GB/s"
        assert row[4].endswith(unit) and row[5].endswith(unit)
        assert re.fullmatch(r"[0-9.]+x", row[6])
        assert row[7] == "yes", f"{row[0]}: torsh_fn and PyTorch disagree"


def test_performance_benchmark_without_pytorch(tmp_path):
    out = ok(run_example("performance_benchmark.py", *BENCH_ARGS, "--dtype", "bfloat16",
                         block_torch=tmp_path))
    assert "PyTorch is not installed: timing torsh_fn only" in out
    body = table_rows(out)[1:]
    assert [r[0] for r in body] == ["matmul", *BENCH_ROWS]
    assert all(r[3] == "-" and r[7] == "-" and re.fullmatch(r"[0-9.]+ ms", r[2]) for r in body)


@needs_torch
def test_pytorch_port_follows_pytorch_step_by_step():
    out = ok(run_example("pytorch_port.py", "--steps", "4", "--batch-size", "16"))
    steps = re.findall(r"^\s+(\d+)\s+([0-9.]+)\s+([0-9.]+)\s+([0-9.e+-]+)$", out, re.M)
    assert [int(s[0]) for s in steps] == [1, 2, 3, 4]
    for _, theirs, ours, _ in steps:
        assert float(ours) == pytest.approx(float(theirs), rel=1e-5)
    assert "losses match" in out


def test_pytorch_port_runs_its_torsh_fn_half_without_pytorch(tmp_path):
    out = ok(run_example("pytorch_port.py", "--steps", "3", "--batch-size", "16",
                         block_torch=tmp_path))
    assert "PyTorch is not installed: skipping the PyTorch half" in out
    assert len(re.findall(r"^step +\d: torsh_fn [0-9.]+$", out, re.M)) == 3


@pytest.mark.parametrize("name, args, message", [
    ("functional_training.py", ["--ensemble", "0"],
     "argument --ensemble: must be a positive integer, got 0"),
    ("neural_network_training.py", ["--batch-size", "5000"],
     "--batch-size must be at most the 1437 training samples, got 5000"),
    ("cnn_training.py", ["--dropout", "1.5"], "argument --dropout: must be in [0, 1), got 1.5"),
    ("performance_benchmark.py", ["--sizes", "64,big"],
     "argument --sizes: expected comma-separated integers, got '64,big'"),
    ("pytorch_port.py", ["--steps", "100", "--batch-size", "64"],
     "--steps x --batch-size must be at most 1597"),
])
def test_bad_flag_value_exits_2_with_a_clear_message(name, args, message):
    result = run_example(name, *args, timeout=60)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
