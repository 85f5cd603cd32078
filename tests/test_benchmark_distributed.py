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
    assert max(float(parity.group(1)), float(parity.group(2))) < 1e-5
    for mode in ("single", "dp", "fsdp"):
        assert re.search(rf"^\| mlp \| {mode} \| {1 if mode == 'single' else 2} \|", proc.stdout,
                         re.MULTILINE), proc.stdout
