"""The public surface of ``torsh_fn.kernels``: every op takes ``impl=`` and says what it does, and
the package imports only jax and numpy (the layers point one way: kernels -> nn)."""

from __future__ import annotations

import inspect
import subprocess
import sys

from torsh_fn import kernels

OPS = ["add_layer_norm", "attention", "avg_pool", "batch_norm", "bias_act", "conv",
       "conv_bias_act", "conv_transpose", "cross_entropy", "layer_norm", "log_softmax", "matmul",
       "matmul_bias_act", "max_pool", "rms_norm", "softmax"]


def test_every_op_is_public_documented_and_takes_impl():
    for name in OPS:
        op = getattr(kernels, name)
        assert inspect.getdoc(op), f"{name} has no docstring"
        assert inspect.signature(op).parameters["impl"].default == "auto", name
    for name in ("sum", "mean", "amax", "amin", "var"):  # under reductions, not shadowing sum
        assert inspect.signature(getattr(kernels.reductions, name)).parameters["impl"]
        assert not hasattr(kernels, name)
    assert kernels.get_default_impl() == "auto"


def test_the_package_imports_only_jax_and_numpy():
    code = "import sys, torsh_fn.kernels; print(' '.join(sys.modules))"
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True).stdout.split())
    assert "torsh_fn.kernels.matmul" in loaded  # the probe saw the package
    assert not {"torch", "flax", "equinox", "torsh_fn.nn", "torsh_fn.optim"} & loaded
