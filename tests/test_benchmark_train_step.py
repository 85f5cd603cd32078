"""benchmarks/train_step.py runs its smallest configuration in every framework, and the frameworks,
starting from the same weights and batch, agree on the first loss; without Flax and Equinox it
skips their rows with a note. No timings are checked."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROW = re.compile(r"^\| (\w+) \| ([\w.+ ]+?) \| ([\d.]+) \| [\d.]+-[\d.]+ \| \S+ \| \S+ \| "
                 r"([\d.]+) \| [\d.]+ \|$", re.MULTILINE)


def _run(*args: str, hide: tuple[str, ...] = ()) -> str:
    """The script's output; ``hide``: packages made unimportable first."""
    code = (f"import runpy, sys; sys.modules.update(dict.fromkeys({list(hide)!r}));"
            f"sys.argv = ['train_step.py', *{list(args)!r}];"
            f"runpy.run_path('benchmarks/train_step.py', run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_mlp_step_runs_in_every_framework_with_one_first_loss():
    pytest.importorskip("torch")
    out = _run("--models", "mlp", "--repeats", "1", "--steps", "1", "--no-compile")
    rows = {m.group(2): float(m.group(4)) for m in ROW.finditer(out)}
    expected = {"torsh_fn.jit", "jax.jit+optax", "torch eager"}
    expected |= {"flax.nnx"} if "flax.nnx skipped" not in out else set()
    expected |= {"equinox"} if "equinox skipped" not in out else set()
    assert set(rows) == expected, out
    reference = rows["torch eager"]
    for framework, loss in rows.items():
        assert loss == pytest.approx(reference, rel=1e-5), (framework, out)


def test_missing_flax_and_equinox_are_skipped_with_a_note():
    out = _run("--models", "mlp", "--repeats", "1", "--steps", "1",
               "--frameworks", "torsh_fn.jit", "flax.nnx", "equinox", hide=("flax", "equinox"))
    assert [m.group(2) for m in ROW.finditer(out)] == ["torsh_fn.jit"], out
    assert "note: flax.nnx skipped: flax is not installed" in out
    assert "note: equinox skipped: equinox is not installed" in out
