"""benchmarks/distributed.py runs on simulated CPU devices: its parity check (DP and FSDP
updates against one device) holds and its table has every row."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.distributed._subprocess import ROOT, device_env


def test_parity_check_and_table_on_two_cpu_devices():
    proc = subprocess.run(
        [sys.executable, "benchmarks/distributed.py", "--models", "mlp", "--modes", "dp", "fsdp",
         "--check", "--check-models", "seed_cnn", "--steps", "2", "--rounds", "1"],
        env=device_env(2), capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    parity = re.search(r"^\| seed_cnn \| 2 \| (\S+) \| (\S+) \|$", proc.stdout, re.MULTILINE)
    assert parity, proc.stdout
    # A wrong gradient (summed, not averaged) reads O(1). Rounding reads 1e-7 after 2 steps and
    # up to 2e-5 after 3: seed_cnn's first two convolutions' updates then differ by ~2e-3
    # relative between 1 and 2 devices, while the same layers alone (convolution, batch norm,
    # ReLU) agree with float64 to 4e-7 on either count: rounding that the steps amplify.
    assert max(float(parity.group(1)), float(parity.group(2))) < 1e-4
    for mode in ("single", "dp", "fsdp"):
        assert re.search(rf"^\| mlp \| {mode} \| {1 if mode == 'single' else 2} \|", proc.stdout,
                         re.MULTILINE), proc.stdout
