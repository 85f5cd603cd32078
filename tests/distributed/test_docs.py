"""docs/distributed.md runs: its ```python blocks are executed in order, in one namespace, on
this process's devices (one CPU device in CI, where every mesh has one device; the GPUs of a
machine of several), and again in a subprocess with 8 CPU devices, where the FSDP weight shows its
1/8 shard."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jax
import pytest

from tests.doc_blocks import python_blocks, run_blocks

from ._subprocess import ROOT, device_env

PAGE = Path(__file__).resolve().parents[2] / "docs" / "distributed.md"


def run_page() -> str:
    """Execute the page's python blocks in order in one namespace; return what they print."""
    blocks = python_blocks(PAGE.read_text())
    assert len(blocks) == 6, "the page lost code blocks (or the fence syntax changed)"
    return run_blocks(PAGE, blocks)[0]


@pytest.mark.slow
def test_every_python_block_of_the_distributed_page_runs():
    printed, n = run_page(), jax.device_count()
    assert f"{{'data': {n}, 'model': 1}}" in printed
    assert "P('data',)" in printed or "PartitionSpec('data',)" in printed
    assert "['module.classifier.2.bias'] ['classifier.2.bias']" in printed
    assert f"(64, 64, 3, 3) ({64 // n}, 64, 3, 3)" in printed
    assert "functional FSDP loss" in printed
    assert f"[[{n}. {n}. {n}.]]" in printed
    assert "3 True" in printed


@pytest.mark.slow
def test_the_page_runs_on_eight_devices():
    code = "from tests.distributed.test_docs import run_page; print(run_page())"
    proc = subprocess.run([sys.executable, "-c", code], env=device_env(8), cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    printed = proc.stdout
    assert "{'data': 8, 'model': 1}" in printed
    assert "(64, 64, 3, 3) (8, 64, 3, 3)" in printed
    assert "[[8. 8. 8.]]" in printed
    assert "3 True" in printed
