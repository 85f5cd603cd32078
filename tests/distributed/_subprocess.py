"""Run a script of this folder in a fresh Python with N simulated CPU devices; parse its JSON.

The rest of the suite keeps one device: XLA reads ``--xla_force_host_platform_device_count``
when the backend starts, so only a new process can see 8 devices.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def device_env(devices: int) -> dict[str, str]:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def run_script(name: str, *args: str, devices: int = 8, timeout: float = 300) -> dict:
    """``python HERE/name args...`` with ``devices`` CPU devices; its last stdout line as JSON."""
    proc = subprocess.run([sys.executable, str(HERE / name), *args], env=device_env(devices),
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if proc.returncode != 0:
        raise AssertionError(f"{name} failed (rc={proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_once(tmp_path_factory, name: str, *args: str, devices: int = 8) -> dict:
    """:func:`run_script`, run once per test session even under pytest-xdist: the workers share
    the result through a file in the session's temporary folder, under a lock."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return run_script(name, *args, devices=devices)
    folder = tmp_path_factory.getbasetemp().parent  # shared by the workers of this session
    stem = "-".join([Path(name).stem, *args, str(devices)]).replace(os.sep, "_")
    result, lock = folder / f"{stem}.json", folder / f"{stem}.lock"
    with open(lock, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        if not result.exists():
            result.write_text(json.dumps(run_script(name, *args, devices=devices)))
        return json.loads(result.read_text())
