"""benchmarks/update_shapes.py runs (``--quick``) and prints one row of finite times per shape for
torsh_fn, optax and PyTorch. No timings are checked."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROW = re.compile(r"^\| (\([\d, ]+\)) \| ([\d.]+) \| ([\d.]+) \| ([\d.nan]+) \| ([\d.]+) \|$",
                 re.MULTILINE)


def test_quick_run_prints_a_row_per_shape():
    code = ("import runpy, sys; sys.argv = ['update_shapes.py', '--quick', '--iters', '2', "
            "'--rounds', '1']; runpy.run_path('benchmarks/update_shapes.py', run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = ROW.findall(proc.stdout)
    assert [r[0] for r in rows] == ["(16, 8, 3, 3)", "(1152,)"], proc.stdout
    for _, *times in rows:
        assert all(math.isfinite(float(t)) and float(t) > 0 for t in times), rows
